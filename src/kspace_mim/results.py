"""The results table, generated: ``python -m kspace_mim.results`` (``make results``).

The protocol (``experiment=results``; docs/design.md says why):

- Data: the default set, simulated from the shipped Colin27 brain (train / val / test
  from separate slabs; 8 coils, 64 x 64 images, 2x readout oversampling).
- Every trained model runs the same number of optimizer steps at batch 1 (equal slices
  seen), one model for 4x and 8x (mixed equispaced masks), validated at log-spaced
  steps: the curves, and the checkpoint kept (best validation SSIM). Pre-training counts
  in the steps (its rows show the total) and has a from-scratch control at that total.
- Numbers are of the held-out test volumes (``test_full``: fully sampled twins of the
  test files), reconstructed at 4x and at 8x with ``python -m kspace_mim.reconstruct``
  and scored with ``evaluate``; compressed sensing's lamda (and coil maps) are chosen on
  validation per acceleration.
- 3 seeds; per-volume files (``docs/results/<row>_<accel>x.json``, means over seeds
  per volume) and paired statistics (:mod:`kspace_mim.compare`) against the reference
  row, fastMRI's E2E-VarNet with its published recipe.

No number in the table is typed by hand: it goes to ``docs/results.md`` (and a README
section between results markers, where the README has one), with the curves in
``docs/results_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kspace_mim.bench.timing import machine
from kspace_mim.compare import compare, seed_mean_volumes, significant
from kspace_mim.config import compose, project_root
from kspace_mim.data.synthesize import DEFAULT_SET, ensure_synthetic, split_folders
from kspace_mim.files import read_json, write_json
from kspace_mim.fingerprint import FILE as FINGERPRINT
from kspace_mim.fingerprint import fingerprint, read_fingerprint
from kspace_mim.metrics import evaluate_folders
from kspace_mim.reconstruct import run as reconstruct
from kspace_mim.train import run
from kspace_mim.utils import write_generated

ACCELERATIONS = (4, 8)


class Row(NamedTuple):
    """One row of the table: how its model is made.

    overrides: train config overrides (none for the untrained rows); pretrain_steps:
    steps of SimMIM patch-mask pre-training first (the row's steps are the total);
    baseline: zero_filled | cs for the rows that need no training."""

    overrides: tuple[str, ...] = ()
    pretrain_steps: int = 0
    baseline: str | None = None
    total_steps: float = 1.0  # the row's steps as a multiple of the table's


REFERENCE = "E2E-VarNet, fastMRI recipe"
UNROLLED = ("model=unrolled", "model.size=tiny")
# Pre-training takes half the table's steps, fine-tuning the table's: 1.5x in total,
# against a from-scratch control of 1.5x.
ROWS: dict[str, Row] = {
    "zero-filled": Row(baseline="zero_filled"),
    "CS (L1-wavelet SENSE)": Row(baseline="cs"),
    "U-Net, fastMRI recipe": Row(("model=unet", "model.size=tiny")),
    REFERENCE: Row(("model=varnet", "model.size=tiny")),
    "E2E-VarNet, package recipe": Row(("model=varnet", "model.size=tiny", "recipe=package")),
    "SimMIM-Swin": Row(("model=swin", "model.size=tiny")),
    "unrolled": Row(UNROLLED),
    "unrolled, pre-trained + fine-tuned": Row(UNROLLED, pretrain_steps=-1, total_steps=1.5),
    "unrolled, from scratch at the same total steps": Row(UNROLLED, total_steps=1.5),
}
# The cheapest model trained LONG times the table's steps (curve only, not a table row):
# how far from flattened the table's budget leaves it.
CHEAPEST, LONG = "U-Net, fastMRI recipe", 5
CS_LAMDAS = (0.001, 0.003, 0.01)
CS_MAPS = ("espirit", "centre")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def default_data(root: Path) -> Path:
    """The default set (the brain; written if missing, as on any first use)."""
    folder = root / DEFAULT_SET["anatomy"]
    ensure_synthetic(split_folders(folder, "multicoil"), "multicoil")
    return folder


# --- one trained row -------------------------------------------------------------------
def train_overrides(data: Path, steps: int, seed: int, points: int) -> list[str]:
    return [
        "experiment=results",
        f"data.synthetic_root={data}",
        f"trainer.max_steps={steps}",
        f"validation.points={points}",
        f"seed={seed}",
    ]


def train_once(overrides: list[str], base: Path) -> dict[str, Any]:
    """Train ``overrides`` unless the same run already finished (a rerun resumes the
    table): its metrics, with ``run_dir`` and the ``max_steps`` it trained for.

    The cache is keyed by the run's fingerprint, budgets included
    (:mod:`kspace_mim.fingerprint`): the run directory is ``<base>-<digest>``, reused only
    when its recorded fingerprint is this one and it finished. Longer budgets, another
    data folder or another pre-trained start (its checkpoint lies in its own digest's
    directory) are new runs, never the old numbers."""
    cfg = compose(overrides)
    mine = fingerprint(cfg)
    run_dir = base.with_name(f"{base.name}-{mine.digest()[:12]}")
    saved = read_fingerprint(run_dir) if (run_dir / FINGERPRINT).is_file() else None
    if (run_dir / "metrics.json").is_file() and saved is not None and saved == mine:
        metrics = read_json(run_dir / "metrics.json")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        metrics = run(cfg, run_dir)
    return {**metrics, "run_dir": str(run_dir), "max_steps": mine.budget["trainer.max_steps"]}


def test_evaluations(
    model: list[str], data: Path, out: Path, accelerations=ACCELERATIONS
) -> dict[int, dict]:
    """Reconstruct the held-out test volumes (``test_full``) at each acceleration with
    ``reconstruct`` (``model``: its overrides, e.g. ``ckpt=...``) and score them with
    ``evaluate``: the per-volume results, also written to ``out/test_<a>x.json``."""

    target = split_folders(data, "multicoil")["test_full"]
    results = {}
    for accel in accelerations:
        saved = out / f"test_{accel}x.json"
        # Reused only for the same model (a checkpoint lies in its run's digest directory),
        # the same test folder and acceleration.
        key = json.dumps([list(model), str(target), accel])
        if saved.is_file() and read_json(saved).get("cache_key") == key:
            results[accel] = read_json(saved)
            continue
        predictions = out / f"test_{accel}x"
        shutil.rmtree(predictions, ignore_errors=True)
        cfg = compose(
            [*model, f"input={target}", f"output={predictions}", f"mask=equispaced{accel}x"],
            "reconstruct",
        )
        if reconstruct(cfg) != 0:
            raise RuntimeError(f"reconstruct {model} failed on {target}")
        results[accel] = {**evaluate_folders(target, predictions, "multicoil"), "cache_key": key}
        write_json(saved, results[accel])
        shutil.rmtree(predictions)
    return results


def curve(run_dir: Path, offset_steps: int = 0, offset_s: float = 0.0) -> list[dict]:
    """Validation SSIM at each scheduled step: steps, training seconds (from the CSV log)."""
    import pandas as pd

    logs = sorted(run_dir.glob("csv/*/metrics.csv"))
    if not logs:
        return []
    frame = pd.read_csv(logs[-1])
    if "time/steps" not in frame:
        return []
    frame = frame.dropna(subset=["time/steps"])
    return [
        {
            "step": int(r["time/steps"]) + offset_steps,
            "train_s": float(r["time/train_s"]) + offset_s,
            "ssim": float(r["val/ssim"]),
        }
        for _, r in frame.iterrows()
    ]


def train_row(
    name: str, row: Row, data: Path, steps: int, seed: int, out: Path, points: int
) -> dict[str, Any]:
    """Train one row's model (pre-training first where it has one) and test it."""
    folder = out / slug(name) / f"seed{seed}"
    total = round(steps * row.total_steps)
    common = train_overrides(data, total, seed, points)
    offset_steps, offset_s, pre_curve = 0, 0.0, []
    extra: list[str] = []
    if row.pretrain_steps:
        pre = total - steps
        # SimMIM pre-training of the same network: random patch masks, then fine-tuning.
        pre_over = [*train_overrides(data, pre, seed, points), *row.overrides, "mask=random0.6"]
        pre_dir = Path(train_once(pre_over, folder / "pretrain")["run_dir"])
        pre_curve = curve(pre_dir)
        offset_steps = read_fingerprint(pre_dir).budget["trainer.max_steps"]
        offset_s = pre_curve[-1]["train_s"] if pre_curve else 0.0
        extra = [f"init_from={pre_dir / 'checkpoints' / 'last.ckpt'}"]
        common = train_overrides(data, steps, seed, points)
    metrics = train_once([*common, *row.overrides, *extra], folder / "train")
    run_dir = Path(metrics["run_dir"])
    # Quoted: Lightning's checkpoint names hold '=' (best-epoch=003.ckpt).
    tests = test_evaluations([f"ckpt='{metrics['checkpoint']}'"], data, folder)
    return {
        "row": name,
        "seed": seed,
        "steps": metrics["max_steps"] + offset_steps,  # what the runs read trained for
        "checkpoint_step": metrics["checkpoint_step"] + offset_steps,
        "checkpoint": metrics["checkpoint"],
        "val_ssim": metrics["ssim"],
        "curve": curve(run_dir, offset_steps, offset_s),
        "pretrain_curve": pre_curve,
        "test": {str(a): t for a, t in tests.items()},
    }


# --- the untrained rows --------------------------------------------------------------
def baseline_row(name: str, row: Row, data: Path, out: Path) -> dict[str, Any]:
    """Zero-filling, or CS with lamda and maps chosen on validation per acceleration."""

    folder = out / slug(name)
    if row.baseline == "zero_filled":
        tests = test_evaluations(["model=zero_filled"], data, folder)
        return {"row": name, "seed": None, "test": {str(a): t for a, t in tests.items()}}
    val = split_folders(data, "multicoil")["val"]
    tests, chosen = {}, {}
    for accel in ACCELERATIONS:
        scores = {}
        for maps in CS_MAPS:
            for lamda in CS_LAMDAS:
                setting = [f"model.lamda={lamda}", f"model.maps={maps}"]
                key = f"{maps} {lamda}"
                saved = folder / "val" / f"{accel}x_{maps}_{lamda}.json"
                cache_key = json.dumps([setting, str(val), accel])
                if not saved.is_file() or read_json(saved).get("cache_key") != cache_key:
                    predictions = folder / "val" / "predictions"
                    shutil.rmtree(predictions, ignore_errors=True)

                    cfg = compose(
                        [
                            "model=cs",
                            *setting,
                            f"input={val}",
                            f"output={predictions}",
                            f"mask=equispaced{accel}x",
                        ],
                        "reconstruct",
                    )
                    reconstruct(cfg)
                    scored = evaluate_folders(val, predictions, "multicoil")
                    write_json(saved, {**scored, "cache_key": cache_key})
                    shutil.rmtree(predictions)
                scores[key] = (json.loads(saved.read_text())["ssim"], setting)
        best = max(scores, key=lambda k: scores[k][0])
        chosen[str(accel)] = {
            "setting": best,
            "val_ssim": scores[best][0],
            "val_grid": {k: v[0] for k, v in scores.items()},
        }
        sub = folder / f"{accel}x"
        sub.mkdir(parents=True, exist_ok=True)
        tests[accel] = test_evaluations(["model=cs", *scores[best][1]], data, sub, (accel,))[accel]
    return {
        "row": name,
        "seed": None,
        "test": {str(a): t for a, t in tests.items()},
        "chosen_on_val": chosen,
    }


# --- aggregation ---------------------------------------------------------------------
def data_grid(data: Path) -> tuple[tuple[int, int], int]:
    """The k-space grid (H, W) and coil count of the set's first training volume."""
    from kspace_mim.data.mri_data import inspect_volumes, list_h5

    volume = inspect_volumes(list_h5(split_folders(data, "multicoil")["train"]), "multicoil")[0][0]
    return tuple(volume.shape[-2:]), volume.num_coils


def flops_per_step(row: Row, grid: tuple[int, int], coils: int) -> float | None:
    """Training FLOPs of one step at batch 1 on the data's grid (``bench train``'s count)."""
    from kspace_mim.bench.train import train_step_rate

    encoder = next((o.split("=", 1)[1] for o in row.overrides if o.startswith("model=")), None)
    if encoder is None:
        return None
    sizes = tuple(o for o in row.overrides if o.startswith("model.") and "size" not in o)
    rate = train_step_rate(encoder, "tiny", f"{grid[0]}x{grid[1]}", coils, 1, 1, "cpu", sizes)
    return rate["gflop_per_slice"] * 1e9


METRICS = ("ssim", "psnr", "nmse")


def row_files(runs: list[dict], out: Path, flops: dict[str, float | None]) -> dict:
    """One JSON per (row, acceleration) in ``out``: the per-volume means over seeds
    (``volumes``, what :mod:`kspace_mim.compare` pairs), every seed's evaluation, the
    steps, FLOPs and training time. Returns {(row, accel): file content}."""
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[str, int], dict] = {}
    for name in ROWS:
        mine = [r for r in runs if r["row"] == name]
        if not mine:
            continue
        for accel in ACCELERATIONS:
            evaluations = [r["test"][str(accel)] for r in mine]
            volumes = seed_mean_volumes(evaluations)
            per_seed = [e[m] for e in evaluations for m in ("ssim",)]
            content = {
                "row": name,
                "acceleration": accel,
                "split": "test",
                "seeds": [r["seed"] for r in mine],
                **{m: statistics.fmean(v[m] for v in volumes.values()) for m in METRICS},
                "ssim_per_seed": per_seed,
                "steps": mine[0].get("steps"),
                "checkpoint_steps": [r.get("checkpoint_step") for r in mine],
                "train_flops": (flops.get(name) or 0) * (mine[0].get("steps") or 0) or None,
                "train_minutes": statistics.fmean(
                    r["curve"][-1]["train_s"] / 60
                    + (r["pretrain_curve"][-1]["train_s"] / 60 if r["pretrain_curve"] else 0)
                    for r in mine
                )
                if mine[0].get("curve")
                else None,
                "chosen_on_val": mine[0].get("chosen_on_val"),
                **last_gain(mine),
                "curves": [r.get("curve") for r in mine],  # validation SSIM per seed
                "volumes": volumes,
                "evaluations": evaluations,
            }
            write_json(out / f"{slug(name)}_{accel}x.json", content)
            rows[(name, accel)] = content
    return rows


