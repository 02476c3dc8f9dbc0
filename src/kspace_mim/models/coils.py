"""Coil sensitivities that survive empty coils (fastMRI's ``SensitivityModel``, guarded),
and the coil reduce / expand pair the networks that use them share.

fastMRI's sensitivity model runs its ``NormUnet`` on every coil's low-resolution image
and normalises it by its standard deviation, unguarded: a coil that is all zeros (a
volume with fewer coils, zero-padded to a fixed count by ``data.virtual_coils``) gives
0 / 0 = NaN and poisons the whole batch. Guarded here: such a coil gets a zero map, and
every other coil's map is bit-identical to fastMRI's. Hand-written: fastMRI has no guard.
"""

from __future__ import annotations

import fastmri
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


def coil_maps(
    sens_net: SensitivityModel,
    masked_kspace: Tensor,
    mask: Tensor,
    num_low_frequencies: int | None,
    slices: int = 1,
) -> Tensor:
    """Coil maps of every slice: complex (B * S, C, H, W), unit sum of squares over coils.

    masked_kspace: complex (B, S * C, H, W) (a stack of S adjacent slices as coils, slice
    by slice); mask: bool (B, 1, H, W). fastMRI's model runs per slice, in its real
    ``(..., 2)`` layout.
    """
    b, _, h, w = masked_kspace.shape
    ref = torch.view_as_real(masked_kspace.reshape(b * slices, -1, h, w))
    mask5 = mask.repeat_interleave(slices, 0).unsqueeze(-1)
    maps = sens_net(ref, mask5, num_low_frequencies)
    return torch.view_as_complex(maps.float().contiguous())


def coil_reduce(kspace: Tensor, maps: Tensor) -> Tensor:
    """Coil k-space -> one coil-combined image, sum over coils of conj(map) x ifft(k).

    kspace, maps: complex (N, C, H, W) -> complex (N, H, W). fastMRI's ``sens_reduce``
    (its functions, on real views); the adjoint of :func:`coil_expand`.
    """
    images = fastmri.ifft2c(torch.view_as_real(kspace))
    combined = fastmri.complex_mul(images, fastmri.complex_conj(torch.view_as_real(maps)))
    return torch.view_as_complex(combined.sum(dim=1).contiguous())


def coil_expand(image: Tensor, maps: Tensor) -> Tensor:
    """One image -> every coil's k-space, fft(map x image). image: complex (N, H, W);
    maps: complex (N, C, H, W) -> complex (N, C, H, W). fastMRI's ``sens_expand``."""
    x = torch.view_as_real(image).unsqueeze(1)
    return torch.view_as_complex(
        fastmri.fft2c(fastmri.complex_mul(x, torch.view_as_real(maps))).contiguous()
    )
