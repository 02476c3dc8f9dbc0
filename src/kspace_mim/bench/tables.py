"""``bench tables``: the README's benchmark section and docs/bench.md from the JSON of
``bench data`` / ``bench train`` runs (one per machine)."""

from __future__ import annotations

import json
from pathlib import Path

from kspace_mim.config import project_root
from kspace_mim.utils import write_generated, write_section


def _machine_label(machine_info: dict) -> str:
    cpu = f"{machine_info['cpu_cores']}-core {machine_info['cpu']} CPU"
    return f"{machine_info['gpu']} + {cpu}" if machine_info.get("gpu") else cpu


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def bench_markdown(runs: list[dict]) -> str:
    """The README's benchmark tables from ``bench data`` / ``bench train`` JSON outputs."""
    lines = []
    data_runs = [r for r in runs if "data" in r]
    if data_runs:
        lines += [
            "Data pipeline (slices/s, median of interleaved repeats). *Loader*: what the "
            "DataLoader workers deliver (read, mask on the grid, target). *Device step*: "
            "grid crop, mask, coil compression and scaling, batched where training runs. "
            "*End to end*: both, as a training step receives them (`prepare_on=auto`: "
            "prepared in the loader on a CPU, on the GPU otherwise).",
            "",
            "| machine | k-space | workers | loader | fastMRI reference | bare h5 read "
            "| loader / fastMRI | loader / bare read | device step (on) | end to end |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in data_runs:
            d = r["data"]
            shape = "x".join(map(str, d["setup"]["kspace_shape"]))
            lines.append(
                f"| {_machine_label(r['machine'])} | {shape} | {d['setup']['workers']} "
                f"| {d['kspace_mim_slices_per_s']:.0f} | {d['fastmri_slices_per_s']:.0f} "
                f"| {d['raw_h5_slices_per_s']:.0f} | {d['speedup_vs_fastmri']:.2f}x "
                f"| {d['fraction_of_raw_read']:.2f} "
                f"| {d['device_step_slices_per_s']:.0f} ({d['setup']['device_step_on']}) "
                f"| {d['end_to_end_slices_per_s']:.0f} |"
            )
        lines += ["", "Where a slice's time goes (ms per slice):", ""]
        stages = list(data_runs[0]["data"]["stages_ms_per_slice"])
        lines += [
            "| machine | " + " | ".join(stages) + " |",
            "|---|" + "---|" * len(stages),
        ]
        for r in data_runs:
            ms = r["data"]["stages_ms_per_slice"]
            lines.append(
                f"| {_machine_label(r['machine'])} | "
                + " | ".join(_num(ms.get(k), ".2f") for k in stages)
                + " |"
            )
    for r in (r for r in runs if "train" in r):
        first = next(iter(r["train"].values()))
        grid = first["grid"] if isinstance(first["grid"], list) else [first["grid"]] * 2
        extra = ", ".join(f"`{o}`" for o in first.get("overrides", []))
        lines += [
            "",
            f"Training step on {_machine_label(r['machine'])} (forward, loss, backward, "
            f"optimizer; `{first['size']}` models, {first['coils']} coils, "
            f"{grid[0]}x{grid[1]} grid, batch {first['batch']}{', ' + extra if extra else ''}):",
            "",
            "| encoder | slices/s | parameters (M) | GFLOP / slice | peak CPU RSS (GB) "
            "| peak GPU memory (GB) | TFLOP/s | of bf16 peak |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in r["train"].items():
            peak = row.get("fraction_of_bf16_peak")
            lines.append(
                f"| {name} | {row['slices_per_s']:.1f} | {row['parameters'] / 1e6:.2f} "
                f"| {row['gflop_per_slice']:.2f} | {row['cpu_peak_rss_gb']:.2f} "
                f"| {_num(row.get('gpu_max_allocated_gb'), '.2f')} "
                f"| {_num(row.get('achieved_tflops'), '.2f')} "
                f"| {'-' if peak is None else f'{100 * peak:.1f}%'} |"
            )
        for name, label in (("unet", "fastmri.models.Unet"), ("varnet", "fastmri.models.VarNet")):
            row = r["train"].get(name, {})
            bare = row.get(f"bare_fastmri_{name}_slices_per_s")
            if bare is None:
                continue
            lines += [
                "",
                f"{name}: a bare `{label}` step on the same batch (same weights, an L1 on "
                f"its output) runs {bare:.1f} slices/s against our module's "
                f"{row['slices_per_s']:.1f}: overhead {row['module_overhead_ratio']:.2f}x "
                "(our step adds the pipeline's units, data consistency and the image losses).",
            ]
    lines += memory_lines(runs)
    return "\n".join(lines) + "\n"


def memory_lines(runs: list[dict]) -> list[str]:
    """``bench memory`` tables, each estimate beside the peak a GPU measured for the same
    family, preset, grid, coils and batch in a ``bench train`` run (bf16), when one did."""
    measured = {
        (name, row["size"], tuple(row["grid"]), row["coils"], row["batch"]): (
            row["gpu_max_allocated_gb"]
        )
        for r in runs
        for name, row in r.get("train", {}).items()
        if row.get("gpu_max_allocated_gb") and not row.get("overrides")
    }
    lines = []
    for r in (r for r in runs if "memory" in r):
        lines += [
            "",
            f"Peak training memory per slice batch (`bench memory` on "
            f"{_machine_label(r['machine'])}; forward, loss, backward, AdamW; a CPU "
            "estimate counts weights, gradients, AdamW state, the batch and the activations "
            "autograd saves):",
            "",
            "| family | preset | grid | coils | batch | precision | peak (GiB) | method "
            "| measured on a GPU (GiB) | estimate / measured |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in r["memory"]:
            key = (row["family"], row["size"], tuple(row["grid"]), row["coils"], row["batch"])
            gpu = measured.get(key)
            ratio = "-" if gpu is None else f"{row['peak_gib'] / gpu:.2f}"
            lines.append(
                f"| {row['family']} | {row['size']} | {'x'.join(map(str, row['grid']))} "
                f"| {row['coils']} | {row['batch']} | {row['precision']} "
                f"| {row['peak_gib']:.2f} | {row['method'].split(' (')[0]} "
                f"| {_num(gpu, '.2f')} | {ratio} |"
            )
    return lines


def write_tables(paths: list[Path], root: Path | None = None) -> Path:
    """docs/bench.md and the README's bench section from benchmark JSON files."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    command = "make bench  # python -m kspace_mim.bench tables " + " ".join(
        Path(p).name for p in paths
    )
    root = Path(root or project_root())
    named = zip(paths, runs, strict=True)
    knee = [r for p, r in named if "memory" in r and "knee" in Path(p).name]
    if knee:
        # the how-to page that plans a knee run carries its memory table too
        write_section(
            root / "docs" / "how-to" / "distributed.md",
            "memory",
            "\n".join(memory_lines([*knee, *(r for r in runs if "train" in r)])).strip() + "\n",
        )
    return write_generated(root, "bench", "Benchmarks", command, bench_markdown(runs))
