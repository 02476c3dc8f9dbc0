"""Image metrics with fastMRI's definitions, per volume; and the paper's k-space SSIM.

NMSE, PSNR and SSIM are fastMRI's (``fastmri.evaluate``): per volume, data range
= the volume maximum, SSIM averaged over slices (skimage, 7x7 window). During
validation slices arrive one batch at a time, on several ranks; we keep per-slice
sums (squared error, target energy, pixel count, SSIM) keyed by (file, slice),
which is exact for every volume and de-duplicates slices seen twice.
"""

from __future__ import annotations

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


def kspace_picture(kspace: torch.Tensor) -> np.ndarray:
    """The paper's k-space picture: log magnitude (coil RSS), scaled to [0, 1] like a PNG.

    kspace: complex (C, H, W) in any units (the log picture is scale-free after min-max).
    """
    magnitude = kspace.abs().square().sum(0).sqrt()
    picture = torch.log1p(magnitude / magnitude.max().clamp_min(1e-30) * 1e4)
    return (picture / picture.max().clamp_min(1e-30)).float().cpu().numpy()


def kspace_ssim(pred_kspace: torch.Tensor, true_kspace: torch.Tensor) -> float:
    """SSIM of the log k-space pictures (the paper's metric). complex (C, H, W) each.

    The pictures are both scaled by the true picture's normalisation, so a
    prediction that is too bright or too dark is penalised.
    """
    true_mag = true_kspace.abs().square().sum(0).sqrt()
    norm = true_mag.max().clamp_min(1e-30)
    pictures = []
    for k in (true_kspace, pred_kspace):
        mag = k.abs().square().sum(0).sqrt()
        pictures.append(torch.log1p(mag / norm * 1e4))
    top = pictures[0].max().clamp_min(1e-30)
    t, p = (x.div(top).float().cpu().numpy()[None] for x in pictures)
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
    means, and the means per acquisition. Every target volume needs a prediction.
    """
    from kspace_mim.data.mri_data import list_h5, recons_key

    key = recons_key(challenge)
    predictions_dir = Path(predictions_dir)
    volumes: dict[str, dict[str, float]] = {}
    acquisitions: dict[str, str] = {}
    targets = list_h5(target_dir)
    missing = [t.name for t in targets if not (predictions_dir / t.name).is_file()]
    if missing:
        raise MissingPredictionError(
            f"{len(missing)} target volume(s) have no prediction in {predictions_dir}: "
            + ", ".join(missing)
        )
    for path in targets:
        with h5py.File(path, "r") as hf:
            if key not in hf:
                raise KeyError(f"{path}: no '{key}' (is this a {challenge} target folder?)")
            attrs = dict(hf.attrs)
            if acquisition and attrs.get("acquisition") != acquisition:
                continue
            if acceleration and attrs.get("acceleration") != acceleration:
                continue
            target = hf[key][()]
        with h5py.File(predictions_dir / path.name, "r") as hf:
            if "reconstruction" not in hf:
                raise KeyError(f"{predictions_dir / path.name}: no 'reconstruction' dataset")
            pred = hf["reconstruction"][()]
        width = target.shape[-1]
        target = center_crop(torch.from_numpy(target), (width, width)).numpy()
        if min(pred.shape[-2:]) < width:
            raise ValueError(
                f"{path.name}: prediction {pred.shape} smaller than target {target.shape}"
            )
        pred = center_crop(torch.from_numpy(pred), (width, width)).numpy()
        volumes[path.name] = volume_metrics(target, pred)
        acquisitions[path.name] = str(attrs.get("acquisition", "unknown"))
    if not volumes:
        raise ValueError("no target volume matched the filters")
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
    return result
