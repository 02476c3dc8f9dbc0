"""SimMIM on undersampled k-space or zero-filled coil images; the base does the rest."""

from __future__ import annotations

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.simmim import ConfigError, SimMIM, predict_kspace
from kspace_mim.modules.base import ReconOutput, ReconstructionModule

DOMAINS = ("kspace", "image")


class SimMIMModule(ReconstructionModule):
    """SimMIM-Swin / SimMIM-ViT.

    Args:
        family: "swin" or "vit".
        domain: "kspace" (the paper's: the encoder sees acquired k-space, mask tokens
            where nothing was acquired) or "image" (the zero-filled coil images; masking
            still happens in k-space).
        compile: ``torch.compile`` the real-valued network (never the complex FFTs).

    The network's arguments are :class:`kspace_mim.models.simmim.SimMIM`'s; ``loss``,
    ``optim``, ``data``, ``on_nonfinite`` and ``supervision`` are every module's
    (:class:`kspace_mim.modules.base.ReconstructionModule`).
    """

    varying_coils = False  # every coil is a pair of input channels

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
        supervision: dict | None = None,
        **arch,
    ):
        super().__init__(num_coils, img_size, loss, optim, data, on_nonfinite, supervision)
        self.save_hyperparameters()
        if domain not in DOMAINS:
            raise ConfigError(f"encoder.domain={domain!r}: one of {DOMAINS}")
        self.domain = domain
        self.compile_net = compile
        self.net = SimMIM(
            family,
            num_coils,
            tuple(img_size),
            patch_size,
            encoder_stride,
            decoder,
            size,
            mask_channel,
            drop_path_rate,
            # Mask tokens only where the encoder sees k-space: on the zero-filled image
            # every patch has data, and a token without a gradient stops DDP training.
            mask_tokens=domain == "kspace",
            **arch,
        )

    def setup(self, stage: str) -> None:
        # In place (``nn.Module.compile``): the state dict keeps its keys, so compiled and
        # uncompiled configs share checkpoints.
        if self.compile_net:
            self.net.compile()

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        prediction = predict_kspace(self.net, batch.masked_kspace, batch.mask, self.domain)
        return self.kspace_output(batch, prediction)
