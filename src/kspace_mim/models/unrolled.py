"""An unrolled network in E2E-VarNet's shape, with this package's networks inside.

Sensitivity maps from the auto-calibration lines (fastMRI's ``SensitivityModel``), then
``cascades`` of fastMRI's ``VarNetBlock`` (soft data consistency with a learned weight,
plus a denoiser on the coil-combined complex image; the block does not know which
denoiser it wraps). Optionally the single-pass SimMIM network, with its data
consistency, gives the cascades their starting point (``first_estimate="simmim"``), on
every coil as channels or, with ``first_coils="maps"``, on the image the cascades' own
coil maps combine.

Shapes follow fastMRI inside the cascades (real, ``(..., 2)`` last); the public
``forward`` takes and returns complex k-space like every model of the package.
"""

from __future__ import annotations

from typing import Any

import torch
from fastmri.models import Unet
from fastmri.models.varnet import NormUnet, SensitivityModel, VarNetBlock
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kspace_mim.config import ConfigError
from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.coils import guard_empty_coils
from kspace_mim.models.family import (
    NetFacts,
    ReconOutput,
    common_low_frequencies,
    unrolled_output,
)
from kspace_mim.models.presets import PRESETS, resolve
from kspace_mim.models.residual import gate_cascades
from kspace_mim.models.simmim import (
    COILS,
    MAPS_STARTS,
    SimMIM,
    predict_kspace,
    predict_with_maps,
)
from kspace_mim.physics import data_consistency

DENOISERS = ("unet", "swin", "vit")
FIRST_ESTIMATES = ("none", "simmim")


class ImageDenoiser(nn.Module):
    """A real-channel network as a cascade's denoiser, in fastMRI's layout.

    x: (B, S, H, W, 2) coil-combined images (S = 1, or a stack of adjacent slices) ->
    same shape. Normalised per image and real / imaginary channel (mean, std), as
    fastMRI's ``NormUnet`` does for its U-Net; the network runs on (B, 2S, H, W) and its
    output returns to float32 (FFTs follow). ``network`` is a SimMIM network built
    without mask tokens (called with an all-ones mask) or, with ``takes_mask=False``, a
    plain image-to-image network such as fastMRI's ``Unet``.
    """

    def __init__(self, network: nn.Module, takes_mask: bool = True):
        super().__init__()
        self.network = network
        self.takes_mask = takes_mask

    def forward(self, x: Tensor) -> Tensor:
        b, s, h, w, _ = x.shape
        y = x.permute(0, 1, 4, 2, 3).reshape(b, 2 * s, h, w)
        mean = y.mean(dim=(-2, -1), keepdim=True)
        std = y.std(dim=(-2, -1), keepdim=True) + 1e-6
        y = (y - mean) / std
        if self.takes_mask:
            ones = torch.ones(b, 1, h, w, device=x.device, dtype=x.dtype)
            out = self.network(y, ones).float()
        else:
            out = self.network(y).float()
        return (out * std + mean).reshape(b, s, 2, h, w).permute(0, 1, 3, 4, 2)


class StackDenoiser(nn.Module):
    """Lets a cascade's denoiser see a stack of adjacent slices as channels.

    The cascades run slice by slice, (B * S, 1, H, W, 2) coil-combined images; the
    denoiser gets (B, S, H, W, 2), each slice's neighbours beside it, and returns the
    same (hand-written: fastMRI's cascades know one slice only).
    """

    def __init__(self, denoiser: nn.Module, slices: int):
        super().__init__()
        self.denoiser = denoiser
        self.slices = slices

    def forward(self, x: Tensor) -> Tensor:
        stack = x.reshape(-1, self.slices, *x.shape[2:])
        return self.denoiser(stack).reshape(x.shape)


def build_denoiser(
    name: str,
    size: str,
    img_size: tuple[int, int],
    chans: int,
    pools: int,
    patch_size: int,
    slices: int = 1,
) -> nn.Module:
    """``model.denoiser``: fastMRI's NormUnet (VarNet's own) or this package's SimMIM
    network (Swin / ViT encoder + skip decoder, no mask token) on the complex image of
    each slice (of every slice of a stack of ``slices`` adjacent slices)."""
    if name == "unet" and slices == 1:
        denoiser = NormUnet(chans, pools)
    elif name == "unet":  # NormUnet normalises exactly 2 channels: normalise here instead
        denoiser = ImageDenoiser(Unet(2 * slices, 2 * slices, chans, pools), takes_mask=False)
    elif name in ("swin", "vit"):
        network = SimMIM(
            name,
            slices,
            img_size,
            patch_size,
            None,
            "skip",
            size,
            mask_channel=False,
            mask_tokens=False,
        )
        denoiser = ImageDenoiser(network)
    else:
        raise ConfigError(f"model.denoiser={name!r}: one of {DENOISERS}")
    return denoiser if slices == 1 else StackDenoiser(denoiser, slices)


