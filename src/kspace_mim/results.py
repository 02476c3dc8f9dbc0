"""The README's results table, generated: ``python -m kspace_mim.results`` (``make results``).

Every model trains for the same wall-clock budget on the same machine
(``trainer.max_time``: what a user pays for; the steps each model reached are shown)
on the synthetic set, once per seed, and is validated at 4x and 8x (equispaced,
fastMRI centre fractions). Rows are means over the seeds with their range. The table
goes to ``docs/results.md`` and into the README between the results markers: no number
in it is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from kspace_mim.bench.timing import machine
from kspace_mim.config import compose, project_root
from kspace_mim.data.synthesize import DEFAULT_VOLUMES, ensure_synthetic, synthesize
from kspace_mim.train import run
from kspace_mim.utils import markers, write_generated

MARK_START, MARK_END = markers("results")

# name -> (overrides, pre-trained with SimMIM patch masks first); `tiny` presets: VarNet
# and the unrolled network have about the same parameters (2.1 and 2.2 M).
MODELS: dict[str, tuple[list[str], bool]] = {
    "zero-filled": (["encoder=zero_filled"], False),
    "U-Net (fastMRI)": (["encoder=unet", "encoder.size=tiny"], False),
    "E2E-VarNet (fastMRI)": (["encoder=varnet", "encoder.size=tiny"], False),
    "SimMIM-Swin": (["encoder=swin", "encoder.size=tiny"], False),
    "unrolled": (["encoder=unrolled", "encoder.size=tiny"], False),
    "unrolled, pre-trained + fine-tuned": (["encoder=unrolled", "encoder.size=tiny"], True),
}
VARNET, UNROLLED = "E2E-VarNet (fastMRI)", ("unrolled", "unrolled, pre-trained + fine-tuned")


def default_data(root: Path) -> Path:
    """The synthetic default set (written if missing, as on any first use)."""
    folder = root / "synthetic"
    ensure_synthetic({s: folder / f"multicoil_{s}" for s in ("train", "val")}, "multicoil")
    return folder


def as_max_time(seconds: int) -> str:
    """Seconds -> Lightning's ``DD:HH:MM:SS``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"00:{hours:02d}:{minutes:02d}:{secs:02d}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _steps_and_parameters(run_dir: Path) -> tuple[int, int]:
    """Steps the run reached and its model's parameters (not its buffers), from last.ckpt."""
    from kspace_mim.modules import load_module

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        return 0, 0
    steps = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    return int(steps), sum(p.numel() for p in load_module(ckpt).parameters())


def make_results(
    budget_s: int = 90,
    seeds: tuple[int, ...] = (0, 1),
    data: Path | None = None,
    out_dir: Path | None = None,
    batch_size: int = 4,
    root: Path | None = None,
    steps: int | None = None,
) -> list[dict[str, Any]]:
    """Train and validate every model at an equal wall-clock budget (or, for tests, an
    equal number of ``steps``), once per seed; write docs/results.md and the README table
    in ``root`` (the repository by default). Returns one row per model, acceleration
    and seed."""
    root, data, out_dir = _locations(root, data, out_dir, "results")
    common = _common_overrides(data, batch_size, budget_s, steps)
    rows = []
    for accel in (4, 8):
        for name, (overrides, pretrain) in MODELS.items():
            trained = name != "zero-filled"
            for seed in seeds if trained else seeds[:1]:
                run_overrides = [*common, *overrides, f"mask=equispaced{accel}x", f"seed={seed}"]
                if pretrain:  # SimMIM pre-training with random patch masks, once per seed
                    pre_dir = out_dir / f"pretrain_{_slug(name)}_seed{seed}"
                    ckpt = pre_dir / "checkpoints" / "last.ckpt"
                    if not ckpt.is_file():
                        pre = [*common, *overrides, "mask=random0.6", f"seed={seed}"]
                        run(compose(pre), pre_dir)
                    run_overrides.append(f"model.init_from={ckpt}")
                run_dir = out_dir / f"{accel}x" / _slug(name) / f"seed{seed}"
                row = _train_row(run_overrides, run_dir, name, accel, seed)
                rows.append({**row, "pretrained": pretrain, "trained": trained})
    write_table(rows, budget_s, steps, batch_size, len(seeds), root)
    save_overview(rows, root)
    return rows


