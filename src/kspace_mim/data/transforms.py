"""From a raw fastMRI slice to a model sample on the model grid (DESIGN.md's data flow).

raw slice -> model grid (image-domain crop) -> undersampling mask -> coil compression
-> per-slice scale. Everything the model sees is in "model units"; ``scale`` and
``offset`` bring it back exactly (:func:`to_original_units`) before any image or metric.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from kspace_mim.data.augment import NO_AUGMENTATION, Augmentation
from kspace_mim.data.masks import NoMask, file_mask, seed_from_fname
from kspace_mim.data.mri_data import DataError
from kspace_mim.physics import (
    apply_mask,
    center_crop,
    coil_compression_matrix,
    compress_coils,
    crop_image_domain,
    fft2c,
    ifft2c,
    rss,
)


class KspaceSample(NamedTuple):
    """One slice ready for a model. Shapes are per slice; a batch adds a leading B.

    masked_kspace: complex (C, H, W) acquired samples, model units, true zeros elsewhere.
    mask: bool (1, H, W), True where acquired.
    kspace: complex (C, H, W) fully sampled k-space, model units (zeros when unknown).
    target: float (rh, rw) target image in original units ((0, 0) when the file has none).
    scale: float () and offset: complex (C,): original = model * scale (+ offset image).
    max_value: float (), the volume's target maximum (fastMRI's data range), 0 if unknown.
    crop_size: long (2,), the recon size on this grid (images are cropped to it).
    """

    masked_kspace: Tensor
    mask: Tensor
    kspace: Tensor
    target: Tensor
    scale: Tensor
    offset: Tensor
    max_value: Tensor
    crop_size: Tensor
    fname: str
    slice_num: int
    num_low_frequencies: int


def to_original_units(kspace: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    """Undo the per-slice normalisation. kspace: complex (B, C, H, W); scale (B,); offset (B, C)."""
    out = kspace * scale.reshape(-1, 1, 1, 1)
    if offset.abs().sum() > 0:
        h, w = kspace.shape[-2:]
        out = out.clone()
        out[..., h // 2, w // 2] += offset * math.sqrt(h * w)
    return out


def kspace_to_image(kspace: Tensor, crop_size: tuple[int, int] | None = None) -> Tensor:
    """k-space complex (B, C, H, W) -> RSS magnitude image (B, h, w), cropped when asked."""
    image = rss(ifft2c(kspace))
    return image if crop_size is None else center_crop(image, crop_size)


class KspaceTransform:
    """fastMRI-style transform ``(kspace, mask, target, attrs, fname, slice_num) -> KspaceSample``.

    Args:
        mask_func: a mask from :mod:`kspace_mim.data.masks` (ignored for files
            that bring their own ``mask``: test / challenge files).
        crop_size: model grid (crop_size x crop_size); None: the header's recon size.
        virtual_coils: compress to this many coils (SVD); None keeps the file's coils.
        augmentation: training-time augmentation (none by default).
        deterministic: seed masks from the file name (validation / test), as fastMRI does;
            otherwise masks come from torch's RNG (seeded per worker and rank).
    """

    def __init__(
        self,
        mask_func: Any = None,
        crop_size: int | None = None,
        virtual_coils: int | None = None,
        augmentation: Augmentation | None = None,
        deterministic: bool = True,
    ):
        self.mask_func = mask_func if mask_func is not None else NoMask()
        self.crop_size = crop_size
        self.virtual_coils = virtual_coils
        self.augmentation = augmentation or NO_AUGMENTATION
        self.deterministic = deterministic

    def __call__(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None,
        target: np.ndarray | None,
        attrs: dict[str, Any],
        fname: str,
        slice_num: int,
    ) -> KspaceSample:
        where = f"{fname}: slice {slice_num}"
        k = torch.from_numpy(np.ascontiguousarray(kspace)).to(torch.complex64)
        if k.ndim == 2:  # singlecoil
            k = k.unsqueeze(0)
        if not torch.any(k != 0):
            raise DataError(f"{where}: k-space is all zero")
        recon = tuple(attrs["recon_size"][:2])
        grid = (self.crop_size, self.crop_size) if self.crop_size else recon
        crop = (min(recon[0], grid[0]), min(recon[1], grid[1]))

        if mask is not None:
            # The file was acquired undersampled: only the readout (rows) may be cropped,
            # which never touches the sampled columns, so its own mask stays exact.
            k = crop_image_domain(k, (grid[0], None))
            sampled = file_mask(mask, (attrs["padding_left"], attrs["padding_right"]))
            sampled = sampled.expand(k.shape[-2], -1)
            num_low = int(attrs.get("num_low_frequency", 0))
        else:
            images = self.augmentation(ifft2c(k), grid)
            k = fft2c(images)
            seed = seed_from_fname(fname) if self.deterministic else int(torch.randint(2**31, ()))
            sampled, num_low, _ = self.mask_func(tuple(k.shape[-2:]), seed)
            sampled = sampled.expand(k.shape[-2], -1) if sampled.shape[0] == 1 else sampled
        sampled = sampled.unsqueeze(0)

        if target is not None and not self.augmentation.geometric:
            target_t = center_crop(torch.from_numpy(np.asarray(target, np.float32)), crop)
        elif mask is None:  # fully sampled: the target is the image of this grid
            target_t = kspace_to_image(k.unsqueeze(0), crop)[0]
        else:
            target_t = torch.zeros(0, 0)

        masked = apply_mask(k, sampled)
        if self.virtual_coils and k.shape[0] > 1:
            matrix = coil_compression_matrix(masked, self.virtual_coils)
            masked, k = compress_coils(masked, matrix), compress_coils(k, matrix)

        # Per-slice normalisation from the acquired samples alone, without an FFT
        # (Parseval): a coil image's mean is its k=0 sample / sqrt(HW), and the images'
        # energy is the k-space energy.
        h, w = k.shape[-2:]
        energy = masked.abs().square().sum()
        if self.augmentation.normalize:
            offset = masked[:, h // 2, w // 2] / math.sqrt(h * w)
            centred = energy - masked[:, h // 2, w // 2].abs().square().sum()
            scale = (centred.clamp_min(0) / masked.numel()).sqrt()
        else:
            offset = torch.zeros(k.shape[0], dtype=k.dtype)
            scale = (energy / (h * w)).sqrt()  # RMS of the zero-filled RSS image
        if not torch.isfinite(scale) or scale <= 0:
            raise DataError(f"{where}: acquired k-space is zero, cannot normalise")
        full = k / scale if mask is None else torch.zeros_like(k)
        masked = masked / scale
        if self.augmentation.normalize:
            # Subtracting the mean image changes only k=0 (acquired, so no leak elsewhere).
            dc = offset * math.sqrt(h * w) / scale
            masked[:, h // 2, w // 2] -= dc * sampled[0, h // 2, w // 2]
            if mask is None:
                full[:, h // 2, w // 2] -= dc

        max_value = attrs.get("max", float(target.max()) if target is not None else 0.0)
        return KspaceSample(
            masked_kspace=masked,
            mask=sampled,
            kspace=full,
            target=target_t,
            scale=scale.float(),
            offset=offset,
            max_value=torch.tensor(float(max_value)),
            crop_size=torch.tensor(crop),
            fname=fname,
            slice_num=slice_num,
            num_low_frequencies=num_low,
        )
