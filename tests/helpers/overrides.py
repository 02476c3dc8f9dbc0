"""Overrides shared by tests."""

from __future__ import annotations


def stepwise(max_steps: int, points: int) -> list[str]:
    """A step-budgeted run validated at ``points`` log-spaced steps (validation.at_steps),
    as the studies run: no epoch-based validation, no sanity check."""
    return [
        f"trainer.max_steps={max_steps}",
        "trainer.max_epochs=-1",
        "trainer.check_val_every_n_epoch=null",
        "trainer.val_check_interval=1",
        "trainer.num_sanity_val_steps=0",
        "validation.at_steps=true",
        f"validation.points={points}",
    ]
