"""Tiny fastMRI-layout files made by the synthesizer: no real data, no download."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kspace_mim.data.synthesize import synthesize

os.environ.setdefault("WANDB_MODE", "offline")
SIZE = 32  # recon size of the test files: k-space is (64, 38 or 42) per coil


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """multicoil train/val/test, singlecoil train, and a mixed-coil folder (4 and 6 coils)."""
    root = tmp_path_factory.mktemp("fastmri")
    kw = dict(slices=3, size=SIZE, progress=False)
    synthesize(root / "multicoil_train", "multicoil", "train", volumes=5, coils=4, **kw)
    synthesize(root / "multicoil_val", "multicoil", "val", volumes=2, coils=4, **kw)
    synthesize(root / "multicoil_test", "multicoil", "test", volumes=2, coils=4, **kw)
    synthesize(root / "singlecoil_train", "singlecoil", "train", volumes=2, **kw)
    synthesize(root / "singlecoil_test", "singlecoil", "test", volumes=2, **kw)
    mixed = root / "mixed_coils"
    synthesize(mixed, "multicoil", "train", volumes=2, coils=4, seed=1, **kw)
    for p in synthesize(root / "six", "multicoil", "val", volumes=1, coils=6, seed=2, **kw):
        shutil.move(p, mixed / p.name)
    return root


@pytest.fixture
def copy_folder(tmp_path, data_root):
    """Copy a folder of ``data_root`` into tmp_path (for tests that add bad files)."""

    def _copy(name: str) -> Path:
        return Path(shutil.copytree(data_root / name, tmp_path / name))

    return _copy
