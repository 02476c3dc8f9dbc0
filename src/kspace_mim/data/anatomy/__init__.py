"""Real anatomy for simulated k-space: T1 heads shipped as package data.

``colin27``: the Colin27 brain (one subject, the average of 27 scans, 1 mm isotropic);
``itk``: one real person's clinical T1 (ITK's example data, 2 x 3 x 2 mm voxels,
resampled to 1 mm here); ``mni152``: the ICBM 2009a nonlinear symmetric T1 template (an
average of 152 adults, brain only, 1 mm), not shipped but read from an installed nilearn
(``pip install 'kspace-mim[people]'``), whose wheel carries it. ``NOTICE.md`` beside the
files: sources and licences.

A volume of a simulated data set is a *slab*: ``slices`` parallel slices, ``spacing`` mm
apart, in one of three orientations, of one head. The default set (``colin27``) deals
the slabs of each orientation, laid side by side with a gap, to the splits in the
pattern train, val, train, test: held-out slabs of one person, never a slice (or a
neighbour closer than the gap) of another split. The ``people`` set splits by person
(:data:`PEOPLE`): labelled training and validation slabs from Colin27, the label-free
pool Colin27's training slabs and every slab of the MNI152 template, the test volumes
every slab of the ITK person, whom no other split shows.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import NamedTuple

import numpy as np
from scipy import ndimage

ORIENTATIONS = ("axial", "coronal", "sagittal")
# Index range (mm along the orientation's axis) whose slices show the head.
EXTENT = {"axial": (20, 166), "coronal": (15, 206), "sagittal": (15, 166)}
AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
PATTERN = ("train", "val", "train", "test")
GAP_MM = 2  # between neighbouring slabs: no slice of one split next to another's


BRAINS = {"colin27": "colin27_t1.npz", "itk": "itk_t1.npz", "mni152": None}
SETS = ("colin27", "people")
# The people set: whose slabs each split holds (data.people overrides it). A head in
# train takes the pattern's train and test slabs, in val its val slabs, in test every
# slab; the label-free pool (the undersampled-only scans) holds its train heads' train
# slabs (the same volumes, first) and every slab of its other heads. A test head may be
# in no other split, the pool included.
PEOPLE = {
    "train": ("colin27",),
    "pool": ("colin27", "mni152"),
    "val": ("colin27",),
    "test": ("itk",),
}
SPLIT_PARTS = {"train": ("test", "train"), "val": ("val",), "test": PATTERN}
# nilearn's copy of the ICBM 2009a template (inside its wheel: no download).
MNI152_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


class Slab(NamedTuple):
    """Slices ``start, start + spacing, ...`` (mm) along the orientation's axis of ``brain``."""

    orientation: str
    start: int
    slices: int
    spacing: int
    brain: str = "colin27"


@functools.lru_cache(maxsize=len(BRAINS))
def load_t1(brain: str = "colin27") -> np.ndarray:
    """A T1 head as float32 in [0, 1] on a 1 mm grid, axes (z: inferior -> superior,
    y: posterior -> anterior, x: left -> right) as in the NOTICE; Colin27: (181, 217,
    181); ITK: (256, 186, 256), resampled (linear) from its 2 x 3 x 2 mm voxels; MNI152:
    (189, 233, 197), from nilearn."""
    if brain not in BRAINS:
        raise ValueError(f"brain must be one of {sorted(BRAINS)}, got {brain!r}")
    if brain == "mni152":
        return _mni152()
    with resources.files(__name__).joinpath(BRAINS[brain]).open("rb") as f:
        data = np.load(f)
        t1 = data["t1"].astype(np.float32) / 254.0
        voxel = tuple(float(v) for v in data["voxel_mm"]) if "voxel_mm" in data else (1, 1, 1)
    if voxel != (1.0, 1.0, 1.0):
        t1 = ndimage.zoom(t1, voxel, order=1).clip(0, 1)
    return t1


