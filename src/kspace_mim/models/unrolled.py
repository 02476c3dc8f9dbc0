"""An unrolled network in E2E-VarNet's shape, with this package's networks inside.

Sensitivity maps from the auto-calibration lines (fastMRI's ``SensitivityModel``), then
``cascades`` of fastMRI's ``VarNetBlock`` (soft data consistency with a learned weight,
plus a denoiser on the coil-combined complex image; the block does not know which
denoiser it wraps). Optionally the single-pass SimMIM network, with its data
consistency, gives the cascades their starting point (``first_estimate="simmim"``).

Shapes follow fastMRI inside the cascades (real, ``(..., 2)`` last); the public
``forward`` takes and returns complex k-space like every model of the package.
"""

from __future__ import annotations

import torch
from fastmri.models.varnet import NormUnet, SensitivityModel, VarNetBlock
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kspace_mim.models.simmim import ConfigError, SimMIM, predict_kspace
from kspace_mim.physics import data_consistency

DENOISERS = ("unet", "swin", "vit")
FIRST_ESTIMATES = ("none", "simmim")


class ImageDenoiser(nn.Module):
    """A real-channel network as a cascade's denoiser, in fastMRI's layout.

    x: (B, 1, H, W, 2) coil-combined image -> same shape. Normalised per image and
    real / imaginary channel (mean, std), as fastMRI's ``NormUnet`` does for its U-Net;
    the network runs on (B, 2, H, W) and its output returns to float32 (FFTs follow).
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w, _ = x.shape
        y = x[:, 0].permute(0, 3, 1, 2)  # (B, 2, H, W)
        mean = y.mean(dim=(-2, -1), keepdim=True)
        std = y.std(dim=(-2, -1), keepdim=True) + 1e-6
        ones = torch.ones(b, 1, h, w, device=x.device, dtype=x.dtype)
        out = self.network((y - mean) / std, ones, use_mask_tokens=False).float()
        return (out * std + mean).permute(0, 2, 3, 1).unsqueeze(1)


def build_denoiser(
    name: str, size: str, img_size: tuple[int, int], chans: int, pools: int, patch_size: int
) -> nn.Module:
    """``encoder.denoiser``: fastMRI's NormUnet (VarNet's own) or this package's SimMIM
    network (Swin / ViT encoder + skip decoder, no mask token) on the complex image."""
    if name == "unet":
        return NormUnet(chans, pools)
    if name in ("swin", "vit"):
        network = SimMIM(name, 1, img_size, patch_size, None, "skip", size, mask_channel=False)
        return ImageDenoiser(network)
    raise ConfigError(f"encoder.denoiser={name!r}: one of {DENOISERS}")


class Unrolled(nn.Module):
    """Sensitivity maps, an optional SimMIM first estimate, then cascades.

    Args:
        num_coils: coils C; img_size: the model grid (H, W).
        cascades: number of unrolled cascades.
        denoiser: "unet" | "swin" | "vit" (:func:`build_denoiser`).
        first_estimate: "none" (start from the acquired samples, as VarNet) or "simmim"
            (the single-pass SimMIM-Swin on zero-filled coil images, data consistency).
        share_weights: one denoiser for every cascade (each keeps its own DC weight).
        checkpointing: recompute each cascade in the backward pass (activation memory of
            one cascade instead of all: a 640x368 15-coil knee slice on one GPU).
        size: preset of the first estimate and of a Swin / ViT denoiser.
        chans, pools: the U-Net denoiser's; sens_chans, sens_pools: the sensitivity U-Net's.
        patch_size: patch size of the SimMIM networks.
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
    ):
        super().__init__()
        if first_estimate not in FIRST_ESTIMATES:
            raise ConfigError(
                f"encoder.first_estimate={first_estimate!r}: one of {FIRST_ESTIMATES}"
            )
        if cascades < 1:
            raise ConfigError(f"encoder.cascades={cascades}: at least 1")
        self.checkpointing = checkpointing
        self.sens_net = SensitivityModel(sens_chans, sens_pools)
        self.first = (
            SimMIM("swin", num_coils, tuple(img_size), patch_size, None, "skip", size)
            if first_estimate == "simmim"
            else None
        )

        def make() -> nn.Module:
            return build_denoiser(denoiser, size, tuple(img_size), chans, pools, patch_size)

        shared = make() if share_weights else None
        self.cascades = nn.ModuleList(
            [VarNetBlock(shared if shared is not None else make()) for _ in range(cascades)]
        )

    def first_estimate(self, masked_kspace: Tensor, mask: Tensor) -> Tensor:
        """complex (B, C, H, W): the SimMIM estimate with the acquired samples put back,
        or the acquired samples themselves."""
        if self.first is None:
            return masked_kspace
        prediction = predict_kspace(self.first, masked_kspace, mask, "image")
        with torch.autocast(masked_kspace.device.type, enabled=False):
            return data_consistency(prediction, masked_kspace, mask)

    def forward(
        self, masked_kspace: Tensor, mask: Tensor, num_low_frequencies: int | None
    ) -> Tensor:
        """masked_kspace: complex (B, C, H, W); mask: bool (B, 1, H, W) -> complex k-space."""
        ref = torch.view_as_real(masked_kspace)
        mask5 = mask.unsqueeze(-1)
        sens_maps = self.sens_net(ref, mask5, num_low_frequencies)
        kspace = torch.view_as_real(self.first_estimate(masked_kspace, mask))
        for cascade in self.cascades:
            if self.checkpointing and self.training:
                kspace = checkpoint(cascade, kspace, ref, mask5, sens_maps, use_reentrant=False)
            else:
                kspace = cascade(kspace, ref, mask5, sens_maps)
        return torch.view_as_complex(kspace.float().contiguous())
