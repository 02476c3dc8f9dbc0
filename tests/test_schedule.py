"""The learning-rate schedule over steps, over a time budget, or open-ended."""

from __future__ import annotations

import math
from datetime import timedelta
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import Timer

from kspace_mim.lr_schedule import OPEN_ENDED_WARMUP_STEPS, lr_factor, warmup_cosine


class FakeTimer(Timer):
    """A Timer whose clock the test sets."""

    def __init__(self, budget: float):
        super().__init__(duration=timedelta(seconds=budget))
        self.now, self.budget = 0.0, budget

    def time_elapsed(self, stage="train"):
        return self.now

    def time_remaining(self, stage="train"):
        return self.budget - self.now


def trainer(total: float, callbacks=()):
    return SimpleNamespace(estimated_stepping_batches=total, callbacks=list(callbacks))


def test_steps_warm_up_then_cosine_to_zero():
    factor = lr_factor(trainer(100), warmup_fraction=0.1)
    assert factor(0) == pytest.approx(1 / 11) and factor(9) == pytest.approx(10 / 11)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(100) == pytest.approx(0.0, abs=1e-12)


def test_time_budget_alone_follows_the_clock():
    """max_epochs=-1 + max_time: Lightning's step estimate is infinite (it used to crash)."""
    timer = FakeTimer(budget=200.0)
    factor = lr_factor(trainer(math.inf, [timer]), warmup_fraction=0.05)
    timer.now = 1.0
    assert factor(10**6) < 0.2  # warming up, whatever the step count
    for fraction in (0.05, 0.3, 0.5, 0.9, 1.0):
        timer.now = fraction * 200.0
        assert factor(0) == pytest.approx(warmup_cosine(fraction, 0.05))
    timer.now = 100.0  # half the budget: cosine half-way through the post-warm-up part
    assert factor(3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.45 / 0.95)))
    timer.now = 200.0
    assert factor(7) == pytest.approx(0.0, abs=1e-9)


def test_open_ended_warms_up_then_stays():
    factor = lr_factor(trainer(math.inf), warmup_fraction=0.05)
    assert factor(0) < 0.05
    assert factor(OPEN_ENDED_WARMUP_STEPS) == 1.0 and factor(10**7) == 1.0
