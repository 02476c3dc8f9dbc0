"""SimMIM on undersampled k-space or zero-filled coil images; the base does the rest."""

from __future__ import annotations

import torch

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.simmim import ConfigError, SimMIM
from kspace_mim.modules.base import ReconOutput, ReconstructionModule
from kspace_mim.physics import channels_to_complex, complex_to_channels, fft2c, ifft2c

DOMAINS = ("kspace", "image")


class SimMIMModule(ReconstructionModule):
    """SimMIM-Swin / SimMIM-ViT.

    Args:
        family: "swin" or "vit". domain: "kspace" (the paper's: the encoder sees
            acquired k-space, mask tokens where nothing was acquired) or "image"
            (the zero-filled coil images; masking still happens in k-space).
        compile: ``torch.compile`` the real-valued network (never the complex FFTs).
        Other arguments: see :class:`kspace_mim.models.simmim.SimMIM`.
    """

    def __init__(
        self,
        num_coils: int,
        img_size: tuple[int, int],
        family: str = "swin",
        domain: str = "image",
        patch_size: int = 2,
        encoder_stride: int | None = None,
        decoder: str = "skip",
        size: str = "small",
        mask_channel: bool = True,
        drop_path_rate: float = 0.0,
        compile: bool = False,
        loss: dict | None = None,
        optim: dict | None = None,
        data: dict | None = None,
        on_nonfinite: str = "stop",
        **arch,
    ):
        super().__init__(num_coils, img_size, loss, optim, data, on_nonfinite)
        self.save_hyperparameters()
        if domain not in DOMAINS:
            raise ConfigError(f"encoder.domain={domain!r}: one of {DOMAINS}")
        self.domain = domain
        self.model = SimMIM(
            family,
            num_coils,
            tuple(img_size),
            patch_size,
            encoder_stride,
            decoder,
            size,
            mask_channel,
            drop_path_rate,
            **arch,
        )
        self.network = torch.compile(self.model) if compile else self.model

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        with torch.autocast(self.device.type, enabled=False):
            source = batch.masked_kspace if self.domain == "kspace" else ifft2c(batch.masked_kspace)
            x = complex_to_channels(source)
        y = self.network(x, batch.mask, use_mask_tokens=self.domain == "kspace")
        with torch.autocast(self.device.type, enabled=False):
            y = channels_to_complex(y.float())
            prediction = y if self.domain == "kspace" else fft2c(y)
        return self.kspace_output(batch, prediction)
