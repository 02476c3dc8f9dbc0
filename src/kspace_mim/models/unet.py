"""The fastMRI U-Net baseline on the zero-filled, coil-combined image (``fastmri.models.Unet``)."""

from __future__ import annotations

import torch
from fastmri.models import Unet
from torch import Tensor

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.family import NetFacts, ReconOutput, zero_filled_image
from kspace_mim.models.presets import resolve
from kspace_mim.models.residual import zero_last_conv


class UnetReconstructor(Unet):
    """As fastMRI's U-Net baseline: RSS of the zero-filled coil images cropped to the recon
    size, instance-normalised (mean/std, clamped to +-6), U-Net, de-normalised. Its image
    L1 is computed in that normalisation (``ReconOutput.normalization``), as fastMRI's.
    Adjacent slices (data.adjacent_slices) are input channels; the output is the middle.
    ``residual``: the U-Net predicts a correction added to the (normalised, unclamped)
    zero-filled image, its last layer zeroed, so the untrained network returns the
    zero-filled image (not fastMRI's baseline, which maps image to image)."""

    has_kspace_output = False

    def __init__(
        self,
        facts: NetFacts,
        size: str = "small",
        drop_prob: float = 0.0,
        residual: bool = False,
        **preset: int | None,
    ):
        arch = resolve("unet", size, **preset)  # chans, num_pool_layers
        super().__init__(in_chans=facts.slices, out_chans=1, drop_prob=drop_prob, **arch)
        self.slices = facts.slices
        self.residual = residual
        if residual:
            zero_last_conv(self)

    def normalized(self, batch: KspaceSample) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, S, h, w) zero-filled images of the stack, normalised by the middle one's
        mean and std (B, 1, 1), which the output and the target share; and the middle
        zero-filled image itself (B, h, w), original units."""
        images = torch.stack(
            [zero_filled_image(batch, self.slices, s) for s in range(self.slices)], 1
        )
        middle = images[:, self.slices // 2]
        mean = middle.mean(dim=(-2, -1), keepdim=True)
        std = middle.std(dim=(-2, -1), keepdim=True) + 1e-11
        return ((images - mean[:, None]) / std[:, None]).clamp(-6, 6), mean, std, middle

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        x, mean, std, middle = self.normalized(batch)
        out = self(x)[:, 0] * std
        # residual: the correction adds to the zero-filled image (the unclamped input).
        return ReconOutput(out + (middle if self.residual else mean), normalization=(mean, std))