def _mni152() -> np.ndarray:
    """The ICBM 2009a template from nilearn's package data, reoriented to RAS and stored
    (z, y, x) like the shipped heads, scaled as they are (0..254 in steps of 1/254)."""
    try:
        import nibabel
        from nilearn import datasets
    except ImportError as err:
        raise ImportError(
            "the MNI152 template (the people set's second label-free head) is read from nilearn, "
            "which ships it: pip install 'kspace-mim[people]' (or nilearn>=0.10)"
        ) from err
    path = resources.files(datasets).joinpath("data", MNI152_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{MNI152_FILE} is not in nilearn's package data ({path})")
    image = nibabel.as_closest_canonical(nibabel.load(str(path)))
    volume = np.asarray(image.dataobj, dtype=np.float64).transpose(2, 1, 0)
    if volume.max() <= 0:
        raise ValueError(f"{path}: an empty template")
    # Rounded to the 0..254 steps of the other heads, so every brain is quantised alike.
    return (np.round(volume / volume.max() * 254) / 254).astype(np.float32)


def check_people(people: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """``people`` (split -> heads) checked: train, val and test (and the label-free pool;
    without it, the train heads), known heads, each split someone, and the test heads in
    no other split; returned with tuples."""
    if not {"train", "val", "test"} <= set(people) <= {"train", "pool", "val", "test"}:
        raise ValueError(
            f"data.people needs train, val and test (and may have pool), got {sorted(people)}"
        )
    out = {split: tuple(people.get(split) or people["train"]) for split in ("train", "pool")}
    out.update({split: tuple(people[split]) for split in ("val", "test")})
    for split, brains in out.items():
        unknown = [b for b in brains if b not in BRAINS]
        if unknown or not brains:
            raise ValueError(f"data.people.{split}={list(brains)}: one or more of {sorted(BRAINS)}")
    shared = set(out["test"]) & (set(out["train"]) | set(out["pool"]) | set(out["val"]))
    if shared:
        raise ValueError(
            f"data.people: {sorted(shared)} in test and in train, pool or val; a test person "
            "must be in no other split (data=synthetic splits one brain by slab)"
        )
    return out


def extent(brain: str, orientation: str) -> tuple[int, int]:
    """The index range (mm along the orientation's axis) whose slices show the head:
    Colin27's hand-chosen one; for another head, where the mean intensity of a slice is
    at least 30 % of the largest."""
    if brain == "colin27":
        return EXTENT[orientation]
    axis = AXIS[orientation]
    t1 = load_t1(brain)
    profile = t1.mean(axis=tuple(a for a in range(3) if a != axis))
    inside = np.nonzero(profile >= 0.3 * profile.max())[0]
    return int(inside.min()), int(inside.max())


def notice() -> str:
    """Source and licence of the shipped anatomy (shipped beside it)."""
    return resources.files(__name__).joinpath("NOTICE.md").read_text()


def slabs(
    split: str,
    slices: int = 4,
    spacing: int = 2,
    anatomy: str = "colin27",
    people: dict[str, tuple[str, ...]] | None = None,
) -> list[Slab]:
    """Every slab of ``split`` in the data set ``anatomy`` (``colin27``: the pattern's
    slabs of the one brain; ``people``: by person, ``people`` or :data:`PEOPLE`),
    orientations interleaved (the first N cover all three). ``pool``: the label-free
    pool's slabs (the colin27 set: its train slabs)."""
    if split not in (*PATTERN, "pool"):
        raise ValueError(f"split must be one of train, val, test, pool, got {split!r}")
    if slices < 1 or spacing < 1:
        raise ValueError(f"slices and spacing must be >= 1, got {slices}, {spacing}")
    if anatomy not in SETS:
        raise ValueError(f"anatomy must be one of {SETS}, got {anatomy!r}")
    if anatomy == "colin27":
        if people is not None:
            raise ValueError("data.people splits the people set (data=people), not colin27")
        return _dealt("colin27", ("train" if split == "pool" else split,), slices, spacing)
    people = check_people(PEOPLE if people is None else people)
    out = []
    for brain in people[split]:
        if split != "pool":
            parts = SPLIT_PARTS[split]
        else:  # a labelled or validation head lends its train slabs; another, every slab
            known = brain in people["train"] or brain in people["val"]
            parts = SPLIT_PARTS["train"] if known else PATTERN
        out += _dealt(brain, tuple(sorted(set(parts))), slices, spacing)
    if split == "pool":  # the train volumes first, as the undersampled copy of train
        train = slabs("train", slices, spacing, anatomy, people)
        out = train + [s for s in out if s not in train]
    return out


def _dealt(brain: str, parts: tuple[str, ...], slices: int, spacing: int) -> list[Slab]:
    """The slabs of ``brain`` the pattern deals to any of ``parts``, orientations
    interleaved."""
    width = (slices - 1) * spacing + 1 + GAP_MM
    per_orientation = []
    for orientation in ORIENTATIONS:
        lo, hi = extent(brain, orientation)
        starts = range(lo, hi - width + GAP_MM + 1, width)
        per_orientation.append(
            [
                Slab(orientation, start, slices, spacing, brain)
                for i, start in enumerate(starts)
                if PATTERN[i % len(PATTERN)] in parts
            ]
        )
    longest = max(len(p) for p in per_orientation)
    return [p[i] for i in range(longest) for p in per_orientation if i < len(p)]


def slab_images(slab: Slab, size: int, rng: np.random.Generator) -> np.ndarray:
    """The slab's slices (slices, size, size), float32 in about [0, 1]: the head resampled
    (anti-aliased) onto ``size`` x ``size`` pixels, with one random in-plane rotation
    (+/-10 degrees), scale (0.85-1.0 of the field) and shift per slab, as positioning
    varies between scans; superior / anterior up."""
    t1 = load_t1(slab.brain)
    axis = AXIS[slab.orientation]
    index = [slab.start + k * slab.spacing for k in range(slab.slices)]
    stack = np.take(t1, index, axis=axis)
    stack = np.moveaxis(stack, axis, 0)[:, ::-1]  # superior / anterior to the top row
    side = max(stack.shape[1:])
    angle = math.radians(rng.uniform(-10, 10))
    scale = rng.uniform(0.85, 1.0)
    shift = rng.uniform(-0.03, 0.03, size=2) * size
    # Output pixel p maps to input pixel centre_in + M (p - centre_out - shift).
    zoom = side / (size * scale)
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = zoom * np.array([[cos, -sin], [sin, cos]])
    centre_in = (np.array(stack.shape[1:]) - 1) / 2
    centre_out = (np.array([size, size]) - 1) / 2 + shift
    offset = centre_in - matrix @ centre_out
    sigma = max(0.0, 0.45 * (zoom - 1))  # anti-aliasing before the down-sampling
    out = np.empty((slab.slices, size, size), np.float32)
    for k, image in enumerate(stack):
        smooth = ndimage.gaussian_filter(image, sigma) if sigma else image
        out[k] = ndimage.affine_transform(smooth, matrix, offset, (size, size), order=1)
    return out.clip(0, None)
