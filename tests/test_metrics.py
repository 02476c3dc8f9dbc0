"""Metrics equal fastmri.evaluate on the same arrays; per-volume aggregation is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastmri import evaluate

from kspace_mim.metrics import VolumeMetrics, kspace_ssim, volume_metrics


@pytest.fixture
def volumes():
    rng = np.random.default_rng(0)
    out = {}
    for name in ("a.h5", "b.h5"):
        target = rng.random((3, 24, 20)).astype(np.float32)
        out[name] = (target, (target + 0.1 * rng.standard_normal(target.shape)).astype(np.float32))
    return out


def test_volume_metrics_are_fastmris(volumes):
    """fastMRI's definitions written out: NMSE = ||t - p||^2 / ||t||^2, PSNR against the
    volume maximum, SSIM per slice (skimage, data range = volume maximum) averaged."""
    from skimage.metrics import structural_similarity

    target, pred = volumes["a.h5"]
    pred = pred * 1.3  # the prediction's maximum differs from the target's
    ours = volume_metrics(target, pred)
    t, p = target.astype(np.float64), pred.astype(np.float64)
    top = float(target.max())
    assert ours["nmse"] == pytest.approx(((t - p) ** 2).sum() / (t**2).sum(), rel=1e-6)
    assert ours["psnr"] == pytest.approx(10 * np.log10(top**2 / ((t - p) ** 2).mean()), rel=1e-6)
    ssim = np.mean([structural_similarity(a, b, data_range=top) for a, b in zip(t, p, strict=True)])
    assert ours["ssim"] == pytest.approx(ssim, rel=1e-5)
    assert ours["ssim"] == pytest.approx(evaluate.ssim(target, pred).item(), rel=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        volume_metrics(target, pred[:2])


def test_streamed_slices_equal_whole_volumes(volumes):
    metrics = VolumeMetrics()
    for name, (target, pred) in volumes.items():
        for s in reversed(range(3)):  # any order
            metrics.update(name, s, target[s], pred[s], float(target.max()))
    result = metrics.compute()
    assert result["num_volumes"] == 2 and result["num_slices"] == 6
    for name, (target, pred) in volumes.items():
        expected = volume_metrics(target, pred)
        for key in ("nmse", "psnr", "ssim"):
            assert result["volumes"][name][key] == pytest.approx(expected[key], rel=1e-6)
    assert result["ssim"] == pytest.approx(np.mean([v["ssim"] for v in result["volumes"].values()]))


def test_ranks_merge_without_double_counting(volumes):
    whole, rank0, rank1 = VolumeMetrics(), VolumeMetrics(), VolumeMetrics()
    target, pred = volumes["a.h5"]
    for s in range(3):
        whole.update("a.h5", s, target[s], pred[s], 1.0)
        (rank0 if s < 2 else rank1).update("a.h5", s, target[s], pred[s], 1.0)
    rank1.update("a.h5", 0, target[0], pred[0], 1.0)  # a slice repeated by padding
    rank0.merge(rank1.state())
    assert rank0.compute() == whole.compute()


def test_kspace_ssim_moves():
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(2, 32, 32, dtype=torch.complex64)
    image[:, 8:24, 10:22] = 1 + torch.rand(2, 16, 12, generator=g)
    kspace = torch.fft.fftshift(torch.fft.fft2(image), dim=(-2, -1))
    assert kspace_ssim(kspace, kspace) == pytest.approx(1.0)
    masked = kspace.clone()
    masked[..., ::2] = 0
    worse = kspace_ssim(masked, kspace)
    assert worse < 0.9
    masked[..., ::4] = kspace[..., ::4]
    assert worse < kspace_ssim(masked, kspace) < 1.0
