"""The README's results table, generated: ``python -m kspace_mim.results`` (``make results``).

Every model trains with the same budget (steps x batch) on the synthetic set and is
validated at 4x and 8x (equispaced, fastMRI centre fractions). The table goes to
``docs/results.md`` and into the README between the results markers: no number in it
is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from kspace_mim.bench.timing import machine
from kspace_mim.config import compose, project_root
from kspace_mim.data.synthesize import ensure_synthetic
from kspace_mim.train import run
from kspace_mim.utils import markers, write_generated

MARK_START, MARK_END = markers("results")

# name -> (overrides, pre-trained first)
MODELS: dict[str, tuple[list[str], bool]] = {
    "zero-filled": (["encoder=zero_filled"], False),
    "U-Net (fastMRI)": (["encoder=unet", "encoder.size=tiny"], False),
    "SimMIM-ViT": (["encoder=vit", "encoder.size=tiny", "encoder.patch_size=8"], False),
    "SimMIM-Swin, fine-tuned only": (["encoder=swin", "encoder.size=tiny"], False),
    "SimMIM-Swin, pre-trained + fine-tuned": (["encoder=swin", "encoder.size=tiny"], True),
}


def default_data(root: Path) -> Path:
    """The synthetic default set (written if missing, as `make train` does)."""
    folder = root / "synthetic"
    ensure_synthetic({s: folder / f"multicoil_{s}" for s in ("train", "val")}, "multicoil")
    return folder


def make_results(
    steps: int = 600,
    data: Path | None = None,
    out_dir: Path | None = None,
    batch_size: int = 4,
    root: Path | None = None,
) -> list[dict[str, Any]]:
    """Train and validate every model; write docs/results.md and the README table in
    ``root`` (the repository by default)."""
    root = Path(root or project_root())
    data = Path(data) if data else default_data(root / "data")
    out_dir = Path(out_dir) if out_dir else root / "outputs" / "results"
    common = [
        f"data.train_path={data}/multicoil_train",
        f"data.val_path={data}/multicoil_val",
        f"data.batch_size={batch_size}",
        "data.num_workers=0",
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=100000",
        "trainer.check_val_every_n_epoch=100000",
    ]
    pretrained = out_dir / "pretrain_random0.6"
    rows = []
    for accel in (4, 8):
        for name, (overrides, pretrain) in MODELS.items():
            run_overrides = [*common, *overrides, f"mask=equispaced{accel}x"]
            budget = f"{steps} x {batch_size}" if name != "zero-filled" else "-"
            if pretrain:
                ckpt = pretrained / "checkpoints" / "last.ckpt"
                if not ckpt.is_file():  # SimMIM pre-training: random patch masks
                    run(compose([*common, *overrides, "mask=random0.6"]), pretrained)
                run_overrides.append(f"model.init_from={ckpt}")
                budget = f"{steps} x {batch_size} + {steps} x {batch_size} pre-training"
            start = time.perf_counter()
            run_name = name.split(",")[0].replace(" ", "_") + ("_pretrained" if pretrain else "")
            metrics = run(compose(run_overrides), out_dir / f"{accel}x" / run_name)
            rows.append(
                {
                    "model": name,
                    "acceleration": accel,
                    "ssim": metrics["ssim"],
                    "psnr": metrics["psnr"],
                    "nmse": metrics["nmse"],
                    "kspace_ssim": metrics.get("kspace_ssim"),
                    "budget": budget,
                    "minutes": (time.perf_counter() - start) / 60,
                }
            )
    write_table(rows, steps, batch_size, root)
    save_overview(out_dir, root)
    return rows


def save_overview(out_dir: Path, root: Path) -> Path | None:
    """The README's picture: validation panels of the default SimMIM-Swin at 4x."""
    figures = sorted((out_dir / "4x" / "SimMIM-Swin").glob("figures/val_epoch*.png"))
    if not figures:
        return None
    target = root / "docs" / "overview.png"
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(figures[-1], target)
    return target


def table_markdown(rows: list[dict[str, Any]], steps: int, batch_size: int) -> str:
    lines = [
        f"Synthetic validation set (4 volumes x 8 slices, 8 coils, 128x128 grid), `tiny` models, "
        f"{steps} steps of batch {batch_size} each on CPU; image metrics with the fastMRI "
        "definitions, k-space SSIM as the paper's.",
        "",
        "| model | accel. | SSIM | PSNR | NMSE | k-space SSIM | budget (steps x batch) | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kssim = f"{r['kspace_ssim']:.4f}" if r["kspace_ssim"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['acceleration']}x | {r['ssim']:.4f} | {r['psnr']:.2f} | "
            f"{r['nmse']:.4f} | {kssim} | {r['budget']} | {r['minutes']:.1f} |"
        )
    for accel in (4, 8):
        at = {r["model"]: r["ssim"] for r in rows if r["acceleration"] == accel}
        best_mim = max(v for k, v in at.items() if k.startswith("SimMIM"))
        verdict = "beats" if best_mim > at["U-Net (fastMRI)"] else "does not beat"
        lines.append("")
        lines.append(
            f"At {accel}x the best masked-image-modeling model {verdict} the U-Net at "
            f"equal budget (SSIM {best_mim:.4f} against {at['U-Net (fastMRI)']:.4f})."
        )
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict[str, Any]], steps: int, batch_size: int, root: Path) -> None:
    table = table_markdown(rows, steps, batch_size)
    write_generated(root, "results", "Results", "make results", table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.results", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=600, help="training steps per model")
    parser.add_argument("--batch", type=int, default=4, help="batch size")
    parser.add_argument("--data", type=Path, help="synthetic set (default: data/synthetic)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here too")
    args = parser.parse_args(argv)
    rows = make_results(args.steps, args.data, batch_size=args.batch)
    text = json.dumps({"results": rows, "machine": machine()}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
