"""A reproducible fastMRI benchmark now that the public leaderboard is closed.

The 199 knee multicoil validation volumes are split into 99 for validation and 100 for
testing (the split of PromptMR and later papers, shipped as package data). Each test
volume is masked the way fastMRI's own test set was: one random Cartesian mask per
volume, 4x (centre 0.08) or 8x (centre 0.04), seeded by the file name, zero outside
the acquired columns of the ISMRMRD header. Test files are written in fastMRI's test
layout (masked k-space with true zeros, ``mask``, header, ``acceleration``,
``num_low_frequency``; no target); their fully sampled originals are the targets.

    python -m kspace_mim.data.split --val DIR --out DIR [--split-file FILE]
        [--allow-missing] [--overwrite] [--copy]

writes ``DIR/val`` (the 99), ``DIR/test`` (the 100, masked), ``DIR/test_full`` (their
originals) and ``DIR/split.json`` (the lists and each test file's acceleration).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import torch
from fastmri.data.subsample import MaskFunc, create_mask_for_mask_type
from fastmri.data.transforms import apply_mask
from tqdm import tqdm

from kspace_mim.data.mri_data import parse_header
from kspace_mim.files import atomic_path, write_json

log = logging.getLogger(__name__)

# Named splits shipped with the package (src/kspace_mim/data/splits/).
NAMED_SPLITS = {"val99_test100": "fastmri_knee_val99_test100.json"}
# The protocol: fastMRI's test-set masks.
MASK_TYPE, CENTER_FRACTIONS, ACCELERATIONS = "random", (0.08, 0.04), (4, 8)
EIGHT_X_BELOW = 0.18  # sampled fraction under which a test file is labelled 8x


def load_split(split: str | None = None, split_file: str | os.PathLike | None = None) -> dict:
    """The ``val_list`` / ``test_list`` of a named split or of any JSON file holding them."""
    if split_file:
        path = Path(os.path.expanduser(split_file))
        if not path.is_file():
            raise FileNotFoundError(f"data.split_file: {path} does not exist")
        text = path.read_text()
    elif split in NAMED_SPLITS:
        text = resources.files("kspace_mim.data.splits").joinpath(NAMED_SPLITS[split]).read_text()
        path = Path(NAMED_SPLITS[split])
    else:
        raise ValueError(
            f"data.split={split!r}: one of {sorted(NAMED_SPLITS)}, or give data.split_file"
        )
    data = json.loads(text)
    lists = {key: data.get(key) for key in ("val_list", "test_list")}
    for key, names in lists.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: '{key}' must be a list of file names")
    for key, names in lists.items():
        for name in names:
            check_file_name(name, f"{path}: '{key}' entry")
    overlap = set(lists["val_list"]) & set(lists["test_list"])
    if overlap:
        raise ValueError(f"{path}: files in both lists: {', '.join(sorted(overlap))}")
    return lists


def check_file_name(name: str, where: str) -> None:
    """A name read from a file is joined to folders: it must be a plain file name (no
    separator, no ``..``, not absolute), or a list could make the split read and write
    anywhere. Raises ValueError naming the entry."""
    plain = (
        name
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not Path(name).is_absolute()
    )
    if not plain:
        raise ValueError(
            f"{where} {name!r} is not a plain file name (a path separator, '..' or an "
            "absolute path); refused, nothing written"
        )


def protocol_mask_func() -> MaskFunc:
    """fastMRI's test-set mask function: random, 4x / centre 0.08 or 8x / centre 0.04."""
    return create_mask_for_mask_type(MASK_TYPE, list(CENTER_FRACTIONS), list(ACCELERATIONS))


def file_seed(name: str) -> tuple[int, ...]:
    """The protocol's seed: the file name's characters, as fastMRI seeds masks."""
    return tuple(map(ord, name))


