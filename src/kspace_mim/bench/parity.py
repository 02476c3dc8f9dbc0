"""Reference parity: fastMRI's E2E-VarNet trained by fastMRI's own loop, beside the same
network (and this package's unrolled network) trained by ``python -m kspace_mim.train``.

Equal optimizer steps, the same files, the same masks, the same recipe (fastMRI's
published one: Adam 3e-4, StepLR 40 epochs x 0.1, SSIM loss, batch 1), each seed on both
sides; every row is scored at its final step on the validation volumes, which no row was
tuned or selected on (no checkpoint selection), with fastMRI's per-volume metrics.

    python -m kspace_mim.bench parity [--steps N] [--seeds 0 1] [--size 64] [--out F.json]

The fastMRI side is the ~60-line loop of fastMRI's examples written out here: its
``SliceDataset``, ``VarNetDataTransform`` (masks on the file's grid, padding columns
excluded, seeded by file name for validation), ``VarNet``, ``SSIMLoss``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import fastmri
import hydra
import lightning as L
import numpy as np
import torch
from fastmri.data import SliceDataset
from fastmri.data.transforms import VarNetDataTransform
from fastmri.losses import SSIMLoss
from fastmri.models import VarNet
from tqdm import tqdm

from kspace_mim.compare import difference_statistics, significant
from kspace_mim.config import compose
from kspace_mim.data.synthesize import synthesize
from kspace_mim.metrics import VolumeMetrics
from kspace_mim.models.presets import resolve

# The rows: name -> (overrides of python -m kspace_mim.train, the row it is paired
# against); "fastmri_loop" is the bare loop.
ROWS: dict[str, tuple[list[str], str | None]] = {
    "fastmri_loop": ([], None),
    "varnet": (["model=varnet"], "fastmri_loop"),
    "varnet_square_grid": (["model=varnet", "data.grid=square"], "fastmri_loop"),
    # model=unrolled's defaults: this package's recipe (AdamW + warm-up / cosine, L1 +
    # SSIM + 0.1 k-space L1, batch 4) on the native grid.
    "unrolled": (["model=unrolled"], "fastmri_loop"),
    # The same network trained as E2E-VarNet is (batch 1, Adam, SSIM), on either grid.
    "unrolled_varnet_recipe": (["model=unrolled", "recipe=fastmri_varnet"], "fastmri_loop"),
    "unrolled_varnet_recipe_square_grid": (
        ["model=unrolled", "recipe=fastmri_varnet", "data.grid=square"],
        "fastmri_loop",
    ),
    # This package's recipe for VarNet itself.
    "varnet_package_recipe": (
        ["model=varnet", "recipe=package", "data.grid=native"],
        "fastmri_loop",
    ),
    # The grid of the single-pass families, each against its own default (square).
    "unet": (["model=unet"], None),
    "unet_native_grid": (["model=unet", "data.grid=native"], "unet"),
    "swin": (["model=swin"], None),
    "swin_native_grid": (["model=swin", "data.grid=native"], "swin"),
}
# What `bench parity` runs without --rows: the reference-parity rows.
PARITY_ROWS = tuple(
    name for name, (_, ref) in ROWS.items() if ref == "fastmri_loop" or name == "fastmri_loop"
)


def write_data(root: Path, size: int, coils: int) -> tuple[Path, Path]:
    """The default set's layout (12 train, 4 val volumes of 8 slices) at recon ``size``."""
    kw = dict(slices=8, coils=coils, size=size, progress=False)
    synthesize(root / "train", "multicoil", "train", volumes=12, **kw)
    synthesize(root / "val", "multicoil", "val", volumes=4, **kw)
    return root / "train", root / "val"