def freeze_first_dc_weight(cascades: nn.ModuleList) -> None:
    """Freeze the soft data-consistency weight of the first cascade.

    The first cascade starts from k-space that equals the acquired samples where they
    were acquired (VarNet's start, or an estimate after hard data consistency), so its
    data-consistency term is exactly zero and its weight's gradient is zero at every
    step: it never learns. Frozen, it is no parameter without a gradient (which DDP and
    the gradient tests would flag) and weight decay cannot move it either.
    """
    cascades[0].dc_weight.requires_grad_(False)


class Unrolled(nn.Module):
    """Sensitivity maps, an optional SimMIM first estimate, then cascades.

    Args:
        num_coils: coils C; img_size: the model grid (H, W).
        cascades: number of unrolled cascades.
        denoiser: "unet" | "swin" | "vit" (:func:`build_denoiser`).
        first_estimate: "none" (start from the acquired samples, as VarNet) or "simmim"
            (the single-pass SimMIM-Swin on zero-filled coil images, data consistency).
        first_coils: the first estimate's coils: "channels" (every coil a pair of input
            channels) or "maps" (one image per slice through the cascades' coil maps).
        zero_init: the first estimate starts at its input (its decoder's last layer zeroed).
        residual_gate: each cascade's denoiser term scaled by a learned gate starting at 0
            (with ``zero_init`` or no first estimate, the untrained network returns the
            zero-filled image).
        maps_start: with ``first_coils="maps"``, what the untrained first estimate returns
            ("sense" or "zero_filled", :func:`~kspace_mim.models.simmim.predict_with_maps`).
        share_weights: one denoiser for every cascade (each keeps its own DC weight).
        checkpointing: recompute each cascade in the backward pass (activation memory of
            one cascade instead of all: a 640x368 15-coil knee slice on one GPU).
        size: preset of the first estimate and of a Swin / ViT denoiser.
        chans: channels of the U-Net denoiser's first level.
        pools: pooling levels of the U-Net denoiser.
        sens_chans: channels of the sensitivity U-Net's first level.
        sens_pools: pooling levels of the sensitivity U-Net.
        patch_size: patch size of the SimMIM networks.
        slices: slices per input stack (adjacent slices stacked as coils, slice by slice:
            ``num_coils`` is slices x coils). Sensitivity maps and data consistency are per
            slice; the first estimate and the denoisers see the whole stack.
    """

    def __init__(
        self,
        num_coils: int,
        img_size: tuple[int, int],
        cascades: int = 4,
        denoiser: str = "unet",
        first_estimate: str = "simmim",
        share_weights: bool = False,
        checkpointing: bool = False,
        size: str = "tiny",
        chans: int = 8,
        pools: int = 4,
        sens_chans: int = 4,
        sens_pools: int = 4,
        patch_size: int = 2,
        slices: int = 1,
        first_coils: str = "channels",
        zero_init: bool = False,
        residual_gate: bool = False,
        maps_start: str = "sense",
    ):
        super().__init__()
        if maps_start not in MAPS_STARTS:
            raise ConfigError(f"model.maps_start={maps_start!r}: one of {MAPS_STARTS}")
        self.maps_start = maps_start
        if first_coils not in COILS:
            raise ConfigError(f"model.first_coils={first_coils!r}: one of {COILS}")
        self.first_coils = first_coils
        if num_coils % slices:
            raise ConfigError(f"{num_coils} input coils do not split into {slices} slices")
        self.slices = slices
        if first_estimate not in FIRST_ESTIMATES:
            raise ConfigError(f"model.first_estimate={first_estimate!r}: one of {FIRST_ESTIMATES}")
        if cascades < 1:
            raise ConfigError(f"model.cascades={cascades}: at least 1")
        self.checkpointing = checkpointing
        self.sens_net = guard_empty_coils(SensitivityModel(sens_chans, sens_pools))
        self.first = (
            # On the zero-filled image (every patch has data): no mask token.
            SimMIM(
                "swin",
                slices if first_coils == "maps" else num_coils,
                tuple(img_size),
                patch_size,
                None,
                "skip",
                size,
                mask_tokens=False,
                zero_init=zero_init,
            )
            if first_estimate == "simmim"
            else None
        )

        def make() -> nn.Module:
            return build_denoiser(denoiser, size, tuple(img_size), chans, pools, patch_size, slices)

        shared = make() if share_weights else None
        self.cascades = nn.ModuleList(
            [VarNetBlock(shared if shared is not None else make()) for _ in range(cascades)]
        )
        freeze_first_dc_weight(self.cascades)
        if residual_gate:
            gate_cascades(self.cascades)

    def first_estimate(
        self, masked_kspace: Tensor, mask: Tensor, sens_maps: Tensor | None = None
    ) -> Tensor:
        """complex (B, C, H, W): the SimMIM estimate with the acquired samples put back,
        or the acquired samples themselves. sens_maps: the cascades' coil maps, real
        (B * S, C, H, W, 2) (fastMRI's layout), needed with ``first_coils="maps"``."""
        if self.first is None:
            return masked_kspace
        if self.first_coils == "maps":
            if sens_maps is None:
                raise ValueError("first_coils='maps' needs the coil maps (sens_maps)")
            maps = torch.view_as_complex(sens_maps.float().contiguous())
            prediction = predict_with_maps(
                self.first, masked_kspace, mask, maps, self.slices, self.maps_start
            )
        else:
            prediction = predict_kspace(self.first, masked_kspace, mask, "image")
        with torch.autocast(masked_kspace.device.type, enabled=False):
            return data_consistency(prediction, masked_kspace, mask)

    def forward(
        self, masked_kspace: Tensor, mask: Tensor, num_low_frequencies: int | None
    ) -> Tensor:
        """masked_kspace: complex (B, C, H, W) (C = slices x coils); mask: bool (B, 1, H, W)
        -> complex k-space (B, C, H, W)."""
        b, _, h, w = masked_kspace.shape

        def per_slice(x: Tensor) -> Tensor:  # (B, S * C, H, W) -> (B * S, C, H, W, 2)
            return torch.view_as_real(x.reshape(b * self.slices, -1, h, w))

        ref = per_slice(masked_kspace)
        mask5 = mask.repeat_interleave(self.slices, 0).unsqueeze(-1)
        sens_maps = self.sens_net(ref, mask5, num_low_frequencies)
        kspace = per_slice(self.first_estimate(masked_kspace, mask, sens_maps))
        for cascade in self.cascades:
            if self.checkpointing and self.training:
                kspace = checkpoint(cascade, kspace, ref, mask5, sens_maps, use_reentrant=False)
            else:
                kspace = cascade(kspace, ref, mask5, sens_maps)
        return torch.view_as_complex(kspace.float().contiguous()).reshape(b, -1, h, w)


