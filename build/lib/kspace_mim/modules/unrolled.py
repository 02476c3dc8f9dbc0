"""The unrolled network (:class:`kspace_mim.models.unrolled.Unrolled`) as a model family."""

from __future__ import annotations

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.presets import resolve
from kspace_mim.models.unrolled import Unrolled
from kspace_mim.modules.base import ReconOutput, ReconstructionModule, common_low_frequencies


class UnrolledModule(ReconstructionModule):
    """Sensitivity maps, an optional SimMIM first estimate, cascades of soft data
    consistency and a denoiser. ``size`` sets cascades and U-Net widths (as VarNet's
    preset of that name) and the Swin size; explicit arguments override it. Other
    arguments: see :class:`kspace_mim.models.unrolled.Unrolled`."""

    def __init__(
        self,
        num_coils: int,
        img_size: tuple[int, int],
        size: str = "tiny",
        cascades: int | None = None,
        denoiser: str = "unet",
        first_estimate: str = "simmim",
        share_weights: bool = False,
        checkpointing: bool = False,
        chans: int | None = None,
        pools: int | None = None,
        sens_chans: int | None = None,
        sens_pools: int | None = None,
        patch_size: int = 2,
        loss: dict | None = None,
        optim: dict | None = None,
        data: dict | None = None,
        on_nonfinite: str = "stop",
        supervision: dict | None = None,
    ):
        super().__init__(num_coils, img_size, loss, optim, data, on_nonfinite, supervision)
        self.save_hyperparameters()
        arch = resolve(
            "unrolled",
            size,
            cascades=cascades,
            chans=chans,
            pools=pools,
            sens_chans=sens_chans,
            sens_pools=sens_pools,
        )
        self.net = Unrolled(
            num_coils,
            tuple(img_size),
            denoiser=denoiser,
            first_estimate=first_estimate,
            share_weights=share_weights,
            checkpointing=checkpointing,
            size=size,
            patch_size=patch_size,
            slices=self.slices,
            **arch,
        )

    @property
    def varying_coils(self) -> bool:
        # The SimMIM first estimate sees every coil as channels; cascades see coil maps.
        return self.net.first is None

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        kspace = self.net(batch.masked_kspace, batch.mask, common_low_frequencies(batch))
        return self.unrolled_output(batch, kspace)
