"""The synthesizer writes the fastMRI layout; fastMRI's own code reads it."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset as FastMRISliceDataset
from fastmri.data.transforms import VarNetDataTransform

from kspace_mim.data.synthesize import synthesize


def test_cli_writes_the_release_layout(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "kspace_mim.data.synthesize",
        "--out",
        str(tmp_path),
        "--volumes",
        "2",
        "--slices",
        "2",
        "--coils",
        "3",
        "--size",
        "32",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    for split in ("train", "val", "test"):
        files = sorted((tmp_path / f"multicoil_{split}").glob("*.h5"))
        assert len(files) == 2
    path = tmp_path / "multicoil_train" / "file1000000.h5"
    with h5py.File(path) as hf:
        assert hf["kspace"].shape[:3] == (2, 3, 64) and hf["kspace"].dtype == np.complex64
        assert hf["reconstruction_rss"].shape == (2, 32, 32)
        assert hf["reconstruction_rss"].dtype == np.float32
        assert {"acquisition", "max", "norm", "patient_id"} <= set(hf.attrs)
        assert b"http://www.ismrm.org/ISMRMRD" in hf["ismrmrd_header"][()]
        assert 1e-7 < np.abs(hf["kspace"][0]).max() < 1e-1  # fastMRI-like magnitudes


def test_cli_rejects_bad_arguments(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "kspace_mim.data.synthesize",
        "--out",
        str(tmp_path),
        "--challenge",
        "triplecoil",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr
    with pytest.raises(ValueError, match="size must be an even number"):
        synthesize(tmp_path, size=15)


def test_fastmri_varnet_transform_reads_train_and_test(data_root):
    """fastMRI's own pipeline runs on our files exactly as on real ones."""
    from fastmri.data.subsample import EquispacedMaskFractionFunc

    mask_func = EquispacedMaskFractionFunc([0.08], [4])
    train = FastMRISliceDataset(
        data_root / "multicoil_train", "multicoil", VarNetDataTransform(mask_func)
    )
    sample = train[0]
    assert sample.masked_kspace.shape[-1] == 2 and sample.crop_size == (32, 32)
    assert sample.max_value > 0
    test = FastMRISliceDataset(data_root / "multicoil_test", "multicoil", VarNetDataTransform())
    sample = test[0]
    assert sample.mask.sum() < sample.mask.numel() / 2
    assert float(sample.target) == 0  # no target in test files


def test_test_files_are_masked_with_true_zeros(data_root):
    for path in sorted((data_root / "multicoil_test").glob("*.h5")):
        with h5py.File(path) as hf:
            kspace, mask = hf["kspace"][()], hf["mask"][()]
            assert "reconstruction_rss" not in hf
            assert hf.attrs["acceleration"] in (4, 8) and hf.attrs["num_low_frequency"] > 0
        removed = kspace[..., ~mask]
        assert (removed == 0).all()
        assert not np.signbit(removed.real).any() and not np.signbit(removed.imag).any()
        assert np.abs(kspace[..., mask]).min() > 0


def test_structure_worth_reconstructing(data_root):
    """Phantoms differ between volumes and slices, and have edges (not flat blobs)."""
    files = sorted((data_root / "multicoil_train").glob("*.h5"))
    with h5py.File(files[0]) as a, h5py.File(files[1]) as b:
        ta, tb = a["reconstruction_rss"][()], b["reconstruction_rss"][()]
    assert not np.allclose(ta[0], tb[0]) and not np.allclose(ta[0], ta[1])
    grad = np.abs(np.diff(ta[1], axis=-1))
    assert grad.max() > 0.2 * ta[1].max()  # sharp edges
    assert torch.from_numpy(ta).std() > 0.1 * ta.max()


def test_seed_reproduces(tmp_path):
    a = synthesize(tmp_path / "a", volumes=1, slices=1, coils=2, size=16, seed=5, progress=False)
    b = synthesize(tmp_path / "b", volumes=1, slices=1, coils=2, size=16, seed=5, progress=False)
    with h5py.File(a[0]) as fa, h5py.File(b[0]) as fb:
        np.testing.assert_array_equal(fa["kspace"][()], fb["kspace"][()])


def test_ensure_synthetic_writes_missing_default_folders_once(tmp_path, monkeypatch):
    from kspace_mim.data import synthesize as synth

    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "train", 2)
    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "val", 1)
    folders = {"train": tmp_path / "multicoil_train", "val": tmp_path / "multicoil_val"}
    assert synth.ensure_synthetic(folders, "multicoil") == list(folders.values())
    assert len(list(folders["train"].glob("*.h5"))) == 2
    assert len(list(folders["val"].glob("*.h5"))) == 1
    before = folders["train"].stat().st_mtime_ns
    assert synth.ensure_synthetic(folders, "multicoil") == []  # present: untouched
    assert folders["train"].stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multicoil_train", "multicoil_val"]


def test_undersampled_writes_the_same_anatomy_in_the_test_layout(tmp_path):
    """`--undersampled` on the train split: fastMRI's test layout (masked k-space with
    true zeros, its mask, acceleration, no target), the anatomy of the fully sampled file
    of the same name, only the drawn accelerations."""
    from kspace_mim.data.synthesize import main

    kw = ["--split", "train", "--volumes", "2", "--slices", "1", "--coils", "2", "--size", "16"]
    main(["--out", str(tmp_path / "full"), *kw])
    main(["--out", str(tmp_path / "us"), *kw, "--undersampled", "--accelerations", "4"])
    for full in sorted((tmp_path / "full").glob("*.h5")):
        with h5py.File(full) as hf, h5py.File(tmp_path / "us" / full.name) as hu:
            assert "reconstruction_rss" not in hu and "reconstruction_rss" in hf
            assert hu.attrs["acceleration"] == 4 and hu.attrs["num_low_frequency"] > 0
            mask = hu["mask"][()]
            expected = np.where(mask, hf["kspace"][()], 0)
            np.testing.assert_array_equal(hu["kspace"][()], expected)
            assert 0.15 < mask.mean() < 0.4
    with pytest.raises(ValueError, match="accelerations"):
        synthesize(tmp_path / "bad", accelerations=(3,), progress=False)
