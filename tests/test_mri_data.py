"""Our reader returns exactly what fastmri.data.SliceDataset returns, and names bad files."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from fastmri.data import SliceDataset as FastMRISliceDataset

from kspace_mim.data.mri_data import BadFilesError, SliceDataset, parse_header


def assert_same_sample(ours, theirs):
    kspace, mask, target, attrs, fname, slice_num = ours
    k2, m2, t2, a2, f2, s2 = theirs
    np.testing.assert_array_equal(kspace, k2)
    assert kspace.dtype == k2.dtype
    if m2 is None:
        assert mask is None
    else:
        np.testing.assert_array_equal(mask, m2)
    if t2 is None:
        assert target is None
    else:
        np.testing.assert_array_equal(target, t2)
    assert attrs.keys() == a2.keys()
    for key in a2:
        assert np.all(attrs[key] == a2[key]), key
    assert (fname, slice_num) == (f2, s2)


@pytest.mark.parametrize(
    "folder, challenge",
    [
        ("multicoil_train", "multicoil"),
        ("multicoil_val", "multicoil"),
        ("multicoil_test", "multicoil"),
        ("singlecoil_train", "singlecoil"),
        ("singlecoil_test", "singlecoil"),
        ("mixed_coils", "multicoil"),
    ],
)
def test_equals_fastmri_slicedataset(data_root, folder, challenge):
    ours = SliceDataset(data_root / folder, challenge)
    theirs = FastMRISliceDataset(data_root / folder, challenge)
    assert len(ours) == len(theirs) > 0
    for i in range(len(ours)):
        assert_same_sample(ours[i], theirs[i])


def test_widths_and_coils_vary_in_one_folder(data_root):
    ds = SliceDataset(data_root / "mixed_coils", "multicoil")
    assert {v.num_coils for v in ds.volumes} == {4, 6}
    assert len({v.shape[-1] for v in ds.volumes}) > 1  # e.g. 38 and 42 columns


def test_header_parsed_once_and_files_opened_once(data_root, monkeypatch):
    import kspace_mim.data.mri_data as mri_data

    ds = SliceDataset(data_root / "multicoil_train", "multicoil")
    calls = {"parse": 0, "open": 0}
    real_open = h5py.File

    def counting_open(*args, **kwargs):
        calls["open"] += 1
        return real_open(*args, **kwargs)

    monkeypatch.setattr(mri_data, "parse_header", lambda *_: calls.__setitem__("parse", 1))
    monkeypatch.setattr(mri_data.h5py, "File", counting_open)
    for _ in range(2):
        for i in range(len(ds)):
            ds[i]
    assert calls["parse"] == 0
    assert calls["open"] == len(ds.volumes)


def test_stray_files_are_ignored(copy_folder):
    folder = copy_folder("multicoil_val")
    (folder / ".DS_Store").write_bytes(b"\0\1junk")
    (folder / "notes.txt").write_text("not data")
    assert len(SliceDataset(folder, "multicoil")) == 6


def test_header_matches_fastmri(data_root):
    path = sorted((data_root / "multicoil_train").glob("*.h5"))[0]
    with h5py.File(path) as hf:
        ours = parse_header(hf["ismrmrd_header"][()])
    theirs, _ = FastMRISliceDataset._retrieve_metadata(None, path)
    assert all(theirs[k] == v for k, v in ours.items())


def _make_bad_files(folder):
    good = sorted(folder.glob("*.h5"))[0]
    (folder / "not_hdf5.h5").write_text("this is not an HDF5 file")
    data = good.read_bytes()
    (folder / "truncated.h5").write_bytes(data[: len(data) // 2])
    with h5py.File(folder / "no_kspace.h5", "w") as hf:
        hf["ismrmrd_header"] = b"<x/>"
    with h5py.File(folder / "wrong_shape.h5", "w") as hf:
        hf["kspace"] = np.zeros((2, 8, 8), np.complex64)
        hf["ismrmrd_header"] = b"<x/>"
    shutil.copy(good, folder / "bad_header.h5")
    with h5py.File(folder / "bad_header.h5", "a") as hf:
        del hf["ismrmrd_header"]
        hf["ismrmrd_header"] = b"<ismrmrdHeader><unclosed>"
    return {
        "not_hdf5.h5": "not a readable HDF5 file",
        "truncated.h5": "truncated file",
        "no_kspace.h5": "no 'kspace' dataset",
        "wrong_shape.h5": "multicoil expects 4 dims",
        "bad_header.h5": "header does not parse",
    }


def test_every_bad_file_is_named_at_once(copy_folder):
    folder = copy_folder("multicoil_val")
    expected = _make_bad_files(folder)
    with pytest.raises(BadFilesError) as info:
        SliceDataset(folder, "multicoil")
    named = {path.name: reason for path, reason in info.value.bad}
    assert named.keys() == expected.keys()
    for name, reason in expected.items():
        assert reason in named[name]
        assert name in str(info.value)
    assert "data.skip_bad_files=true" in str(info.value)


def test_skip_bad_files_warns_and_keeps_good(copy_folder, caplog):
    folder = copy_folder("multicoil_val")
    expected = _make_bad_files(folder)
    ds = SliceDataset(folder, "multicoil", skip_bad_files=True)
    assert len(ds.volumes) == 2
    for name in expected:
        assert name in caplog.text


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SliceDataset(tmp_path / "nope", "multicoil")
    with pytest.raises(FileNotFoundError, match="no .h5 files"):
        SliceDataset(tmp_path, "multicoil")
    with pytest.raises(ValueError, match="challenge"):
        SliceDataset(tmp_path, "triplecoil")


@pytest.mark.parametrize("n", [1, 2])
def test_adjacent_slices_repeat_the_edge_slice(data_root, n):
    """Each slice with its n neighbours on either side, in order, the edge slice repeated
    at the volume's ends (3-slice volumes: n=2 repeats at both ends); the target is the
    middle slice's."""
    folder = data_root / "multicoil_train"
    plain = SliceDataset(folder, "multicoil")
    stacked = SliceDataset(folder, "multicoil", adjacent_slices=n)
    for i, (v, s) in enumerate(plain.index):
        last = plain.volumes[v].num_slices - 1
        kspace, _, target, _, _, slice_num = stacked.read(i)
        rows = [plain.index.index((v, min(max(j, 0), last))) for j in range(s - n, s + n + 1)]
        assert kspace.shape == (2 * n + 1, *plain.volumes[v].shape)
        np.testing.assert_array_equal(kspace, np.stack([plain.read(r)[0] for r in rows]))
        np.testing.assert_array_equal(target, plain.read(i)[2])
        assert slice_num == s
    with pytest.raises(ValueError, match="adjacent_slices"):
        SliceDataset(folder, "multicoil", adjacent_slices=-1)