class UnrolledReconstructor(Unrolled):
    """The unrolled network as a model family. ``size`` sets cascades and U-Net widths (as
    VarNet's preset of that name) and the Swin size. ``network``: :class:`Unrolled`'s
    arguments; the preset's (``cascades``, ``chans``, ``pools``, ``sens_chans``,
    ``sens_pools``) override it where not None, the others (``denoiser``,
    ``first_estimate``, ``first_coils``, ``zero_init``, ``residual_gate``, ``maps_start``,
    ``share_weights``,
    ``checkpointing``, ``patch_size``) pass on."""

    def __init__(self, facts: NetFacts, size: str = "tiny", **network: Any):
        preset_keys = PRESETS["unrolled"][size] if size in PRESETS["unrolled"] else {}
        preset = {k: network.pop(k) for k in list(network) if k in preset_keys}
        arch = resolve("unrolled", size, **preset)
        super().__init__(
            facts.num_coils,
            tuple(facts.img_size),
            size=size,
            slices=facts.slices,
            **arch,
            **network,
        )

    @property
    def varying_coils(self) -> bool:
        # A SimMIM first estimate on channels sees every coil; cascades see coil maps.
        return self.first is None or self.first_coils == "maps"

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        kspace = self(batch.masked_kspace, batch.mask, common_low_frequencies(batch))
        return unrolled_output(batch, kspace, self.slices)