def _locations(
    root: Path | None, data: Path | None, out_dir: Path | None, runs: str
) -> tuple[Path, Path, Path]:
    """The repository, the synthetic set (written if missing) and the folder of the runs
    (``outputs/<runs>`` by default)."""
    root = Path(root or project_root())
    data = Path(data) if data else default_data(root / "data")
    out_dir = Path(out_dir) if out_dir else root / "outputs" / runs
    return root, data, out_dir


def _common_overrides(data: Path, batch_size: int, budget_s: int, steps: int | None) -> list:
    """What every run of a results table shares: data, batch and the budget."""
    bound = (
        [f"trainer.max_steps={steps}", "trainer.max_epochs=100000"]
        if steps
        else ["trainer.max_epochs=-1", f"trainer.max_time={as_max_time(budget_s)}"]
    )
    return [
        f"data.train_path={data}/multicoil_train",
        f"data.val_path={data}/multicoil_val",
        f"data.batch_size={batch_size}",
        "data.num_workers=0",
        "trainer.check_val_every_n_epoch=100000",  # validate once, after the budget
        "trainer.enable_progress_bar=false",
        *bound,
    ]


def _train_row(overrides: list, run_dir: Path, name: str, accel: int, seed: int) -> dict:
    """Train (or only validate) one configuration; its metrics, steps and parameters."""
    start = time.perf_counter()
    metrics = run(compose(overrides), run_dir)
    reached, params = _steps_and_parameters(run_dir)
    return {
        "model": name,
        "acceleration": accel,
        "seed": seed,
        "ssim": metrics["ssim"],
        "psnr": metrics["psnr"],
        "nmse": metrics["nmse"],
        "kspace_ssim": metrics.get("kspace_ssim"),
        "steps": reached,
        "parameters": params,
        "minutes": (time.perf_counter() - start) / 60,
        "run_dir": str(run_dir),
    }


# --- the label-efficient table (SSDU) -------------------------------------------------
SSDU_MODEL = ["encoder=swin", "encoder.size=tiny"]
SUPERVISED_FEW, SSDU_ONLY, SSDU_TUNED, SUPERVISED_ALL = (
    "supervised, {n} fully sampled volumes",
    "SSDU only, {m} undersampled-only volumes",
    "SSDU pre-trained + supervised fine-tuned on the {n}",
    "supervised, all {m} volumes fully sampled",
)


def undersampled_data(data: Path, **synthesis: Any) -> Path:
    """The synthetic train volumes as a scanner that never samples fully writes them: the
    same anatomy (the same seeds; ``synthesis``: the arguments the train folder was
    written with, the defaults otherwise), fastMRI's test layout, 4x equispaced. Written
    if missing."""
    folder = data / "multicoil_train_undersampled4x"
    if not folder.is_dir():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        synthesis = {"volumes": DEFAULT_VOLUMES["train"], **synthesis}
        synthesize(
            tmp, split="train", progress=False, undersampled=True, accelerations=(4,), **synthesis
        )
        tmp.rename(folder)
    return folder


def make_label_results(
    budget_s: int = 90,
    seeds: tuple[int, ...] = (0, 1),
    data: Path | None = None,
    out_dir: Path | None = None,
    batch_size: int = 4,
    root: Path | None = None,
    steps: int | None = None,
    few: int = 2,
    synthesis: dict | None = None,
) -> list[dict[str, Any]]:
    """The label-efficient workflow at 4x, SimMIM-Swin ``tiny``, an equal budget per run:
    zero-filled; supervised on ``few`` fully sampled volumes; SSDU on every train volume,
    undersampled only; that SSDU model fine-tuned supervised on the ``few``; supervised on
    every volume fully sampled. Writes docs/label_efficiency.md and the README table.
    ``synthesis``: how the train folder was synthesized (default: the default set)."""
    root, data, out_dir = _locations(root, data, out_dir, "results_ssdu")
    undersampled = undersampled_data(data, **(synthesis or {}))
    m = len(list(undersampled.glob("*.h5")))
    common = [*_common_overrides(data, batch_size, budget_s, steps), "mask=equispaced4x"]
    rows = [
        {
            **_train_row(
                [*common, "encoder=zero_filled"],
                out_dir / "zero_filled",
                "zero-filled",
                4,
                seeds[0],
            ),
            "trained": False,
            "kind": "zero_filled",
        }
    ]
    for seed in seeds:
        ssdu_ckpt = out_dir / "ssdu" / f"seed{seed}" / "checkpoints" / "last.ckpt"
        runs = {  # run folder -> (row name, overrides), in order: fine-tuning follows SSDU
            "supervised_few": (SUPERVISED_FEW, [f"data.train_volumes={few}"]),
            "ssdu": (SSDU_ONLY, ["supervision=ssdu", f"data.train_path={undersampled}"]),
            "ssdu_finetuned": (
                SSDU_TUNED,
                [f"data.train_volumes={few}", f"model.init_from={ssdu_ckpt}"],
            ),
            "supervised_all": (SUPERVISED_ALL, []),
        }
        for folder, (template, extra) in runs.items():
            overrides = [*common, *SSDU_MODEL, *extra, f"seed={seed}"]
            run_dir = out_dir / folder / f"seed{seed}"
            row = _train_row(overrides, run_dir, template.format(n=few, m=m), 4, seed)
            rows.append({**row, "trained": True, "kind": folder})
    for r in rows:
        r["pretrained"] = r["kind"] == "ssdu_finetuned"
    table = label_table_markdown(rows, budget_s, steps, batch_size, len(seeds))
    write_generated(root, "label_efficiency", "Label efficiency (SSDU)", "make results-ssdu", table)
    return rows