def last_gain(runs: list[dict]) -> dict[str, Any]:
    """How much validation SSIM the last scheduled interval still added (mean over
    seeds): whether the curve has flattened by the end of the budget."""
    curves = [r["curve"] for r in runs if len(r.get("curve") or []) >= 2]
    if not curves:
        return {}
    gain = statistics.fmean(c[-1]["ssim"] - c[-2]["ssim"] for c in curves)
    return {"last_gain": gain, "last_steps": [curves[0][-2]["step"], curves[0][-1]["step"]]}


FLAT = 0.005  # SSIM gained over the last log-spaced interval below which a curve is flat


def flatness(rows: dict) -> str:
    """One sentence: which curves had flattened at the final step and which had not."""
    parts, rising = [], []
    for name in ROWS:
        r = rows.get((name, ACCELERATIONS[0]))
        if r is None or "last_gain" not in r:
            continue
        a, b = r["last_steps"]
        parts.append(f"{name} {r['last_gain']:+.3f} ({a} -> {b})")
        if r["last_gain"] > FLAT:
            rising.append(name)
    if not parts:
        return ""
    verdict = (
        f"still rising (more than {FLAT} over the last interval): {'; '.join(rising)}; the "
        "table compares these models before convergence"
        if rising
        else "every curve has flattened"
    )
    return (
        "Validation SSIM gained over the last interval of the curves: "
        + "; ".join(parts)
        + f". {verdict[0].upper()}{verdict[1:]}."
    )


