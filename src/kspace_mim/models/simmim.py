"""SimMIM for k-space: encoder + mask token + decoder, predicting every sample of the grid.

Unlike SimMIM's reference (3 RGB channels, square inputs, loss inside ``forward``)
the channels come from the data (real/imag per coil, plus a mask channel), the
grid may be rectangular, and ``forward`` returns the prediction: the
LightningModule owns the loss. The prediction is residual (added to the input),
so acquired samples start right; data consistency then makes them exact. With
``zero_init`` the decoder's last layer starts at zero: the untrained network returns its
input (the zero-filled image), never something worse.

As a model family (:class:`SimMIMReconstructor`) it sees either every coil as a pair of
channels or, with ``coils="maps"``, one coil-combined image per slice: coil maps from the
auto-calibration lines (fastMRI's ``SensitivityModel``, as E2E-VarNet) reduce the coils
before the network and expand its image back to every coil's k-space after it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from fastmri.models.varnet import SensitivityModel
from torch import Tensor, nn

from kspace_mim.config import ConfigError
from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.coils import coil_expand, coil_maps, coil_reduce, guard_empty_coils
from kspace_mim.models.decoders import DECODERS, build_decoder
from kspace_mim.models.encoders import SwinEncoder, ViTEncoder
from kspace_mim.models.family import (
    NetFacts,
    ReconOutput,
    common_low_frequencies,
    kspace_output,
    unrolled_output,
)
from kspace_mim.models.presets import resolve
from kspace_mim.physics import channels_to_complex, complex_to_channels, fft2c, ifft2c


def real_stride(family: str, patch_size: int, depths: tuple[int, ...] | None = None) -> int:
    """The downsampling an encoder really applies (what ``encoder_stride`` must equal)."""
    return patch_size * 2 ** (len(depths) - 1) if family == "swin" else patch_size


class SimMIM(nn.Module):
    """SimMIM on real channels.

    Args:
        family: "swin" or "vit".
        num_coils: coils C of the data; input channels are 2C (+1 with ``mask_channel``).
        img_size: the model grid (H, W).
        patch_size: encoder patch size (1, 2, 4, 8, 16 as the grid allows).
        encoder_stride: must equal the encoder's real downsampling; None: use it.
        decoder: "linear" (SimMIM, the paper) or "skip" (hierarchical + full-res stem).
        size: preset (tiny|small|base); explicit arguments below override it.
        mask_channel: append the sampling mask as an input channel.
        mask_tokens: learn SimMIM's mask token (patches without an acquired sample get
            it). Only a network that sees k-space has such patches; on images (the
            zero-filled image, a denoiser) it would be a parameter without a gradient.
        zero_init: zero the decoder's last layer, so that the untrained network returns
            its input exactly (a residual network that starts at its input).
    """

    def __init__(
        self,
        family: str,
        num_coils: int,
        img_size: tuple[int, int],
        patch_size: int = 2,
        encoder_stride: int | None = None,
        decoder: str = "skip",
        size: str = "small",
        mask_channel: bool = True,
        drop_path_rate: float = 0.0,
        mask_tokens: bool = True,
        zero_init: bool = False,
        **arch,
    ):
        super().__init__()
        self.mask_tokens = mask_tokens
        params = resolve(family, size, **arch)
        depths = params.get("depths")
        stride = real_stride(family, patch_size, depths)
        if encoder_stride is not None and encoder_stride != stride:
            how = (
                f"patch_size {patch_size} x 2^{len(depths) - 1} downsampling stages"
                if family == "swin"
                else f"its patch size {patch_size}"
            )
            raise ConfigError(
                f"model.encoder_stride={encoder_stride} does not match {family}: it "
                f"downsamples by {stride} ({how}). Set model.encoder_stride={stride} (or null), "
                f"or change model.patch_size / model.depths."
            )
        if decoder not in DECODERS:
            raise ConfigError(f"model.decoder={decoder!r}: one of {DECODERS}")
        self.family, self.stride, self.patch_size = family, stride, patch_size
        self.mask_channel = mask_channel
        self.out_chans = 2 * num_coils
        in_chans = self.out_chans + int(mask_channel)
        # Swin windows must tile every stage: pad the grid to a multiple of this.
        self.multiple = stride * (params.get("window_size", 1) if family == "swin" else 1)
        padded = tuple(-(-s // self.multiple) * self.multiple for s in img_size)
        if family == "swin":
            self.encoder = SwinEncoder(
                in_chans,
                padded,
                patch_size,
                drop_path_rate=drop_path_rate,
                mask_token=mask_tokens,
                **params,
            )
        elif family == "vit":
            self.encoder = ViTEncoder(
                in_chans,
                padded,
                patch_size,
                drop_path_rate=drop_path_rate,
                mask_token=mask_tokens,
                **params,
            )
        else:
            raise ConfigError(f"unknown SimMIM encoder {family!r}: swin or vit")
        self.decoder = build_decoder(
            decoder, in_chans, self.out_chans, self.encoder.channels, self.encoder.strides
        )
        if zero_init:
            nn.init.zeros_(self.decoder.output_layer.weight)
            nn.init.zeros_(self.decoder.output_layer.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: real (B, 2C, H, W); mask: bool (B, 1, H, W) acquired samples.

        Returns the prediction, real (B, 2C, H, W). Patches without a single
        acquired sample get the mask token (when the network has one).
        """
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        # Zero padding is "not acquired" in k-space and empty FOV in the image domain.
        pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        x, mask = F.pad(x, pads), F.pad(mask.to(x.dtype), pads)
        inputs = torch.cat([x, mask], dim=1) if self.mask_channel else x
        token_mask = None
        if self.mask_tokens:
            acquired = F.max_pool2d(mask, self.patch_size)[:, 0]  # any sample in the patch
            token_mask = acquired == 0
        features = self.encoder(inputs, token_mask)
        out = x + self.decoder([inputs, *features])
        return out[..., pads[2] : pads[2] + h, pads[0] : pads[0] + w]


