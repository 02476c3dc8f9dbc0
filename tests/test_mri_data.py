"""Our reader returns exactly what fastmri.data.SliceDataset returns, and names bad files."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from fastmri.data import SliceDataset as FastMRISliceDataset

from kspace_mim.data.mri_data import BadFilesError, DataError, SliceDataset, parse_header


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


def test_open_files_are_capped_least_recently_read_first(data_root, copy_folder):
    """data.max_open_files: never more handles than the cap, the least recently read one
    closed first, the items unchanged; a file gone since the scan is named."""
    free = SliceDataset(data_root / "multicoil_train", "multicoil")
    ds = SliceDataset(data_root / "multicoil_train", "multicoil", max_open_files=2)
    assert len(ds.volumes) >= 3
    first = [i for i, (v, s) in enumerate(ds.index) if s == 0]  # slice 0 of each volume
    for i in first[:2]:
        ds[i]
    kept = ds._files[ds.volumes[0].path]
    ds[first[0]]  # volume 0 read again: volume 1 is now the least recent
    ds[first[2]]
    assert list(ds._files) == [ds.volumes[0].path, ds.volumes[2].path]
    assert kept.id.valid and len(ds._files) == 2
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds[i][0], free[i][0])
        assert len(ds._files) <= 2
    with pytest.raises(ValueError, match="max_open_files must be >= 0"):
        SliceDataset(data_root / "multicoil_train", "multicoil", max_open_files=-1)
    folder = copy_folder("multicoil_train")
    moved = SliceDataset(folder, "multicoil")
    moved.volumes[0].path.unlink()
    with pytest.raises(DataError, match=f"{moved.volumes[0].path.name}: cannot open"):
        moved[0]


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


def _hostile(path, good, kind):
    """A copy of ``good`` made hostile in one way (h5py writes nothing it is not given:
    a declared 1 TB dataset of fill values is a few KB on disk)."""
    with h5py.File(good) as src:
        header = src["ismrmrd_header"][()]
        kspace, attrs = src["kspace"][()], dict(src.attrs)
    meta = parse_header(header)
    with h5py.File(path, "w") as hf:
        if kind == "huge slices":  # 200 coils x 8000 x 8000: 95 GB a slice, header to match
            big = header.decode().replace(f"<x>{meta['encoding_size'][0]}</x>", "<x>8000</x>", 1)
            hf.create_dataset("ismrmrd_header", data=big.encode())
            hf.create_dataset(
                "kspace", shape=(2, 200, 8000, 8000), dtype=np.complex64, chunks=(1, 1, 64, 64)
            )
            return
        if kind == "padding outside the matrix":  # padding_left = enc_y // 2 + 1000
            header = header.decode().replace("<center>", "<center>-1000", 1).encode()
        hf.create_dataset("ismrmrd_header", data=header)
        hf.create_dataset("kspace", data=kspace)
        hf.attrs.update(attrs)
        if kind == "an attribute overriding the header":
            hf.attrs["padding_left"] = meta["padding_left"] + 3
        elif kind == "a huge mask":
            hf.create_dataset("mask", shape=(10**12,), dtype=bool, chunks=(1024,))
        elif kind == "a huge target":
            hf.create_dataset(
                "reconstruction_rss",
                shape=(kspace.shape[0], 100000, 100000),
                dtype=np.float32,
                chunks=(1, 64, 64),
            )


HOSTILE = [
    "huge slices",
    "padding outside the matrix",
    "an attribute overriding the header",
    "a huge mask",
    "a huge target",
]
REASONS = {
    "huge slices": "declares 97656 MB per slice, above the cap of 1024 MB",
    "padding outside the matrix": "acquired columns at .* outside the k-space width",
    "an attribute overriding the header": "attribute padding_left=.* contradicts the header",
    "a huge mask": "'mask' has shape",
    "a huge target": "'reconstruction_rss' declares shape",
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_volumes_are_named_and_skipped_like_other_bad_files(copy_folder, kind):
    """A file that declares sizes no scan has, or contradicts its own header, is named
    with its reason before anything is allocated; the good volumes are still used."""
    folder = copy_folder("multicoil_val")
    good = sorted(folder.glob("*.h5"))
    bad = folder / "hostile.h5"
    _hostile(bad, good[0], kind)
    assert bad.stat().st_size < 1_000_000
    with pytest.raises(BadFilesError, match=f"hostile.h5: .*({REASONS[kind]})"):
        SliceDataset(folder, "multicoil")
    dataset = SliceDataset(folder, "multicoil", skip_bad_files=True)
    assert [v.path.name for v in dataset.volumes] == [p.name for p in good]


def test_the_slice_cap_is_configurable(data_root, monkeypatch):
    folder = data_root / "multicoil_val"
    monkeypatch.setenv("KSPACE_MIM_MAX_SLICE_MB", "0.001")  # 1 KB: every real slice is above
    with pytest.raises(BadFilesError, match="above the cap of 0 MB .*KSPACE_MIM_MAX_SLICE_MB"):
        SliceDataset(folder, "multicoil")
    monkeypatch.setenv("KSPACE_MIM_MAX_SLICE_MB", "64")
    assert len(SliceDataset(folder, "multicoil")) > 0


def test_reconstruct_skips_a_hostile_volume_and_writes_the_good_ones(copy_folder, tmp_path):
    from kspace_mim.config import compose
    from kspace_mim.reconstruct import run as reconstruct

    folder = copy_folder("multicoil_test")
    good = sorted(p.name for p in folder.glob("*.h5"))
    _hostile(folder / "hostile.h5", folder / good[0], "huge slices")
    out = tmp_path / "out"
    cfg = compose(
        ["model=zero_filled", f"input={folder}", f"output={out}"], config_name="reconstruct"
    )
    assert reconstruct(cfg) == 1
    assert sorted(p.name for p in out.glob("*.h5")) == good
