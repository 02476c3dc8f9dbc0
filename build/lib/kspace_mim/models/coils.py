"""Coil sensitivities that survive empty coils (fastMRI's ``SensitivityModel``, guarded).

fastMRI's sensitivity model runs its ``NormUnet`` on every coil's low-resolution image
and normalises it by its standard deviation, unguarded: a coil that is all zeros (a
volume with fewer coils, zero-padded to a fixed count by ``data.virtual_coils``) gives
0 / 0 = NaN and poisons the whole batch. Guarded here: such a coil gets a zero map, and
every other coil's map is bit-identical to fastMRI's. Hand-written: fastMRI has no guard.
"""

from __future__ import annotations

import torch
from fastmri.models.varnet import NormUnet, SensitivityModel
from torch import Tensor


class GuardedNormUnet(NormUnet):
    """fastMRI's ``NormUnet`` whose normalisation maps an all-zero input to zeros.

    The input is divided by its std where the std is positive; ``unnorm`` multiplies by
    the true std (0 for an empty input), so the output is exactly zero there.
    """

    def norm(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _, mean, std = super().norm(x)
        safe = torch.where(std > 0, std, torch.ones_like(std))
        return (x - mean) / safe, mean, std


def guard_empty_coils(sens_net: SensitivityModel) -> SensitivityModel:
    """Make ``sens_net`` (fastMRI's, or any with a ``norm_unet``) safe for empty coils, in
    place: same parameters, same initialisation, same state-dict keys."""
    sens_net.norm_unet.__class__ = GuardedNormUnet
    return sens_net
