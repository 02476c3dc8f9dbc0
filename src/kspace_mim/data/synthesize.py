"""Simulated fastMRI volumes in the exact layout of the release (the embedded default data).

Each volume's magnitude is real anatomy (``anatomy="colin27"``, the default: a slab of
the Colin27 T1 brain shipped with the package, train / val / test from separate slabs,
see :mod:`kspace_mim.data.anatomy`) or, for unit tests and tiny files, an anatomy-like
phantom (``anatomy="phantom"``: nested ellipses with smooth texture). On it: a smooth
phase, birdcage-like coil sensitivities, complex Gaussian noise, 2x readout
oversampling and zero padding columns outside the encoding limits, as real fastMRI
files have. Targets are computed exactly as fastMRI defines them (RSS or magnitude of
the inverse FFT, cropped to the recon size). Test files hold k-space already masked
(true zeros), their ``mask`` and the attrs ``acceleration`` / ``num_low_frequency``,
and no target; a set also gets their fully sampled twins with targets in
``<challenge>_test_full`` (the layout ``python -m kspace_mim.data.split`` writes).

    python -m kspace_mim.data.synthesize --out DIR [--challenge multicoil] [--split train]
        [--anatomy colin27|phantom]
    python -m kspace_mim.data.synthesize --out DIR --split train --undersampled  # SSDU data
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import torch
from fastmri.data.subsample import EquispacedMaskFractionFunc
from tqdm import tqdm

from kspace_mim.data import anatomy as colin27
from kspace_mim.data.masks import CartesianMask, seed_from_fname
from kspace_mim.files import atomic_path
from kspace_mim.physics import apply_mask, center_crop, fft2c, ifft2c, rss

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ANATOMIES = ("colin27", "people", "phantom")
# File numbers as in the release (file1000000.h5 ...), one block per split.
FIRST_FILE = {"train": 1000000, "val": 1001000, "test": 1002000}
# The phantom's volumes per split in a set (the brain's: every slab of the split).
PHANTOM_VOLUMES = {"train": 12, "val": 4, "test": 2}
# The default set written on first use (`make train`, every README table): the brain,
# every slab (28 train / 13 val / 13 test volumes of 4 slices), 8 coils, 64 x 64 images.
DEFAULT_SET = {"anatomy": "colin27", "size": 64, "coils": 8, "slices": 4}

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{enc_x}</x><y>{enc_y}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>{fov_y}</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rec_x}</x><y>{rec_y}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{lim_max}</maximum><center>{lim_center}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>{max_slice}</maximum><center>0</center></slice>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def _smooth_noise(gen: torch.Generator, shape: tuple[int, int], cutoff: float) -> torch.Tensor:
    """Real noise low-passed in k-space (Gaussian window), unit std: anatomy-like texture."""
    noise = torch.randn(shape, generator=gen, dtype=torch.complex64)
    ky = torch.linspace(-1, 1, shape[0])[:, None]
    kx = torch.linspace(-1, 1, shape[1])[None, :]
    field = ifft2c(fft2c(noise) * torch.exp(-(ky**2 + kx**2) / (2 * cutoff**2))).real
    return field / field.std().clamp_min(1e-12)


def phantom(gen: torch.Generator, rows: int, cols: int, size: int, z: float) -> torch.Tensor:
    """One anatomy-like magnitude slice on the (rows, cols) FOV; the object fits the
    central size x size box. z in [-1, 1] is the slice position (objects shrink at the ends)."""
    r = (torch.arange(rows) - rows // 2)[:, None] / (size / 2)
    c = (torch.arange(cols) - cols // 2)[None, :] / (size / 2)
    shrink = math.sqrt(max(1 - (0.85 * z) ** 2, 0.05))
    img = torch.zeros(rows, cols)

    def ellipse(cy, cx, ay, ax, angle, value):
        cos, sin = math.cos(angle), math.sin(angle)
        y, x = r - cy, c - cx
        inside = ((cos * x + sin * y) / ax) ** 2 + ((-sin * x + cos * y) / ay) ** 2 <= 1
        img[inside] = value

    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=gen))  # noqa: E731
    ellipse(0, 0, 0.88 * shrink, 0.72 * shrink, u(-0.2, 0.2), u(0.35, 0.5))  # soft tissue
    for _ in range(2):  # two bones with cortex and marrow
        cy, cx = u(-0.35, 0.35), u(-0.3, 0.3)
        ay, ax, ang = u(0.18, 0.3) * shrink, u(0.12, 0.22) * shrink, u(0, math.pi)
        ellipse(cy, cx, ay, ax, ang, 0.08)
        ellipse(cy, cx, 0.8 * ay, 0.8 * ax, ang, u(0.8, 1.0))
    for _ in range(int(torch.randint(3, 7, (), generator=gen))):  # small structures
        ellipse(
            u(-0.6, 0.6) * shrink,
            u(-0.5, 0.5) * shrink,
            u(0.03, 0.12),
            u(0.03, 0.12),
            u(0, math.pi),
            u(0.1, 0.9),
        )
    texture = 1 + 0.12 * _smooth_noise(gen, (rows, cols), 0.15)
    return (img * texture).clamp_min(0)


def coil_sensitivities(
    gen: torch.Generator, coils: int, rows: int, cols: int, size: int
) -> torch.Tensor:
    """Birdcage-like receive sensitivities (C, rows, cols): coils on a ring around the
    object, magnitude falling with distance, phase varying smoothly in space."""
    r = (torch.arange(rows) - rows // 2)[:, None] / (size / 2)
    c = (torch.arange(cols) - cols // 2)[None, :] / (size / 2)
    start = float(torch.rand((), generator=gen)) * 2 * math.pi
    maps = []
    for k in range(coils):
        theta = start + 2 * math.pi * k / coils
        cy, cx = 1.3 * math.sin(theta), 1.3 * math.cos(theta)
        dist2 = (r - cy) ** 2 + (c - cx) ** 2
        magnitude = 1 / (1 + dist2 / 0.9)
        phase = theta + 0.6 * ((r - cy) * math.cos(theta) - (c - cx) * math.sin(theta))
        maps.append(magnitude * torch.exp(1j * phase))
    return torch.stack(maps).to(torch.complex64)


def synthesize_volume(
    path: Path,
    challenge: str,
    split: str,
    slices: int,
    coils: int,
    size: int,
    seed: int,
    undersampled: bool = False,
    accelerations: tuple[int, ...] = (4, 8),
    slab: colin27.Slab | None = None,
    full: bool = False,
    by_person: bool = False,
    heads: tuple[str, ...] = (),
) -> None:
    """Write one fastMRI volume to ``path``: in the test layout (masked k-space, its
    ``mask``, no target) for the test split (unless ``full``: its fully sampled twin)
    or when ``undersampled``. ``slab``: the brain slab to image (its slice count wins);
    None: the phantom. ``by_person``: the file's ``patient_id`` names the head it shows
    (a split by person can be checked from the files), not the file, and ``split_heads``
    the heads of the split it was written for (``heads``)."""
    gen = torch.Generator().manual_seed(seed)
    rows = 2 * size  # 2x readout oversampling, as the knee data (640 -> 320)
    cols = 2 * round(size * 1.15 / 2) + 4 * int(torch.randint(0, 2, (), generator=gen))
    pad = 2 if cols > 8 else 0  # unacquired columns at each edge (encoding limits)
    coils = 1 if challenge == "singlecoil" else coils
    maps = coil_sensitivities(gen, coils, rows, cols, size)
    phase_coef = torch.randn(4, generator=gen) * torch.tensor([1.0, 0.6, 0.6, 0.3])
    r = (torch.arange(rows) - rows // 2)[:, None] / size
    c = (torch.arange(cols) - cols // 2)[None, :] / size
    phase = phase_coef[0] + phase_coef[1] * r + phase_coef[2] * c + phase_coef[3] * r * c
    # Real fastMRI k-space is tiny (1e-6 .. 1e-3): keep that scale so scaling code is tested.
    intensity = 2e-4 * (0.5 + float(torch.rand((), generator=gen)))
    if slab is not None:
        slices = slab.slices
        brain = torch.from_numpy(colin27.slab_images(slab, size, np.random.default_rng(seed)))
        # The size x size head at the centre of the (rows, cols) field of view.
        top, left = (rows - size) // 2, (cols - size) // 2
        brain = torch.nn.functional.pad(brain, (left, cols - size - left, top, rows - size - top))
    kspace = torch.zeros(slices, coils, rows, cols, dtype=torch.complex64)
    for s in range(slices):
        z = 2 * (s + 0.5) / slices - 1
        magnitude = brain[s] if slab is not None else phantom(gen, rows, cols, size, z)
        image = magnitude * torch.exp(1j * phase) * intensity
        k = fft2c(maps * image)
        k = k + 0.01 * intensity * torch.randn(k.shape, generator=gen, dtype=torch.complex64)
        k[..., :pad] = 0
        k[..., cols - pad :] = 0
        kspace[s] = k
    target = rss(ifft2c(kspace)) if coils > 1 else ifft2c(kspace)[:, 0].abs()
    target = center_crop(target, (size, size))
    if challenge == "singlecoil":
        kspace = kspace[:, 0]

    header = HEADER.format(
        coils=coils,
        enc_x=rows,
        enc_y=cols,
        fov_y=round(140 * cols / size),
        rec_x=size,
        rec_y=size,
        lim_max=cols - 2 * pad - 1,
        lim_center=cols // 2 - pad,
        max_slice=slices - 1,
    )
    attrs = {
        "acquisition": (
            ("CORPD_FBK", "CORPDFS_FBK")[seed % 2]
            if slab is None
            else {"axial": "AXT1", "coronal": "CORT1", "sagittal": "SAGT1"}[slab.orientation]
        ),
        "patient_id": hashlib.sha256(f"{path.name}{seed}".encode()).hexdigest()[:16],
    }
    if slab is not None:
        attrs.update(orientation=slab.orientation, slab_start_mm=slab.start)
    if slab is not None and by_person:
        attrs.update(
            anatomy=slab.brain,
            split_heads=",".join(heads),
            patient_id=hashlib.sha256(f"person:{slab.brain}".encode()).hexdigest()[:16],
        )
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as hf:
        hf.create_dataset("ismrmrd_header", data=header.encode())
        if (split == "test" and not full) or undersampled:
            acceleration = accelerations[seed % len(accelerations)]
            center = {4: 0.08, 8: 0.04}[acceleration]
            mask_func = CartesianMask(EquispacedMaskFractionFunc([center], [acceleration]))
            mask, num_low, _ = mask_func((rows, cols), seed_from_fname(path.name))
            mask[:, :pad] = False
            mask[:, cols - pad :] = False
            hf.create_dataset("kspace", data=apply_mask(kspace, mask).numpy())
            hf.create_dataset("mask", data=mask[0].numpy())
            attrs.update(acceleration=acceleration, num_low_frequency=num_low)
        else:
            hf.create_dataset("kspace", data=kspace.numpy())
            key = "reconstruction_esc" if challenge == "singlecoil" else "reconstruction_rss"
            hf.create_dataset(key, data=target.numpy().astype(np.float32))
            attrs.update(max=float(target.max()), norm=float(torch.linalg.vector_norm(target)))
        hf.attrs.update(attrs)


def synthesize(
    out: str | Path,
    challenge: str = "multicoil",
    split: str = "train",
    volumes: int | None = 4,
    slices: int = 8,
    coils: int = 8,
    size: int = 128,
    seed: int = 0,
    progress: bool = True,
    undersampled: bool = False,
    accelerations: tuple[int, ...] = (4, 8),
    anatomy: str = "phantom",
    full: bool = False,
    people: dict[str, tuple[str, ...]] | None = None,
    pool: bool = False,
) -> list[Path]:
    """Write ``volumes`` fastMRI files into the folder ``out``; returns their paths.

    ``anatomy``: ``colin27`` (the brain: one slab of ``slices`` slices 2 mm apart per
    volume, the split's own slabs; ``volumes=None``: all of them), ``people`` (split by
    person: ``people`` maps each split to its heads, by default labels and validation
    Colin27, the pool Colin27 and the MNI152 template, test the ITK person;
    :mod:`kspace_mim.data.anatomy`) or ``phantom``;
    ``pool``: the label-free pool's slabs instead of the split's (``split="train"``: its
    train volumes first, the same files, then the pool's other heads).
    ``undersampled`` writes any split in fastMRI's test layout, as a scanner that never
    acquires fully sampled data would: one equispaced Cartesian mask per file (the
    fastMRI test set's centre fractions), its acceleration drawn from ``accelerations``
    per file, the same anatomy as without it. ``full`` writes the test split fully
    sampled with targets (the twins of its masked files: same names, same data)."""
    unknown = set(accelerations) - {4, 8}
    if unknown or not accelerations:
        raise ValueError(f"accelerations must be 4 and / or 8, got {accelerations}")
    if challenge not in ("singlecoil", "multicoil"):
        raise ValueError(f"challenge must be singlecoil or multicoil, got {challenge!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy must be one of {ANATOMIES}, got {anatomy!r}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16, got {size}")
    if slices < 1 or coils < 1 or (volumes is not None and volumes < 1):
        raise ValueError("volumes, slices and coils must be >= 1")
    heads: tuple[str, ...] = ()  # the people set: the heads of the split written
    if anatomy != "phantom":
        which = "pool" if pool else split
        slabs = colin27.slabs(which, slices, anatomy=anatomy, people=people)
        if anatomy == "people":
            heads = colin27.check_people(colin27.PEOPLE if people is None else people)[which]
        if volumes is not None and volumes > len(slabs):
            raise ValueError(
                f"the brain has {len(slabs)} {split} slabs of {slices} slices; asked for "
                f"{volumes} volumes (fewer slices per volume give more slabs)"
            )
        slabs = slabs[:volumes]
    else:
        slabs = [None] * (volumes or PHANTOM_VOLUMES[split])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"file{FIRST_FILE[split] + i}.h5" for i in range(len(slabs))]
    bar = tqdm(paths, desc=f"{challenge}_{split}", unit="volume", disable=not progress)
    for i, path in enumerate(bar):
        synthesize_volume(
            path,
            challenge,
            split,
            slices,
            coils,
            size,
            seed * 100003 + FIRST_FILE[split] + i,
            undersampled,
            tuple(accelerations),
            slabs[i],
            full,
            anatomy == "people",
            heads,
        )
    return paths


# The train volumes as a scanner that never samples fully writes them (fastMRI's test
# layout, 4x equispaced, no target): the label-free studies' training folder.
LABEL_FREE_TRAIN = "train_undersampled4x"


def split_folders(root: str | Path, challenge: str) -> dict[str, Path]:
    """The release layout of a set: ``{train, val, test, test_full}`` -> folder, and the
    label-free copy of train (:data:`LABEL_FREE_TRAIN`)."""
    root = Path(root)
    return {s: root / f"{challenge}_{s}" for s in (*SPLITS, "test_full", LABEL_FREE_TRAIN)}


def synthesize_set(
    out: str | Path,
    challenge: str = "multicoil",
    splits: tuple[str, ...] = SPLITS,
    volumes: int | None = None,
    **kwargs,
) -> Path:
    """The release layout under ``out``: one ``<challenge>_<split>`` folder per split, plus
    ``<challenge>_test_full`` (the test volumes fully sampled, with targets) when the test
    split is written; ``volumes`` each (default: every brain slab, or the phantom's 12 / 4
    / 2); other arguments as :func:`synthesize`."""
    folders = split_folders(out, challenge)
    for split in splits:
        synthesize(folders[split], challenge, split, volumes=volumes, **kwargs)
        if split == "test":
            synthesize(folders["test_full"], challenge, split, volumes, full=True, **kwargs)
    return Path(out)


# Volumes per split of the default set (None: every slab; pool: the people set's
# label-free pool, the colin27 set's is its train volumes); tests shrink it.
DEFAULT_VOLUMES: dict[str, int | None] = {"train": None, "val": None, "test": None, "pool": None}


def check_folder(
    folder: Path, split: str, anatomy: str, people: dict[str, tuple[str, ...]] | None = None
) -> None:
    """Refuse a people-set folder whose files were written for another split definition:
    each file names whom it shows (``anatomy``) and the heads of the split it was written
    for (``split_heads``). A head the split must not hold, or a folder of the same heads
    written when the split held fewer (a pool from before it held a second head: the same
    first files, the second head missing), would train, select or test on other people
    than the configuration says. A smaller set of today's definition (``volumes=N``)
    passes. The Colin27 set is one brain: nothing to check."""
    if anatomy != "people":
        return
    heads = colin27.check_people(colin27.PEOPLE if people is None else people)[split]
    shown: Counter[tuple[str, str]] = Counter()
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as f:
            who, written = (f.attrs.get(k, "") for k in ("anatomy", "split_heads"))
        text = (x.decode() if isinstance(x, bytes) else str(x) for x in (who, written))
        shown[tuple(text)] += 1
    wrong = {
        f"{who or 'nobody named'} (written for {written or 'an unrecorded split'})": n
        for (who, written), n in shown.items()
        if who not in heads or written != ",".join(heads)
    }
    if wrong:
        raise ValueError(
            f"{folder}: files of {wrong} (volumes), but the people set's {split} split "
            f"holds {list(heads)}: written by another definition (an earlier kspace_mim, "
            "or other data.people); delete the folder (it is written again on first use) "
            "or point data.synthetic_root elsewhere"
        )


def ensure_synthetic(
    folders: dict[str, Path],
    challenge: str,
    anatomy: str = "colin27",
    people: dict[str, tuple[str, ...]] | None = None,
    size: int = DEFAULT_SET["size"],
) -> list[Path]:
    """Write the default set's folders (``{split: <root>/<challenge>_<split>}``, split in
    train, val, test, test_full and :data:`LABEL_FREE_TRAIN`) that are missing and check
    the others show the split's people (:func:`check_folder`); returns the folders this
    call wrote.

    The embedded default data set (:data:`DEFAULT_SET`: the brain; ``anatomy="people"``:
    split by person, ``people`` or the anatomy's default; ``size``: its grid) is written
    on first use, whatever the entry point. Several processes may ask at once (DDP ranks,
    concurrent sweeps): each writes into its own temporary folder and renames it into place; the
    first rename wins and the others discard theirs (the data are the same: the
    synthesizer is seeded).
    """
    start = time.perf_counter()
    folders = {split: Path(folder) for split, folder in folders.items()}
    written = []
    for split, folder in folders.items():
        base = {"test_full": "test", LABEL_FREE_TRAIN: "train"}.get(split, split)
        pool = split == LABEL_FREE_TRAIN and anatomy == "people"
        if folder.is_dir():
            check_folder(folder, "pool" if pool else base, anatomy, people)
            continue
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        label_free = {"undersampled": True, "accelerations": (4,)}
        synthesize(
            tmp,
            challenge,
            base,
            volumes=DEFAULT_VOLUMES["pool" if pool else base],
            progress=False,
            full=split == "test_full",
            **{**DEFAULT_SET, "anatomy": anatomy, "size": size},
            **(label_free if split == LABEL_FREE_TRAIN else {}),
            people=people,
            pool=pool,
        )
        try:
            tmp.rename(folder)
            written.append(folder)
        except OSError:  # another process was faster
            shutil.rmtree(tmp, ignore_errors=True)
    if written:
        counts = " + ".join(str(len(list(f.glob("*.h5")))) for f in written)
        who = {"colin27": "the Colin27 brain"}.get(anatomy) or ", ".join(
            f"{split} {' + '.join(brains)}"
            for split, brains in colin27.check_people(people or colin27.PEOPLE).items()
        )
        log.info(
            "wrote the default data set (first use; %s): %s volumes to %s in %.1f s",
            who,
            counts,
            ", ".join(str(f) for f in written),
            time.perf_counter() - start,
        )
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.data.synthesize", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="folder for the .h5 files; without --split, the parent of "
        "<challenge>_train, <challenge>_val and <challenge>_test",
    )
    parser.add_argument("--challenge", default="multicoil", choices=("singlecoil", "multicoil"))
    parser.add_argument("--split", choices=SPLITS, help="write one split into --out itself")
    parser.add_argument(
        "--volumes",
        type=int,
        help="volumes per split (default: every brain slab of the split; phantom 12/4/2)",
    )
    parser.add_argument(
        "--anatomy",
        default=DEFAULT_SET["anatomy"],
        choices=ANATOMIES,
        help="colin27: the shipped T1 brain, split by slab (default); people: split by "
        "person (labels and validation Colin27, the label-free pool Colin27 and the MNI152 "
        "template, test the ITK person); phantom: ellipses (tiny files)",
    )
    parser.add_argument("--slices", type=int, default=DEFAULT_SET["slices"])
    parser.add_argument("--coils", type=int, default=DEFAULT_SET["coils"])
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SET["size"], help="recon size (image is size x size)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--undersampled",
        action="store_true",
        help="write the files in fastMRI's test layout (masked k-space, mask, no target) "
        "whatever the split: training data for supervision=ssdu",
    )
    parser.add_argument(
        "--accelerations",
        default="4,8",
        help="accelerations the undersampled / test masks are drawn from, per file (4,8)",
    )
    args = parser.parse_args(argv)
    common = dict(
        challenge=args.challenge,
        slices=args.slices,
        coils=args.coils,
        size=args.size,
        seed=args.seed,
        anatomy=args.anatomy,
        undersampled=args.undersampled,
        accelerations=tuple(int(a) for a in args.accelerations.split(",")),
    )
    if args.split:
        default = None if args.anatomy != "phantom" else 4
        synthesize(args.out, split=args.split, volumes=args.volumes or default, **common)
        return
    synthesize_set(args.out, volumes=args.volumes, **common)


if __name__ == "__main__":
    main()
