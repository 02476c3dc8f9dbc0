"""Evaluate predictions the way the fastMRI leaderboard did.

    python -m kspace_mim.evaluate target=DIR predictions=DIR [challenge=...] [acquisition=...]
        [output=FILE.json]

Prints a table (per volume, per acquisition, per acceleration, mean) and writes JSON:
``{"ssim", "psnr", "nmse", "num_volumes", "volumes": {"<file>.h5": {...}},
"acquisitions": {...}, "accelerations": {"4x": {...}, "8x": {...}}}``. Accelerations come
from the target files' attributes or, for the benchmark split's ``test_full/``, from the
``split.json`` beside it (``python -m kspace_mim.data.split``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from kspace_mim.config import CONFIG_DIR
from kspace_mim.files import check_not_link, write_json
from kspace_mim.metrics import evaluate_folders
from kspace_mim.utils import print_table


def print_result(result: dict) -> None:
    """Per volume, per acquisition and the mean."""
    rows = [(name, m) for name, m in result["volumes"].items()]
    rows += [(f"{acq} ({m['num_volumes']})", m) for acq, m in result["acquisitions"].items()]
    rows += [(f"{acc} ({m['num_volumes']})", m) for acc, m in result["accelerations"].items()]
    rows.append((f"mean ({result['num_volumes']})", result))
    cells = ((n, f"{m['ssim']:.4f}", f"{m['psnr']:.2f}", f"{m['nmse']:.4f}") for n, m in rows)
    print_table("fastMRI metrics", ("volume", "SSIM", "PSNR", "NMSE"), cells)


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    output = Path(cfg.output) if cfg.output else Path(cfg.predictions) / "metrics.json"
    try:
        check_not_link(output)  # before the work: an output that is a link is refused
        result = evaluate_folders(
            cfg.target, cfg.predictions, cfg.challenge, cfg.acquisition, cfg.acceleration
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print_result(result)
    write_json(output, result)
    print(f"wrote {output}")
    if result["failed"]:
        print(f"{len(result['failed'])} volume(s) could not be scored:", file=sys.stderr)
        for name, reason in result["failed"].items():
            print(f"  {name}: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
