"""The fastMRI U-Net baseline on the zero-filled, coil-combined image (``fastmri.models.Unet``)."""

from __future__ import annotations

import torch
from fastmri.models import Unet

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.presets import resolve
from kspace_mim.modules.base import ReconOutput, ReconstructionModule


class UnetModule(ReconstructionModule):
    """As fastMRI's U-Net baseline: RSS of the zero-filled coil images cropped to the recon
    size, instance-normalised (mean/std, clamped to +-6), U-Net, de-normalised; L1 loss on
    the normalised images (``loss.image_ssim`` adds SSIM on the image)."""

    has_kspace_output = False

    def __init__(
        self,
        num_coils: int,
        img_size: tuple[int, int],
        size: str = "small",
        chans: int | None = None,
        num_pool_layers: int | None = None,
        drop_prob: float = 0.0,
        loss: dict | None = None,
        optim: dict | None = None,
        data: dict | None = None,
        on_nonfinite: str = "stop",
        supervision: dict | None = None,
    ):
        super().__init__(num_coils, img_size, loss, optim, data, on_nonfinite, supervision)
        self.save_hyperparameters()
        arch = resolve("unet", size, chans=chans, num_pool_layers=num_pool_layers)
        # Adjacent slices (data.adjacent_slices) are input channels; the output is the middle.
        self.net = Unet(in_chans=self.slices, out_chans=1, drop_prob=drop_prob, **arch)

    def _normalized(self, batch: KspaceSample):
        """(B, S, h, w) zero-filled images of the stack, normalised by the middle one's
        mean and std (B, 1, 1), which the output and the target share."""
        images = torch.stack([self.zero_filled_image(batch, s) for s in range(self.slices)], 1)
        middle = images[:, self.slices // 2]
        mean = middle.mean(dim=(-2, -1), keepdim=True)
        std = middle.std(dim=(-2, -1), keepdim=True) + 1e-11
        return ((images - mean[:, None]) / std[:, None]).clamp(-6, 6), mean, std

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        x, mean, std = self._normalized(batch)
        return ReconOutput(self.net(x)[:, 0] * std + mean, normalization=(mean, std))

    def loss(self, batch: KspaceSample, out: ReconOutput) -> dict[str, torch.Tensor]:
        terms = {}
        mean, std = out.normalization  # reconstruct's, which the loss is computed in
        if self.loss_weights["image_l1"]:
            target = ((batch.target - mean) / std).clamp(-6, 6)
            terms["image_l1"] = torch.nn.functional.l1_loss((out.image - mean) / std, target)
        if self.loss_weights["image_ssim"]:
            max_value = batch.max_value.clamp_min(1e-12)
            terms["image_ssim"] = self.ssim_loss(
                out.image[:, None], batch.target[:, None], max_value
            )
        if not terms:
            raise ValueError("the U-Net needs loss.image_l1 or loss.image_ssim > 0")
        terms["loss"] = sum(self.loss_weights[k] * v for k, v in terms.items())
        return terms