def fastmri_loop(train: Path, val: Path, steps: int, seed: int, mask: str) -> dict[str, Any]:
    """fastMRI's VarNet recipe as its examples train it, for ``steps`` optimizer steps."""
    L.seed_everything(seed, workers=True)
    mask_func = hydra.utils.instantiate(compose([f"mask={mask}"]).mask).mask_func
    dataset = SliceDataset(train, "multicoil", VarNetDataTransform(mask_func, use_seed=False))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=True)
    model = VarNet(**resolve("varnet", "tiny"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, 40, 0.1)  # stepped per epoch
    loss_fn = SSIMLoss()
    step, start = 0, time.perf_counter()
    with tqdm(total=steps, desc=f"fastMRI loop, seed {seed}", unit="step") as bar:
        while step < steps:
            for sample in loader:
                output = model(sample.masked_kspace, sample.mask, sample.num_low_frequencies)
                target, output = fastmri.data.transforms.center_crop_to_smallest(
                    sample.target, output
                )
                loss = loss_fn(output.unsqueeze(1), target.unsqueeze(1), sample.max_value)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                bar.update()
                if step == steps:
                    break
            sched.step()
    seconds = time.perf_counter() - start
    metrics = VolumeMetrics()
    model.eval()
    val_set = SliceDataset(val, "multicoil", VarNetDataTransform(mask_func, use_seed=True))
    with torch.no_grad():
        for sample in val_set:
            output = model(
                sample.masked_kspace[None], sample.mask[None], sample.num_low_frequencies
            )
            target, output = fastmri.data.transforms.center_crop_to_smallest(
                sample.target, output[0]
            )
            metrics.update(
                sample.fname,
                sample.slice_num,
                target.numpy(),
                output.numpy(),
                float(sample.max_value),
            )
    return {**_scores(metrics.compute()), "steps": step, "train_seconds": seconds}


def package_run(
    overrides: list[str],
    train: Path,
    val: Path,
    steps: int,
    seed: int,
    mask: str,
    out: Path,
    size: int,
) -> dict[str, Any]:
    """``python -m kspace_mim.train`` with ``overrides``, validated once, at the end."""
    from kspace_mim.train import run

    cfg = compose(
        [
            *overrides,
            f"mask={mask}",
            f"seed={seed}",
            f"data.train_path={train}",
            f"data.val_path={val}",
            "data.num_workers=0",
            f"data.crop_size={size}",  # the square grid's side: the recon size
            "model.size=tiny",
            f"trainer.max_steps={steps}",
            "trainer.max_epochs=-1",
            "trainer.check_val_every_n_epoch=1000000",  # no selection: the final step only
            "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=true",
            "logger=csv",
        ]
    )
    start = time.perf_counter()
    metrics = run(cfg, out)
    return {**_scores(metrics), "steps": steps, "train_seconds": time.perf_counter() - start}


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    volumes = {
        name: {k: v[k] for k in ("ssim", "psnr", "nmse")} for name, v in metrics["volumes"].items()
    }
    return {
        "ssim": metrics["ssim"],
        "psnr": metrics["psnr"],
        "nmse": metrics["nmse"],
        "volumes": volumes,
    }


def bench_parity(
    steps: int = 600,
    seeds: tuple[int, ...] = (0, 1),
    size: int = 64,
    coils: int = 8,
    mask: str = "equispaced4x",
    rows: tuple[str, ...] | None = None,
    data: Path | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The rows named (default :data:`PARITY_ROWS`) for every seed; means over seeds.
    ``previous``: an earlier result of the same settings whose other rows are kept."""
    rows = rows or PARITY_ROWS
    unknown = set(rows) - set(ROWS)
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}; known: {sorted(ROWS)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, val = (data / "train", data / "val") if data else write_data(tmp, size, coils)
        result: dict[str, Any] = {
            "steps": steps,
            "seeds": list(seeds),
            "mask": mask,
            "data": str(data)
            if data
            else f"synthetic, recon {size}, {coils} coils, 12 + 4 volumes",
            "rows": {},
        }
        if previous:
            same = ("steps", "seeds", "mask", "data")
            if any(previous.get(k) != result[k] for k in same):
                raise ValueError(f"the earlier result was made with other {same}; write anew")
            result["rows"] = dict(previous["rows"])
        for name, (overrides, reference) in ROWS.items():
            if name not in rows:
                continue
            runs = []
            for seed in seeds:
                if name == "fastmri_loop":
                    runs.append(fastmri_loop(train, val, steps, seed, mask))
                else:
                    out = tmp / "runs" / f"{name}_{seed}"
                    runs.append(package_run(overrides, train, val, steps, seed, mask, out, size))
            result["rows"][name] = {
                "overrides": overrides,
                "reference": reference,
                "runs": runs,
                **{
                    f"{k}_mean": float(np.mean([r[k] for r in runs]))
                    for k in ("ssim", "psnr", "nmse", "train_seconds")
                },
            }
            print(name, {k: v for k, v in result["rows"][name].items() if k.endswith("_mean")})
    return result


LABELS = {
    "unet": "`model=unet` (defaults: fastMRI's U-Net recipe, square grid)",
    "unet_native_grid": "`model=unet data.grid=native`",
    "swin": "`model=swin` (defaults: the package's recipe, square grid)",
    "swin_native_grid": "`model=swin data.grid=native`",
    "fastmri_loop": (
        "fastMRI's own loop: `SliceDataset` + `VarNetDataTransform`, `VarNet`, Adam, "
        "`SSIMLoss`, batch 1 (reference)"
    ),
    "varnet": "`model=varnet` (defaults: its recipe, native grid)",
    "varnet_square_grid": "`model=varnet data.grid=square`",
    "varnet_package_recipe": "`model=varnet recipe=package data.grid=native` (batch 4)",
    "unrolled": "`model=unrolled` (defaults: the package's recipe, batch 4, native grid)",
    "unrolled_varnet_recipe": "`model=unrolled recipe=fastmri_varnet` (batch 1, native grid)",
    "unrolled_varnet_recipe_square_grid": "`model=unrolled recipe=fastmri_varnet data.grid=square`",
}


def paired_runs(row: dict, reference: dict, metric: str = "ssim") -> dict[str, Any]:
    """``row`` against ``reference`` paired per (seed, volume) (the same seed's runs of
    both, each volume): :func:`kspace_mim.compare.difference_statistics` of the
    differences (mean, 95 % bootstrap interval, Wilcoxon p, n)."""
    diffs = [
        run[metric] - ref_run["volumes"][name][metric]
        for mine, ref_run in zip(row["runs"], reference["runs"], strict=True)
        for name, run in sorted(mine["volumes"].items())
    ]
    return difference_statistics(np.array(diffs))


def parity_markdown(result: dict[str, Any]) -> str:
    """The README's reference-parity table from ``bench parity`` JSON."""
    rows = result["rows"]
    lines = [
        f"{result['steps']} optimizer steps per run, seeds {result['seeds']}, "
        f"mask `{result['mask']}`, data: {result['data']}; scored at the final step on the "
        "validation volumes (no checkpoint selection, nothing tuned on them). "
        "Differences are paired per (seed, volume) against each row's reference (fastMRI's "
        "loop; a family's own default grid for the grid rows): mean, 95 % bootstrap "
        "interval, Wilcoxon p; * significant (Wilcoxon p < 0.05 and the interval excludes "
        "0, the rule of every generated table).",
        "",
        "| training | SSIM per seed | SSIM mean | PSNR mean | vs its reference (SSIM) "
        "| train s / run |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        per_seed = " / ".join(f"{r['ssim']:.4f}" for r in row["runs"])
        reference = row["reference"]
        if reference is None or reference not in rows:
            versus = "(reference)"
        else:
            stat = paired_runs(row, rows[reference])
            lo, hi = stat["ci95"]
            star = " *" if significant(stat) else ""
            versus = (
                f"{stat['mean_difference']:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                f"p={stat['wilcoxon_p']:.2g}{star} vs `{reference}`"
            )
        lines.append(
            f"| {LABELS.get(name, name)} | {per_seed} | {row['ssim_mean']:.4f} | "
            f"{row['psnr_mean']:.2f} | {versus} | {row['train_seconds_mean']:.0f} |"
        )
    lines.append("")
    lines.append(
        "Wall-clock is measured on a shared 2-core machine (about +/-20 % between "
        "identical runs): read it beside the steps, never as the ranking. Ours includes "
        "building the model and the final validation."
    )
    return "\n".join(lines) + "\n"
