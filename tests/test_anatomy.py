"""The shipped Colin27 brain and the default data simulated from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastmri.data import SliceDataset as FastMRISliceDataset

from kspace_mim.data import anatomy
from kspace_mim.data.synthesize import synthesize, synthesize_set
from kspace_mim.physics import center_crop, ifft2c, rss


def test_the_brain_and_its_licence_note_load_from_the_package():
    t1 = anatomy.load_t1()
    assert t1.shape == (181, 217, 181) and t1.dtype == np.float32
    assert 0.9 < t1.max() <= 1.0 and (t1 > 0.2).mean() > 0.2  # a head, not a blank volume
    note = anatomy.notice()
    for line in ("BSD-3-clause", "Montreal Neurological Institute", "mricron-data", "Holmes"):
        assert line in note


@pytest.mark.slow
def test_the_wheel_ships_the_brain_and_its_notice(tmp_path):
    """What `pip install .` installs (not only what the source tree has)."""
    root = anatomy.__file__.rsplit("/src/", 1)[0]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w"]
    subprocess.run([*cmd, str(tmp_path), root], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("kspace_mim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kspace_mim/data/anatomy/colin27_t1.npz" in names
    assert "kspace_mim/data/anatomy/NOTICE.md" in names
    assert "kspace_mim/data/anatomy/itk_t1.npz" in names
    assert "kspace_mim/data/anatomy/LICENSE-Apache-2.0.txt" in names


def test_splits_take_separate_slabs_with_a_gap():
    """No slice of a test (or val) volume is a slice of another split, or closer to one
    than the gap, within an orientation; every orientation serves every split."""
    taken: dict[str, dict[str, set[int]]] = {}
    for split in ("train", "val", "test"):
        slabs = anatomy.slabs(split)
        assert {s.orientation for s in slabs} == set(anatomy.ORIENTATIONS)
        for s in slabs:
            mm = {s.start + k * s.spacing for k in range(s.slices)}
            taken.setdefault(s.orientation, {}).setdefault(split, set()).update(mm)
    for by_split in taken.values():
        for a in by_split:
            for b in by_split:
                if a != b:
                    closest = min(abs(x - y) for x in by_split[a] for y in by_split[b])
                    assert closest > anatomy.GAP_MM
    counts = {s: len(anatomy.slabs(s)) for s in ("train", "val", "test")}
    assert counts["train"] > counts["val"] >= 10 and counts["test"] >= 10  # paired tests
    with pytest.raises(ValueError, match="split must be one of"):
        anatomy.slabs("validation")


def test_brain_files_hold_the_brain_and_read_as_fastmri_files(tmp_path):
    path = synthesize(
        tmp_path / "train",
        volumes=1,
        slices=2,
        coils=4,
        size=48,
        anatomy="colin27",
        progress=False,
    )[0]
    with h5py.File(path) as hf:
        kspace, target = hf["kspace"][()], hf["reconstruction_rss"][()]
        assert hf.attrs["orientation"] in anatomy.ORIENTATIONS
        assert kspace.shape[:3] == (2, 4, 96) and kspace.dtype == np.complex64
    import torch

    expected = center_crop(rss(ifft2c(torch.from_numpy(kspace))), (48, 48)).numpy()
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6 * target.max())
    # The brain's own slices (coil weighting and noise aside): strongly correlated.
    slab = anatomy.slabs("train", 2)[0]
    seed = 0 * 100003 + 1000000
    brain = anatomy.slab_images(slab, 48, np.random.default_rng(seed))
    for t, b in zip(target, brain, strict=True):
        assert np.corrcoef(t.ravel(), b.ravel())[0, 1] > 0.8
    ds = FastMRISliceDataset(tmp_path / "train", challenge="multicoil")
    assert len(ds) == 2 and ds[0][2].shape == (48, 48)


def test_test_full_twins_hold_the_test_files_fully_sampled(tmp_path):
    synthesize_set(
        tmp_path,
        splits=("test",),
        volumes=2,
        slices=2,
        coils=2,
        size=32,
        progress=False,
        anatomy="colin27",
    )
    masked = sorted((tmp_path / "multicoil_test").glob("*.h5"))
    full = sorted((tmp_path / "multicoil_test_full").glob("*.h5"))
    assert [p.name for p in masked] == [p.name for p in full] and len(full) == 2
    for m, f in zip(masked, full, strict=True):
        with h5py.File(m) as hm, h5py.File(f) as hf:
            assert "reconstruction_rss" not in hm and "reconstruction_rss" in hf
            mask = hm["mask"][()]
            np.testing.assert_array_equal(hm["kspace"][()], np.where(mask, hf["kspace"][()], 0))


def test_too_many_brain_volumes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="test slabs"):
        synthesize(tmp_path, split="test", volumes=1000, anatomy="colin27", progress=False)
    with pytest.raises(ValueError, match="anatomy must be one of"):
        synthesize(tmp_path, anatomy="knee", progress=False)


def test_the_second_person_loads_on_a_1mm_grid_with_its_licence():
    head = anatomy.load_t1("itk")
    assert head.shape == (256, 186, 256) and head.dtype == np.float32  # 2 x 3 x 2 mm voxels
    assert 0.0 <= head.min() and head.max() <= 1.0 and (head > 0.2).mean() > 0.05
    for orientation in anatomy.ORIENTATIONS:
        lo, hi = anatomy.extent("itk", orientation)
        assert 0 <= lo < hi < head.shape[anatomy.AXIS[orientation]]
    note = anatomy.notice()
    assert "Apache" in note and "insighttoolkit5-examples" in note
    with pytest.raises(ValueError, match="brain must be one of"):
        anatomy.load_t1("nobody")


def test_the_people_set_never_shows_the_test_person_outside_the_test():
    """data=people: labelled and validation slabs of Colin27 (the default set's, apart),
    the label-free pool Colin27's train slabs (first, the same volumes) and every slab of
    the MNI152 template, the test every slab of the ITK person and no other split's."""
    brains = {
        s: {x.brain for x in anatomy.slabs(s, anatomy="people")}
        for s in ("train", "pool", "val", "test")
    }
    assert brains == {
        "train": {"colin27"},
        "pool": {"colin27", "mni152"},
        "val": {"colin27"},
        "test": {"itk"},
    }
    train, pool = anatomy.slabs("train", anatomy="people"), anatomy.slabs("pool", anatomy="people")
    assert pool[: len(train)] == train and len(set(pool)) == len(pool)
    assert {s.orientation for s in pool if s.brain == "mni152"} == set(anatomy.ORIENTATIONS)
    test = anatomy.slabs("test", anatomy="people")
    assert len(test) >= 13 and {s.orientation for s in test} == set(anatomy.ORIENTATIONS)
    assert [len(anatomy.slabs(s)) for s in ("train", "val", "test")] == [28, 13, 13]
    assert anatomy.slabs("pool") == anatomy.slabs("train")  # the colin27 set's pool
    assert all(s.brain == "colin27" for s in anatomy.slabs("test"))
    # The training head's val slabs stay apart from its train and pool slabs (the gap).
    val = {(s.orientation, s.start) for s in anatomy.slabs("val", anatomy="people")}
    assert val == {(s.orientation, s.start) for s in anatomy.slabs("val")}
    colin = {(s.orientation, s.start) for s in pool if s.brain == "colin27"}
    assert not val & colin and colin == {(s.orientation, s.start) for s in train}
    # Another split by person, as data.people writes it (no pool: the train heads'); a
    # test head anywhere else is refused.
    other = {"train": ["colin27"], "val": ["mni152"], "test": ["itk"]}
    assert {s.brain for s in anatomy.slabs("pool", anatomy="people", people=other)} == {"colin27"}
    assert {s.brain for s in anatomy.slabs("val", anatomy="people", people=other)} == {"mni152"}
    for bad, match in (
        ({"train": ["itk"], "val": ["colin27"], "test": ["itk"]}, "must be in no other split"),
        (
            {"train": ["colin27"], "pool": ["itk"], "val": ["colin27"], "test": ["itk"]},
            "must be in no other split",
        ),
        ({"train": ["colin27"], "val": ["itk"], "test": ["itk"]}, "must be in no other split"),
        ({"train": ["nobody"], "val": ["colin27"], "test": ["itk"]}, "one or more of"),
        ({"train": [], "val": ["colin27"], "test": ["itk"]}, "one or more of"),
        ({"train": ["colin27"], "test": ["itk"]}, "train, val and test"),
    ):
        with pytest.raises(ValueError, match=match):
            anatomy.slabs("train", anatomy="people", people=bad)
    with pytest.raises(ValueError, match="not colin27"):
        anatomy.slabs("train", people=other)


SHARED_MNI = Path(__file__).resolve().parents[2] / "shared/data/anatomy/mni152_2009a_t1.npz"


def test_the_pools_second_head_is_nilearns_mni152_template():
    """The MNI152 2009a template (the pool's second head), read from nilearn's wheel (not
    shipped): the layout of the other heads (z, y, x; superior, anterior, left-right),
    1 mm, quantised to 0..254; equal to the reference copy where one is at hand. Without
    nilearn the error names the extra to install."""
    head = anatomy.load_t1("mni152")
    assert head.shape == (189, 233, 197) and head.dtype == np.float32
    assert head.min() == 0.0 and head.max() == 1.0
    assert np.allclose(head * 254, np.round(head * 254), atol=1e-4)
    # Superior: the last axial slices hold less brain than the middle ones; anterior:
    # the frontal lobe, whose first coronal slices are empty.
    axial = head.mean(axis=(1, 2))
    assert axial[-10:].mean() < axial[90] and head[:, :20].max() == 0
    if SHARED_MNI.is_file():
        reference = np.load(SHARED_MNI)["t1"]
        assert np.array_equal(np.round(head * 254).astype(np.uint8), reference)
    assert "nilearn" in anatomy.notice() and "ICBM 2009a" in anatomy.notice()


def test_without_nilearn_the_error_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_nilearn(name, *args, **kwargs):
        if name.startswith("nilearn"):
            raise ImportError("No module named 'nilearn'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nilearn)
    anatomy.load_t1.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"kspace-mim\[people\]"):
            anatomy.load_t1("mni152")
    finally:
        anatomy.load_t1.cache_clear()


def test_no_file_of_the_test_person_is_in_any_pool(tmp_path):
    """The files say who they show (patient_id): the test person's id is in no train,
    val or label-free (undersampled) file."""
    kw = dict(volumes=3, slices=2, coils=2, size=32, anatomy="people", progress=False)
    ids = {}
    for split in ("train", "val", "test"):
        for path in synthesize(tmp_path / split, "multicoil", split, **kw):
            with h5py.File(path) as f:
                ids.setdefault(split, set()).add(f.attrs["patient_id"])
    for path in synthesize(tmp_path / "free", "multicoil", "train", undersampled=True, **kw):
        with h5py.File(path) as f:
            ids["label-free"] = ids.get("label-free", set()) | {f.attrs["patient_id"]}
    assert len(ids["test"]) == 1 and len(ids["train"]) == 1
    for pool in ("train", "val", "label-free"):
        assert not ids[pool] & ids["test"], pool
