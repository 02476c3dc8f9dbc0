"""MRI physics on complex tensors: centred FFTs, coil combination, data consistency, and
the way from a model's k-space back to an image in original units (one home for it).

Convention (one boundary for the whole package): k-space and coil images are
complex tensors ``(..., coils, rows, cols)``; models see real channels made by
:func:`complex_to_channels`. The FFTs are fastMRI's convention (centred, orthonormal)
and give bit-identical numbers (tested against ``fastmri.fft2c`` / ``ifft2c``).
"""

from __future__ import annotations

import math

import fastmri
import torch
from torch import Tensor


def fft2c(image: Tensor) -> Tensor:
    """Centred orthonormal 2-D FFT, bit-identical to ``fastmri.fft2c``. complex (..., rows, cols).

    fastMRI's helpers shift with ``torch.cat`` on real views, which took 60% of our slice
    transform (profiled on knee-sized slices); ``torch.fft.fftshift`` applies the same
    permutation directly on the complex tensor (equality with fastMRI is tested).
    """
    dims = (-2, -1)
    shifted = torch.fft.ifftshift(image, dim=dims)
    return torch.fft.fftshift(torch.fft.fftn(shifted, dim=dims, norm="ortho"), dim=dims)


def ifft2c(kspace: Tensor) -> Tensor:
    """Centred orthonormal 2-D inverse FFT, bit-identical to ``fastmri.ifft2c``."""
    dims = (-2, -1)
    shifted = torch.fft.ifftshift(kspace, dim=dims)
    return torch.fft.fftshift(torch.fft.ifftn(shifted, dim=dims, norm="ortho"), dim=dims)


def rss(coil_images: Tensor, coil_dim: int = -3) -> Tensor:
    """Root-sum-of-squares magnitude (fastMRI's ``rss_complex``). complex (..., C, H, W) -> real."""
    return fastmri.rss_complex(torch.view_as_real(coil_images), dim=coil_dim)


