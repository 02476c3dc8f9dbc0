"""Train (or just evaluate) one configuration: ``python -m kspace_mim.train [overrides]``.

Composes conf/train.yaml, builds the DataModule, the model and the Trainer from
their groups, fits, validates the best checkpoint, tests when a test set with
targets is given, writes ``metrics.json`` and prints a table. Every job records
``status.json`` (running / finished / failed with its reason) in its run directory,
so a failed sweep job is visible where the report and the user look. Returns the
``optimized_metric`` for Hydra sweepers.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from kspace_mim.callbacks import INTERRUPTS, CheckpointOnInterrupt
from kspace_mim.config import CONFIG_DIR, register_resolvers
from kspace_mim.modules.base import ReconstructionModule
from kspace_mim.utils import print_config_tree, print_metrics_table

# Validation metrics are already identical on every rank (gathered per slice, then
# computed): syncing them would be wrong work, so Lightning's advice does not apply.
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed")


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return hydra.utils.instantiate(
        cfg.data,
        mask=hydra.utils.instantiate(cfg.mask),
        augmentation=hydra.utils.instantiate(cfg.augmentation),
    )


def build_model(cfg: DictConfig, datamodule) -> ReconstructionModule:
    """The encoder group's module, sized from the data (coils after compression, grid)."""
    datamodule.setup("fit")
    val = datamodule.datasets["val"]
    sample = val.transform.model_slice(val.transform.loader_half(*val.read(0)))
    num_coils, img_size = sample.masked_kspace.shape[0], tuple(sample.masked_kspace.shape[-2:])
    model = hydra.utils.instantiate(cfg.encoder)(
        num_coils=num_coils,
        img_size=img_size,
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
    )
    model.data_config = {
        "challenge": cfg.data.challenge,
        "normalize": bool(cfg.augmentation.normalize),
        "crop_size": cfg.data.crop_size,
        "virtual_coils": cfg.data.virtual_coils,
    }
    model.on_nonfinite = cfg.train.on_nonfinite
    if cfg.model.init_from:
        load_pretrained(model, cfg.model.init_from)
    return model


def load_pretrained(model: torch.nn.Module, path: str) -> None:
    """Initialise from another run's checkpoint (pre-training -> fine-tuning), tensors only."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"{path}: shapes differ from this config for {mismatched[:5]}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")


def build_logger(cfg: DictConfig, run_dir: Path):
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


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train and evaluate ``cfg`` in ``run_dir``; returns the metrics written to metrics.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch:03d}",
        monitor=cfg.optimized_metric,
        mode="max",
        save_last=True,
    )
    callbacks = [checkpoint, CheckpointOnInterrupt(run_dir / "checkpoints")]
    if cfg.checkpoint.every_n_train_steps:
        # last.ckpt every N steps: a killed run loses at most N steps.
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                save_last=True,
                save_top_k=0,
                every_n_train_steps=cfg.checkpoint.every_n_train_steps,
            )
        )
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(20))
    if model.trainable and not cfg.eval_only:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=build_logger(cfg, run_dir),
        default_root_dir=str(run_dir),
    )
    if trainer.is_global_zero:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    if model.trainable and not cfg.eval_only:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        # The final state, whatever the validation / checkpoint cadence was.
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        best = checkpoint.best_model_path
        # A resumed run restores the callback's record, which may name a file rotated away.
        best = best if best and Path(best).is_file() else None
        trainer.validate(
            model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True
        )
    else:
        trainer.validate(model, datamodule=datamodule, verbose=False)
    results = {"val": model.last_metrics["val"]}
    if datamodule.paths["test"]:
        trainer.test(model, datamodule=datamodule, verbose=False)
        if "test" in model.last_metrics:
            results["test"] = model.last_metrics["test"]

    metrics = {**results["val"], **({"test": results["test"]} if "test" in results else {})}
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print_metrics_table(results, title=f"{type(model).__name__} — {run_dir}")
    return metrics


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    """``status.json`` of a job (rank 0 only): what the sweep report reads."""
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "status.json").write_text(json.dumps({"status": status, **extra}, indent=2))


# Set by Lightning's DDP launcher in the launching process; left behind they make the next
# job of a sweep believe its ranks were started externally, and it waits for them forever.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def isolated_job() -> Iterator[None]:
    """Run one job so that the next in the same process starts from a clean DDP state."""
    saved = {k: os.environ.get(k) for k in LAUNCHER_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_job(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """:func:`run` with its outcome recorded: a failure leaves its reason and traceback."""
    run_dir = Path(run_dir)
    write_status(run_dir, "running")
    try:
        with isolated_job():
            metrics = run(cfg, run_dir)
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}".strip().rstrip(":")
        if isinstance(err, INTERRUPTS):
            last = run_dir / "checkpoints" / "last.ckpt"
            write_status(run_dir, "interrupted", reason=f"{reason}; resume with ckpt_path={last}")
        else:
            write_status(run_dir, "failed", reason=reason)
        finish_wandb(exit_code=1)
        if rank_zero_only.rank == 0:
            (run_dir / "error.log").write_text(traceback.format_exc())
            print(
                f"job {'stopped' if isinstance(err, INTERRUPTS) else 'failed'} in {run_dir}: "
                f"{reason}",
                file=sys.stderr,
            )
        if isinstance(err, INTERRUPTS):
            # Lightning's SIGTERMException is a SystemExit with code None (exit status 0):
            # exit as a process killed by the signal does, so schedulers see the stop.
            raise SystemExit(130 if isinstance(err, KeyboardInterrupt) else 143) from err
        raise
    write_status(run_dir, "finished", **{k: metrics[k] for k in ("ssim", "psnr", "nmse")})
    finish_wandb(exit_code=0)
    return metrics


def finish_wandb(exit_code: int) -> None:
    """Close a W&B run (its summary and files are written then); the next sweep job opens
    its own. A no-op without W&B."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def relaunch_this_job_only() -> None:
    """Make Lightning's subprocess DDP launcher start *this* sweep job on the other ranks.

    The launcher re-runs ``sys.argv`` plus ``hydra.run.dir=<hydra.run.dir>``; inside a
    multirun that restarts the whole sweep in a new directory on every rank (Lightning
    issues 11300 / 18175). We hand it the job's own overrides, single-run mode, and the
    job's directory as the run directory, so every rank runs the same job in one place.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    relaunch_this_job_only()
    if rank_zero_only.rank == 0:
        print_config_tree(cfg)
    metrics = run_job(cfg, HydraConfig.get().runtime.output_dir)
    return float(metrics[cfg.optimized_metric.split("/", 1)[1]])


if __name__ == "__main__":
    register_resolvers()
    main()
