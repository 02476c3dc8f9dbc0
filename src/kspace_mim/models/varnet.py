"""fastMRI's E2E-VarNet (``fastmri.models.VarNet``) as a model family of this package.

Our pipeline feeds it (masked k-space on the model grid, the mask, the centre width) and
the system scores it (image in original units, cropped, fastMRI metrics), so
``reconstruct``, ``evaluate``, sweeps and DDP work as for every model. The network is
fastMRI's: its own sensitivity model and cascades run here one after the other, exactly
as ``VarNet.forward`` does, because we also need the final k-space (k-space SSIM,
k-space losses) and not only its RSS image. Two changes, neither of which alters a
number fastMRI computes: an all-zero (padded) coil gets a zero sensitivity map instead
of NaN (:mod:`kspace_mim.models.coils`), and the first cascade's data-consistency
weight, whose gradient is always zero, is frozen.
"""

from __future__ import annotations

import torch
from fastmri.models import VarNet

from kspace_mim.config import ConfigError
from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.coils import guard_empty_coils
from kspace_mim.models.family import NetFacts, ReconOutput, common_low_frequencies, unrolled_output
from kspace_mim.models.presets import resolve
from kspace_mim.models.residual import gate_cascades
from kspace_mim.models.unrolled import freeze_first_dc_weight


class VarNetReconstructor(VarNet):
    """E2E-VarNet. ``size``: tiny (4 cascades, chans 8, sens_chans 4: CPU), small, base
    (fastMRI's leaderboard model: 12 cascades, chans 18, sens_chans 8); ``preset``:
    ``VarNet``'s arguments (``num_cascades``, ``chans``, ``pools``, ``sens_chans``,
    ``sens_pools``), each overriding the preset where not None. ``residual_gate``: each
    cascade's denoiser term scaled by a learned gate starting at 0, so the untrained
    network returns the zero-filled image (not fastMRI's: its published recipe is off)."""

    def __init__(
        self,
        facts: NetFacts,
        size: str = "tiny",
        residual_gate: bool = False,
        **preset: int | None,
    ):
        if facts.slices > 1:
            raise ConfigError(
                "data.adjacent_slices: fastMRI's VarNet reconstructs one slice at a time; "
                "model=unrolled (model.first_estimate=none is VarNet's shape), unet, "
                "swin or vit take adjacent slices"
            )
        super().__init__(**resolve("varnet", size, **preset))
        # Zero-padded coils (data.virtual_coils above a volume's count) give zero maps,
        # not NaN; the first cascade's data-consistency weight never gets a gradient.
        guard_empty_coils(self.sens_net)
        freeze_first_dc_weight(self.cascades)
        if residual_gate:
            gate_cascades(self.cascades)

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        ref = torch.view_as_real(batch.masked_kspace)
        mask = batch.mask.unsqueeze(-1)  # fastMRI's (B, 1, H, W, 1)
        sens_maps = self.sens_net(ref, mask, common_low_frequencies(batch))
        kspace = ref.clone()
        for cascade in self.cascades:
            kspace = cascade(kspace, ref, mask, sens_maps)
        return unrolled_output(batch, torch.view_as_complex(kspace.float().contiguous()), 1)
