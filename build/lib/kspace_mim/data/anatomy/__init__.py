"""Real anatomy for simulated k-space: the Colin27 T1 brain, shipped as package data.

One subject, 1 mm isotropic (``NOTICE.md`` beside the file: source and licence). A volume
of the simulated data set is a *slab*: ``slices`` parallel slices, ``spacing`` mm apart,
in one of three orientations. The slabs of each orientation are laid side by side with a
gap and dealt to the splits in the pattern train, val, train, test, so no slice of a
test volume is a slice (or a neighbour closer than the gap) of a train or val volume of
that orientation. It stays one subject: held-out slabs, not held-out people.
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


class Slab(NamedTuple):
    """Slices ``start, start + spacing, ...`` (mm) along the orientation's axis."""

    orientation: str
    start: int
    slices: int
    spacing: int


@functools.lru_cache(maxsize=1)
def load_t1() -> np.ndarray:
    """The T1 volume (181, 217, 181) as float32 in [0, 1] (z, y, x as in the NOTICE)."""
    with resources.files(__name__).joinpath("colin27_t1.npz").open("rb") as f:
        t1 = np.load(f)["t1"]
    return t1.astype(np.float32) / 254.0


def notice() -> str:
    """Source and licence of the shipped anatomy (shipped beside it)."""
    return resources.files(__name__).joinpath("NOTICE.md").read_text()


def slabs(split: str, slices: int = 4, spacing: int = 2) -> list[Slab]:
    """Every slab of ``split``, orientations interleaved (the first N cover all three)."""
    if split not in PATTERN:
        raise ValueError(f"split must be one of train, val, test, got {split!r}")
    if slices < 1 or spacing < 1:
        raise ValueError(f"slices and spacing must be >= 1, got {slices}, {spacing}")
    width = (slices - 1) * spacing + 1 + GAP_MM
    per_orientation = []
    for orientation in ORIENTATIONS:
        lo, hi = EXTENT[orientation]
        starts = range(lo, hi - width + GAP_MM + 1, width)
        per_orientation.append(
            [
                Slab(orientation, start, slices, spacing)
                for i, start in enumerate(starts)
                if PATTERN[i % len(PATTERN)] == split
            ]
        )
    longest = max(len(p) for p in per_orientation)
    return [p[i] for i in range(longest) for p in per_orientation if i < len(p)]


def slab_images(slab: Slab, size: int, rng: np.random.Generator) -> np.ndarray:
    """The slab's slices (slices, size, size), float32 in about [0, 1]: the head resampled
    (anti-aliased) onto ``size`` x ``size`` pixels, with one random in-plane rotation
    (+/-10 degrees), scale (0.85-1.0 of the field) and shift per slab, as positioning
    varies between scans; superior / anterior up."""
    t1 = load_t1()
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
