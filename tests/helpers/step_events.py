"""A callback for tests that watch a training process from outside: one flushed line per
training step, so a test acts on an event instead of sleeping and polling.

Added to a run with ``+callbacks.events._target_=step_events.StepEvents`` and this folder
on ``PYTHONPATH``.
"""

from __future__ import annotations

import lightning as L

PREFIX = "kspace-mim-test step"


class StepEvents(L.Callback):
    """``<PREFIX> N`` as each training batch starts: N steps are finished, with everything
    Lightning does after a step (checkpoint callbacks run last, after this one would)."""

    def on_train_batch_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        print(f"{PREFIX} {trainer.global_step}", flush=True)


class SigtermAtValidation(L.Callback):
    """Sends this process SIGTERM as the first validation after training starts: a stop
    that lands on an epoch boundary, deterministically."""

    def on_validation_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
