"""LightningModules: one shared reconstruction base, one thin subclass per model family.

Checkpoints load through :mod:`kspace_mim.checkpoints` (only what the package writes);
``load_module`` and ``load_pretrained`` are importable from here too.
"""

from __future__ import annotations

from typing import Any

from kspace_mim.modules.base import ReconstructionModule

__all__ = ["ReconstructionModule", "load_module", "load_pretrained"]


def __getattr__(name: str) -> Any:
    # Looked up on first use: kspace_mim.checkpoints imports the recipes, which import
    # this package's schedule module.
    if name in ("load_module", "load_pretrained"):
        from kspace_mim import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
