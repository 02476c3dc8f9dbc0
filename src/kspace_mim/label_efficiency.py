"""The label-efficiency curve, generated: ``python -m kspace_mim.label_efficiency``
(``make results-label``).

Does masked modeling help when fully sampled scans are scarce? One network for every row
(SimMIM-Swin ``tiny``, image domain, 4x equispaced, batch 1, ``experiment=results``):

- label-free pre-training on the undersampled-only copy of every training volume
  (fastMRI's test layout: the fully sampled k-space is never written): SSDU
  (``supervision=ssdu``, as published) or masked modeling of the acquired samples with
  SimMIM's patch masks (``supervision=mim``); and, as an ablation that *does* use fully
  sampled data, today's supervised patch-mask pre-training (``mask=random0.6``);
- then supervised fine-tuning on the first N fully sampled training volumes, the same
  steps for every fine-tuning;
- controls: from scratch on the N volumes at the fine-tuning steps and at the total
  (pre-training + fine-tuning) steps; at N = 0 the label-free models alone (their last
  checkpoint: no label chooses it).

Numbers are of the held-out test volumes (``test_full``, reconstructed and scored as the
results table's), 3 seeds, per-volume files in ``docs/label_efficiency/`` and paired
statistics (:mod:`kspace_mim.compare`) against "from scratch" at each N.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path
from typing import Any, NamedTuple

from kspace_mim.bench.timing import machine
from kspace_mim.compare import compare, seed_mean_volumes, significant
from kspace_mim.data.synthesize import DEFAULT_SET, synthesize
from kspace_mim.files import write_json
from kspace_mim.results import (
    FLAT,
    METRICS,
    Row,
    _locations,
    curve,
    data_grid,
    flops_per_step,
    last_gain,
    slug,
    test_evaluations,
    train_once,
    train_overrides,
)
from kspace_mim.utils import write_generated

MODEL = ("model=swin", "model.size=tiny", "mask=equispaced4x")
ACCELERATION = 4


class Pretraining(NamedTuple):
    """How a pre-trained row's network starts: its overrides, and whether it learns from
    the undersampled-only copy (no label) or from the fully sampled train folder."""

    name: str
    overrides: tuple[str, ...]
    label_free: bool


PRETRAININGS = {
    "ssdu": Pretraining("SSDU", ("supervision=ssdu",), True),
    "mim": Pretraining("masked modeling (patches)", ("supervision=mim",), True),
    "patch": Pretraining("supervised patch masks", ("mask=random0.6",), False),
}
ZERO_FILLED = "zero-filled"
SCRATCH = "from scratch"
SCRATCH_TOTAL = "from scratch, equal total steps"


def tuned(kind: str) -> str:
    note = "" if PRETRAININGS[kind].label_free else " (fully sampled pre-training)"
    return f"{PRETRAININGS[kind].name} + fine-tuned{note}"


def alone(kind: str) -> str:
    return f"{PRETRAININGS[kind].name} alone"


def row_names() -> list[str]:
    """Every row, in table order (the N = 0 rows first)."""
    free = [k for k, p in PRETRAININGS.items() if p.label_free]
    return [ZERO_FILLED, *map(alone, free), SCRATCH, SCRATCH_TOTAL, *map(tuned, PRETRAININGS)]


def undersampled_data(data: Path, **synthesis: Any) -> Path:
    """The synthetic train volumes as a scanner that never samples fully writes them: the
    same anatomy (the same seeds; ``synthesis``: the arguments the train folder was
    written with, the defaults otherwise), fastMRI's test layout, 4x equispaced. Written
    if missing."""
    folder = data / "multicoil_train_undersampled4x"
    if not folder.is_dir():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        synthesis = {**DEFAULT_SET, "volumes": None, **synthesis}
        synthesize(
            tmp, split="train", progress=False, undersampled=True, accelerations=(4,), **synthesis
        )
        tmp.rename(folder)
    return folder


def _test(checkpoint: str, data: Path, folder: Path) -> dict:
    """The held-out test evaluation of one checkpoint at 4x (per volume)."""
    # Quoted: Lightning's checkpoint names hold '=' (best-epoch=003.ckpt).
    return test_evaluations([f"ckpt='{checkpoint}'"], data, folder, (ACCELERATION,))[ACCELERATION]


def label_free_run(
    overrides: tuple[str, ...],
    folder: Path,
    data: Path,
    undersampled: Path | None,
    steps: int,
    seed: int,
    points: int,
) -> dict[str, Any]:
    """One pre-training run in ``folder`` (on ``undersampled`` when given); its last
    checkpoint (where fine-tuning starts), curve, and the held-out test of that last
    checkpoint when it learned without labels (no label chooses it)."""
    where = [f"data.train_path={undersampled}"] if undersampled else []
    metrics = train_once(
        [*train_overrides(data, steps, seed, points), *MODEL, *overrides, *where], folder / "train"
    )
    run_dir = Path(metrics["run_dir"])
    last = run_dir / "checkpoints" / "last.ckpt"
    test = _test(str(last), data, folder) if undersampled else None
    return {
        "seed": seed,
        "checkpoint": str(last),
        "steps": metrics["max_steps"],  # what the run read trained for
        "curve": curve(run_dir),
        "test": test,
    }


def pretrain(
    kind: str, data: Path, undersampled: Path, steps: int, seed: int, out: Path, points: int
) -> dict[str, Any]:
    """The pre-training of one kind (:data:`PRETRAININGS`) for one seed."""
    p = PRETRAININGS[kind]
    folder = out / "pretrain" / kind / f"seed{seed}"
    run = label_free_run(
        p.overrides, folder, data, undersampled if p.label_free else None, steps, seed, points
    )
    return {"kind": kind, **run}


# Label-free variants measured at N = 0 (docs/label_free_variants.md), against the first.
VARIANTS: dict[str, tuple[str, ...]] = {
    "SSDU as published (the default)": ("supervision=ssdu",),
    # 0.4 of every acquired sample at 4x on this grid is about 58 % of the outer ones.
    "SSDU, the previous split (centre columns kept, fresh each step, old scale)": (
        "supervision=ssdu",
        "supervision.protect=acs",
        "supervision.loss_fraction=0.58",
        "supervision.resample=step",
        "supervision.renormalize=false",
    ),
    "SSDU, a fresh split each step": ("supervision=ssdu", "supervision.resample=step"),
    "SSDU, multi-mask (K = 4 fixed splits)": ("supervision=ssdu", "supervision.splits=4"),
    "SSDU, input not renormalised": ("supervision=ssdu", "supervision.renormalize=false"),
    "SSDU, loss weighted by the selection density": (
        "supervision=ssdu",
        "supervision.weighting=density",
    ),
    "masked modeling (the default: 8 x 8 patches, 40 %)": ("supervision=mim",),
    "masked modeling, 4 x 4 patches": ("supervision=mim", "supervision.patch_size=4"),
    "masked modeling, 60 % of the patches": ("supervision=mim", "supervision.ratio=0.6"),
    "masked modeling, k-space encoder with mask tokens": (
        "supervision=mim",
        "model.domain=kspace",
    ),
}


def make_variants(
    seeds: tuple[int, ...] = (0, 1, 2),
    steps: int = 600,
    points: int = 5,
    data: Path | None = None,
    out_dir: Path | None = None,
    root: Path | None = None,
    variants: dict[str, tuple[str, ...]] | None = None,
) -> list[dict[str, Any]]:
    """Each label-free variant trained on the undersampled-only copy for ``steps``, tested
    at its last checkpoint; docs/label_free_variants.md pairs each with the first. The
    defaults share their runs with the curve's pre-training (the same folders)."""
    from tqdm.auto import tqdm

    root, data, out_dir = _locations(root, data, out_dir, "label_efficiency")
    undersampled = undersampled_data(data)
    variants = variants or VARIANTS
    shared = {("supervision=ssdu",): "ssdu", ("supervision=mim",): "mim"}
    runs = []
    for name, overrides in tqdm(list(variants.items()), desc="label-free variants"):
        for seed in seeds:
            kind = shared.get(tuple(overrides))
            folder = out_dir / "pretrain" / kind if kind else out_dir / "variants" / slug(name)
            run = label_free_run(
                overrides, folder / f"seed{seed}", data, undersampled, steps, seed, points
            )
            runs.append({**run, "row": name, "labels": 0})
    rows = row_files(runs, root / "docs" / "label_free_variants")
    names = list(variants)
    lines = [
        f"Label-free training only (N = 0): SimMIM-Swin `tiny`, {steps} steps on the "
        "undersampled-only copy of the training volumes, 4x, the last checkpoint, "
        f"held-out test volumes, {len(seeds)} seeds. Δ: paired by volume against "
        f"**{names[0]}** (95 % bootstrap CI); ✓ = significant.",
        "",
        "| variant | SSIM | PSNR | Δ SSIM [95 % CI] | sig. |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        r = rows[(name, 0)]
        delta, mark, _ = _delta(rows, (names[0], 0), r)
        lines.append(f"| {name} | {r['ssim']:.4f} | {r['psnr']:.2f} | {delta} | {mark} |")
    write_generated(
        root,
        "label_free_variants",
        "Label-free variants",
        "make results-label",
        "\n".join(lines) + "\n",
    )
    return runs


def finetune(
    name: str,
    labels: int | None,
    data: Path,
    steps: int,
    seed: int,
    out: Path,
    points: int,
    start: dict | None = None,
) -> dict[str, Any]:
    """Supervised training on the first ``labels`` fully sampled volumes (None: all),
    from ``start`` (a pre-training run) or from scratch; tested at its checkpoint chosen
    on validation."""
    folder = out / f"n{labels or 'all'}" / slug(name) / f"seed{seed}"
    extra = [f"data.train_volumes={labels}"] if labels else []
    if start is not None:
        extra.append(f"init_from={start['checkpoint']}")
    overrides = [*train_overrides(data, steps, seed, points), *MODEL, *extra]
    metrics = train_once(overrides, folder / "train")
    run_dir = Path(metrics["run_dir"])
    offset = start["steps"] if start else 0
    offset_s = start["curve"][-1]["train_s"] if start and start["curve"] else 0.0
    return {
        "row": name,
        "labels": labels,
        "seed": seed,
        "steps": metrics["max_steps"] + offset,
        "checkpoint_step": (metrics["checkpoint_step"] or 0) + offset,
        "curve": curve(run_dir, offset, offset_s),
        "test": _test(metrics["checkpoint"], data, folder),
    }


def make_label_efficiency(
    labels: tuple[int | None, ...] = (1, 2, 4, None),
    seeds: tuple[int, ...] = (0, 1, 2),
    pretrain_steps: int = 600,
    finetune_steps: int = 300,
    points: int = 5,
    data: Path | None = None,
    out_dir: Path | None = None,
    root: Path | None = None,
    synthesis: dict | None = None,
) -> list[dict[str, Any]]:
    """Every run of the curve (resumable: finished runs are read back), then the row
    files, the table (docs/label_efficiency.md and the README) and the plot."""
    from tqdm.auto import tqdm

    root, data, out_dir = _locations(root, data, out_dir, "label_efficiency")
    undersampled = undersampled_data(data, **(synthesis or {}))
    volumes = len(list((data / "multicoil_train").glob("*.h5")))
    zero = test_evaluations(["model=zero_filled"], data, out_dir / "zero_filled", (ACCELERATION,))
    runs: list[dict[str, Any]] = [
        {
            "row": ZERO_FILLED,
            "labels": 0,
            "seed": None,
            "steps": 0,
            "curve": [],
            "test": zero[ACCELERATION],
        }
    ]
    jobs = len(seeds) * (len(PRETRAININGS) + len(labels) * (2 + len(PRETRAININGS)))
    bar = tqdm(total=jobs, desc="label-efficiency runs", unit="run")
    for seed in seeds:
        starts = {}
        for kind, p in PRETRAININGS.items():
            starts[kind] = pretrain(kind, data, undersampled, pretrain_steps, seed, out_dir, points)
            bar.update()
            if p.label_free:
                runs.append({**starts[kind], "row": alone(kind), "labels": 0})
        total = pretrain_steps + finetune_steps
        for n in labels:
            runs.append(finetune(SCRATCH, n, data, finetune_steps, seed, out_dir, points))
            runs.append(finetune(SCRATCH_TOTAL, n, data, total, seed, out_dir, points))
            bar.update(2)
            for kind in PRETRAININGS:
                runs.append(
                    finetune(
                        tuned(kind), n, data, finetune_steps, seed, out_dir, points, starts[kind]
                    )
                )
                bar.update()
    bar.close()
    for r in runs:
        r["labels"] = volumes if r["labels"] is None else r["labels"]
    grid, coils = data_grid(data)
    flops = flops_per_step(Row(MODEL), grid, coils)  # one network: alike in every row
    rows = row_files(runs, root / "docs" / "label_efficiency", flops)
    # The steps the table states are those of the runs it read.
    read_pre = {r["steps"] for r in runs if r["row"] in map(alone, PRETRAININGS)}
    read_fine = {r["steps"] for r in runs if r["row"] == SCRATCH}
    text = table_markdown(
        rows,
        read_pre.pop() if len(read_pre) == 1 else pretrain_steps,
        read_fine.pop() if len(read_fine) == 1 else finetune_steps,
        len(seeds),
        volumes,
    )
    save_plot(rows, root / "docs" / "label_efficiency.png", volumes)
    text += "\n![SSIM against labelled volumes](docs/label_efficiency.png)\n"
    summary = summary_markdown(rows, len(seeds))
    summary += "\n![SSIM against labelled volumes](docs/label_efficiency.png)\n"
    write_generated(
        root, "label_efficiency", "Label efficiency", "make results-label", text, summary
    )
    return runs


def row_files(
    runs: list[dict[str, Any]], out: Path, flops_per_step: float | None = None
) -> dict[tuple[str, int], dict]:
    """One JSON per (row, N) in ``out``: per-volume means over seeds (``volumes``, what
    :mod:`kspace_mim.compare` pairs), every seed's evaluation, steps, training FLOPs and
    minutes (pre-training included), curves and the last interval's gain."""
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["row"], r["labels"]), []).append(r)
    rows = {}
    for (name, n), mine in groups.items():
        evaluations = [r["test"] for r in mine]
        volumes = seed_mean_volumes(evaluations)
        content = {
            "row": name,
            "labels": n,
            "acceleration": ACCELERATION,
            "split": "test",
            "seeds": [r["seed"] for r in mine],
            **{m: statistics.fmean(v[m] for v in volumes.values()) for m in METRICS},
            "ssim_per_seed": [e["ssim"] for e in evaluations],
            "steps": mine[0]["steps"],
            "checkpoint_steps": [r.get("checkpoint_step", r["steps"]) for r in mine],
            "train_flops": (flops_per_step or 0) * mine[0]["steps"] or None,
            # Curves carry the pre-training's seconds as their offset: the last is the total.
            "train_minutes": statistics.fmean(r["curve"][-1]["train_s"] / 60 for r in mine)
            if all(r["curve"] for r in mine)
            else None,
            **last_gain(mine),
            "curves": [r["curve"] for r in mine],
            "volumes": volumes,
            "evaluations": evaluations,
        }
        write_json(out / f"{slug(name)}_n{n}.json", content)
        rows[(name, n)] = content
    return rows


