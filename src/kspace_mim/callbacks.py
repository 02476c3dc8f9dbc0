"""Lightning callbacks of our own (what Lightning does not do by itself), and the
``callbacks`` config group's factories."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

log = logging.getLogger(__name__)

INTERRUPTS = (KeyboardInterrupt, SIGTERMException)


class CheckpointOnInterrupt(L.Callback):
    """SIGTERM (pre-emption, ``scancel``, ``kill``) or Ctrl-C during training writes
    ``last.ckpt`` before the process exits, so ``ckpt_path=.../last.ckpt`` resumes at the
    step it stopped. Lightning turns SIGTERM into ``SIGTERMException`` at the next step
    boundary; its checkpoint writes are atomic (temporary file, then rename), so an
    interrupted write never replaces a good ``last.ckpt``."""

    def __init__(self, dirpath: str | Path):
        self.path = Path(dirpath) / "last.ckpt"

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, INTERRUPTS) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            log.warning(
                "interrupted at step %d: wrote %s; resume with ckpt_path=%s",
                trainer.global_step,
                self.path,
                self.path,
            )


def periodic_checkpoint(dirpath: str | Path, every_n_train_steps: int | None) -> L.Callback | None:
    """``last.ckpt`` every N training steps (a killed run loses at most N); None when N is
    unset, and then no callback at all (``checkpoint.every_n_train_steps``)."""
    if not every_n_train_steps:
        return None
    return ModelCheckpoint(
        dirpath=dirpath, save_last=True, save_top_k=0, every_n_train_steps=every_n_train_steps
    )


def progress_bar(enabled: bool | None = True, refresh_rate: int = 20) -> L.Callback | None:
    """Rich's bar in a terminal, tqdm's in logs and notebooks; None when disabled
    (``trainer.enable_progress_bar=false``)."""
    if enabled is False:
        return None
    return RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate)


def instantiate_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    """The ``callbacks`` group: one entry per callback (``_target_`` and arguments); an
    entry set to null, or a factory that returns None, adds nothing."""
    callbacks = []
    for entry in (cfg or {}).values():
        callback = hydra.utils.instantiate(entry) if entry is not None else None
        if callback is not None:
            callbacks.append(callback)
    return callbacks
