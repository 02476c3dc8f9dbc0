"""Writing outputs so that a kill, a crash or a planted link cannot damage anything.

Every volume and JSON file a command writes goes to a temporary file in the target's own
folder and is renamed over the target (atomic on POSIX file systems): a reader sees the
old file or the new one, never half of one. A target that is a symbolic link is refused,
never written through: the split's ``test_full/`` holds links to fully sampled originals,
and ``overwrite=true`` must not truncate raw data. Hand-written: neither the standard
library nor h5py has a same-folder atomic write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py


class LinkedOutputError(FileExistsError):
    """An output path that is a symbolic link (refused, never followed)."""


def check_not_link(path: Path) -> None:
    """Refuse a target that is a symbolic link (broken or not)."""
    if path.is_symlink():
        raise LinkedOutputError(
            f"{path} is a symbolic link (to {os.readlink(path)}); refusing to write through "
            "it: remove the link or choose another output folder"
        )


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed over it when the block ends without error,
    removed otherwise."""
    path = Path(path)
    check_not_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` to ``path``, atomically, never through a link."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """``value`` as indented JSON to ``path``, atomically, never through a link."""
    return write_text(path, json.dumps(value, indent=2))


def write_h5(path: str | os.PathLike, fill: Callable[[h5py.File], None]) -> Path:
    """An HDF5 file written by ``fill(file)``, atomically, never through a link."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as hf:
            fill(hf)
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file a job wrote; ValueError naming the file when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not readable JSON ({err})") from None
