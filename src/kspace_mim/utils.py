"""Small helpers of the entry points: printing the config tree and the final table."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree


def print_config_tree(
    cfg: DictConfig,
    keys: tuple[str, ...] = (
        "data",
        "mask",
        "augmentation",
        "encoder",
        "loss",
        "optim",
        "trainer",
        "logger",
    ),
) -> None:
    """The resolved config, one branch per group, as a rich tree."""
    tree = Tree("config", guide_style="dim")
    for key in keys + tuple(k for k in cfg if k not in keys and k != "hydra"):
        if key in cfg:
            value = cfg[key]
            text = (
                OmegaConf.to_yaml(value, resolve=True)
                if isinstance(value, DictConfig)
                else str(value)
            )
            tree.add(f"[bold]{key}[/bold]").add(text.rstrip())
    Console().print(tree)


def print_metrics_table(results: Mapping[str, Mapping], title: str = "results") -> None:
    """One row per split (val, test): the fastMRI image metrics and the paper's k-space SSIM."""
    table = Table(title=title)
    for col in ("split", "SSIM", "PSNR", "NMSE", "k-space SSIM", "volumes", "slices"):
        table.add_column(col, justify="right")
    for split, m in results.items():
        kssim = f"{m['kspace_ssim']:.4f}" if "kspace_ssim" in m else "-"
        table.add_row(
            split,
            f"{m['ssim']:.4f}",
            f"{m['psnr']:.2f}",
            f"{m['nmse']:.4f}",
            kssim,
            str(m["num_volumes"]),
            str(m["num_slices"]),
        )
    Console().print(table)