def label_table_markdown(
    rows: list[dict[str, Any]], budget_s: int, steps: int | None, batch_size: int, seeds: int
) -> str:
    budget = f"{steps} steps" if steps else f"{budget_s} s of training"
    lines = [
        "Synthetic validation set (4 fully sampled volumes), 4x equispaced, SimMIM-Swin "
        f"`tiny`, {budget} per run (batch {batch_size}, the same machine; fine-tuning gets "
        f"the budget again on top of its SSDU pre-training), {seeds} seeds: means with their "
        "range in brackets. SSDU trains on the same anatomy written undersampled only "
        "(`synthesize --undersampled`, fastMRI's test layout), never seeing a fully "
        "sampled sample.",
        "",
        "| training | SSIM | PSNR | NMSE | steps reached |",
        "|---|---|---|---|---|",
    ]
    summaries = summarize(rows)
    for s in summaries:
        steps_text = f"{s['steps']:.0f}" if s["trained"] else "-"
        lines.append(
            f"| {s['model']} | {_mean_range(s, 'ssim', '.4f')} | {_mean_range(s, 'psnr', '.2f')}"
            f" | {_mean_range(s, 'nmse', '.4f')} | {steps_text} |"
        )
    by_kind = {s["kind"]: s for s in summaries}
    ssdu, full, zero = (by_kind.get(k) for k in ("ssdu", "supervised_all", "zero_filled"))
    few, tuned = by_kind.get("supervised_few"), by_kind.get("ssdu_finetuned")
    if ssdu and full and zero:
        gap = ssdu["ssim"] - full["ssim"]
        verdict = "within" if gap >= -0.03 else "not within"
        lines += [
            "",
            f"SSDU alone reaches SSIM {ssdu['ssim']:.4f}, {ssdu['ssim'] - zero['ssim']:+.4f} "
            f"over zero-filling and {gap:+.4f} against supervised training on the same "
            f"volumes fully sampled ({full['ssim']:.4f}): {verdict} the 0.03 goal.",
        ]
    if tuned and few:
        lines.append(
            f"With only the few fully sampled volumes, SSDU pre-training then fine-tuning "
            f"gives {tuned['ssim']:.4f} against {few['ssim']:.4f} supervised alone "
            f"({tuned['ssim'] - few['ssim']:+.4f})."
        )
    return "\n".join(lines) + "\n"


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and range over seeds per (model, acceleration), in the order of the rows."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["acceleration"]), []).append(r)
    out = []
    for (model, accel), runs in groups.items():
        summary: dict[str, Any] = {"model": model, "acceleration": accel, "seeds": len(runs)}
        for key in ("ssim", "psnr", "nmse", "kspace_ssim", "steps"):
            values = [r[key] for r in runs if r[key] is not None]
            summary[key] = statistics.fmean(values) if values else None
            summary[f"{key}_range"] = (min(values), max(values)) if values else None
        summary["parameters"] = runs[0]["parameters"]
        summary["pretrained"], summary["trained"] = runs[0]["pretrained"], runs[0]["trained"]
        summary["kind"] = runs[0].get("kind")  # the label-efficient table's run kind
        out.append(summary)
    return out


