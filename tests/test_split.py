"""The 99 / 100 benchmark split: fastMRI's test-set masks bit for bit, the layout, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as etree

import h5py
import numpy as np
import pytest
from fastmri.data.mri_data import et_query
from fastmri.data.subsample import create_mask_for_mask_type
from fastmri.data.transforms import apply_mask, tensor_to_complex_np, to_tensor

from kspace_mim.config import compose
from kspace_mim.data.split import load_split, main, write_split
from kspace_mim.data.synthesize import synthesize
from kspace_mim.metrics import evaluate_folders
from kspace_mim.train import build_datamodule

SHIPPED = load_split("val99_test100")
VAL = SHIPPED["val_list"][:2]  # file1000007.h5, ...: the release's own names


def _protocol_acceleration(name: str) -> int:
    mask, _ = create_mask_for_mask_type("random", [0.08, 0.04], [4, 8])(
        (1, 64, 38, 2), None, tuple(map(ord, name))
    )
    return 8 if float(mask.mean()) < 0.18 else 4


# Test files of both accelerations: two at 4x, one at 8x, by the protocol's own seeds.
_BY_ACCEL = {a: [n for n in SHIPPED["test_list"] if _protocol_acceleration(n) == a] for a in (4, 8)}
TEST = _BY_ACCEL[4][:2] + _BY_ACCEL[8][:1]


@pytest.fixture(scope="module")
def release_val(tmp_path_factory):
    """A multicoil_val folder holding 5 of the split's files, in the release's naming."""
    root = tmp_path_factory.mktemp("release")
    paths = synthesize(
        root / "written",
        "multicoil",
        "val",
        volumes=5,
        slices=2,
        coils=4,
        size=32,
        progress=False,
    )
    folder = root / "multicoil_val"
    folder.mkdir()
    for path, name in zip(paths, VAL + TEST, strict=True):
        shutil.move(path, folder / name)
    split_file = root / "small_split.json"
    split_file.write_text(json.dumps({"val_list": VAL, "test_list": TEST}))
    return folder, split_file


def acquired_columns(header: bytes) -> tuple[int, int]:
    """The protocol's padding, computed here from the ISMRMRD header with fastMRI's query."""
    root = etree.fromstring(header)
    enc_y = int(et_query(root, ["encoding", "encodedSpace", "matrixSize", "y"]))
    lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
    start = enc_y // 2 - int(et_query(root, lims + ["center"]))
    return start, start + int(et_query(root, lims + ["maximum"])) + 1


def test_test_files_equal_fastmri_apply_mask_bit_for_bit(release_val, tmp_path):
    folder, split_file = release_val
    manifest = write_split(folder, tmp_path / "bench", split_file=split_file, progress=False)
    mask_func = create_mask_for_mask_type("random", [0.08, 0.04], [4, 8])
    for name in TEST:
        with h5py.File(folder / name) as full, h5py.File(tmp_path / "bench/test" / name) as test:
            kspace, header = full["kspace"][()], full["ismrmrd_header"][()]
            masked, mask, num_low = apply_mask(
                to_tensor(kspace),
                mask_func,
                seed=tuple(map(ord, name)),
                padding=acquired_columns(header),
            )
            expected = tensor_to_complex_np(masked)
            np.testing.assert_array_equal(test["kspace"][()], expected)
            columns = mask.reshape(-1).numpy().astype(bool)
            np.testing.assert_array_equal(test["mask"][()], columns)
            assert test.attrs["num_low_frequency"] == num_low
            assert test.attrs["acceleration"] == (8 if columns.mean() < 0.18 else 4)
            assert manifest["test"][name]["acceleration"] == test.attrs["acceleration"]
            for key in ("acquisition", "patient_id"):
                assert test.attrs[key] == full.attrs[key]
            assert test["ismrmrd_header"][()] == header
            assert "reconstruction_rss" not in test
            removed = test["kspace"][()][..., ~columns]
            assert (removed == 0).all()
            assert not np.signbit(removed.real).any() and not np.signbit(removed.imag).any()
    assert sorted(p.name for p in (tmp_path / "bench/val").iterdir()) == sorted(VAL)
    assert sorted(p.name for p in (tmp_path / "bench/test_full").iterdir()) == sorted(TEST)
    assert (tmp_path / "bench/test_full" / TEST[0]).resolve() == (folder / TEST[0]).resolve()


def test_missing_files_are_named_and_the_output_guarded(release_val, tmp_path, capsys):
    folder, split_file = release_val
    out = tmp_path / "bench"
    with pytest.raises(SystemExit) as exit_:
        main(["--val", str(folder), "--out", str(out)])  # the shipped split: most missing
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    named = err.split(f"are not in {folder}: ")[1].split(";")[0].split(", ")
    absent = len(SHIPPED["val_list"] + SHIPPED["test_list"]) - len(VAL + TEST)  # 194
    assert f"{absent} listed file(s)" in err and len(named) == absent
    assert SHIPPED["test_list"][-1] in named and not set(VAL + TEST) & set(named)
    main(["--val", str(folder), "--out", str(out), "--allow-missing"])
    manifest = json.loads((out / "split.json").read_text())
    assert manifest["val_list"] == VAL and sorted(manifest["test"]) == sorted(TEST)
    assert len(manifest["missing"]) == absent
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_split(folder, out, split_file=split_file, progress=False)
    before = {p.name: p.read_bytes() for p in (out / "test").iterdir()}
    main(
        [
            "--val",
            str(folder),
            "--out",
            str(out),
            "--split-file",
            str(split_file),
            "--overwrite",
            "--copy",
        ]
    )
    assert {p.name: p.read_bytes() for p in (out / "test").iterdir()} == before  # idempotent
    assert not (out / "val" / VAL[0]).is_symlink()  # --copy


def test_bad_split_files_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"val_list": ["a.h5"], "test_list": ["a.h5"]}))
    with pytest.raises(ValueError, match="files in both lists: a.h5"):
        load_split(split_file=bad)
    bad.write_text(json.dumps({"val_list": "a.h5", "test_list": []}))
    with pytest.raises(ValueError, match="'val_list' must be a list"):
        load_split(split_file=bad)
    with pytest.raises(ValueError, match="data.split='val98'"):
        load_split("val98")
    assert len(SHIPPED["val_list"]) == 99 and len(SHIPPED["test_list"]) == 100


def test_datamodule_and_evaluate_use_the_split(release_val, tmp_path, data_root):
    """data.split_file: validation on the val_list files of the val folder, test on the
    masked test_list files with their own masks; evaluate breaks down per acceleration."""
    folder, split_file = release_val
    write_split(folder, tmp_path / "bench", split_file=split_file, progress=False)
    dm = build_datamodule(
        compose(
            [
                f"data.train_path={data_root}/multicoil_train",
                f"data.val_path={folder}",
                f"data.split_file={split_file}",
                f"data.split_dir={tmp_path / 'bench'}",
                "data=tiny",
            ]
        )
    )
    dm.setup("fit")
    dm.setup("test")
    assert [v.path.name for v in dm.datasets["val"].volumes] == VAL
    test = dm.datasets["test"].volumes
    assert [v.path.name for v in test] == TEST and all(v.mask is not None for v in test)
    # Predictions: the targets themselves for 4x files, a blurred copy for 8x ones.
    preds = tmp_path / "preds"
    preds.mkdir()
    accel = json.loads((tmp_path / "bench/split.json").read_text())["test"]
    for name in TEST:
        with h5py.File(folder / name) as hf:
            target = hf["reconstruction_rss"][()]
        if accel[name]["acceleration"] == 8:
            target = target * 0.7
        with h5py.File(preds / name, "w") as hf:
            hf.create_dataset("reconstruction", data=target)
    result = evaluate_folders(tmp_path / "bench/test_full", preds, "multicoil")
    assert {k: v["num_volumes"] for k, v in result["accelerations"].items()} == {"4x": 2, "8x": 1}
    assert result["accelerations"]["4x"]["ssim"] == pytest.approx(1.0)
    assert result["accelerations"]["8x"]["ssim"] < 0.99
    eight = evaluate_folders(tmp_path / "bench/test_full", preds, "multicoil", acceleration=8)
    assert list(eight["volumes"]) == [TEST[2]]


def test_the_shipped_split_by_name_names_what_is_missing(release_val, data_root):
    """data.split=val99_test100 reads the shipped lists: a val folder holding 2 of its 99
    files is an error naming the other 97."""
    folder, _ = release_val
    dm = build_datamodule(
        compose(
            [
                f"data.train_path={data_root}/multicoil_train",
                f"data.val_path={folder}",
                "data.split=val99_test100",
                "data=tiny",
            ]
        )
    )
    absent = len(SHIPPED["val_list"]) - len(VAL)  # 97
    with pytest.raises(
        FileNotFoundError, match=rf"{absent} file\(s\) of the split's val_list"
    ) as err:
        dm.setup("fit")
    assert SHIPPED["val_list"][-1] in str(err.value) and VAL[0] not in str(err.value)


@pytest.mark.parametrize("entry", ["/abs/victim.h5", "../victim.h5", "sub/victim.h5", "..", ""])
@pytest.mark.parametrize("key", ["val_list", "test_list"])
def test_split_entries_that_are_paths_are_refused_and_nothing_is_written(
    release_val, tmp_path, entry, key
):
    """A split entry is a file name: an absolute path, ``..`` or a separator would make
    the split write its masked copy over a file outside ``--out``."""
    folder, _ = release_val
    victim = tmp_path / "victim.h5"
    victim.write_bytes(b"fully sampled original")
    entry = str(victim) if entry.startswith("/abs") else entry
    lists = {"val_list": list(VAL), "test_list": list(TEST)}
    lists[key].append(entry)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(lists))
    out = tmp_path / "out" / "bench"
    with pytest.raises(ValueError, match=f"'{key}' entry {re.escape(repr(entry))} is not a plain"):
        write_split(folder, out, split_file=split_file, allow_missing=True, progress=False)
    assert victim.read_bytes() == b"fully sampled original" and not out.exists()


def test_the_split_never_writes_through_a_planted_link(release_val, tmp_path):
    """An output left as a link (the masked copy's temporary name) is replaced, not
    written through."""
    folder, split_file = release_val
    out = tmp_path / "bench"
    (out / "test").mkdir(parents=True)
    victim = tmp_path / "victim.h5"
    victim.write_bytes(b"original")
    (out / "test" / f".{TEST[0]}.tmp-{os.getpid()}").symlink_to(victim)
    write_split(folder, out, split_file=split_file, overwrite=True, progress=False)
    assert victim.read_bytes() == b"original"
    assert h5py.is_hdf5(out / "test" / TEST[0]) and not (out / "test" / TEST[0]).is_symlink()