def center_crop(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """Crop or zero-pad the last two dims of ``x`` symmetrically to ``shape``.

    fastMRI's ``center_crop`` only crops; padding is needed when a model grid
    is wider than a volume, so both live here. The centre follows fastMRI's
    convention (index ``n // 2`` stays the centre), which keeps FFT centres aligned.
    """
    for dim, size in zip((-2, -1), shape, strict=True):
        n = x.shape[dim]
        if n > size:
            start = n // 2 - size // 2
            x = x.narrow(dim, start, size)
        elif n < size:
            before = size // 2 - n // 2
            pad_shape = list(x.shape)
            pad_shape[dim] = size
            out = x.new_zeros(pad_shape)
            out.narrow(dim, before, n).copy_(x)
            x = out
    return x


def crop_image_domain(kspace: Tensor, shape: tuple[int | None, int | None]) -> Tensor:
    """Move k-space onto a new grid by cropping / padding its image (FOV), per axis.

    kspace: complex (..., H, W), any leading batch / coil dims. ``None`` keeps an axis
    untouched. Only the axes that change are transformed, so a readout-only crop
    (``(h, None)``) never touches the phase-encode axis and Cartesian column masks stay
    exact. The axes are done one after the other with 1-D transforms (the 2-D transform
    is separable): on knee-sized slices the readout crop halves the data before the
    second axis, which makes this twice as fast as a 2-D round trip.
    """
    for dim, size in ((-2, shape[0]), (-1, shape[1])):
        if size is None or size == kspace.shape[dim]:
            continue
        # 1-D centred orthonormal transforms (fastMRI's helpers are 2-D only).
        image = torch.fft.fftshift(
            torch.fft.ifft(torch.fft.ifftshift(kspace, dim=dim), dim=dim, norm="ortho"), dim=dim
        )
        target = list(kspace.shape[-2:])
        target[dim] = size
        image = center_crop(image, (target[0], target[1]))
        kspace = torch.fft.fftshift(
            torch.fft.fft(torch.fft.ifftshift(image, dim=dim), dim=dim, norm="ortho"), dim=dim
        )
    return kspace


def apply_mask(kspace: Tensor, mask: Tensor) -> Tensor:
    """Zero the samples where ``mask`` is False, with true zeros (no ``-0.0`` sign leak)."""
    return torch.where(
        mask.bool(), kspace, torch.zeros((), dtype=kspace.dtype, device=kspace.device)
    )


def data_consistency(predicted: Tensor, acquired: Tensor, mask: Tensor) -> Tensor:
    """Put the acquired samples back: ``acquired`` where ``mask``, ``predicted`` elsewhere."""
    return torch.where(mask.bool(), acquired, predicted)


def to_original_units(kspace: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    """Undo the per-slice normalisation of the data pipeline.

    kspace: complex (B, C, H, W) in model units; scale: (B,); offset: complex (B, C), the
    coil images' means that ``augmentation=normalize`` removed (zeros otherwise).
    original = model * scale, plus the mean image back at k=0.
    """
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


def recon_crop(crop_size: Tensor) -> tuple[int, int]:
    """The batch's recon size from its per-slice ``crop_size`` (B, 2); slices must agree."""
    sizes = crop_size.reshape(-1, 2)
    if not (sizes == sizes[0]).all():
        raise ValueError(
            f"a batch mixes recon sizes {sizes.unique(dim=0).tolist()}; use batch_size 1"
        )
    return int(sizes[0, 0]), int(sizes[0, 1])


def form_image(kspace: Tensor, scale: Tensor, offset: Tensor, crop_size: Tensor) -> Tensor:
    """Model k-space complex (B, C, H, W) -> RSS image (B, h, w) in original units,
    cropped to the recon size: what every metric and picture is computed on."""
    return kspace_to_image(to_original_units(kspace, scale, offset), recon_crop(crop_size))


def complex_to_channels(x: Tensor) -> Tensor:
    """complex (B, C, H, W) -> real (B, 2C, H, W), channels [re_0, im_0, re_1, im_1, ...]."""
    real = torch.view_as_real(x)  # (B, C, H, W, 2)
    return real.permute(0, 1, 4, 2, 3).reshape(x.shape[0], -1, *x.shape[-2:])


def channels_to_complex(x: Tensor) -> Tensor:
    """Inverse of :func:`complex_to_channels`: real (B, 2C, H, W) -> complex (B, C, H, W)."""
    b, c2, h, w = x.shape
    if c2 % 2:
        raise ValueError(f"expected an even number of channels (real/imag pairs), got {c2}")
    return torch.view_as_complex(x.reshape(b, c2 // 2, 2, h, w).permute(0, 1, 3, 4, 2).contiguous())


def coil_compression_matrix(kspace: Tensor, virtual_coils: int) -> Tensor:
    """SVD coil compression (Buehrer 2007 / Huang 2008 "software channel compression").

    kspace: complex (..., C, H, W) acquired samples, any leading batch dims. Returns the
    (..., V, C) matrices whose rows are the V dominant left singular vectors of each
    coil-by-sample matrix, so ``compressed = A @ kspace``. With V >= C the transform is
    unitary (extra virtual coils are zero) and root-sum-of-squares images are preserved
    exactly. Hand-written: neither fastmri nor torch ships a coil compression.
    """
    coils = kspace.shape[-3]
    batch = kspace.shape[:-3]
    if virtual_coils >= coils:
        eye = torch.eye(coils, dtype=kspace.dtype, device=kspace.device)
        matrix = torch.cat([eye, eye.new_zeros(virtual_coils - coils, coils)])
        return matrix.expand(*batch, virtual_coils, coils)
    samples = kspace.reshape(*batch, coils, -1)
    # Left singular vectors from the (C, C) covariance: cheap for any sample count.
    cov = samples @ samples.conj().transpose(-1, -2)
    _, eigvecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    return eigvecs[..., -virtual_coils:].flip(-1).conj().transpose(-1, -2)


def compress_coils(kspace: Tensor, matrix: Tensor) -> Tensor:
    """Apply (..., V, C) matrices to complex (..., C, H, W) k-space -> (..., V, H, W)."""
    return torch.einsum("...vc,...chw->...vhw", matrix, kspace)
