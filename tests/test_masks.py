"""Masks: fastMRI's Cartesian masks, SimMIM patch masks, determinism, Hydra group."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch
from fastmri.data.subsample import EquispacedMaskFractionFunc, RandomMaskFunc

from kspace_mim.config import compose
from kspace_mim.data.masks import (
    RandomPatchMask,
    file_mask,
    seed_from_fname,
)

SHAPE = (64, 368)


@pytest.mark.parametrize(
    "name, acceleration, fraction, func",
    [
        ("equispaced4x", 4, 0.08, EquispacedMaskFractionFunc),
        ("equispaced8x", 8, 0.04, EquispacedMaskFractionFunc),
        ("random4x", 4, 0.08, RandomMaskFunc),
        ("random8x", 8, 0.04, RandomMaskFunc),
    ],
)
def test_cartesian_masks_are_fastmris(name, acceleration, fraction, func):
    mask_func = hydra.utils.instantiate(compose([f"mask={name}"]).mask)
    seed = seed_from_fname("file1000000.h5")
    mask, num_low, accel = mask_func(SHAPE, seed)
    theirs, their_low = func([fraction], [acceleration])((1, *SHAPE, 2), seed=seed)
    assert torch.equal(mask[0], theirs.reshape(-1).bool())
    assert num_low == their_low == round(SHAPE[1] * fraction)
    assert mask.shape == (1, SHAPE[1])
    assert accel == pytest.approx(acceleration, rel=0.25)
    # the centre columns are sampled
    centre = slice(SHAPE[1] // 2 - num_low // 2, SHAPE[1] // 2 + num_low // 2)
    assert mask[0, centre].all()


@pytest.mark.parametrize("ratio", [0.4, 0.6, 0.75])
def test_random_patch_masks(ratio):
    mask_func = hydra.utils.instantiate(compose([f"mask=random{ratio}"]).mask)
    assert isinstance(mask_func, RandomPatchMask) and mask_func.mask_ratio == ratio
    mask, _, accel = mask_func((64, 64), seed=3)
    assert mask.shape == (64, 64)
    # exactly round(ratio * patches) patches removed, whole patches only
    patches = mask.reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    assert ((patches.all(1)) | (~patches.any(1))).all()
    assert (~patches.any(1)).sum() == round(ratio * 64)
    assert accel == pytest.approx(1 / (1 - ratio), rel=0.05)


def test_random_patch_centre_and_odd_grid():
    mask, num_low, _ = RandomPatchMask(0.75, 4, center_fraction=0.1)((50, 38), seed=0)
    assert mask.shape == (50, 38)
    assert mask[25 - 2 : 25 + 2, 19 - 2 : 19 + 2].all()
    assert num_low == round(38 * 0.1)
    with pytest.raises(ValueError, match="mask_ratio"):
        RandomPatchMask(1.0)


@pytest.mark.parametrize("name", ["equispaced4x", "random8x", "random0.6"])
def test_seeded_masks_are_deterministic_and_random_otherwise(name):
    mask_func = hydra.utils.instantiate(compose([f"mask={name}"]).mask)
    seed = seed_from_fname("file1001000.h5")
    a, b = mask_func(SHAPE, seed).mask, mask_func(SHAPE, seed).mask
    assert torch.equal(a, b)
    unseeded = [mask_func(SHAPE).mask for _ in range(5)]
    assert any(not torch.equal(unseeded[0], m) for m in unseeded[1:])


def test_no_mask_keeps_everything():
    mask, _, accel = hydra.utils.instantiate(compose(["mask=none"]).mask)(SHAPE)
    assert mask.all() and accel == 1.0


def test_file_mask_zeroes_padding():
    mask = file_mask(np.ones(10, dtype=bool), (2, 8))
    assert mask.tolist() == [[False, False] + [True] * 6 + [False, False]]