def _delta(rows: dict, reference: tuple[str, int], row: dict) -> tuple[str, str, dict | None]:
    ref = rows.get(reference)
    if ref is None or ref is row:
        return "-", "", None
    stat = compare(ref["volumes"], row["volumes"])["ssim"]
    lo, hi = stat["ci95"]
    return (
        f"{stat['mean_difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]",
        "✓" if significant(stat) else "·",
        stat,
    )


def table_markdown(
    rows: dict, pretrain_steps: int, finetune_steps: int, seeds: int, volumes: int
) -> str:
    """The table, N by N, with paired differences against from scratch (at the
    fine-tuning steps, and at the equal total steps), and its reading."""
    lines = [
        f"Held-out test volumes of the default set (Colin27 brain, 8 coils, 64 x 64 images), "
        f"4x equispaced, SimMIM-Swin `tiny` (image domain) in every row, batch 1, {seeds} "
        f"seeds. Label-free pre-training: {pretrain_steps} steps on the undersampled-only "
        f"copy of all {volumes} training volumes; fine-tuning: {finetune_steps} supervised "
        "steps on the first N fully sampled volumes (4 slices each), the checkpoint chosen "
        "on validation (the label-free rows at N = 0: their last); steps are cumulative "
        "(a fine-tuned row chosen near its pre-training's steps kept little of its "
        "fine-tuning). Δ: paired by volume (means over seeds) "
        "against **from scratch** at the same N (at N = 0: against zero-filling; 95 % "
        "bootstrap CI); Δ total: against "
        "from scratch at the equal total steps; ✓ = significant (Wilcoxon p < 0.05 and "
        "the CI excludes 0), · = not. FLOPs: the same network in every row, so training "
        "FLOPs follow the steps; minutes on this noisy 2-core CPU are beside them, not "
        "for ranking.",
        "",
        "| N labelled | training | SSIM | PSNR | Δ SSIM vs scratch [95 % CI] | sig. "
        "| Δ SSIM vs equal total steps | sig. | steps | chosen at step (per seed) "
        "| train GFLOP | train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    findings = []
    for n in sorted({n for _, n in rows}):
        # At N = 0 there is nothing to train from scratch on: the reference is zero-filling.
        reference = (SCRATCH, n) if n else (ZERO_FILLED, 0)
        for name in row_names():
            r = rows.get((name, n))
            if r is None:
                continue
            delta, mark, stat = _delta(rows, reference, r)
            total_delta, total_mark, total_stat = ("-", "", None)
            if name not in (SCRATCH, SCRATCH_TOTAL) and n:
                total_delta, total_mark, total_stat = _delta(rows, (SCRATCH_TOTAL, n), r)
            if stat is not None and name != SCRATCH_TOTAL:
                findings.append((n, name, stat, total_stat))
            steps = r["steps"] or "-"
            chosen = " / ".join(str(c) for c in r["checkpoint_steps"] if c) or "-"
            gflop = f"{r['train_flops'] / 1e9:,.0f}" if r.get("train_flops") else "-"
            minutes = f"{r['train_minutes']:.1f}" if r.get("train_minutes") else "-"
            lines.append(
                f"| {n} | {name} | {r['ssim']:.4f} | {r['psnr']:.2f} | {delta} | {mark} "
                f"| {total_delta} | {total_mark} | {steps} | {chosen} | {gflop} | {minutes} |"
            )
    lines += ["", reading(findings, shape_differences(rows))]
    if flatness(rows):
        lines += ["", flatness(rows)]
    return "\n".join(lines) + "\n"


def summary_markdown(rows: dict, seeds: int) -> str:
    """The README's short form: SSIM of the label-free rows against from scratch at the
    equal total steps (at N = 0: against zero-filling), with the paired verdict."""
    free = [k for k, p in PRETRAININGS.items() if p.label_free]
    head = [SCRATCH_TOTAL, *(f"{PRETRAININGS[k].name}, then fine-tuned" for k in free)]
    lines = [
        "| N labelled | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(head),
    ]
    for n in sorted({n for _, n in rows}):
        reference = (SCRATCH_TOTAL, n) if n else (ZERO_FILLED, 0)
        ref = rows.get(reference)
        cells = [f"{ref['ssim']:.4f}{'' if n else ' (zero-filled)'}" if ref else "-"]
        for kind in free:
            r = rows.get((tuned(kind) if n else alone(kind), n))
            if r is None:
                cells.append("-")
                continue
            delta, mark, stat = _delta(rows, reference, r)
            d = f" ({stat['mean_difference']:+.3f} {mark})" if stat is not None else ""
            cells.append(f"{r['ssim']:.4f}{d}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return (
        f"Held-out test SSIM, 4x, means of {seeds} seeds; in brackets the paired difference "
        "against the first column, ✓ significant (Wilcoxon p < 0.05 and the 95 % bootstrap "
        "CI excludes 0), · not. Full table, the supervised patch-mask ablation, steps, "
        "FLOPs, minutes and which curves still rose: "
        "[docs/label_efficiency.md](docs/label_efficiency.md).\n\n" + "\n".join(lines) + "\n"
    )


def flatness(rows: dict) -> str:
    """Which validation curves had flattened by their last interval (the label-free
    pre-trainings, and every row at the largest N), and which still rose."""
    largest = max((n for _, n in rows), default=0)
    picked = [(name, n) for name in row_names() for n in (0, largest) if (name, n) in rows]
    gains = [(key, rows[key]) for key in dict.fromkeys(picked) if "last_gain" in rows[key]]
    if not gains:
        return ""
    parts = [
        f"{name} (N = {n}) {r['last_gain']:+.3f} ({r['last_steps'][0]} -> {r['last_steps'][1]})"
        for (name, n), r in gains
    ]
    rising = [f"{name} (N = {n})" for (name, n), r in gains if r["last_gain"] > FLAT]
    verdict = (
        f"Still rising (more than {FLAT} over the last interval): {'; '.join(rising)}: at that "
        "N the comparison is of these budgets, not of converged training."
        if rising
        else "Every one of these curves has flattened."
    )
    return (
        "Validation SSIM gained over each curve's last interval: "
        + "; ".join(parts)
        + (f". {verdict}")
    )


def _verdict(stat: dict) -> str:
    d = stat["mean_difference"]
    if not significant(stat):
        return "not distinguishable from"
    return "significantly above" if d > 0 else "significantly below"


def shape_differences(rows: dict) -> list[str]:
    """Masked modeling (patches) against SSDU (points), paired by volume, at every N."""
    out = []
    for n in sorted({n for _, n in rows}):
        pair = [rows.get(((alone if n == 0 else tuned)(k), n)) for k in ("ssdu", "mim")]
        if None in pair:
            continue
        stat = compare(pair[0]["volumes"], pair[1]["volumes"])["ssim"]
        lo, hi = stat["ci95"]
        sig = "significant" if significant(stat) else "not significant"
        out.append(f"N = {n}: {stat['mean_difference']:+.4f} [{lo:+.4f}, {hi:+.4f}] ({sig})")
    return out


def _listed(values: list[int]) -> str:
    return ", ".join(map(str, values)) or "none"


def reading(findings: list, shapes: list[str] | None = None) -> str:
    """Where pre-training helps, by how much and with what certainty, in words: a summary
    per pre-training (against from scratch at equal total steps, the control that counts
    the pre-training's steps), then every comparison."""
    parts, summary, shapes = [], [], shapes or []
    for n, name, stat, total in findings:
        against = "from scratch" if n else "zero-filling"
        text = f"N = {n}: {name} is {_verdict(stat)} {against} ({stat['mean_difference']:+.4f})"
        if total is not None:
            t = total["mean_difference"]
            sig = "significant" if significant(total) else "not significant"
            text += f", {t:+.4f} against equal total steps ({sig})"
        parts.append(text)
    for kind in PRETRAININGS:
        mine = [(n, total) for n, name, _, total in findings if name == tuned(kind) and total]
        helps = [n for n, t in mine if significant(t) and t["mean_difference"] > 0]
        hurts = [n for n, t in mine if significant(t) and t["mean_difference"] < 0]
        ties = [n for n, t in mine if not significant(t)]
        if not mine:
            continue
        summary.append(
            f"**{tuned(kind)}** against from scratch at the same total steps: significantly "
            f"better at N = {_listed(helps)}; significantly worse at N = {_listed(hurts)}; "
            f"not distinguishable at N = {_listed(ties)}."
        )
    text = " ".join(summary)
    if shapes:
        text += (" " if text else "") + "Patches against points (masked modeling against SSDU, "
        text += "paired): " + "; ".join(shapes) + "."
    if parts:
        text += ("\n\n" if text else "") + "Every comparison: " + "; ".join(parts) + "."
    return text


def save_plot(rows: dict, path: Path, volumes: int) -> Path:
    """Left: test SSIM against N (the label-free rows at N = 0, zero-filling as a line).
    Right: validation curves at the smallest N, the label-free pre-training before them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {name: f"C{i}" for i, name in enumerate(row_names())}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for name in row_names():
        points = sorted((n, r) for (row, n), r in rows.items() if row == name)
        if name == ZERO_FILLED and points:
            ax.axhline(points[0][1]["ssim"], color=colours[name], ls="--", label=name)
            continue
        if not points:
            continue
        xs = [n for n, _ in points]
        ys = [r["ssim"] for _, r in points]
        spread = [statistics.pstdev(r["ssim_per_seed"]) for _, r in points]
        ax.errorbar(
            xs, ys, yerr=spread, marker="o", ms=4, capsize=3, label=name, color=colours[name]
        )
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(f"fully sampled training volumes N (of {volumes})")
    ax.set_ylabel("test SSIM, 4x (mean over seeds; bars: seed std)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    smallest = min((n for _, n in rows if n), default=None)
    for name in row_names():
        r = rows.get((name, 0)) or rows.get((name, smallest))
        for i, c in enumerate(r["curves"] if r else []):
            if c:
                ax.plot(
                    [p["step"] for p in c],
                    [p["ssim"] for p in c],
                    marker=".",
                    color=colours[name],
                    label=name if i == 0 else None,
                )
    ax.set_xlabel("cumulative optimizer steps (label-free pre-training, then fine-tuning)")
    ax.set_ylabel(f"validation SSIM (fine-tuning at N = {smallest})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _labels(text: str) -> tuple[int | None, ...]:
    values = tuple(None if t == "all" else int(t) for t in text.split(","))
    if any(v is not None and v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--labels {text}: positive counts or 'all'")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.label_efficiency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--labels",
        type=_labels,
        default=(1, 2, 4, None),
        help="fully sampled volumes N to fine-tune on, e.g. 1,2,4,all",
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--points", type=int, default=5, help="validations per run (log-spaced)")
    parser.add_argument("--data", type=Path, help="data set (default: data/colin27)")
    parser.add_argument("--out", type=Path, help="write the runs as JSON here too")
    parser.add_argument(
        "--variants",
        action="store_true",
        help="the label-free variants at N = 0 instead (docs/label_free_variants.md)",
    )
    args = parser.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    if args.variants:
        runs = make_variants(seeds, args.pretrain_steps, args.points, args.data)
        print(f"{len(runs)} run(s); the table is in docs/label_free_variants.md")
        return
    runs = make_label_efficiency(
        args.labels, seeds, args.pretrain_steps, args.finetune_steps, args.points, args.data
    )
    if args.out:
        write_json(args.out, {"runs": runs, "machine": machine()})
    print(f"{len(runs)} row run(s); the table is in docs/label_efficiency.md and the README")


if __name__ == "__main__":
    main()
