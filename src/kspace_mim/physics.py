"""MRI physics on complex tensors: centred FFTs, coil combination, data consistency.

Convention (one boundary for the whole package): k-space and coil images are
complex tensors ``(..., coils, rows, cols)``; models see real channels made by
:func:`complex_to_channels`. The FFTs are fastMRI's convention (centred, orthonormal)
and give bit-identical numbers (tested against ``fastmri.fft2c`` / ``ifft2c``).
"""

from __future__ import annotations

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

    kspace: complex (..., H, W). ``None`` keeps an axis untouched. Only the axes
    that change are transformed, so a readout-only crop (``(h, None)``) never
    touches the phase-encode axis and Cartesian column masks stay exact.
    """
    h, w = shape
    dims = [
        d
        for d, s, n in ((-2, h, kspace.shape[-2]), (-1, w, kspace.shape[-1]))
        if s not in (None, n)
    ]
    if not dims:
        return kspace
    # 1-D centred orthonormal transforms on the changed axes only (torch.fft;
    # fastMRI's helpers are 2-D only): fftshift(fftn(ifftshift(x), norm="ortho")).
    image = torch.fft.fftshift(
        torch.fft.ifftn(torch.fft.ifftshift(kspace, dim=dims), dim=dims, norm="ortho"), dim=dims
    )
    image = center_crop(image, (h or kspace.shape[-2], w or kspace.shape[-1]))
    return torch.fft.fftshift(
        torch.fft.fftn(torch.fft.ifftshift(image, dim=dims), dim=dims, norm="ortho"), dim=dims
    )


def apply_mask(kspace: Tensor, mask: Tensor) -> Tensor:
    """Zero the samples where ``mask`` is False, with true zeros (no ``-0.0`` sign leak)."""
    return torch.where(
        mask.bool(), kspace, torch.zeros((), dtype=kspace.dtype, device=kspace.device)
    )


def data_consistency(predicted: Tensor, acquired: Tensor, mask: Tensor) -> Tensor:
    """Put the acquired samples back: ``acquired`` where ``mask``, ``predicted`` elsewhere."""
    return torch.where(mask.bool(), acquired, predicted)


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

    kspace: complex (C, H, W) acquired samples. Returns the (V, C) matrix whose
    rows are the V dominant left singular vectors of the coil-by-sample matrix,
    so ``compressed = A @ kspace``. With V >= C the transform is unitary (extra
    virtual coils are zero) and root-sum-of-squares images are preserved exactly.
    Hand-written: neither fastmri nor torch ships a coil compression.
    """
    coils = kspace.shape[0]
    samples = kspace.reshape(coils, -1)
    if virtual_coils >= coils:
        eye = torch.eye(coils, dtype=kspace.dtype, device=kspace.device)
        return torch.cat([eye, eye.new_zeros(virtual_coils - coils, coils)])
    # Left singular vectors from the (C, C) covariance: cheap for any sample count.
    cov = samples @ samples.conj().T
    _, eigvecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    return eigvecs[:, -virtual_coils:].flip(-1).conj().T


def compress_coils(kspace: Tensor, matrix: Tensor) -> Tensor:
    """Apply a (V, C) compression matrix to complex (C, H, W) k-space -> (V, H, W)."""
    return torch.einsum("vc,chw->vhw", matrix, kspace)