def table_markdown(rows: dict, steps: int, seeds: int, grid: tuple[int, int], coils: int) -> str:
    """The table at 4x and 8x with significance marks against the reference row."""
    lines = [
        f"Held-out test volumes of the default set (Colin27 brain, {coils} coils, "
        f"k-space {grid[0]} x {grid[1]} with 2x readout oversampling, 64 x 64 images), "
        f"`tiny` models, **{steps} optimizer steps each at batch 1** (pre-training counted: "
        f"its rows show the total), one model for 4x and 8x, the checkpoint chosen on "
        f"validation; means over {seeds} seeds of the per-volume fastMRI metrics. "
        f"Δ SSIM: paired by volume against **{REFERENCE}** (95 % bootstrap CI); "
        "**✓** = significant (Wilcoxon p < 0.05 and the CI excludes 0), · = not. "
        "Training time on this 2-core CPU is noisy (±15-20 %): read FLOPs.",
        "",
        "| model | accel. | SSIM | PSNR | NMSE | Δ SSIM vs ref. [95 % CI] | sig. "
        "| steps | train GFLOP | train min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for accel in ACCELERATIONS:
        ref = rows.get((REFERENCE, accel))
        for name in ROWS:
            r = rows.get((name, accel))
            if r is None:
                continue
            if ref is not None and name != REFERENCE:
                stat = compare(ref["volumes"], r["volumes"])["ssim"]
                lo, hi = stat["ci95"]
                delta = f"{stat['mean_difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                mark = "✓" if significant(stat) else "·"
                notes.append((accel, name, stat, significant(stat)))
            else:
                delta, mark = ("reference", "") if name == REFERENCE else ("-", "")
            steps_text = f"{r['steps']}" if r["steps"] else "-"
            gflop = f"{r['train_flops'] / 1e9:,.0f}" if r["train_flops"] else "-"
            minutes = f"{r['train_minutes']:.1f}" if r["train_minutes"] else "-"
            lines.append(
                f"| {name} | {accel}x | {r['ssim']:.4f} | {r['psnr']:.2f} | {r['nmse']:.4f} "
                f"| {delta} | {mark} | {steps_text} | {gflop} | {minutes} |"
            )
    lines += ["", reading(rows, notes)]
    if flatness(rows):
        lines += ["", flatness(rows)]
    cs = rows.get(("CS (L1-wavelet SENSE)", 4))
    if cs and cs.get("chosen_on_val"):
        chosen = "; ".join(
            f"{a}x: maps {c['setting'].split()[0]}, lamda {c['setting'].split()[1]}"
            for a, c in cs["chosen_on_val"].items()
        )
        lines += ["", f"CS settings chosen on validation ({chosen})."]
    return "\n".join(lines) + "\n"


def reading(rows: dict, notes: list) -> str:
    """Which differences against the reference hold, in words."""
    parts = []
    for accel in ACCELERATIONS:
        better = [n for a, n, s, sig in notes if a == accel and sig and s["mean_difference"] > 0]
        worse = [n for a, n, s, sig in notes if a == accel and sig and s["mean_difference"] < 0]
        ties = [n for a, n, s, sig in notes if a == accel and not sig]
        # Row names hold commas: the lists are joined with semicolons.
        text = f"At {accel}x, significantly above the reference: {'; '.join(better) or 'none'}."
        text += f" Significantly below: {'; '.join(worse) or 'none'}."
        text += f" Not distinguishable from it: {'; '.join(ties) or 'none'}."
        parts.append(text)
    pre, control = (rows.get((n, 4)) for n in list(ROWS)[-2:])
    if pre and control:
        stat = compare(control["volumes"], pre["volumes"])["ssim"]
        verdict = "a significant" if significant(stat) else "no significant"
        parts.append(
            f"Pre-training against its equal-total-steps control (4x): "
            f"{stat['mean_difference']:+.4f} SSIM, {verdict} difference "
            f"(p = {stat['wilcoxon_p']:.3g})."
        )
    return " ".join(parts)


def save_curves(runs: list[dict], flops: dict, path: Path) -> Path:
    """Validation SSIM against steps, training FLOPs and training wall-clock, mean over
    seeds per row (one panel each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kspace_mim.figures import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for name in (*ROWS, long_name()):
        mine = [r for r in runs if r["row"] == name and r.get("curve")]
        if not mine:
            continue
        n = min(len(r["curve"]) for r in mine)
        steps = np.array([p["step"] for p in mine[0]["curve"][:n]])
        ssim = np.mean([[p["ssim"] for p in r["curve"][:n]] for r in mine], axis=0)
        seconds = np.mean([[p["train_s"] for p in r["curve"][:n]] for r in mine], axis=0)
        style = ":" if name == long_name() else "--" if ROWS[name].pretrain_steps else "-"
        per_step = flops.get(CHEAPEST if name == long_name() else name) or np.nan
        for ax, x in zip(axes, (steps, steps * per_step, seconds), strict=True):
            ax.plot(x, ssim, style, marker="o", ms=3, label=name)
    for ax, label in zip(
        axes,
        ("optimizer steps", "training FLOPs", "training wall-clock (s, 2-core CPU)"),
        strict=False,
    ):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation SSIM (4x / 8x mixed)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Learning curves (mean over seeds; pre-trained rows start after pre-training)")
    fig.tight_layout()
    return save_figure(fig, path)


def make_results(
    steps: int = 400,
    seeds: tuple[int, ...] = (0, 1, 2),
    data: Path | None = None,
    out_dir: Path | None = None,
    root: Path | None = None,
    points: int = 6,
    rows: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Every row of :data:`ROWS` (or ``rows``), every seed; writes the row files, the
    table (docs/results.md) and the curves in ``root`` (the repository)."""
    root, data, out_dir = _locations(root, data, out_dir, "results")
    names = rows or tuple(ROWS)
    grid, coils = data_grid(data)
    runs: list[dict] = []
    start = time.perf_counter()
    for name in names:
        if ROWS[name].baseline:
            runs.append(baseline_row(name, ROWS[name], data, out_dir))
    for seed in seeds:  # seed-major: an interrupted table has whole seeds
        for name in names:
            if not ROWS[name].baseline:
                runs.append(train_row(name, ROWS[name], data, steps, seed, out_dir, points))
                print(f"[{(time.perf_counter() - start) / 60:.1f} min] {name}, seed {seed}")
    long_runs = []
    if CHEAPEST in names:  # its curve LONG times as far: where it flattens
        row = ROWS[CHEAPEST]._replace(total_steps=LONG)
        for seed in seeds:
            long_runs.append(train_row(long_name(), row, data, steps, seed, out_dir, points + 2))
    flops = {n: flops_per_step(ROWS[n], grid, coils) for n in names}
    table_rows = row_files(runs, root / "docs" / "results", flops)
    # The steps the table states are those of the runs it read (the reference row's).
    read_steps = {r["steps"] for r in runs if r["row"] == REFERENCE and r.get("steps")}
    table_steps = read_steps.pop() if len(read_steps) == 1 else steps
    table = table_markdown(table_rows, table_steps, len(seeds), grid, coils)
    if long_runs:
        table += "\n" + long_curve_sentence(long_runs, steps) + "\n"
    runs += long_runs
    save_curves(runs, flops, root / "docs" / "results_curves.png")
    table += (
        "\n![Learning curves: validation SSIM against steps, training FLOPs and wall-clock]"
        "(docs/results_curves.png)\n"
    )
    write_generated(root, "results", "Results", "make results", table)
    save_overview(runs, table_rows, data, out_dir, root)
    return runs


def long_name() -> str:
    return f"{CHEAPEST}, {LONG}x the steps (curve only)"


def long_curve_sentence(runs: list[dict], steps: int) -> str:
    """Validation SSIM of the cheapest model at the table's steps and at LONG times them."""
    near = min(runs[0]["curve"], key=lambda p: abs(math.log(p["step"] / steps)))["step"]
    at = [next(p["ssim"] for p in r["curve"] if p["step"] == near) for r in runs]
    end = [r["curve"][-1]["ssim"] for r in runs]
    gain = last_gain(runs)
    a, b = gain["last_steps"]
    return (
        f"The cheapest model ({CHEAPEST}) trained {LONG}x as long (curve only, dotted): "
        f"validation SSIM {statistics.fmean(at):.4f} at step {near} (the nearest validation "
        f"to the table's {steps}), {statistics.fmean(end):.4f} at {runs[0]['curve'][-1]['step']}, "
        f"{gain['last_gain']:+.4f} over its last interval ({a} -> {b})."
    )


def save_overview(runs: list[dict], rows: dict, data: Path, out_dir: Path, root: Path) -> None:
    """The README's picture: a test volume reconstructed at 4x by the best trained row
    (first seed): target | zero-filled | reconstruction | error, k-space before / after."""

    trained = [n for n in ROWS if not ROWS[n].baseline and (n, 4) in rows]
    if not trained:
        return
    best = max(trained, key=lambda n: rows[(n, 4)]["ssim"])
    ckpt = next(r["checkpoint"] for r in runs if r["row"] == best)
    target = split_folders(data, "multicoil")["test_full"]
    folder = out_dir / "overview"
    shutil.rmtree(folder, ignore_errors=True)
    cfg = compose(
        [
            f"ckpt='{ckpt}'",
            f"input={target}",
            f"output={folder}",
            "mask=equispaced4x",
            "figures=true",
        ],
        "reconstruct",
    )
    reconstruct(cfg)
    figures = sorted((folder / "figures").glob("*.png"))
    if figures:
        shutil.copyfile(figures[len(figures) // 2], root / "docs" / "overview.png")


def _locations(
    root: Path | None, data: Path | None, out_dir: Path | None, runs: str
) -> tuple[Path, Path, Path]:
    """The repository, the synthetic set (written if missing) and the folder of the runs
    (``outputs/<runs>`` by default)."""
    root = Path(root or project_root())
    data = Path(data) if data else default_data(root / "data")
    out_dir = Path(out_dir) if out_dir else root / "outputs" / runs
    return root, data, out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.results", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps per model")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--points", type=int, default=6, help="validations per run (log-spaced)")
    parser.add_argument("--data", type=Path, help="data set (default: data/colin27)")
    parser.add_argument("--out", type=Path, help="write the runs as JSON here too")
    parser.add_argument("--rows", nargs="*", help="only these rows (names of ROWS)")
    args = parser.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    unknown = set(args.rows or ()) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; rows: {list(ROWS)}")
    runs = make_results(args.steps, seeds, args.data, points=args.points, rows=args.rows)
    text = json.dumps({"results": runs, "machine": machine()}, indent=2)
    if args.out:
        args.out.write_text(text)
    print(f"{len(runs)} run(s); the table is in docs/results.md")


if __name__ == "__main__":
    main()
