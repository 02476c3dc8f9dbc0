"""What a model family is to the reconstruction system, and the helpers it forms its output with.

A family is an ``nn.Module`` built from its own arguments plus :class:`NetFacts` (what the
data says: coils, grid, slices per stack) and implementing ``reconstruct(batch) ->
ReconOutput``. Optional class attributes tell the system what it can do:

- ``has_kspace_output`` (default True): the output passes through k-space (SSDU's loss lives
  there); False for image-only networks (the U-Net).
- ``varying_coils`` (default True): one network takes any coil count (coils meet it only
  through coil maps or a coil combination).

A family without trainable parameters (zero-filling, compressed sensing) is validated, never
trained. The system (:class:`kspace_mim.modules.ReconstructionModule`) owns losses, metrics,
optimiser and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from kspace_mim.data.transforms import KspaceSample, slice_coils, stack_slice
from kspace_mim.physics import data_consistency, form_image


@dataclass(frozen=True)
class NetFacts:
    """What the data fixes about a network. num_coils: input coils (slices x coils with
    adjacent slices); img_size: the model grid (H, W); slices: slices per input stack."""

    num_coils: int
    img_size: tuple[int, int]
    slices: int = 1


class ReconOutput(NamedTuple):
    """image: (B, h, w) original units, cropped to the recon size.
    kspace: complex (B, C, H, W) model units after data consistency (None: image-only model).
    prediction: complex (B, C, H, W) model units before data consistency (None likewise).
    normalization: (mean, std), each (B, 1, 1), of an image model's input normalisation,
        which its image L1 is computed in (the U-Net's, as fastMRI's)."""

    image: Tensor
    kspace: Tensor | None = None
    prediction: Tensor | None = None
    normalization: tuple[Tensor, Tensor] | None = None


class Family(Protocol):
    """The interface a network offers the system (see the module docstring)."""

    def reconstruct(self, batch: KspaceSample) -> ReconOutput: ...


def centre_slice(batch: KspaceSample, slices: int) -> KspaceSample:
    """The slice being reconstructed (the middle of a stack of adjacent slices)."""
    return stack_slice(batch, slices // 2, slices)


def unrolled_output(
    batch: KspaceSample, kspace: Tensor, slices: int, prediction: Tensor | None = None
) -> ReconOutput:
    """k-space already consistent with the data (an unrolled network's soft data consistency
    in every cascade) -> image in original units. FFTs in float32 with autocast off: bf16
    FFTs do not exist and fp16 cuFFT wants powers of two."""
    with torch.autocast(kspace.device.type, enabled=False):
        kspace = slice_coils(kspace.to(torch.complex64), slices // 2, slices)
        prediction = kspace if prediction is None else slice_coils(prediction, slices // 2, slices)
        centre = centre_slice(batch, slices)
        image = form_image(kspace, centre.scale, centre.offset, centre.crop_size)
    return ReconOutput(image, kspace, prediction)


def kspace_output(batch: KspaceSample, prediction: Tensor, slices: int) -> ReconOutput:
    """Predicted k-space (model units, complex (B, C, H, W)) -> hard data consistency ->
    image in original units."""
    with torch.autocast(prediction.device.type, enabled=False):
        prediction = prediction.to(torch.complex64)
        kspace = data_consistency(prediction, batch.masked_kspace, batch.mask)
    return unrolled_output(batch, kspace, slices, prediction)


def zero_filled_image(batch: KspaceSample, slices: int, index: int | None = None) -> Tensor:
    """(B, h, w) zero-filled image of the middle slice (or of slice ``index`` of the stack)."""
    index = slices // 2 if index is None else index
    one = stack_slice(batch, index, slices)
    return form_image(one.masked_kspace, one.scale, one.offset, one.crop_size)


def common_low_frequencies(batch: KspaceSample) -> int | None:
    """The centre width fastMRI's sensitivity model estimates the coil maps from.

    The slices' fully sampled centre when they agree; None for Cartesian masks that
    differ (fastMRI then reads each slice's centre off its mask); every column for
    masks that are not Cartesian (SimMIM's patch masks), where a centre read off one row
    can be empty and the maps 0 / 0.
    """
    counts = torch.as_tensor(batch.num_low_frequencies).reshape(-1)
    if counts.numel() and bool((counts == counts[0]).all()) and int(counts[0]) > 0:
        return int(counts[0])
    mask = batch.mask
    if bool((mask == mask[..., :1, :]).all()):  # every row alike: Cartesian
        return None
    return mask.shape[-1]
