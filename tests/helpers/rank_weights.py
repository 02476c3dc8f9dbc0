"""A callback for DDP tests: each rank saves its weights when training starts and ends.

Added with ``+callbacks.rank_weights._target_=rank_weights.SaveRankWeights`` and this
folder on ``PYTHONPATH``; files land in ``<run dir>/rank_weights/rank{R}[_start].pt``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class SaveRankWeights(L.Callback):
    def _save(self, trainer: L.Trainer, module: L.LightningModule, suffix: str) -> None:
        folder = Path(trainer.default_root_dir) / "rank_weights"
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        torch.save(state, folder / f"rank{trainer.global_rank}{suffix}.pt")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "_start")

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "")
