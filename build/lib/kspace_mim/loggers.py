"""The experiment logger of a run (the ``logger`` group), and closing W&B between jobs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf


def build_logger(cfg: DictConfig, run_dir: Path) -> Logger:
    """The ``logger`` group's logger, writing into ``run_dir``, with the resolved config."""
    kwargs: dict[str, Any] = {"save_dir": str(run_dir)}
    if cfg.logger._target_.endswith("WandbLogger"):
        kwargs["name"] = run_dir.name
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            # One W&B group per sweep, so the dashboard compares its jobs.
            kwargs["group"] = Path(HydraConfig.get().sweep.dir).name
    logger = hydra.utils.instantiate(cfg.logger, **kwargs)
    # The whole resolved config on the dashboard (rank 0 only, as every log_hyperparams).
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return logger


def finish_wandb(exit_code: int) -> None:
    """Close a W&B run (its summary and files are written then); the next sweep job opens
    its own. A no-op without W&B."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)
