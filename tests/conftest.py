"""Tiny fastMRI-layout files made by the synthesizer: no real data, no download."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from kspace_mim.data.synthesize import synthesize, synthesize_set

os.environ.setdefault("WANDB_MODE", "offline")
SIZE = 32  # recon size of the test files: k-space is (64, 38 or 42) per coil


def pytest_collection_modifyitems(config, items) -> None:
    """The notebooks (nbmake runs them top to bottom, minutes each) are slow tests: they
    run in ``make test-full``, not in ``make test``."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict[str, str]:
    """Environment of a command run on the default data layout (colin27/multicoil_
    {train,val} under KSPACE_MIM_DATA, tiny phantom files) in a temporary root;
    ``env["root"]`` is its cwd."""
    root = tmp_path_factory.mktemp("root")
    synthesize_set(
        root / "data" / "colin27",
        splits=("train", "val"),
        volumes=2,
        slices=2,
        coils=4,
        size=32,
        progress=False,
    )
    return {
        **os.environ,
        "KSPACE_MIM_DATA": str(root / "data"),
        "KSPACE_MIM_OUTPUT": str(root / "out"),
        "WANDB_MODE": "offline",
        "root": str(root),
    }


def _train_command(*overrides: str) -> list[str]:
    flags = [o for o in overrides if o.startswith("-")]  # -m must precede the overrides
    return [
        sys.executable,
        "-m",
        "kspace_mim.train",
        *flags,
        "data=tiny",
        *(o for o in overrides if not o.startswith("-")),
    ]


@pytest.fixture(scope="session")
def train_command():
    """``train_command(*overrides)``: the ``python -m kspace_mim.train`` command line of a
    test run (tiny grid, no workers), for tests that start it themselves."""
    return _train_command


def _train_cli(
    env: dict[str, str], *overrides: str, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        _train_command(*overrides),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env["root"],
    )
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="session")
def train_cli():
    """``train_cli(env, *overrides, check=True)``: ``python -m kspace_mim.train`` in a
    subprocess (tiny grid, no workers), as a user runs it."""
    return _train_cli


def _small_overrides(folder: Path, *extra: str) -> list[str]:
    return [
        f"data.train_path={folder}",
        f"data.val_path={folder}",
        "data=tiny",
        "model.size=tiny",
        "trainer.max_steps=3",
        "data.batch_size=2",
        *extra,
    ]


@pytest.fixture(scope="session")
def small_overrides():
    """``small_overrides(folder, *extra)``: overrides of a 3-step tiny run on one folder."""
    return _small_overrides


def _train_log(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "csv" / "version_0" / "metrics.csv")


@pytest.fixture(scope="session")
def train_log():
    """``train_log(run_dir)``: the CSV logger's metrics of a run, as a DataFrame."""
    return _train_log


def _read_h5(path: Path, key: str = "reconstruction") -> np.ndarray:
    with h5py.File(path) as hf:
        return hf[key][()]


@pytest.fixture(scope="session")
def read_h5():
    """``read_h5(path, key="reconstruction")``: one dataset of an h5 file."""
    return _read_h5
