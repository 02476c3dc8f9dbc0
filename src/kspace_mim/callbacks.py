"""Lightning callbacks of our own (what Lightning does not do by itself), and the
``callbacks`` config group's factories."""

from __future__ import annotations

import logging
import math
import sys
import time
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
            trainer.save_checkpoint(self.path, weights_only=False)
            log.warning(
                "interrupted at step %d: wrote %s; resume with ckpt_path=%s",
                trainer.global_step,
                self.path,
                self.path,
            )


class AugmentationSchedule(L.Callback):
    """Tells the training data's augmentation how far training is (its ``progress``, the
    fraction of ``max_steps``, or of ``max_epochs`` when no step budget is set), which
    its strength schedule reads (``augmentation.schedule=exp``). The value lives in
    shared memory, so loader workers see it too."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        augmentation = getattr(trainer.datamodule, "augmentation", None)
        if augmentation is None or not hasattr(augmentation, "progress"):
            return
        if trainer.max_steps and trainer.max_steps > 0:
            done = trainer.global_step / trainer.max_steps
        elif trainer.max_epochs and trainer.max_epochs > 0:
            batches = max(float(trainer.num_training_batches), 1.0)
            done = (trainer.current_epoch + batch_idx / batches) / trainer.max_epochs
        else:
            done = 1.0
        augmentation.progress = done


def periodic_checkpoint(dirpath: str | Path, every_n_train_steps: int | None) -> L.Callback | None:
    """``last.ckpt`` every N training steps (a killed run loses at most N); None when N is
    unset, and then no callback at all (``checkpoint.every_n_train_steps``)."""
    if not every_n_train_steps:
        return None
    # The best-checkpoint callback writes last.ckpt too: both write the one file (never a
    # last-v1.ckpt that no resume would find).
    return ModelCheckpoint(
        dirpath=dirpath,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=every_n_train_steps,
        enable_version_counter=False,
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


def log_spaced_steps(max_steps: int, points: int) -> list[int]:
    """``points`` optimizer steps from about 2 % of ``max_steps`` to ``max_steps``, evenly
    spaced in log(step) (learning curves read on a log axis), unique, ascending."""
    if max_steps < 1 or points < 1:
        raise ValueError(f"max_steps and points must be >= 1, got {max_steps}, {points}")
    first = max(1, round(max_steps / 50)) if points > 1 else max_steps
    steps = {round(first * (max_steps / first) ** (i / max(points - 1, 1))) for i in range(points)}
    return sorted(steps | {max_steps})


class ValidateAtSteps(L.Callback):
    """Validate after exactly these optimizer steps, not every N batches or epochs
    (Lightning validates at a fixed interval only): learning curves at log-spaced steps
    for the price of a few validations. Also logs, at each validation, ``time/steps`` (the
    optimizer steps), ``time/train_s`` (the wall-clock seconds this process spent
    training, validation excluded) and ``time/train_s_total`` (the same since step 0, over
    every resume: the checkpoint carries it; not logged when a run resumes from a
    checkpoint that did not record it). Needs the Trainer built with
    ``check_val_every_n_epoch=None`` and ``val_check_interval=1`` (``validation=steps``)."""

    NEVER = 10**12

    def __init__(self, steps: list[int] | None = None, max_steps: int = -1, points: int = 6):
        self.steps = set(steps) if steps else set(log_spaced_steps(max_steps, points))
        self._train_s, self._since = 0.0, None
        # seconds trained before this process started (NaN: unknown, an older checkpoint);
        # a number from the start, since ValidateAtStart's step-0 validation may log before
        # this callback's on_train_start has run
        self._before_s, self._restored = 0.0, False

    def state_dict(self) -> dict[str, float]:
        return {"train_s_total": self._before_s + self._train_s}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self._before_s, self._restored = float(state_dict["train_s_total"]), True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.check_val_every_n_epoch is not None:
            raise ValueError(
                "ValidateAtSteps needs trainer.check_val_every_n_epoch=null and "
                "trainer.val_check_interval=1"
            )
        if trainer.global_step > 0 and not self._restored:
            self._before_s = math.nan  # resumed from a checkpoint without the record
        trainer.val_check_batch = 1 if trainer.global_step in self.steps else self.NEVER

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self._since is not None:
            self._train_s += time.perf_counter() - self._since
        # Read by the loop right after this hook: validate now only at a listed step.
        trainer.val_check_batch = 1 if trainer.global_step in self.steps else self.NEVER

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            pl_module.log("time/train_s", self._train_s, rank_zero_only=True)
            if not math.isnan(self._before_s):
                pl_module.log(
                    "time/train_s_total", self._before_s + self._train_s, rank_zero_only=True
                )
            pl_module.log("time/steps", float(trainer.global_step), rank_zero_only=True)


class ValidateAtStart(L.Callback):
    """Validate once before the first optimizer step (step 0), as part of the run: its
    metrics are logged at step 0 and its weights compete for the best checkpoint, so a
    run whose training only made things worse keeps the untrained network (which, for a
    network that starts at its input, is the zero-filled image). Lightning validates
    only after training steps (and its sanity check logs and keeps nothing), so this
    runs its validation loop once more, as the training epoch loop does after a step."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != 0 or not trainer.limit_val_batches:
            return  # a resumed run validated at its start already
        # ModelCheckpoint remembers step 0 as "already saved": let it save this one.
        for callback in trainer.checkpoint_callbacks:
            callback._last_global_step_saved = -1
        trainer.validating = True
        first_loop_iter = trainer._logger_connector._first_loop_iter
        trainer.fit_loop.epoch_loop.val_loop.run()
        trainer.training = True
        trainer._logger_connector._first_loop_iter = first_loop_iter


HELDOUT_METRIC = "val/heldout_loss"


def heldout_checkpoint(
    dirpath: str | Path, heldout: float, optimized_metric: str
) -> L.Callback | None:
    """``heldout.ckpt``: the best checkpoint by the label-free held-out loss
    (``validation.heldout`` > 0), beside the best by ``optimized_metric``; None when the
    held-out loss is not scored, or is the optimized metric already (the main
    checkpoint callback keeps it then)."""
    if not heldout or optimized_metric == HELDOUT_METRIC:
        return None
    return ModelCheckpoint(
        dirpath=dirpath,
        filename="heldout",
        monitor=HELDOUT_METRIC,
        mode="min",
        enable_version_counter=False,
    )


def validate_at_start(enabled: bool) -> L.Callback | None:
    """The ``callbacks.validate_at_start`` entry (``validation.at_zero``)."""
    return ValidateAtStart() if enabled else None


def validate_at_steps(enabled: bool, max_steps: int, points: int = 6) -> L.Callback | None:
    """The ``callbacks.validate_at_steps`` entry: a :class:`ValidateAtSteps` when the
    config asks for step-scheduled validation, else nothing."""
    return ValidateAtSteps(max_steps=max_steps, points=points) if enabled else None
