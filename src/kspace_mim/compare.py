"""Paired statistics between two evaluations of the same volumes.

    python -m kspace_mim.compare A.json B.json [--output F.json] [--resamples N] [--seed S]

A and B are ``python -m kspace_mim.evaluate`` outputs (or results row files, which have
the same ``volumes`` map). Volumes are paired by file name; for SSIM, PSNR and NMSE it
prints and writes the mean per-volume difference B - A, its 95 % bootstrap confidence
interval (volumes resampled with replacement, percentile interval) and the two-sided
Wilcoxon signed-rank p-value (scipy)::

    {"ssim": {"mean_difference": .., "ci95": [lo, hi], "wilcoxon_p": .., "n": ..}, ...}

The bootstrap is written here (a few lines of numpy) because ``scipy.stats.bootstrap``
has no paired-difference shortcut that takes the mean of differences directly; the
test itself is scipy's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from kspace_mim.files import check_not_link, write_json

METRICS = ("ssim", "psnr", "nmse")
ALPHA = 0.05


def load_volumes(path: str | Path) -> dict[str, dict[str, float]]:
    """The per-volume metrics (``{"file.h5": {"ssim": ..}}``) of an evaluation or row file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = json.loads(path.read_text())
    volumes = data.get("volumes") if isinstance(data, dict) else None
    if not isinstance(volumes, dict) or not volumes:
        raise ValueError(
            f"{path} has no per-volume metrics ('volumes'): give an output of "
            "python -m kspace_mim.evaluate ... output=FILE.json or a results row file"
        )
    return volumes


def paired(
    a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """The metric of the volumes both evaluations have, in one order."""
    names = sorted(set(a) & set(b))
    if not names:
        raise ValueError("the two evaluations share no volume (paired by file name)")
    return (
        np.array([a[n][metric] for n in names], dtype=np.float64),
        np.array([b[n][metric] for n in names], dtype=np.float64),
    )


def bootstrap_ci(
    differences: np.ndarray, resamples: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p; 1.0 when every difference is zero."""
    if not np.any(differences):
        return 1.0
    return float(stats.wilcoxon(differences).pvalue)


def difference_statistics(
    differences: np.ndarray, resamples: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Paired differences (B - A, one per pairing unit: a volume, or a (seed, volume)):
    their mean, 95 % percentile bootstrap interval, Wilcoxon p and count. Every table
    the package generates reads these and :func:`significant`."""
    differences = np.asarray(differences, dtype=np.float64)
    return {
        "mean_difference": float(differences.mean()),
        "ci95": list(bootstrap_ci(differences, resamples, seed)),
        "wilcoxon_p": wilcoxon_p(differences),
        "n": int(len(differences)),
    }


def hierarchical_statistics(
    differences: dict[str, dict[str, float]], resamples: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Paired differences B - A per run (a key per seed, or per (seed, labelled draw))
    and per test volume (the same volumes in every run): what varies is both the run
    and the volume, so the interval comes from a two-level (crossed) bootstrap: each
    resample draws runs with replacement and, independently, volumes with replacement,
    and averages the difference over every drawn (run, volume) pair. ``wilcoxon_p`` is
    over the volumes' differences averaged over runs (the package's pairing, so
    :func:`significant` reads it as every other table); ``per_run`` gives each run's own
    mean, Wilcoxon p and whether it alone is significant (scipy's test; the bootstrap
    is written here, scipy's has no crossed design).

    differences: {run: {volume: difference}} -> mean_difference, ci95, wilcoxon_p, n
    (volumes), runs, per_run."""
    runs = sorted(differences)
    if not runs:
        raise ValueError("no runs to compare")
    volumes = sorted(differences[runs[0]])
    for run in runs:
        if sorted(differences[run]) != volumes:
            raise ValueError(
                f"run {run!r} has other volumes than run {runs[0]!r}: the hierarchical "
                "bootstrap pairs every run on the same test volumes"
            )
    table = np.array([[differences[r][v] for v in volumes] for r in runs], dtype=np.float64)
    rng = np.random.default_rng(seed)
    k, n = table.shape
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # in chunks: resamples x runs x volumes floats
        stop = min(start + 1000, resamples)
        ri = rng.integers(0, k, size=(stop - start, k))
        vi = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = table[ri[:, :, None], vi[:, None, :]].mean(axis=(1, 2))
    lo, hi = np.percentile(means, [2.5, 97.5])
    per_run = {}
    for run, row in zip(runs, table, strict=True):
        stat = difference_statistics(row, resamples, seed)
        per_run[run] = {
            "mean_difference": stat["mean_difference"],
            "wilcoxon_p": stat["wilcoxon_p"],
            "significant": significant(stat),
        }
    return {
        "mean_difference": float(table.mean()),
        "ci95": [float(lo), float(hi)],
        "wilcoxon_p": wilcoxon_p(table.mean(axis=0)),
        "n": n,
        "runs": k,
        "per_run": per_run,
    }


def compare(
    a: dict[str, dict[str, float]],
    b: dict[str, dict[str, float]],
    resamples: int = 10000,
    seed: int = 0,
) -> dict[str, Any]:
    """B - A per metric: mean per-volume difference, 95 % bootstrap CI, Wilcoxon p, n."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        if not all(metric in v for v in (*a.values(), *b.values())):
            continue
        x, y = paired(a, b, metric)
        out[metric] = difference_statistics(y - x, resamples, seed)
    missing = sorted(set(a) ^ set(b))
    if missing:
        out["unpaired_volumes"] = missing
    return out


def seed_mean_volumes(evaluations: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per volume (those every evaluation has): each metric's mean over the evaluations
    (one per seed), the pairing unit of a study's statistics."""
    names = sorted(set.intersection(*(set(e["volumes"]) for e in evaluations)))
    return {
        n: {
            m: statistics.fmean(e["volumes"][n][m] for e in evaluations)
            for m in METRICS
            if all(m in e["volumes"][n] for e in evaluations)
        }
        for n in names
    }


def significant(stat: dict[str, Any], alpha: float = ALPHA) -> bool:
    """A difference holds when Wilcoxon's p < alpha and the CI excludes zero."""
    lo, hi = stat["ci95"]
    return stat["wilcoxon_p"] < alpha and (lo > 0 or hi < 0)


def format_comparison(result: dict[str, Any], a: str, b: str) -> str:
    lines = [f"{b} - {a} (paired by volume)"]
    for metric in METRICS:
        if metric not in result:
            continue
        s = result[metric]
        mark = "significant" if significant(s) else "not significant"
        lines.append(
            f"  {metric:5s} {s['mean_difference']:+.4f}  95% CI [{s['ci95'][0]:+.4f}, "
            f"{s['ci95'][1]:+.4f}]  Wilcoxon p={s['wilcoxon_p']:.3g}  n={s['n']}  ({mark})"
        )
    if result.get("unpaired_volumes"):
        lines.append(f"  left out (in one file only): {', '.join(result['unpaired_volumes'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("a", type=Path, help="reference evaluation (JSON)")
    parser.add_argument("b", type=Path, help="evaluation compared with it (JSON)")
    parser.add_argument("--output", type=Path, help="write the statistics here as JSON")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        if args.output:
            check_not_link(args.output)  # before the work: an output that is a link is refused
        result = compare(load_volumes(args.a), load_volumes(args.b), args.resamples, args.seed)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(format_comparison(result, args.a.name, args.b.name))
    if args.output:
        write_json(args.output, result)


if __name__ == "__main__":
    main()
