"""Real anatomy for simulated k-space: T1 heads shipped as package data.

``colin27``: the Colin27 brain (one subject, the average of 27 scans, 1 mm isotropic);
``itk``: one real person's clinical T1 (ITK's example data, 2 x 3 x 2 mm voxels,
resampled to 1 mm here). ``NOTICE.md`` beside the files: sources and licences.

A volume of a simulated data set is a *slab*: ``slices`` parallel slices, ``spacing`` mm
apart, in one of three orientations, of one head. The default set (``colin27``) deals
the slabs of each orientation, laid side by side with a gap, to the splits in the
pattern train, val, train, test: held-out slabs of one person, never a slice (or a
neighbour closer than the gap) of another split. The ``people`` set splits by person:
training and validation slabs from Colin27 (validation: its ``val`` slabs), the test
volumes every slab of the ITK person, whom no training or validation file shows.
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


BRAINS = {"colin27": "colin27_t1.npz", "itk": "itk_t1.npz"}
SETS = ("colin27", "people")
# The people set: whose slabs each split holds (the test person is in no other split).
PEOPLE = {"train": ("colin27",), "val": ("colin27",), "test": ("itk",)}


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
    181); ITK: (256, 186, 256), resampled (linear) from its 2 x 3 x 2 mm voxels."""
    if brain not in BRAINS:
        raise ValueError(f"brain must be one of {sorted(BRAINS)}, got {brain!r}")
    with resources.files(__name__).joinpath(BRAINS[brain]).open("rb") as f:
        data = np.load(f)
        t1 = data["t1"].astype(np.float32) / 254.0
        voxel = tuple(float(v) for v in data["voxel_mm"]) if "voxel_mm" in data else (1, 1, 1)
    if voxel != (1.0, 1.0, 1.0):
        t1 = ndimage.zoom(t1, voxel, order=1).clip(0, 1)
    return t1


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


def slabs(split: str, slices: int = 4, spacing: int = 2, anatomy: str = "colin27") -> list[Slab]:
    """Every slab of ``split`` in the data set ``anatomy`` (``colin27``: the pattern's
    slabs of the one brain; ``people``: by person, :data:`PEOPLE`), orientations
    interleaved (the first N cover all three)."""
    if split not in PATTERN:
        raise ValueError(f"split must be one of train, val, test, got {split!r}")
    if slices < 1 or spacing < 1:
        raise ValueError(f"slices and spacing must be >= 1, got {slices}, {spacing}")
    if anatomy not in SETS:
        raise ValueError(f"anatomy must be one of {SETS}, got {anatomy!r}")
    if anatomy == "colin27":
        return _dealt("colin27", (split,), slices, spacing)
    # People: a training person's train and test-pattern slabs train, its val slabs
    # validate; the test person's every slab is a test volume.
    out = []
    for brain in PEOPLE[split]:
        parts = {"train": ("train", "test"), "val": ("val",), "test": PATTERN}[split]
        out += _dealt(brain, tuple(sorted(set(parts))), slices, spacing)
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
