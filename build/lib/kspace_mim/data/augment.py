"""K-space-correct augmentation (the paper's section 4.2 study), applied in the image domain.

A flip of the image is not a plain reversal of centred k-space: on an even grid
the sample at index n//2 is k=0, so reversing the array maps k to -k-1 (a
one-sample shift, i.e. a linear phase ramp in the image). We avoid the problem by
flipping and cropping the *coil images* of the fully sampled slice and taking
the FFT afterwards; the undersampling mask is drawn on the result, so masks stay
exact and the target is recomputed from the same images.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kspace_mim.physics import center_crop


class Augmentation:
    """Per-slice augmentation of coil images, random from torch's (per-worker seeded) RNG.

    Args:
        flip_prob: probability of a left-right and (independently) an up-down flip.
        random_crop: crop the model grid at a random position of the field of view
            instead of its centre (needs an image larger than the grid).
        normalize: per-coil-image standardisation (the paper's mean/std) instead of
            dividing by the RMS of the zero-filled RSS image; see ``transforms``.
    """

    def __init__(self, flip_prob: float = 0.0, random_crop: bool = False, normalize: bool = False):
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.flip_prob = flip_prob
        self.random_crop = random_crop
        self.normalize = normalize

    @property
    def geometric(self) -> bool:
        """Whether the image itself changes (so the file's target no longer applies)."""
        return self.flip_prob > 0 or self.random_crop

    def __call__(self, images: Tensor, grid: tuple[int, int]) -> Tensor:
        """images: complex (C, H, W) coil images -> complex (C, *grid), flipped and cropped."""
        for dim in (-1, -2):
            if self.flip_prob > 0 and torch.rand(()) < self.flip_prob:
                images = images.flip(dim)
        if not self.random_crop:
            return center_crop(images, grid)
        for dim, size in zip((-2, -1), grid, strict=True):
            spare = images.shape[dim] - size
            if spare > 0:
                start = int(torch.randint(spare + 1, ()))
                images = images.narrow(dim, start, size)
        return center_crop(images, grid)  # pads an axis that was smaller than the grid


NO_AUGMENTATION = Augmentation()
