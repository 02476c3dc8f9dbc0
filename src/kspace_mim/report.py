"""One table (and plots) for a sweep directory: ``python -m kspace_mim.report SWEEP_DIR``.

Reads every job of a Hydra multirun (``<sweep>/<n>/.hydra/overrides.yaml``,
``status.json``, ``metrics.json``) and writes ``report.csv``, ``report.md`` and one
``ssim_vs_<parameter>.png`` per swept parameter into the sweep directory. A sweep over
``seed`` also gets ``report_by_seed.md`` / ``.csv``: one row per configuration, the mean
of each metric over its seeds with a 95 % bootstrap interval (seeds resampled).

``--reference KEY=VALUE[,KEY=VALUE]`` (e.g. ``model=varnet``) adds ``report_paired.md`` /
``.csv``: every configuration against that one, paired by volume (each volume's metric
averaged over the configuration's seeds), on the held-out test volumes when every job
has them (``data.test_path``), else on validation: the mean difference, its 95 %
bootstrap interval, Wilcoxon's p, and whether it is significant (p < 0.05 and the
interval excludes 0; :mod:`kspace_mim.compare`, the rule of every generated table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from kspace_mim.figures import save_figure
from kspace_mim.files import read_json, write_text
from kspace_mim.utils import print_table

METRIC_COLUMNS = ["ssim", "psnr", "nmse", "kspace_ssim"]


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep (those holding Hydra's ``.hydra`` record): its
    subfolders, or one level deeper where ``hydra.sweep.subdir`` has a ``/``
    (``model=swin/row=ssdu,seed=0``)."""
    markers = [*sweep_dir.glob("*/.hydra"), *sweep_dir.glob("*/*/.hydra")]
    return sorted(
        (p.parent for p in markers if p.is_dir()),
        key=lambda p: (str(p.parent), len(p.name), p.name),
    )


def read_job(job: Path) -> dict:
    """One job's row: its overrides as columns, status, reason, final metrics. Raises
    OSError / ValueError (naming the file) when one of its files cannot be read."""
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    if not isinstance(overrides, list):
        raise ValueError(f"{job / '.hydra' / 'overrides.yaml'}: not a list of overrides")
    row: dict = {"job": job.name}
    row.update(str(o).split("=", 1) for o in overrides if "=" in str(o))
    status_file = job / "status.json"
    status = read_json(status_file) if status_file.is_file() else {}
    if not isinstance(status, dict):
        raise ValueError(f"{status_file}: not a status record")
    row["status"] = str(status.get("status", "unknown"))
    row["reason"] = str(status.get("reason", ""))
    metrics_file = job / "metrics.json"
    if metrics_file.is_file():
        metrics = read_json(metrics_file)
        if not isinstance(metrics, dict):
            raise ValueError(f"{metrics_file}: not a metrics record")
        row.update({k: float(metrics[k]) for k in METRIC_COLUMNS if k in metrics})
        # which mask the numbers are on (evaluation.mask: one for the whole sweep)
        row["eval_mask"] = str(metrics.get("evaluation_mask") or "")
    return row


def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job: its overrides as columns, status, reason, final metrics."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    rows = []
    for job in job_dirs(sweep_dir):
        try:
            rows.append(read_job(job))
        except (OSError, ValueError, yaml.YAMLError, TypeError, AttributeError) as err:
            # One job's cut-off or foreign file must not hide the others: named, tabled.
            reason = f"files cannot be read: {str(err).splitlines()[0] if str(err) else err!r}"
            print(f"job {job.name}: {reason}", file=sys.stderr)
            rows.append({"job": job.name, "status": "unreadable", "reason": reason})
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no Hydra jobs (*/.hydra/overrides.yaml)")
    frame = pd.DataFrame(rows)
    for col in METRIC_COLUMNS:
        if col not in frame:
            frame[col] = float("nan")
    return frame.sort_values("ssim", ascending=False, na_position="last").reset_index(drop=True)


def swept_parameters(frame: pd.DataFrame) -> list[str]:
    fixed = {"job", "status", "reason", "eval_mask", *METRIC_COLUMNS}
    return [c for c in frame.columns if c not in fixed and frame[c].nunique(dropna=False) > 1]