def save_overview(rows: list[dict[str, Any]], root: Path) -> Path | None:
    """The README's picture: validation panels of the best model at 4x (first seed)."""
    best = max(
        (s for s in summarize(rows) if s["acceleration"] == 4 and s["trained"]),
        key=lambda s: s["ssim"],
        default=None,
    )
    if best is None:
        return None
    run_dir = next(
        Path(r["run_dir"]) for r in rows if r["model"] == best["model"] and r["acceleration"] == 4
    )
    figures = sorted(run_dir.glob("figures/val_epoch*.png"))
    if not figures:
        return None
    target = root / "docs" / "overview.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(figures[-1], target)
    return target


def _mean_range(s: dict[str, Any], key: str, fmt: str) -> str:
    if s[key] is None:
        return "-"
    low, high = s[f"{key}_range"]
    text = format(s[key], fmt)
    return text if s["seeds"] == 1 else f"{text} ({format(low, fmt)}-{format(high, fmt)})"


def table_markdown(
    rows: list[dict[str, Any]], budget_s: int, steps: int | None, batch_size: int, seeds: int
) -> str:
    budget = f"{steps} steps" if steps else f"{budget_s} s of training"
    lines = [
        f"Synthetic validation set (4 volumes x 8 slices, 8 coils, 128x128 grid), `tiny` "
        f"models, {budget} each (batch {batch_size}, the same machine), {seeds} seeds: "
        "means with their range in brackets. Image metrics with the fastMRI definitions, "
        "k-space SSIM as the paper's. Pre-training (random patch masks, 0.6) gets the same "
        "budget again.",
        "",
        "| model | accel. | SSIM | PSNR | NMSE | k-space SSIM | parameters (M) | steps reached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summaries = summarize(rows)
    for s in summaries:
        steps_text = f"{s['steps']:.0f}" if s["trained"] else "-"
        params = f"{s['parameters'] / 1e6:.2f}" if s["trained"] else "-"
        lines.append(
            f"| {s['model']} | {s['acceleration']}x | {_mean_range(s, 'ssim', '.4f')} "
            f"| {_mean_range(s, 'psnr', '.2f')} | {_mean_range(s, 'nmse', '.4f')} "
            f"| {_mean_range(s, 'kspace_ssim', '.4f')} | {params} | {steps_text} |"
        )
    for accel in (4, 8):
        at = {s["model"]: s for s in summaries if s["acceleration"] == accel}
        if VARNET not in at:
            continue
        varnet = at[VARNET]
        parts = []
        for name in (u for u in UNROLLED if u in at):
            gap = at[name]["ssim"] - varnet["ssim"]
            extra = " (its pre-training budget on top)" if at[name]["pretrained"] else ""
            parts.append(f"{name} {at[name]['ssim']:.4f} ({gap:+.4f}){extra}")
        best = max((s for s in at.values() if s["trained"]), key=lambda s: s["ssim"])
        lines += [
            "",
            f"At {accel}x, against E2E-VarNet's SSIM {varnet['ssim']:.4f} (means over "
            f"{varnet['seeds']} seeds): {'; '.join(parts)}. The best model at this budget: "
            f"{best['model']} ({best['ssim']:.4f}, {best['steps']:.0f} steps).",
        ]
    return "\n".join(lines) + "\n"


def write_table(
    rows: list[dict[str, Any]],
    budget_s: int,
    steps: int | None,
    batch_size: int,
    seeds: int,
    root: Path,
) -> None:
    table = table_markdown(rows, budget_s, steps, batch_size, seeds)
    write_generated(root, "results", "Results", "make results", table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.results", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--budget", type=int, default=90, help="seconds of training per model")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--batch", type=int, default=4, help="batch size")
    parser.add_argument("--data", type=Path, help="synthetic set (default: data/synthetic)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here too")
    parser.add_argument(
        "--table",
        choices=("models", "ssdu"),
        default="models",
        help="models: every model at 4x and 8x; ssdu: the label-efficient table",
    )
    args = parser.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    make = make_results if args.table == "models" else make_label_results
    rows = make(args.budget, seeds, args.data, batch_size=args.batch)
    text = json.dumps({"results": rows, "machine": machine()}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
