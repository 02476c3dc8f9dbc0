"""Lightning callbacks of our own: what Lightning does not do by itself."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

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
