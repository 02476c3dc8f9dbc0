"""evaluate: fastMRI-equal metrics, missing and bad predictions named."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from fastmri import evaluate as fastmri_evaluate

from kspace_mim.config import compose
from kspace_mim.metrics import MissingPredictionError, evaluate_folders
from kspace_mim.reconstruct import run as reconstruct


def test_evaluate_equals_fastmri(data_root, tmp_path):
    cfg = compose(
        ["model=zero_filled", f"input={data_root}/multicoil_train", f"output={tmp_path}"],
        config_name="reconstruct",
    )
    assert reconstruct(cfg) == 0
    ours = evaluate_folders(data_root / "multicoil_train", tmp_path, "multicoil")
    args = argparse.Namespace(
        target_path=data_root / "multicoil_train",
        predictions_path=tmp_path,
        acquisition=None,
        acceleration=None,
    )
    theirs = fastmri_evaluate.evaluate(args, "reconstruction_rss").means()
    assert ours["ssim"] == pytest.approx(theirs["SSIM"], rel=1e-6)
    assert ours["psnr"] == pytest.approx(theirs["PSNR"], rel=1e-6)
    assert ours["nmse"] == pytest.approx(theirs["NMSE"], rel=1e-6)
    assert len(ours["volumes"]) == 5
    acquisitions = ours["acquisitions"]
    assert sum(a["num_volumes"] for a in acquisitions.values()) == 5
    args.acquisition = "CORPD_FBK"
    only = evaluate_folders(data_root / "multicoil_train", tmp_path, "multicoil", "CORPD_FBK")
    theirs = fastmri_evaluate.evaluate(args, "reconstruction_rss").means()
    assert only["ssim"] == pytest.approx(theirs["SSIM"], rel=1e-6)
    assert only["num_volumes"] == acquisitions["CORPD_FBK"]["num_volumes"]


def test_missing_prediction_is_named(data_root, tmp_path):
    cfg = compose(
        ["model=zero_filled", f"input={data_root}/multicoil_val", f"output={tmp_path}"],
        config_name="reconstruct",
    )
    reconstruct(cfg)
    removed = sorted(tmp_path.glob("*.h5"))[0]
    removed.unlink()
    with pytest.raises(MissingPredictionError, match=removed.name):
        evaluate_folders(data_root / "multicoil_val", tmp_path, "multicoil")


@pytest.mark.slow
def test_evaluate_names_bad_predictions_and_scores_the_rest(data_root, tmp_path):
    cfg = compose(
        ["model=zero_filled", f"input={data_root}/multicoil_train", f"output={tmp_path}"],
        config_name="reconstruct",
    )
    assert reconstruct(cfg) == 0
    preds = sorted(tmp_path.glob("*.h5"))
    preds[0].write_text("truncated")
    with h5py.File(preds[1], "a") as hf:
        hf["reconstruction"][0, 0, 0] = np.nan
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kspace_mim.evaluate",
            f"target={data_root}/multicoil_train",
            f"predictions={tmp_path}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{preds[0].name}: prediction is not a readable HDF5 file" in result.stderr
    assert f"{preds[1].name}: prediction contains NaN or Inf" in result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_volumes"] == 3 and set(metrics["failed"]) == {preds[0].name, preds[1].name}
    # A metrics.json left as a link is refused before any work, never written through.
    victim = tmp_path.parent / f"{tmp_path.name}_victim.json"
    victim.write_text("original")
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "metrics.json").symlink_to(victim)
    again = subprocess.run(result.args, capture_output=True, text=True)
    assert again.returncode == 2 and "symbolic link" in again.stderr
    assert victim.read_text() == "original"


def test_oversized_predictions_are_centre_cropped_as_fastmri_does(data_root, tmp_path):
    """Predictions larger than the target (borders of noise around it) are cropped to the
    target's square before scoring, as fastMRI's evaluate does; per-volume values equal
    fastMRI's metric functions on the cropped arrays, and the means equal its evaluate."""
    from fastmri.data.transforms import center_crop

    target_dir = data_root / "multicoil_train"
    rng = np.random.default_rng(0)
    expected = {}
    for path in sorted(target_dir.glob("*.h5")):
        with h5py.File(path) as hf:
            target = hf["reconstruction_rss"][()]
        noisy = target + 0.05 * target.max() * rng.standard_normal(target.shape)
        padded = np.pad(noisy, ((0, 0), (5, 5), (7, 7)), constant_values=9.0).astype(np.float32)
        with h5py.File(tmp_path / path.name, "w") as hf:
            hf["reconstruction"] = padded
        width = target.shape[-1]
        crop = center_crop(padded, (width, width))
        expected[path.name] = {
            "ssim": fastmri_evaluate.ssim(target, crop).item(),
            "psnr": fastmri_evaluate.psnr(target, crop),
            "nmse": fastmri_evaluate.nmse(target, crop),
        }
    ours = evaluate_folders(target_dir, tmp_path, "multicoil")
    for name, values in expected.items():
        for key, value in values.items():
            assert ours["volumes"][name][key] == pytest.approx(value, rel=1e-6), (name, key)
    args = argparse.Namespace(
        target_path=target_dir, predictions_path=tmp_path, acquisition=None, acceleration=None
    )
    theirs = fastmri_evaluate.evaluate(args, "reconstruction_rss").means()
    assert ours["ssim"] == pytest.approx(theirs["SSIM"], rel=1e-6)
