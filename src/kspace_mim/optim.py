"""Optimisers and their schedules: the ``optim`` config group, one class per recipe.

Each recipe is built from its config (``_target_``) and called by the LightningModule
with the parameters to train and the trainer (whose horizon the schedule may need); it
returns what ``LightningModule.configure_optimizers`` returns. The optimiser itself is
named by its class path (``torch.optim.AdamW``), so any torch optimiser fits.

- :class:`WarmupCosine`: this package's default, linear warm-up then cosine over the
  run's horizon in steps or in time (:mod:`kspace_mim.lr_schedule`).
- :class:`StepDecay`: fastMRI's published recipes (Adam for E2E-VarNet, RMSprop for the
  U-Net; the rate times ``gamma`` every ``step_size`` epochs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class

from kspace_mim.lr_schedule import lr_factor


class Recipe:
    """What every recipe shares: a torch optimiser class by path, its rate and decay."""

    def __init__(self, optimizer: str, lr: float, weight_decay: float):
        self.optimizer, self.lr, self.weight_decay = optimizer, lr, weight_decay

    def make_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        cls = optimizer_class(self.optimizer)
        if cls is None:
            raise ValueError(f"optim.optimizer={self.optimizer!r} is not a torch optimiser class")
        return cls(params, lr=self.lr, weight_decay=self.weight_decay)


def optimizer_class(name: str, imports: bool = True) -> type[torch.optim.Optimizer] | None:
    """The optimiser class ``name`` names, or None. ``torch.optim.<Name>`` is looked up
    in ``torch.optim``; any other path is imported only with ``imports`` (a config the
    user wrote; never a name read from a checkpoint)."""
    prefix = "torch.optim."
    if name.startswith(prefix) and "." not in name[len(prefix) :]:
        cls = getattr(torch.optim, name[len(prefix) :], None)
    elif imports:
        cls = get_class(name)
    else:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) else None


class WarmupCosine(Recipe):
    """``optimizer`` (default AdamW) with a linear warm-up over ``warmup_fraction`` of the
    horizon, then cosine decay to zero; stepped every optimizer step."""

    def __init__(
        self,
        optimizer: str = "torch.optim.AdamW",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.05,
    ):
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"optim.warmup_fraction must be in [0, 1), got {warmup_fraction}")
        super().__init__(optimizer, lr, weight_decay)
        self.warmup_fraction = warmup_fraction

    def __call__(self, params: Iterable[torch.nn.Parameter], trainer: L.Trainer) -> dict[str, Any]:
        opt = self.make_optimizer(params)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(trainer, self.warmup_fraction))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class StepDecay(Recipe):
    """``optimizer`` at ``lr``, multiplied by ``gamma`` every ``step_size`` epochs
    (``torch.optim.lr_scheduler.StepLR``), as fastMRI's ``VarNetModule`` / ``UnetModule``."""

    def __init__(
        self,
        optimizer: str = "torch.optim.Adam",
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        step_size: int = 40,
        gamma: float = 0.1,
    ):
        if step_size < 1:
            raise ValueError(f"optim.step_size must be >= 1 epoch, got {step_size}")
        super().__init__(optimizer, lr, weight_decay)
        self.step_size, self.gamma = step_size, gamma

    def __call__(self, params: Iterable[torch.nn.Parameter], trainer: L.Trainer) -> dict[str, Any]:
        opt = self.make_optimizer(params)
        sched = torch.optim.lr_scheduler.StepLR(opt, self.step_size, self.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


# The recipes a checkpoint's hyper-parameters may name (kspace_mim.checkpoints).
RECIPES = (WarmupCosine, StepDecay)
