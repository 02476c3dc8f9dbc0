"""physics.py agrees with fastMRI and keeps its invariants."""

from __future__ import annotations

import fastmri
import numpy as np
import pytest
import torch
from fastmri.data.transforms import center_crop as fastmri_center_crop

from kspace_mim import physics


@pytest.fixture
def kspace():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 5, 24, 18, dtype=torch.complex64, generator=g)


def test_fft_is_fastmris(kspace):
    ours = physics.ifft2c(kspace)
    theirs = fastmri.ifft2c(torch.view_as_real(kspace))
    torch.testing.assert_close(torch.view_as_real(ours), theirs, rtol=0, atol=0)
    torch.testing.assert_close(physics.fft2c(ours), kspace, rtol=1e-5, atol=1e-5)


def test_rss_is_fastmris(kspace):
    image = physics.ifft2c(kspace)
    theirs = fastmri.rss(fastmri.complex_abs(torch.view_as_real(image)), dim=1)
    torch.testing.assert_close(physics.rss(image), theirs)


def test_center_crop_matches_fastmri_and_pads():
    x = torch.arange(11 * 14.0).reshape(11, 14)
    torch.testing.assert_close(physics.center_crop(x, (6, 8)), fastmri_center_crop(x, (6, 8)))
    padded = physics.center_crop(x, (15, 20))
    assert padded.shape == (15, 20)
    torch.testing.assert_close(physics.center_crop(padded, (11, 14)), x)
    assert padded.sum() == x.sum()


def test_channels_roundtrip_exact(kspace):
    channels = physics.complex_to_channels(kspace)
    assert channels.shape == (2, 10, 24, 18) and channels.dtype == torch.float32
    torch.testing.assert_close(channels[:, 2], kspace[:, 1].real, rtol=0, atol=0)
    torch.testing.assert_close(channels[:, 3], kspace[:, 1].imag, rtol=0, atol=0)
    assert torch.equal(physics.channels_to_complex(channels), kspace)
    with pytest.raises(ValueError, match="even number of channels"):
        physics.channels_to_complex(channels[:, :3])


def test_apply_mask_writes_true_zeros():
    k = torch.complex(-torch.ones(4, 4), -torch.ones(4, 4))
    mask = torch.zeros(1, 4, dtype=torch.bool)
    masked = physics.apply_mask(k, mask)
    assert not torch.signbit(torch.view_as_real(masked)).any()
    # multiplying fastMRI's real (..., 2) view would leak the sign of every removed sample
    assert torch.signbit(torch.view_as_real(k) * mask.float()[..., None]).all()


def test_data_consistency_keeps_acquired(kspace):
    mask = torch.rand(1, 1, 24, 18, generator=torch.Generator().manual_seed(1)) > 0.5
    pred = torch.zeros_like(kspace)
    out = physics.data_consistency(pred, kspace, mask)
    assert torch.equal(out[mask.expand_as(out)], kspace[mask.expand_as(kspace)])
    assert (out[~mask.expand_as(out)] == 0).all()


def test_readout_crop_keeps_column_masks_exact(kspace):
    """Cropping the readout in the image domain commutes with a column mask."""
    mask = torch.zeros(1, 18, dtype=torch.bool)
    mask[:, ::3] = True
    cropped_then_masked = physics.apply_mask(physics.crop_image_domain(kspace, (12, None)), mask)
    masked_then_cropped = physics.crop_image_domain(physics.apply_mask(kspace, mask), (12, None))
    torch.testing.assert_close(cropped_then_masked, masked_then_cropped, rtol=0, atol=1e-6)
    assert (masked_then_cropped[..., ~mask[0]].abs() < 1e-6).all()


@pytest.mark.parametrize("shape", [(12, 10), (30, 10), (12, 24), (24, 18)])
def test_image_domain_crop_is_fastmris_2d_round_trip(kspace, shape):
    """Per-axis 1-D transforms equal fastMRI's ifft2c -> crop / pad -> fft2c."""
    moved = physics.crop_image_domain(kspace, shape)
    image = fastmri.ifft2c(torch.view_as_real(kspace))
    image = torch.view_as_real(physics.center_crop(torch.view_as_complex(image), shape))
    expected = torch.view_as_complex(fastmri.fft2c(image))
    assert moved.shape == (*kspace.shape[:-2], *shape)
    torch.testing.assert_close(moved, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("virtual", [5, 7])
def test_coil_compression_is_unitary_when_not_truncating(kspace, virtual):
    matrix = physics.coil_compression_matrix(kspace[0], virtual)
    compressed = physics.compress_coils(kspace[0], matrix)
    assert compressed.shape == (virtual, 24, 18)
    image, image_c = physics.ifft2c(kspace[0]), physics.ifft2c(compressed)
    torch.testing.assert_close(physics.rss(image_c), physics.rss(image), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("virtual", [3, 7])
def test_coil_compression_batched_equals_per_slice(kspace, virtual):
    matrices = physics.coil_compression_matrix(kspace, virtual)
    assert matrices.shape == (2, virtual, 5)
    batched = physics.compress_coils(kspace, matrices)
    for b in range(2):
        alone = physics.compress_coils(
            kspace[b], physics.coil_compression_matrix(kspace[b], virtual)
        )
        torch.testing.assert_close(batched[b], alone, rtol=1e-4, atol=1e-5)


def test_coil_compression_keeps_most_energy():
    """Correlated coils (as real arrays): 3 virtual coils hold almost all of 8 coils' energy."""
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(3, 32, 32, dtype=torch.complex64, generator=g)
    mixing = torch.randn(8, 3, dtype=torch.complex64, generator=g)
    coils = torch.einsum("cs,shw->chw", mixing, sources)
    coils = coils + 1e-3 * torch.randn(coils.shape, dtype=torch.complex64, generator=g)
    matrix = physics.coil_compression_matrix(coils, 3)
    energy = physics.compress_coils(coils, matrix).abs().square().sum()
    assert energy / coils.abs().square().sum() > 0.999
    # rows are orthonormal
    torch.testing.assert_close(
        matrix @ matrix.conj().T, torch.eye(3, dtype=matrix.dtype), rtol=1e-5, atol=1e-5
    )
    assert np.isfinite(energy.item())
