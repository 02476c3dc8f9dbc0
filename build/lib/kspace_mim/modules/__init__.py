"""LightningModules: one shared reconstruction base, one thin subclass per model family."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from kspace_mim.modules.base import ReconstructionModule


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> ReconstructionModule:
    """Load any kspace_mim checkpoint: the class is recorded in it (tensors-only unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means: not ours / corrupt
        raise ValueError(f"{path}: not a readable kspace_mim checkpoint ({err})") from None
    name = ckpt.get("kspace_mim_class")
    if name is None:
        raise ValueError(f"{path}: no 'kspace_mim_class' entry; not a kspace_mim checkpoint")
    module_name, cls_name = name.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)


def load_pretrained(model: torch.nn.Module, path: str | Path) -> None:
    """Initialise ``model`` from another run's checkpoint (pre-training -> fine-tuning),
    tensors only; a checkpoint that does not fit the model names the keys that differ."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"{path}: shapes differ from this config for {mismatched[:5]}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
