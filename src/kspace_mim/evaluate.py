"""Evaluate predictions the way the fastMRI leaderboard does.

    python -m kspace_mim.evaluate target=DIR predictions=DIR [challenge=...] [acquisition=...]
        [output=FILE.json]

Prints a table (per volume, per acquisition, mean) and writes JSON:
``{"ssim", "psnr", "nmse", "num_volumes", "volumes": {"<file>.h5": {...}}, "acquisitions": {...}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from kspace_mim.config import CONFIG_DIR, register_resolvers
from kspace_mim.metrics import evaluate_folders


def print_table(result: dict) -> None:
    table = Table(title="fastMRI metrics")
    for col in ("volume", "SSIM", "PSNR", "NMSE"):
        table.add_column(col, justify="right")
    rows = [(name, m) for name, m in result["volumes"].items()]
    rows += [
        (f"[bold]{acq}[/bold] ({m['num_volumes']})", m) for acq, m in result["acquisitions"].items()
    ]
    rows.append((f"[bold]mean[/bold] ({result['num_volumes']})", result))
    for name, m in rows:
        table.add_row(name, f"{m['ssim']:.4f}", f"{m['psnr']:.2f}", f"{m['nmse']:.4f}")
    Console().print(table)


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        result = evaluate_folders(
            cfg.target, cfg.predictions, cfg.challenge, cfg.acquisition, cfg.acceleration
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print_table(result)
    output = Path(cfg.output) if cfg.output else Path(cfg.predictions) / "metrics.json"
    output.write_text(json.dumps(result, indent=2))
    print(f"wrote {output}")
    if result["failed"]:
        print(f"{len(result['failed'])} volume(s) could not be scored:", file=sys.stderr)
        for name, reason in result["failed"].items():
            print(f"  {name}: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    register_resolvers()
    main()
