"""The learning-rate schedule: linear warm-up, then cosine decay over the run's horizon.

The horizon is whatever bounds the run:

- steps (``trainer.max_steps`` or ``max_epochs`` x batches): cosine over the steps, as
  Lightning's ``estimated_stepping_batches`` counts them;
- a wall-clock budget alone (``trainer.max_epochs=-1 trainer.max_time=...``, how
  time-to-quality is compared): warm-up and cosine over the *fraction of the budget
  spent*, read from Lightning's ``Timer`` (which also restores it on resume), so the
  rate reaches zero when the budget ends however fast the machine is;
- nothing (an open-ended run): warm-up, then constant.

Written here because Lightning and torch have no schedule over a time budget.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Timer

log = logging.getLogger(__name__)

# Warm-up of an open-ended run (no step or time horizon to take a fraction of).
OPEN_ENDED_WARMUP_STEPS = 100


def warmup_cosine(progress: float, warmup_fraction: float) -> float:
    """The learning-rate factor at ``progress`` in [0, 1] of the horizon."""
    if progress < warmup_fraction:
        return (progress + 1e-3) / (warmup_fraction + 1e-3)
    rest = (progress - warmup_fraction) / max(1.0 - warmup_fraction, 1e-12)
    return 0.5 * (1 + math.cos(math.pi * min(rest, 1.0)))


def _timer(trainer: L.Trainer) -> Timer | None:
    return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)


def lr_factor(trainer: L.Trainer, warmup_fraction: float) -> Callable[[int], float]:
    """``LambdaLR``'s function for this trainer's horizon (see the module docstring).

    A closure, not an object: ``LambdaLR`` saves only callable objects' state, and
    checkpoints stay tensors-only.
    """
    total = trainer.estimated_stepping_batches
    if math.isfinite(total):
        total = max(int(total), 1)
        warmup = int(warmup_fraction * total)

        def by_step(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        return by_step

    timer = _timer(trainer)
    if timer is not None:
        log.info("learning-rate schedule over the time budget (trainer.max_time)")

        def by_time(step: int) -> float:
            elapsed = timer.time_elapsed("train")
            budget = elapsed + (timer.time_remaining("train") or 0.0)
            return warmup_cosine(elapsed / budget if budget > 0 else 0.0, warmup_fraction)

        return by_time

    log.info(
        "open-ended run (no max_steps, max_epochs or max_time): %d warm-up steps, then a "
        "constant learning rate",
        OPEN_ENDED_WARMUP_STEPS,
    )

    def constant(step: int) -> float:
        return min((step + 1) / (OPEN_ENDED_WARMUP_STEPS + 1), 1.0)

    return constant
