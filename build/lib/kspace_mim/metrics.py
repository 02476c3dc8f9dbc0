"""Image metrics with fastMRI's definitions, per volume; and the paper's k-space SSIM.

NMSE, PSNR and SSIM are fastMRI's (``fastmri.evaluate``): per volume, data range
= the volume maximum, SSIM averaged over slices (skimage, 7x7 window). During
validation slices arrive one batch at a time, on several ranks; we keep per-slice
sums (squared error, target energy, pixel count, SSIM) keyed by (file, slice),
which is exact for every volume and de-duplicates slices seen twice.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from fastmri.evaluate import nmse, psnr, ssim

from kspace_mim.physics import center_crop

METRICS = ("nmse", "psnr", "ssim")


def volume_metrics(target: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> dict:
    """fastMRI's metrics of one volume; target, pred: (slices, h, w). maxval: target max."""
    if target.shape != pred.shape:
        raise ValueError(f"target {target.shape} and prediction {pred.shape} differ in shape")
    maxval = float(target.max()) if maxval is None else maxval
    return {
        "nmse": float(nmse(target, pred)),
        "psnr": float(psnr(target, pred, maxval)),
        "ssim": ssim(target, pred, maxval).item(),
    }


def _log_magnitude(kspace: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """log(1 + 1e4 |k| / norm) of the coil-RSS magnitude: the paper's k-space picture, unscaled."""
    magnitude = kspace.abs().square().sum(0).sqrt()
    return torch.log1p(magnitude / norm.clamp_min(1e-30) * 1e4)


def kspace_picture(kspace: torch.Tensor) -> np.ndarray:
    """The paper's k-space picture: log magnitude (coil RSS), scaled to [0, 1] like a PNG.

    kspace: complex (C, H, W) in any units (the log picture is scale-free after min-max).
    """
    picture = _log_magnitude(kspace, kspace.abs().square().sum(0).sqrt().max())
    return (picture / picture.max().clamp_min(1e-30)).float().cpu().numpy()


def kspace_ssim(pred_kspace: torch.Tensor, true_kspace: torch.Tensor) -> float:
    """SSIM of the log k-space pictures (the paper's metric). complex (C, H, W) each.

    Both pictures use the true picture's normalisation, so a prediction that is too
    bright or too dark is penalised.
    """
    norm = true_kspace.abs().square().sum(0).sqrt().max()
    true, pred = _log_magnitude(true_kspace, norm), _log_magnitude(pred_kspace, norm)
    top = true.max().clamp_min(1e-30)
    t, p = (x.div(top).float().cpu().numpy()[None] for x in (true, pred))
    return ssim(t, p, maxval=1.0).item()


class VolumeMetrics:
    """Accumulates per-slice statistics and returns fastMRI's per-volume metrics."""

    def __init__(self):
        self.slices: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)

    def update(
        self,
        fname: str,
        slice_num: int,
        target: np.ndarray,
        pred: np.ndarray,
        max_value: float,
        kspace_ssim: float | None = None,
    ) -> None:
        """One slice: target, pred (h, w) in original units; max_value: the volume's maximum."""
        err = target.astype(np.float64) - pred
        stats = {
            "sse": float(np.square(err).sum()),
            "target_sq": float(np.square(target.astype(np.float64)).sum()),
            "numel": float(target.size),
            "ssim": ssim(target[None], pred[None], maxval=max_value).item(),
            "max_value": float(max_value),
        }
        if kspace_ssim is not None:
            stats["kspace_ssim"] = kspace_ssim
        self.slices[fname][int(slice_num)] = stats

    def state(self) -> dict:
        return {f: dict(s) for f, s in self.slices.items()}

    def merge(self, state: dict) -> None:
        """Merge another rank's :meth:`state`; a (file, slice) seen twice counts once."""
        for fname, slices in state.items():
            self.slices[fname].update(slices)

    def reset(self) -> None:
        self.slices.clear()

    def compute(self) -> dict[str, Any]:
        """``{"ssim", "psnr", "nmse", ["kspace_ssim"], "num_volumes", "num_slices", "volumes"}``."""
        volumes = {}
        for fname, slices in sorted(self.slices.items()):
            s = list(slices.values())
            sse, tsq, n = (sum(x[k] for x in s) for k in ("sse", "target_sq", "numel"))
            maxval = s[0]["max_value"]
            mse = sse / n
            vol = {
                "nmse": sse / tsq if tsq > 0 else math.nan,
                "psnr": 10 * math.log10(maxval**2 / mse) if mse > 0 else math.inf,
                "ssim": sum(x["ssim"] for x in s) / len(s),
            }
            if "kspace_ssim" in s[0]:
                vol["kspace_ssim"] = sum(x["kspace_ssim"] for x in s) / len(s)
            volumes[fname] = vol
        keys = list(METRICS) + (
            ["kspace_ssim"] if any("kspace_ssim" in v for v in volumes.values()) else []
        )
        means = {
            k: float(np.mean([v[k] for v in volumes.values()])) if volumes else math.nan
            for k in keys
        }
        return {
            **means,
            "num_volumes": len(volumes),
            "num_slices": sum(len(s) for s in self.slices.values()),
            "volumes": volumes,
        }


