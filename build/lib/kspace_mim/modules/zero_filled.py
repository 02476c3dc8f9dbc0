"""Zero-filling: the inverse FFT of the acquired samples; the floor of every table."""

from __future__ import annotations

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.modules.base import ReconOutput, ReconstructionModule


class ZeroFilledModule(ReconstructionModule):
    trainable = False

    def __init__(
        self,
        num_coils: int,
        img_size: tuple[int, int],
        loss: dict | None = None,
        optim: dict | None = None,
        data: dict | None = None,
        on_nonfinite: str = "stop",
        supervision: dict | None = None,
    ):
        super().__init__(num_coils, img_size, loss, optim, data, on_nonfinite, supervision)
        self.save_hyperparameters()

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        return self.kspace_output(batch, batch.masked_kspace)
