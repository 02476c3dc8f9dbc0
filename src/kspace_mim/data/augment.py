"""K-space-correct augmentation, applied to the coil images of the fully sampled slice.

A flip of the image is not a plain reversal of centred k-space: on an even grid
the sample at index n//2 is k=0, so reversing the array maps k to -k-1 (a
one-sample shift, i.e. a linear phase ramp in the image). We avoid the problem by
transforming the *coil images* of the fully sampled slice and taking the FFT
afterwards; the undersampling mask is drawn on the result, so masks stay exact and
the target is recomputed from the same images.

Besides flips and random crops (the SimMIM paper's section 4.2 study), small affine
transforms in the spirit of MRAugment (Fabian et al., ICML 2021): rotation, scaling,
shearing and translation of the coil images, each applied with a probability that
grows over training (MRAugment's exponential schedule), so that early training sees
mostly real images and late training mostly augmented ones. Written here: MRAugment
is not a package, and torchvision's affine works on real images of one dtype only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kspace_mim.physics import center_crop

SCHEDULES = ("constant", "exp")


class Augmentation:
    """Per-slice augmentation of coil images, random from torch's (per-worker seeded) RNG.

    Args:
        flip_prob: probability of a left-right and (independently) an up-down flip.
        random_crop: crop the model grid at a random position of the field of view
            instead of its centre (needs an image larger than the grid).
        normalize: per-coil-image standardisation (the paper's mean/std) instead of
            dividing by the RMS of the zero-filled RSS image; see ``transforms``.
        affine_prob: MRAugment's p: the largest probability with which each affine
            transform below is drawn for a slice (0: no affine augmentation).
        rotation_deg: rotations drawn uniformly in +-this (degrees).
        scaling: zoom factors drawn uniformly in 1 +- this.
        shearing_deg: shear angles (along each axis) drawn uniformly in +-this (degrees).
        translation: shifts drawn uniformly in +-this fraction of the field of view.
        schedule: "exp" (MRAugment's: p(t) = affine_prob (1 - e^(-c t)) / (1 - e^(-c)), t
            the fraction of training done, c = ``schedule_c``) or "constant" (affine_prob
            from the first step).
        schedule_c: the exponential schedule's rate (MRAugment's default 5).
    """

    def __init__(
        self,
        flip_prob: float = 0.0,
        random_crop: bool = False,
        normalize: bool = False,
        affine_prob: float = 0.0,
        rotation_deg: float = 0.0,
        scaling: float = 0.0,
        shearing_deg: float = 0.0,
        translation: float = 0.0,
        schedule: str = "constant",
        schedule_c: float = 5.0,
    ):
        for name, value in (("flip_prob", flip_prob), ("affine_prob", affine_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augmentation.{name} must be in [0, 1], got {value}")
        limits = {
            "rotation_deg": (rotation_deg, 180.0),
            "scaling": (scaling, 0.9),
            "shearing_deg": (shearing_deg, 45.0),
            "translation": (translation, 0.5),
        }
        for name, (value, top) in limits.items():
            if not 0.0 <= value <= top:
                raise ValueError(f"augmentation.{name} must be in [0, {top}], got {value}")
        if schedule not in SCHEDULES:
            raise ValueError(f"augmentation.schedule={schedule!r}: one of {SCHEDULES}")
        if schedule_c <= 0:
            raise ValueError(f"augmentation.schedule_c must be > 0, got {schedule_c}")
        self.flip_prob = flip_prob
        self.random_crop = random_crop
        self.normalize = normalize
        self.affine_prob = affine_prob
        self.rotation_deg, self.scaling = rotation_deg, scaling
        self.shearing_deg, self.translation = shearing_deg, translation
        self.schedule, self.schedule_c = schedule, schedule_c
        # The fraction of training done, in shared memory: loader worker processes see
        # the value the training process writes (AugmentationSchedule), without respawning.
        self._progress = torch.ones((), dtype=torch.float64).share_memory_()

    @property
    def affine(self) -> bool:
        """Whether any affine transform can be drawn."""
        ranges = (self.rotation_deg, self.scaling, self.shearing_deg, self.translation)
        return self.affine_prob > 0 and any(r > 0 for r in ranges)

    @property
    def geometric(self) -> bool:
        """Whether the image itself changes (so the file's target no longer applies)."""
        return self.flip_prob > 0 or self.random_crop or self.affine

    @property
    def progress(self) -> float:
        """The fraction of training done, in [0, 1] (1 outside training)."""
        return float(self._progress)

    @progress.setter
    def progress(self, value: float) -> None:
        self._progress.fill_(min(max(float(value), 0.0), 1.0))

    def probability(self) -> float:
        """Each affine transform's probability now (the schedule at ``progress``)."""
        if self.schedule == "constant":
            return self.affine_prob
        c = self.schedule_c
        return self.affine_prob * (1 - math.exp(-c * self.progress)) / (1 - math.exp(-c))

    def draw_affine(self) -> tuple[float, float, float, float, float, float] | None:
        """Random (rotation rad, zoom, shear x rad, shear y rad, shift x, shift y), the
        shifts as fractions of the field of view; None when no transform was drawn."""
        p = self.probability()

        def drawn(limit: float) -> float:
            if limit <= 0 or not bool(torch.rand(()) < p):
                return 0.0
            return float(torch.empty(()).uniform_(-limit, limit))

        rotation = math.radians(drawn(self.rotation_deg))
        zoom = 1.0 + drawn(self.scaling)
        shear_x, shear_y = (math.radians(drawn(self.shearing_deg)) for _ in range(2))
        shift_x, shift_y = drawn(self.translation), drawn(self.translation)
        params = (rotation, zoom, shear_x, shear_y, shift_x, shift_y)
        return None if params == (0.0, 1.0, 0.0, 0.0, 0.0, 0.0) else params

    def __call__(self, images: Tensor, grid: tuple[int, int]) -> Tensor:
        """images: complex (C, H, W) coil images -> complex (C, *grid): flipped, affinely
        transformed (every coil alike), cropped."""
        for dim in (-1, -2):
            if self.flip_prob > 0 and torch.rand(()) < self.flip_prob:
                images = images.flip(dim)
        if self.affine:
            params = self.draw_affine()
            if params is not None:
                images = affine_transform(images, *params)
        if not self.random_crop:
            return center_crop(images, grid)
        for dim, size in zip((-2, -1), grid, strict=True):
            spare = images.shape[dim] - size
            if spare > 0:
                start = int(torch.randint(spare + 1, ()))
                images = images.narrow(dim, start, size)
        return center_crop(images, grid)  # pads an axis that was smaller than the grid


def affine_transform(
    images: Tensor,
    rotation: float = 0.0,
    zoom: float = 1.0,
    shear_x: float = 0.0,
    shear_y: float = 0.0,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
) -> Tensor:
    """complex (C, H, W) -> complex (C, H, W): every coil image resampled (bilinear, zeros
    outside the field of view) under one affine map about the image centre, in pixel
    units (so a rotation is a rotation whatever the aspect ratio). rotation, shears:
    radians; zoom: > 1 magnifies; shifts: fractions of the field of view."""
    c, h, w = images.shape
    cos, sin = math.cos(rotation), math.sin(rotation)
    # Output pixel -> input pixel (pixel units about the centre): the inverse of
    # zoom . rotation . shear, then the shift.
    forward = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64) @ torch.tensor(
        [[1.0, math.tan(shear_x)], [math.tan(shear_y), 1.0]], dtype=torch.float64
    )
    inverse = torch.linalg.inv(forward * zoom)
    # affine_grid's coordinates are normalised per axis ([-1, 1] over W and H): convert.
    to_pixels = torch.diag(torch.tensor([w / 2, h / 2], dtype=torch.float64))
    theta = torch.zeros(1, 2, 3, dtype=torch.float64)
    theta[0, :, :2] = torch.linalg.inv(to_pixels) @ inverse @ to_pixels
    shift = torch.tensor([2 * shift_x, 2 * shift_y], dtype=torch.float64)  # normalised units
    theta[0, :, 2] = -theta[0, :, :2] @ shift
    real = torch.view_as_real(images).permute(0, 3, 1, 2).reshape(1, 2 * c, h, w)
    sampling = F.affine_grid(theta.to(real.dtype), [1, 2 * c, h, w], align_corners=False)
    out = F.grid_sample(real, sampling, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.view_as_complex(out.reshape(c, 2, h, w).permute(0, 2, 3, 1).contiguous())


NO_AUGMENTATION = Augmentation()