def predict_kspace(network: nn.Module, masked_kspace: Tensor, mask: Tensor, domain: str) -> Tensor:
    """A SimMIM network's predicted k-space (before data consistency).

    masked_kspace: complex (B, C, H, W); mask: bool (B, 1, H, W). ``domain`` "kspace": the
    encoder sees the acquired k-space, mask tokens where nothing was acquired (the
    paper's); "image": it sees the zero-filled coil images. The FFTs and the complex <->
    channels conversions run in float32 with autocast off; the network may run in bf16.
    """
    device = masked_kspace.device.type
    with torch.autocast(device, enabled=False):
        source = masked_kspace if domain == "kspace" else ifft2c(masked_kspace)
        x = complex_to_channels(source)
    y = network(x, mask)
    with torch.autocast(device, enabled=False):
        y = channels_to_complex(y.float())
        return y if domain == "kspace" else fft2c(y)


MAPS_STARTS = ("sense", "zero_filled")


def predict_with_maps(
    network: nn.Module,
    masked_kspace: Tensor,
    mask: Tensor,
    maps: Tensor,
    slices: int = 1,
    start: str = "sense",
) -> Tensor:
    """A SimMIM network's predicted k-space through coil maps (before data consistency).

    masked_kspace: complex (B, S * C, H, W); mask: bool (B, 1, H, W); maps: complex
    (B * S, C, H, W) (:func:`~kspace_mim.models.coils.coil_maps`). Each slice's coils are
    reduced to one image, the network sees the stack's S images as 2S channels, and its
    images are expanded back to every coil. Any coil count: the network never sees coils.
    start: what a network that returns its input gives: "sense" (its images expanded:
    the coil-combined zero-filled image projected through the maps) or "zero_filled"
    (only its change to the images is expanded and added to the acquired k-space: the
    zero-filled k-space itself, whatever the maps).
    """
    if start not in MAPS_STARTS:
        raise ConfigError(f"model.maps_start={start!r}: one of {MAPS_STARTS}")
    b, _, h, w = masked_kspace.shape
    device = masked_kspace.device.type
    with torch.autocast(device, enabled=False):
        images = coil_reduce(masked_kspace.reshape(b * slices, -1, h, w), maps)
        x = complex_to_channels(images.reshape(b, slices, h, w))
    y = network(x, mask)
    with torch.autocast(device, enabled=False):
        y = channels_to_complex(y.float()).reshape(b * slices, h, w)
        if start == "sense":
            return coil_expand(y, maps).reshape(b, -1, h, w)
        return masked_kspace + coil_expand(y - images, maps).reshape(b, -1, h, w)


DOMAINS = ("kspace", "image")
COILS = ("channels", "maps")
DATA_CONSISTENCY = ("hard", "soft")