def mask_test_volume(source: Path, target: Path) -> dict[str, Any]:
    """Write ``source`` (fully sampled) to ``target`` in fastMRI's test layout, masked by
    the protocol; returns its ``acceleration`` and ``num_low_frequency``.

    Slice by slice (a knee volume is about 1 GB): the mask depends only on the width and
    the seed, so every slice gets the volume's one mask, as ``apply_mask`` on the whole
    volume would give.
    """
    mask_func = protocol_mask_func()
    with h5py.File(source, "r") as src:
        header = src["ismrmrd_header"][()]
        meta = parse_header(header)
        padding = (meta["padding_left"], meta["padding_right"])
        kspace = src["kspace"]
        with atomic_path(target) as tmp, h5py.File(tmp, "w") as dst:
            out = dst.create_dataset("kspace", shape=kspace.shape, dtype=kspace.dtype)
            mask = num_low = None
            for s in range(kspace.shape[0]):
                data = torch.view_as_real(torch.from_numpy(kspace[s]))
                masked, mask, num_low = apply_mask(
                    data, mask_func, None, file_seed(source.name), padding
                )
                out[s] = torch.view_as_complex(masked.contiguous()).numpy().astype(kspace.dtype)
            columns = mask.reshape(-1).numpy().astype(bool)
            acceleration = 8 if columns.mean() < EIGHT_X_BELOW else 4
            dst.create_dataset("mask", data=columns)
            dst.create_dataset("ismrmrd_header", data=header)
            attrs = {k: src.attrs[k] for k in ("acquisition", "patient_id") if k in src.attrs}
            dst.attrs.update(attrs, acceleration=acceleration, num_low_frequency=int(num_low))
    return {"acceleration": acceleration, "num_low_frequency": int(num_low)}


def _place(source: Path, target: Path, copy: bool) -> None:
    if copy:
        shutil.copyfile(source, target)
    else:
        target.symlink_to(source.resolve())


def write_split(
    val_dir: str | os.PathLike,
    out: str | os.PathLike,
    split: str | None = "val99_test100",
    split_file: str | os.PathLike | None = None,
    allow_missing: bool = False,
    overwrite: bool = False,
    copy: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out/val``, ``out/test`` (masked), ``out/test_full`` and ``out/split.json``
    from the fully sampled validation folder ``val_dir``; returns the manifest."""
    lists = load_split(split, split_file)
    val_dir, out = Path(os.path.expanduser(val_dir)), Path(os.path.expanduser(out))
    if not val_dir.is_dir():
        raise FileNotFoundError(f"--val {val_dir} is not a folder")
    missing = [n for n in lists["val_list"] + lists["test_list"] if not (val_dir / n).is_file()]
    if missing and not allow_missing:
        raise FileNotFoundError(
            f"{len(missing)} listed file(s) are not in {val_dir}: {', '.join(missing)}; "
            "--allow-missing writes the split without them"
        )
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; --overwrite rewrites the split in it")
        for name in ("val", "test", "test_full"):
            shutil.rmtree(out / name, ignore_errors=True)
    for name in ("val", "test", "test_full"):
        (out / name).mkdir(parents=True, exist_ok=True)
    present = [n for n in lists["val_list"] if n not in missing]
    tests = [n for n in lists["test_list"] if n not in missing]
    manifest: dict[str, Any] = {
        "source": str(split_file or NAMED_SPLITS.get(split or "", split)),
        "val_list": present,
        "test": {},
        "missing": missing,
    }
    for name in present:
        _place(val_dir / name, out / "val" / name, copy)
    for name in tqdm(tests, desc="masking test volumes", unit="volume", disable=not progress):
        manifest["test"][name] = mask_test_volume(val_dir / name, out / "test" / name)
        _place(val_dir / name, out / "test_full" / name, copy)
    write_json(out / "split.json", manifest)
    if missing:
        log.warning("%d listed file(s) missing, left out: %s", len(missing), ", ".join(missing))
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.data.split", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--val", required=True, help="fastMRI's multicoil_val folder")
    parser.add_argument("--out", required=True, help="where val/, test/, test_full/ go")
    parser.add_argument(
        "--split", default="val99_test100", help=f"a shipped split: {sorted(NAMED_SPLITS)}"
    )
    parser.add_argument("--split-file", help="any JSON with val_list / test_list instead")
    parser.add_argument(
        "--allow-missing", action="store_true", help="write the split without missing files"
    )
    parser.add_argument("--overwrite", action="store_true", help="rewrite a non-empty --out")
    parser.add_argument(
        "--copy", action="store_true", help="copy val / test_full files instead of linking"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = write_split(
            args.val,
            args.out,
            args.split,
            args.split_file,
            args.allow_missing,
            args.overwrite,
            args.copy,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    accel = [v["acceleration"] for v in manifest["test"].values()]
    print(
        f"wrote {args.out}: {len(manifest['val_list'])} val, {len(accel)} test "
        f"({accel.count(4)} at 4x, {accel.count(8)} at 8x)"
    )


if __name__ == "__main__":
    main()
