"""From a raw fastMRI slice to a model sample on the model grid (docs/design.md, "Data flow").

raw slice -> model grid (image-domain crop) -> undersampling mask -> coil compression
-> per-slice scale. Everything the model sees is in "model units"; ``scale`` and
``offset`` bring it back exactly (:func:`kspace_mim.physics.to_original_units`) before
any image or metric.

Two steps, each where it is cheapest. The transform (in the loader's CPU workers) reads
the slice, draws the mask on the model grid and crops the file's target: no FFT, so it
keeps up with the bare h5 read (``python -m kspace_mim.bench data``). *Preparing* a
batch (grid crop, masking, coil compression, scaling: the FFT-heavy rest) runs batched
on the accelerator after the transfer (``FastMRIDataModule.on_after_batch_transfer``):

    item = transform(*raw_slice)                        # SliceSample, in the loader
    batch = collate_slices([item, ...])                 # grouped by shape (widths differ)
    sample = prepare_batch(batch, virtual_coils, norm)  # KspaceSample, on the device
    sample = prepare_slice(item, virtual_coils, norm)   # one slice (inspection, notebooks)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate

from kspace_mim.data.augment import NO_AUGMENTATION, Augmentation
from kspace_mim.data.masks import NoMask, exclude_padding, file_mask, seed_from_fname
from kspace_mim.data.mri_data import DataError
from kspace_mim.physics import (
    apply_mask,
    center_crop,
    coil_compression_matrix,
    compress_coils,
    crop_image_domain,
    fft2c,
    ifft2c,
    kspace_to_image,
)


class SliceSample(NamedTuple):
    """What the loader hands over for one slice (no FFT done yet); a batch adds a leading B.

    kspace: complex (C, H, W) as stored in the file (only the acquired samples when the
        file was acquired undersampled), or already on the grid after augmentation;
        (S, C, H, W) with adjacent slices (the slice itself in the middle).
    mask: bool (1, gh, gw), drawn on the model grid (the file's own mask for test files).
    target: float (rh, rw), the file's target cropped to the recon size; (0, 0) when the
        device forms it from the k-space (no target in the file, or augmented) or it is
        unknown (undersampled files).
    undersampled: bool (), whether the file was acquired undersampled (test / challenge).
    Other fields as :class:`KspaceSample`.
    """

    kspace: Tensor
    mask: Tensor
    target: Tensor
    max_value: Tensor
    crop_size: Tensor
    undersampled: Tensor
    fname: str
    slice_num: int
    num_low_frequencies: int


class KspaceSample(NamedTuple):
    """One slice ready for a model. Shapes are per slice; a batch adds a leading B.

    masked_kspace: complex (C, H, W) acquired samples, model units, true zeros elsewhere.
        With S adjacent slices (``data.adjacent_slices``) the coils of the slices are
        stacked, slice by slice: (S * C, H, W), the slice itself in the middle
        (:func:`stack_slice` takes one out).
    mask: bool (1, H, W), True where acquired (the same for every slice of a stack).
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


GRIDS = ("square", "native")
READOUTS = ("keep", "crop")


def check_grid(grid: str, readout: str) -> None:
    """Raise a clear error for an unknown ``data.grid`` / ``data.readout``."""
    if grid not in GRIDS:
        raise ValueError(f"data.grid must be one of {GRIDS}, got {grid!r}")
    if readout not in READOUTS:
        raise ValueError(f"data.readout must be one of {READOUTS}, got {readout!r}")


def model_grid(
    shape: tuple[int, int],
    recon_size: tuple[int, int],
    own_mask: bool,
    grid: str = "square",
    readout: str = "keep",
    crop_size: int | None = None,
) -> tuple[int, int]:
    """The (rows, cols) grid a slice of k-space ``shape`` is reconstructed on.

    ``grid="native"``: the file's own k-space (as fastMRI, PromptMR and HUMUS-Net train):
    its phase-encode width, masks drawn with the padding columns excluded; the readout
    oversampling kept (``readout="keep"``) or cropped to the recon height ("crop").
    ``grid="square"``: ``crop_size`` x ``crop_size`` (the header's recon size when None),
    both axes cropped in the image domain before the mask is drawn; files that bring
    their own mask keep their width (only their readout is cropped).
    """
    check_grid(grid, readout)
    rows, cols = shape
    if grid == "native":
        return (recon_size[0] if readout == "crop" else rows), cols
    square = (crop_size, crop_size) if crop_size else tuple(recon_size)
    return square[0], (cols if own_mask else square[1])


def collate_slices(
    items: Sequence[SliceSample] | Sequence[KspaceSample],
) -> list[SliceSample] | KspaceSample:
    """Collate loader items into one batch per shape, in order of first appearance.

    fastMRI volumes differ in width (368, 372, ...) and coil count, so raw slices of a
    shuffled batch cannot be stacked; each group is stacked on its own and
    :func:`prepare_batch` joins them once they are on the model grid.
    """
    if items and isinstance(items[0], KspaceSample):  # finished in the loader already
        return default_collate(items)
    groups: dict[tuple, list[SliceSample]] = {}
    for item in items:
        key = (
            tuple(item.kspace.shape),
            tuple(item.mask.shape),
            tuple(item.target.shape),
            tuple(item.crop_size.tolist()),
            bool(item.undersampled),
        )
        groups.setdefault(key, []).append(item)
    return [default_collate(group) for group in groups.values()]


def slice_coils(x: Tensor, index: int, slices: int) -> Tensor:
    """The coils of slice ``index`` of a (B, S * C, ...) stack of ``slices`` adjacent slices."""
    coils = x.shape[1] // slices
    return x.narrow(1, index * coils, coils)


def stack_slice(batch: KspaceSample, index: int, slices: int) -> KspaceSample:
    """Slice ``index`` of a stack of ``slices`` adjacent slices (coils stacked slice by
    slice): its own coils of ``masked_kspace``, ``kspace`` and ``offset``."""
    if slices == 1:
        return batch
    return batch._replace(
        **{
            name: slice_coils(getattr(batch, name), index, slices)
            for name in ("masked_kspace", "kspace", "offset")
        }
    )


def _slice_names(batch: SliceSample, which: Tensor) -> str:
    return ", ".join(
        f"{batch.fname[i]}: slice {int(batch.slice_num[i])}" for i in which.nonzero()[:, 0].tolist()
    )


def _as_batch(item: SliceSample) -> SliceSample:
    """One loader item as a batch of one, without copying its k-space (unlike collating)."""
    return SliceSample(
        *(
            value.unsqueeze(0)
            if torch.is_tensor(value)
            else [value]
            if isinstance(value, str)
            else torch.tensor([value])
            for value in item
        )
    )


def _take(batch: SliceSample, i: int) -> SliceSample:
    """Slice ``i`` of a collated loader batch, still batched (a leading dim of 1)."""
    return SliceSample(*(value[i : i + 1] for value in batch))


def _prepare_group(batch: SliceSample, virtual_coils: int | None, normalize: bool) -> KspaceSample:
    """One same-shape group of loader items -> model sample (batched, on any device)."""
    h, w = batch.mask.shape[-2:]
    # Adjacent slices (B, S, C, H, W) are stacked as coils, slice by slice.
    slices = batch.kspace.shape[1] if batch.kspace.ndim == 5 else 1
    kspace = batch.kspace.flatten(1, 2) if batch.kspace.ndim == 5 else batch.kspace
    # Test files only get their readout cropped (the mask's width is the file's).
    k = crop_image_domain(kspace, (h, w))
    # One pass over the (smaller) grid finds NaN / Inf (min and max propagate them, and
    # the FFTs of the crop spread them over the slice) and all-zero slices.
    low, high = torch.aminmax(torch.view_as_real(k).flatten(1), dim=1)
    nonfinite = ~(torch.isfinite(low) & torch.isfinite(high))
    if nonfinite.any():
        raise DataError(f"{_slice_names(batch, nonfinite)}: k-space contains NaN or Inf")
    empty = (low == 0) & (high == 0)
    if empty.any():
        raise DataError(f"{_slice_names(batch, empty)}: k-space is all zero")
    undersampled = bool(batch.undersampled[0])
    target = batch.target
    if target.shape[-1] == 0 and not undersampled:  # fully sampled: the image of this grid
        crop = (int(batch.crop_size[0, 0]), int(batch.crop_size[0, 1]))
        target = kspace_to_image(k.unflatten(1, (slices, -1))[:, slices // 2], crop)

    mask = batch.mask
    masked = apply_mask(k, mask)
    if virtual_coils and k.shape[1] > slices:
        # One matrix per stack, from its middle slice, applied to every slice alike.
        stacks = masked.unflatten(1, (slices, -1))
        matrix = coil_compression_matrix(stacks[:, slices // 2], virtual_coils)[:, None]
        masked = compress_coils(stacks, matrix).flatten(1, 2)
        k = compress_coils(k.unflatten(1, (slices, -1)), matrix).flatten(1, 2)

    # Per-slice normalisation from the acquired samples alone, without an FFT
    # (Parseval): a coil image's mean is its k=0 sample / sqrt(HW), and the images'
    # energy is the k-space energy.
    energy = torch.linalg.vector_norm(torch.view_as_real(masked).flatten(1), dim=1).square()
    dc = masked[..., h // 2, w // 2]  # (B, C)
    if normalize:
        offset = dc / math.sqrt(h * w)
        centred = energy - dc.abs().square().sum(1)
        scale = (centred.clamp_min(0) / masked[0].numel()).sqrt()
    else:
        offset = torch.zeros_like(dc)
        scale = (energy / (h * w)).sqrt()  # RMS of the zero-filled RSS image
    bad = ~torch.isfinite(scale) | (scale <= 0)
    if bad.any():
        raise DataError(f"{_slice_names(batch, bad)}: acquired k-space is zero, cannot normalise")
    per_slice = scale.reshape(-1, 1, 1, 1)
    full = torch.zeros_like(k) if undersampled else k / per_slice
    masked = masked.div_(per_slice)  # in place: masked is this function's own tensor
    if normalize:
        # Subtracting the mean image changes only k=0 (acquired, so no leak elsewhere).
        dc_model = offset * math.sqrt(h * w) / scale[:, None]
        masked[..., h // 2, w // 2] -= dc_model * mask[:, 0, h // 2, w // 2, None]
        if not undersampled:
            full[..., h // 2, w // 2] -= dc_model
    return KspaceSample(
        masked_kspace=masked,
        mask=mask,
        kspace=full,
        target=target,
        scale=scale.float(),
        offset=offset,
        max_value=batch.max_value,
        crop_size=batch.crop_size,
        fname=list(batch.fname),
        slice_num=batch.slice_num,
        num_low_frequencies=batch.num_low_frequencies,
    )


def prepare_batch(
    batch: SliceSample | Sequence[SliceSample] | KspaceSample,
    virtual_coils: int | None = None,
    normalize: bool = False,
) -> KspaceSample:
    """Loader batch(es) from :func:`collate_slices` -> one model batch, on their device.

    Prepares the k-space for a model: grid crop (FFTs), mask, coil compression, scale,
    batched where the batch lives (the GPU in training). A :class:`KspaceSample` (already
    prepared in the loader) passes unchanged.
    """
    if isinstance(batch, KspaceSample):
        return batch
    groups = [batch] if isinstance(batch, SliceSample) else list(batch)
    if groups and groups[0].kspace.device.type == "cpu":
        # A CPU is faster slice by slice: a batch of knee-sized slices outgrows its caches
        # (measured: 48 vs 58 ms a slice, 15x640x368). Accelerators take the whole batch.
        groups = [_take(g, i) for g in groups for i in range(len(g.fname))]
    parts = [_prepare_group(g, virtual_coils, normalize) for g in groups]
    if len(parts) == 1:
        return parts[0]
    shapes = {(tuple(p.masked_kspace.shape[1:]), tuple(p.target.shape[1:])) for p in parts}
    if len(shapes) > 1:
        raise DataError(
            "a batch mixes model grids or coil counts (coils, rows, cols / target): "
            f"{sorted(shapes)}; set data.crop_size and data.virtual_coils, or batch size 1"
        )

    def join(values: list) -> Any:
        if isinstance(values[0], list):
            return [v for value in values for v in value]
        return torch.cat(values)

    return KspaceSample(*(join([p[i] for p in parts]) for i in range(len(KspaceSample._fields))))


def prepare_slice(
    item: SliceSample | KspaceSample, virtual_coils: int | None = None, normalize: bool = False
) -> KspaceSample:
    """One loader item -> its model sample, with per-slice shapes (:func:`prepare_batch`).
    An item already prepared in the loader passes unchanged."""
    if isinstance(item, KspaceSample):
        return item
    return unbatch(prepare_batch(_as_batch(item), virtual_coils, normalize))


def unbatch(batch: KspaceSample, i: int = 0) -> KspaceSample:
    """Slice ``i`` of a model batch, with per-slice shapes (for inspection and plots)."""
    fields = {name: value[i] for name, value in zip(KspaceSample._fields, batch, strict=True)}
    for name in ("slice_num", "num_low_frequencies"):
        fields[name] = int(fields[name])
    return KspaceSample(**fields)


class KspaceTransform:
    """fastMRI-style transform ``(kspace, mask, target, attrs, fname, slice_num) -> SliceSample``.

    Called per slice in the loader: draws the mask on the model grid and crops the
    target (no FFT); :func:`prepare_batch` does the rest on a batch, on the device.

    Args:
        mask_func: a mask from :mod:`kspace_mim.data.masks` (ignored for files
            that bring their own ``mask``: test / challenge files).
        crop_size: model grid (crop_size x crop_size); None: the header's recon size.
        virtual_coils: compress to this many coils (SVD); None keeps the file's coils.
        augmentation: training-time augmentation (none by default). Flips and random
            crops need the coil images, so those slices are moved to the grid in the loader.
        deterministic: seed masks from the file name (validation / test), as fastMRI does;
            otherwise masks come from torch's RNG (seeded per worker and rank).
        prepare_in_loader: return the prepared :class:`KspaceSample` per slice instead
            (:func:`prepare_slice` in the loader): right when training on a CPU, where
            the workers do the FFTs in parallel with the training step.
        adjacent_slices: N > 0 for k-space read with N neighbours on either side
            (``SliceDataset(adjacent_slices=N)``); one mask for the whole stack.
        grid: the model grid (:func:`model_grid`): "square" (``crop_size``) or
            "native" (the file's own width, padding columns never sampled).
        readout: on the native grid, "keep" the 2x readout oversampling or "crop" it.
    """

    def __init__(
        self,
        mask_func: Any = None,
        crop_size: int | None = None,
        virtual_coils: int | None = None,
        augmentation: Augmentation | None = None,
        deterministic: bool = True,
        prepare_in_loader: bool = False,
        adjacent_slices: int = 0,
        grid: str = "square",
        readout: str = "keep",
    ):
        check_grid(grid, readout)  # a bad name fails here, not per slice
        self.grid, self.readout = grid, readout
        self.adjacent_slices = adjacent_slices
        self.mask_func = mask_func if mask_func is not None else NoMask()
        self.prepare_in_loader = prepare_in_loader
        self.crop_size = crop_size
        self.virtual_coils = virtual_coils
        self.augmentation = augmentation or NO_AUGMENTATION
        self.deterministic = deterministic

    @property
    def normalize(self) -> bool:
        """Whether samples are normalised per coil image (``augmentation=normalize``)."""
        return bool(self.augmentation.normalize)

    def __call__(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None,
        target: np.ndarray | None,
        attrs: dict[str, Any],
        fname: str,
        slice_num: int,
    ) -> SliceSample | KspaceSample:
        """Read result -> mask drawn on the model grid, target cropped; no FFT (unless
        augmenting or ``prepare_in_loader``, which returns the prepared sample)."""
        k = torch.from_numpy(kspace)  # no copy: the read is the only pass over the slice
        if k.dtype != torch.complex64:
            k = k.to(torch.complex64)
        if self.adjacent_slices:  # (S, [C,] H, W) -> (S, C, H, W)
            k = k.reshape(2 * self.adjacent_slices + 1, -1, *k.shape[-2:])
        elif k.ndim == 2:  # singlecoil
            k = k.unsqueeze(0)
        recon = tuple(attrs["recon_size"][:2])
        padding = (attrs["padding_left"], attrs["padding_right"])
        grid = model_grid(
            tuple(k.shape[-2:]), recon, mask is not None, self.grid, self.readout, self.crop_size
        )
        # The recon size, or less when a square grid is smaller than it.
        limit = (self.crop_size,) * 2 if self.grid == "square" and self.crop_size else grid
        crop = (min(recon[0], limit[0]), min(recon[1], limit[1]))

        if mask is not None:
            # The file was acquired undersampled: only the readout (rows) may be cropped,
            # which never touches the sampled columns, so its own mask stays exact.
            sampled = file_mask(mask, padding)
            sampled = sampled.expand(grid[0], -1)
            num_low = int(attrs.get("num_low_frequency", 0))
        else:
            if self.augmentation.geometric:
                k = fft2c(self.augmentation(ifft2c(k), grid))
            seed = seed_from_fname(fname) if self.deterministic else int(torch.randint(2**31, ()))
            sampled, num_low, _ = self.mask_func(grid, seed)
            if self.grid == "native":
                # fastMRI's apply_mask(padding=...): columns outside the encoding limits
                # were never acquired, so the mask never samples them.
                sampled = exclude_padding(sampled, padding)
            sampled = sampled.expand(grid[0], -1) if sampled.shape[0] == 1 else sampled

        if target is not None and not self.augmentation.geometric:
            target_t = center_crop(torch.from_numpy(np.asarray(target, np.float32)), crop)
        else:  # formed on the device from the fully sampled k-space (or unknown)
            target_t = torch.zeros(0, 0)
        max_value = attrs.get("max", float(target.max()) if target is not None else 0.0)
        item = SliceSample(
            kspace=k,
            mask=sampled.unsqueeze(0),
            target=target_t,
            max_value=torch.tensor(float(max_value)),
            crop_size=torch.tensor(crop),
            undersampled=torch.tensor(mask is not None),
            fname=fname,
            slice_num=slice_num,
            num_low_frequencies=num_low,
        )
        if self.prepare_in_loader:
            return prepare_slice(item, self.virtual_coils, self.normalize)
        return item