class SimMIMReconstructor(SimMIM):
    """SimMIM-Swin / SimMIM-ViT as a model family: predicted k-space, then data consistency.

    Args:
        facts: coils, grid and slices of the data (:class:`~kspace_mim.models.family.NetFacts`).
        domain: "kspace" (the paper's: the encoder sees acquired k-space, mask tokens
            where nothing was acquired) or "image" (the zero-filled coil images; masking
            still happens in k-space).
        coils: "channels" (every coil a pair of input channels), "maps" (coil maps
            reduce each slice to one complex image and expand the prediction back;
            ``domain="image"`` only) or "auto" (maps on the image, channels on k-space;
            the model YAML's default). The argument's default is the layout before coil
            maps existed, so a checkpoint whose network mapping predates the option
            rebuilds the network it was trained as.
        dc: "hard" (acquired samples put back) or "soft" (VarNet's: a learned weight,
            starting at 1 = hard, of the step towards them).
        sens_chans: the sensitivity U-Net's width (``coils="maps"``).
        sens_pools: the sensitivity U-Net's depth (``coils="maps"``).
        maps_start: with ``coils="maps"``, what the untrained network (``zero_init``)
            returns: "sense" (the coil-combined zero-filled image through the untrained
            coil maps) or "zero_filled" (the zero-filled image exactly); see
            :func:`predict_with_maps`.
        compile: ``torch.compile`` the real-valued network (never the complex FFTs).
        network: :class:`SimMIM`'s arguments (``family``, ``size``, ``patch_size``,
            ``zero_init``, ...).
    """

    def __init__(
        self,
        facts: NetFacts,
        domain: str = "image",
        coils: str = "channels",
        dc: str = "hard",
        sens_chans: int = 4,
        sens_pools: int = 4,
        maps_start: str = "sense",
        compile: bool = False,
        **network: Any,
    ):
        if domain not in DOMAINS:
            raise ConfigError(f"model.domain={domain!r}: one of {DOMAINS}")
        if coils == "auto":
            coils = "maps" if domain == "image" else "channels"
        if coils not in COILS:
            raise ConfigError(f"model.coils={coils!r}: one of {COILS} or auto")
        if maps_start not in MAPS_STARTS:
            raise ConfigError(f"model.maps_start={maps_start!r}: one of {MAPS_STARTS}")
        if dc not in DATA_CONSISTENCY:
            raise ConfigError(f"model.dc={dc!r}: one of {DATA_CONSISTENCY}")
        if coils == "maps" and domain != "image":
            raise ConfigError(
                "model.coils=maps combines the coil images: it needs model.domain=image "
                "(k-space input keeps model.coils=channels)"
            )
        if facts.num_coils % facts.slices:
            raise ConfigError(
                f"{facts.num_coils} input coils do not split into {facts.slices} slices"
            )
        # Mask tokens only where the encoder sees k-space: on the zero-filled image every
        # patch has data, and a token without a gradient stops DDP training.
        network.setdefault("family", "swin")
        super().__init__(
            num_coils=facts.slices if coils == "maps" else facts.num_coils,
            img_size=tuple(facts.img_size),
            mask_tokens=domain == "kspace",
            **network,
        )
        self.domain, self.coils, self.dc, self.maps_start = domain, coils, dc, maps_start
        self.slices = facts.slices
        self.sens_net = (
            guard_empty_coils(SensitivityModel(sens_chans, sens_pools)) if coils == "maps" else None
        )
        # VarNet's soft data consistency; 1 = hard at the start.
        self.dc_weight = nn.Parameter(torch.ones(1)) if dc == "soft" else None
        # Read by the system's setup: compiled in place, so state-dict keys do not change.
        self.compile_network = compile

    @property
    def varying_coils(self) -> bool:
        # Through coil maps the network never sees coils; as channels it is built for C.
        return self.coils == "maps"

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        if self.sens_net is not None:
            maps = coil_maps(
                self.sens_net,
                batch.masked_kspace,
                batch.mask,
                common_low_frequencies(batch),
                self.slices,
            )
            prediction = predict_with_maps(
                self, batch.masked_kspace, batch.mask, maps, self.slices, self.maps_start
            )
        else:
            prediction = predict_kspace(self, batch.masked_kspace, batch.mask, self.domain)
        if self.dc_weight is None:
            return kspace_output(batch, prediction, self.slices)
        with torch.autocast(prediction.device.type, enabled=False):
            prediction = prediction.to(torch.complex64)
            step = torch.where(batch.mask.bool(), prediction - batch.masked_kspace, 0)
            kspace = prediction - self.dc_weight * step
        return unrolled_output(batch, kspace, self.slices, prediction)