class MissingPredictionError(FileNotFoundError):
    """A target volume has no prediction file of the same name."""


def evaluate_folders(
    target_dir: str | Path,
    predictions_dir: str | Path,
    challenge: str,
    acquisition: str | None = None,
    acceleration: int | None = None,
) -> dict:
    """fastMRI's leaderboard evaluation (``fastmri.evaluate``) of a predictions folder.

    Each target volume and its prediction are centre-cropped to a square of the target's
    width, as fastMRI does; metrics per volume (data range = target volume max), their
    means, and the means per acquisition. Every target volume needs a prediction; a
    volume that cannot be scored (unreadable, wrong shape, NaN) is named in ``failed``.
    """
    from kspace_mim.data.mri_data import list_h5, recons_key

    key = recons_key(challenge)
    predictions_dir = Path(predictions_dir)
    volumes: dict[str, dict[str, float]] = {}
    acquisitions: dict[str, str] = {}
    accelerations: dict[str, int | None] = {}
    known = split_accelerations(target_dir)
    targets = list_h5(target_dir)
    missing = [t.name for t in targets if not (predictions_dir / t.name).is_file()]
    if missing:
        raise MissingPredictionError(
            f"{len(missing)} target volume(s) have no prediction in {predictions_dir}: "
            + ", ".join(missing)
        )
    failed: dict[str, str] = {}
    for path in targets:
        try:
            scored = _score_volume(
                path, predictions_dir / path.name, key, acquisition, acceleration, known
            )
        except (OSError, ValueError) as err:
            failed[path.name] = str(err)  # named in the result, the others still scored
            continue
        if scored is not None:
            volumes[path.name], acquisitions[path.name], accelerations[path.name] = scored
    if not volumes:
        detail = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise ValueError("no target volume could be scored" + (f" ({detail})" if detail else ""))
    result: dict[str, Any] = {k: float(np.mean([v[k] for v in volumes.values()])) for k in METRICS}
    result["num_volumes"] = len(volumes)
    result["volumes"] = volumes
    result["acquisitions"] = {
        acq: {
            k: float(np.mean([volumes[f][k] for f in volumes if acquisitions[f] == acq]))
            for k in METRICS
        }
        | {"num_volumes": sum(a == acq for a in acquisitions.values())}
        for acq in sorted(set(acquisitions.values()))
    }
    # Per acceleration, as papers report the benchmark (known from the files' attrs or
    # the split's manifest).
    result["accelerations"] = {
        f"{accel}x": {
            k: float(np.mean([volumes[f][k] for f in volumes if accelerations[f] == accel]))
            for k in METRICS
        }
        | {"num_volumes": sum(a == accel for a in accelerations.values())}
        for accel in sorted({a for a in accelerations.values() if a is not None})
    }
    result["failed"] = failed
    return result


def split_accelerations(target_dir: str | Path) -> dict[str, int]:
    """Each test file's acceleration from the ``split.json`` that ``python -m
    kspace_mim.data.split`` writes beside ``test_full/`` (empty when there is none)."""
    manifest = Path(target_dir).parent / "split.json"
    if not manifest.is_file():
        return {}
    tests = json.loads(manifest.read_text()).get("test", {})
    return {name: int(v["acceleration"]) for name, v in tests.items()}


def _score_volume(
    target_path: Path,
    pred_path: Path,
    key: str,
    acquisition: str | None,
    acceleration: int | None,
    known: dict[str, int] | None = None,
) -> tuple[dict[str, float], str, int | None] | None:
    """fastMRI's metrics of one volume, its acquisition and acceleration (``known`` by
    file name, else the file's attribute); None when filtered out."""
    try:
        target_file = h5py.File(target_path, "r")
    except OSError as err:
        raise OSError(f"target is not a readable HDF5 file ({err})") from None
    with target_file as hf:
        if key not in hf:
            raise ValueError(f"target has no '{key}' (a {key.split('_')[-1]} target folder?)")
        attrs = dict(hf.attrs)
        accel = (known or {}).get(target_path.name, attrs.get("acceleration"))
        accel = None if accel is None else int(accel)
        if acquisition and attrs.get("acquisition") != acquisition:
            return None
        if acceleration and accel != acceleration:
            return None
        target = hf[key][()]
    try:
        pred_file = h5py.File(pred_path, "r")
    except OSError as err:
        raise OSError(f"prediction is not a readable HDF5 file ({err})") from None
    with pred_file as hf:
        if "reconstruction" not in hf:
            raise ValueError("prediction has no 'reconstruction' dataset")
        pred = hf["reconstruction"][()]
    width = target.shape[-1]
    if pred.ndim != 3 or pred.shape[0] != target.shape[0] or min(pred.shape[-2:]) < width:
        raise ValueError(f"prediction shape {pred.shape} does not fit target {target.shape}")
    if not np.isfinite(pred).all():
        raise ValueError("prediction contains NaN or Inf")
    target = center_crop(torch.from_numpy(target), (width, width)).numpy()
    pred = center_crop(torch.from_numpy(pred), (width, width)).numpy()
    return volume_metrics(target, pred), str(attrs.get("acquisition", "unknown")), accel