def plot_parameters(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """SSIM against each swept parameter (finished jobs), one PNG each."""
    import matplotlib.pyplot as plt

    done = frame[frame["status"] == "finished"]
    paths = []
    for param in swept_parameters(frame):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        groups = done.groupby(param)
        for i, (value, group) in enumerate(sorted(groups, key=lambda g: str(g[0]))):
            ax.scatter([i] * len(group), group["ssim"], label=str(value))
        ax.set_xticks(range(groups.ngroups))
        ax.set_xticklabels([str(v) for v, _ in sorted(groups, key=lambda g: str(g[0]))])
        ax.set_xlabel(param)
        ax.set_ylabel("validation SSIM (image)")
        ax.set_title(f"SSIM vs {param}")
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"ssim_vs_{param.replace('/', '_')}.png"))
    return paths


def print_report(frame: pd.DataFrame) -> None:
    """The swept parameters, status and metrics of every job (the files have every column)."""
    columns = ["job", *swept_parameters(frame), "eval_mask", "status", "reason", *METRIC_COLUMNS]
    frame = frame[[c for c in columns if c in frame]]
    rows = (
        ["" if pd.isna(v) else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        for _, row in frame.iterrows()
    )
    print_table("sweep report (sorted by SSIM)", list(frame.columns), rows, justify="left")


def by_seed(frame: pd.DataFrame, resamples: int = 10000) -> pd.DataFrame | None:
    """Finished jobs grouped by every swept parameter but ``seed``: the number of seeds,
    and per metric the mean and the 95 % percentile bootstrap interval over seeds."""
    import numpy as np

    from kspace_mim.compare import bootstrap_ci

    params = [p for p in swept_parameters(frame) if p != "seed"]
    done = frame[frame["status"] == "finished"]
    if "seed" not in frame or done.empty:
        return None
    rows = []
    groups = done.groupby(params, dropna=False) if params else [((), done)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(params, key, strict=True)), "seeds": len(group)}
        for metric in ("ssim", "psnr", "nmse"):
            values = group[metric].dropna().to_numpy(dtype=float)
            if len(values):
                row[metric] = float(values.mean())
                lo, hi = bootstrap_ci(values, resamples) if len(values) > 1 else (np.nan,) * 2
                row[f"{metric}_ci95"] = f"[{lo:.4f}, {hi:.4f}]"
        rows.append(row)
    return pd.DataFrame(rows).sort_values("ssim", ascending=False).reset_index(drop=True)


def job_volumes(job: Path) -> dict[str, dict]:
    """A finished job's per-volume metrics by split (``val``, and ``test`` when it was
    tested), from its ``metrics.json``."""
    metrics = read_json(job / "metrics.json")
    out = {"val": metrics.get("volumes") or {}}
    if isinstance(metrics.get("test"), dict) and metrics["test"].get("volumes"):
        out["test"] = metrics["test"]["volumes"]
    for mask, test in (metrics.get("tests") or {}).items():  # evaluation.test_masks
        if isinstance(test, dict) and test.get("volumes"):
            out[f"test {mask}"] = test["volumes"]
    return out


def parse_reference(text: str) -> dict[str, str]:
    """``"model=varnet,recipe=package"`` -> ``{"model": "varnet", "recipe": "package"}``."""
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(f"--reference {text!r}: KEY=VALUE[,KEY=VALUE] of a swept parameter")
    return {k.strip(): v.strip() for k, v in pairs}


def paired(frame: pd.DataFrame, sweep_dir: Path, reference: dict[str, str]) -> pd.DataFrame:
    """Every configuration (swept parameters but ``seed``) against ``reference``, paired by
    volume over the seeds' mean per volume (see the module docstring)."""
    params = [p for p in swept_parameters(frame) if p != "seed"]
    unknown = sorted(set(reference) - set(params))
    if unknown:
        raise ValueError(f"--reference names {unknown}: not swept here (swept: {params})")
    done = frame[frame["status"] == "finished"]
    volumes = {job: job_volumes(sweep_dir / job) for job in done["job"]}
    # The held-out test evaluations every job has (one per test mask), else validation.
    common = set.intersection(*(set(v) for v in volumes.values())) if volumes else set()
    splits = sorted(common - {"val"}) or ["val"]
    return pd.concat(
        [_paired_on(done, params, volumes, split, reference) for split in splits],
        ignore_index=True,
    )


