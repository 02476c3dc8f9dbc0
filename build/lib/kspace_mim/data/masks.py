"""Undersampling masks on the model grid; ``True`` marks an acquired sample.

Every mask here is called as ``mask((rows, cols), seed)`` and returns a
:class:`MaskResult` with a bool (rows, cols) or (1, cols) mask. Cartesian masks
come from fastMRI's mask functions; the SimMIM random patch mask is ours
(fastMRI has none: it samples whole columns only).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from fastmri.data.subsample import MaskFunc, temp_seed

Seed = int | tuple[int, ...] | None


class MaskResult(NamedTuple):
    mask: torch.Tensor  # bool (rows, cols) or (1, cols): True where acquired
    num_low_frequencies: int
    acceleration: float  # samples in the grid / samples acquired


def _result(mask: torch.Tensor, num_low: int, rows: int) -> MaskResult:
    acquired = float(mask.sum()) * (rows if mask.shape[0] == 1 else 1)
    total = rows * mask.shape[-1]
    return MaskResult(mask, num_low, total / max(acquired, 1.0))


class NoMask:
    """Keeps every sample (``mask=none``): the pipeline then returns the target."""

    def __call__(self, shape: tuple[int, int], seed: Seed = None) -> MaskResult:
        rows, cols = shape
        return _result(torch.ones(1, cols, dtype=torch.bool), cols, rows)


class CartesianMask:
    """Whole phase-encode columns, sampled by a fastMRI ``MaskFunc``.

    Args:
        mask_func: e.g. ``fastmri.data.subsample.EquispacedMaskFractionFunc`` or
            ``RandomMaskFunc`` with ``center_fractions`` and ``accelerations``.
    """

    def __init__(self, mask_func: MaskFunc):
        self.mask_func = mask_func

    def __call__(self, shape: tuple[int, int], seed: Seed = None) -> MaskResult:
        rows, cols = shape
        # fastMRI masks take a k-space shape whose last dim is real/imag.
        mask, num_low = self.mask_func((1, rows, cols, 2), seed=seed)
        return _result(mask.reshape(1, cols).bool(), int(num_low), rows)


class RandomPatchMask:
    """SimMIM's random patch masking, in k-space (the paper's masks).

    The grid is tiled by ``mask_patch_size`` squares; ``round(mask_ratio * n)``
    of the n patches are removed (uniformly at random, exactly that many as
    SimMIM's ``MaskGenerator``), except patches touching the central
    ``center_fraction`` box of k-space, which stay acquired when asked for.
    Hand-written: neither fastmri nor timm has a k-space patch mask.
    """

    def __init__(
        self, mask_ratio: float = 0.6, mask_patch_size: int = 8, center_fraction: float = 0.0
    ):
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if mask_patch_size < 1:
            raise ValueError(f"mask_patch_size must be >= 1, got {mask_patch_size}")
        if not 0.0 <= center_fraction <= 1.0:
            raise ValueError(f"center_fraction must be in [0, 1], got {center_fraction}")
        self.mask_ratio = mask_ratio
        self.mask_patch_size = mask_patch_size
        self.center_fraction = center_fraction
        self.rng = np.random.RandomState()

    def __call__(self, shape: tuple[int, int], seed: Seed = None) -> MaskResult:
        rows, cols = shape
        p = self.mask_patch_size
        grid = (-(-rows // p), -(-cols // p))  # ceil: a partial edge patch is a patch
        n = grid[0] * grid[1]
        keep = np.ones(n, dtype=bool)
        with temp_seed(self.rng, seed):
            removed = self.rng.permutation(n)[: round(self.mask_ratio * n)]
        keep[removed] = False
        keep = keep.reshape(grid)
        num_low = 0
        if self.center_fraction > 0:
            # Patches overlapping the central box (centre index n // 2, fastMRI's convention).
            half_r = max(1, round(rows * self.center_fraction)) / 2
            half_c = max(1, round(cols * self.center_fraction)) / 2
            r0, r1 = int((rows // 2 - half_r) // p), int((rows // 2 + half_r - 1) // p)
            c0, c1 = int((cols // 2 - half_c) // p), int((cols // 2 + half_c - 1) // p)
            keep[r0 : r1 + 1, c0 : c1 + 1] = True
            num_low = round(cols * self.center_fraction)
        mask = np.kron(keep, np.ones((p, p), dtype=bool))[:rows, :cols]
        return _result(torch.from_numpy(mask), num_low, rows)


def exclude_padding(mask: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """``mask`` (rows or 1, cols) with the columns outside ``padding = (left, right)``
    off, as fastMRI's ``apply_mask(..., padding)``: they were never acquired."""
    out = mask.clone()
    out[:, : padding[0]] = False
    out[:, padding[1] :] = False
    return out


def file_mask(mask: np.ndarray, padding: tuple[int, int]) -> torch.Tensor:
    """A test / challenge file's own column mask, with the unacquired padding columns off.

    mask: (cols,) from the file. Returns bool (1, cols), as fastMRI's VarNetDataTransform.
    """
    return exclude_padding(torch.from_numpy(np.asarray(mask).astype(bool)).reshape(1, -1), padding)


def seed_from_fname(fname: str) -> tuple[int, ...]:
    """fastMRI's deterministic per-volume mask seed (``use_seed=True`` in its transforms)."""
    return tuple(map(ord, fname))
