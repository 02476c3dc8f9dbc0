"""The optim group's recipes: the optimiser named by its class, schedules, bad values."""

from __future__ import annotations

import pytest
import torch

from kspace_mim.optim import StepDecay, WarmupCosine


class _Trainer:  # what lr_factor reads of a trainer with a step horizon
    estimated_stepping_batches = 10
    callbacks: list = []


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


def _rates(out: dict, n: int) -> list[float]:
    """The learning rate over ``n`` scheduler steps of a recipe's output."""
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(n):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_step_decay_is_fastmri_s_schedule():
    out = StepDecay("torch.optim.RMSprop", lr=1e-3, step_size=2, gamma=0.5)(_params(), None)
    assert isinstance(out["optimizer"], torch.optim.RMSprop)
    assert out["lr_scheduler"]["interval"] == "epoch"
    rates = _rates(out, 5)
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])


def test_warmup_cosine_rises_then_decays_over_the_steps():
    out = WarmupCosine(lr=1e-2, warmup_fraction=0.2)(_params(), _Trainer())
    assert isinstance(out["optimizer"], torch.optim.AdamW)
    assert out["lr_scheduler"]["interval"] == "step"
    rates = _rates(out, 10)
    peak = rates.index(max(rates))
    assert 0 < peak <= 2 and rates[-1] < 0.1 * max(rates)
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))


def test_bad_recipes_are_named():
    with pytest.raises(ValueError, match="optim.optimizer='torch.nn.Linear' is not a torch"):
        StepDecay("torch.nn.Linear")(_params(), None)
    with pytest.raises(ValueError, match="optim.step_size must be >= 1"):
        StepDecay(step_size=0)
    with pytest.raises(ValueError, match=r"optim.warmup_fraction must be in \[0, 1\)"):
        WarmupCosine(warmup_fraction=1.0)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=varnet"],
        ["model=unet"],
        ["model=swin", "recipe=fastmri_varnet"],
        ["model=unrolled", "recipe=fastmri_unet"],
        ["model=varnet", "trainer=gpu"],
    ],
)
def test_every_step_schedule_reaches_its_decay_within_its_budget(overrides):
    """A family's published recipe runs as published: fastMRI's VarNet and U-Net train 50
    epochs and divide the learning rate by 10 after 40, whatever the trainer."""
    import hydra

    from kspace_mim.config import compose

    cfg = compose(overrides)
    recipe = hydra.utils.instantiate(cfg.optim)
    assert isinstance(recipe, StepDecay)
    epochs = cfg.trainer.max_epochs
    assert (epochs, recipe.step_size, recipe.gamma) == (50, 40, 0.1)
    rates = _rates(recipe(_params(), None), epochs)
    assert rates[-1] == pytest.approx(0.1 * rates[0])  # the decay happens inside the run