def _paired_on(
    done: pd.DataFrame, params: list[str], volumes: dict, split: str, reference: dict[str, str]
) -> pd.DataFrame:
    """:func:`paired` on one evaluation (``val``, ``test`` or ``test <mask>``)."""
    from kspace_mim.compare import compare, seed_mean_volumes, significant

    groups = {}
    for key, group in done.groupby(params, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        evaluations = [{"volumes": volumes[j][split]} for j in group["job"]]
        groups[key] = (len(group), seed_mean_volumes(evaluations))

    def selected(key: tuple) -> bool:
        values = dict(zip(params, key, strict=True))
        return all(str(values[p]) == v for p, v in reference.items())

    matches = [k for k in groups if selected(k)]
    if len(matches) != 1:
        raise ValueError(
            f"--reference {reference} matches {len(matches)} configurations of the finished "
            "jobs; name one (every swept parameter but seed)"
        )
    (ref,) = matches
    rows = []
    for key, (seeds, per_volume) in groups.items():
        row = {**dict(zip(params, key, strict=True)), "seeds": seeds, "split": split}
        row["volumes"] = len(per_volume)
        for metric in ("ssim", "psnr", "nmse"):
            values = [v[metric] for v in per_volume.values() if metric in v]
            row[metric] = sum(values) / len(values) if values else float("nan")
        if key == ref:
            row["vs_reference"] = "reference"
        else:
            stats = compare(groups[ref][1], per_volume)
            for metric, stat in stats.items():
                if metric == "unpaired_volumes":
                    continue
                lo, hi = stat["ci95"]
                row[f"d_{metric}"] = stat["mean_difference"]
                row[f"d_{metric}_ci95"] = f"[{lo:+.4f}, {hi:+.4f}]"
                row[f"d_{metric}_p"] = stat["wilcoxon_p"]
                row[f"d_{metric}_significant"] = significant(stat)
        rows.append(row)
    return pd.DataFrame(rows)


def report(sweep_dir: str | Path, reference: str | None = None) -> pd.DataFrame:
    """Collect, print, and write CSV, Markdown and plots into ``sweep_dir``; with
    ``reference`` also the paired comparison against that configuration."""
    sweep_dir = Path(sweep_dir)
    frame = collect(sweep_dir)
    write_text(sweep_dir / "report.csv", frame.to_csv(index=False))
    write_text(sweep_dir / "report.md", frame.to_markdown(index=False, floatfmt=".4f") + "\n")
    plot_parameters(frame, sweep_dir)
    print_report(frame)
    grouped = by_seed(frame) if "seed" in swept_parameters(frame) else None
    if grouped is not None:
        write_text(sweep_dir / "report_by_seed.csv", grouped.to_csv(index=False))
        write_text(
            sweep_dir / "report_by_seed.md", grouped.to_markdown(index=False, floatfmt=".4f") + "\n"
        )
    if reference:
        table = paired(frame, sweep_dir, parse_reference(reference))
        write_text(sweep_dir / "report_paired.csv", table.to_csv(index=False))
        write_text(
            sweep_dir / "report_paired.md", table.to_markdown(index=False, floatfmt=".4f") + "\n"
        )
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kspace_mim.report", description=__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument(
        "--reference",
        help="KEY=VALUE[,KEY=VALUE]: the configuration every other is paired against by "
        "volume (report_paired.md)",
    )
    args = parser.parse_args(argv)
    try:
        frame = report(args.sweep_dir, args.reference)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    failed = (frame["status"] != "finished").sum()
    print(
        f"{len(frame)} job(s), {failed} not finished; wrote report.csv, report.md and plots "
        f"to {args.sweep_dir}"
    )


if __name__ == "__main__":
    main()
