"""Checkpoint writing that a kill cannot cut: a temporary file in the checkpoint's own
folder, flushed to disk, then renamed over the old one.

Lightning's own writer goes through the system's temporary folder and ``shutil.move``,
which copies when that folder is on another file system (a cluster node's local /tmp
beside a shared scratch file system): a job killed during that copy leaves a truncated
``last.ckpt``. A rename inside one folder is atomic on POSIX file systems, so here the
old checkpoint stays whole until the new one is complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


def temporary_name(path: Path) -> str:
    """The glob of the temporary files a write of ``path`` leaves while it runs."""
    return f".{path.name}.tmp-*"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with same-folder atomic writes (loading is Lightning's).

    Hand-written: neither Lightning nor fsspec writes next to the target."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(temporary_name(path)):  # left by a killed write
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())  # on disk before it replaces the old checkpoint
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
