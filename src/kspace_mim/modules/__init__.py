"""The reconstruction system: one LightningModule; model families are networks (``models/``).

Checkpoints load through :mod:`kspace_mim.checkpoints` (only what the package writes);
``load_module`` and ``load_pretrained`` are importable from here too.
"""

from __future__ import annotations

from typing import Any

from kspace_mim.modules.reconstruction import ReconstructionModule

__all__ = ["ReconstructionModule", "load_module", "load_pretrained"]


def __getattr__(name: str) -> Any:
    # Looked up on first use: kspace_mim.checkpoints reads the model configs and imports
    # the recipes.
    if name in ("load_module", "load_pretrained"):
        from kspace_mim import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
