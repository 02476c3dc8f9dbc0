"""Reading checkpoints that anyone may have written: only what this package writes loads.

A checkpoint is the file researchers download from strangers. ``torch.load(weights_only=
True)`` stops pickled code, but not the file's *contents*: its hyper-parameters become
constructor arguments, and a ``_target_`` among them is code once Hydra instantiates it
(``{_target_: builtins.open, _args_: [PATH, "w"]}`` truncates PATH); a class name read
from the file is an import. So before anything is built from a file:

- its class must be one of the package's model families (:data:`FAMILIES`), looked up
  by name in a table, never imported;
- every ``_target_`` at any depth of its hyper-parameters must be one of the package's
  own strategy and recipe classes (:func:`allowed_targets`), and an optimiser named there
  must be a ``torch.optim`` class;
- the paths a checkpoint callback recorded must lie inside the folder that callback
  wrote to (Lightning deletes rotated checkpoints by those paths and reloads the "best"
  one), for files that resume a run.

A refused file raises :class:`UntrustedCheckpointError`, one line naming the file and the
entry. Hand-written: neither Lightning nor Hydra has an allowlist for a file's contents.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import torch

from kspace_mim.optim import RECIPES, optimizer_class
from kspace_mim.supervision import STRATEGIES

# The model families a checkpoint may name: names in a table, imported only from it.
FAMILIES = frozenset(
    {
        "kspace_mim.modules.simmim.SimMIMModule",
        "kspace_mim.modules.unet.UnetModule",
        "kspace_mim.modules.varnet.VarNetModule",
        "kspace_mim.modules.unrolled.UnrolledModule",
    }
)
# Checkpoint-callback entries that hold paths (Lightning's ModelCheckpoint state).
CALLBACK_PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")


class UntrustedCheckpointError(ValueError):
    """A checkpoint that names something outside what this package writes."""


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def allowed_targets() -> frozenset[str]:
    """The ``_target_`` values a checkpoint's hyper-parameters may hold: the package's
    supervision strategies and optimiser recipes."""
    return frozenset(qualified_name(cls) for cls in (*STRATEGIES, *RECIPES))


def family_class(name: Any, path: Path) -> type:
    """The model class a checkpoint records, from the table of families (no import of a
    name the file chose: the family modules are the package's own)."""
    if not isinstance(name, str) or name not in FAMILIES:
        raise UntrustedCheckpointError(
            f"{path}: kspace_mim_class {name!r} is not one of the package's model classes "
            f"({', '.join(sorted(FAMILIES))}); refused"
        )
    module, cls = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def _walk(value: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    """(location, key, value) of every mapping entry at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key}" if where else str(key)
            yield here, key, item
            yield from _walk(item, here)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")


def check_hyper_parameters(hparams: Any, path: Path) -> None:
    """Refuse hyper-parameters that would run code the package did not write."""
    if hparams is None:
        return
    if not isinstance(hparams, dict):
        raise UntrustedCheckpointError(f"{path}: hyper_parameters is not a mapping; refused")
    allowed = allowed_targets()
    for where, key, value in _walk(hparams, "hyper_parameters"):
        if key == "_target_" and value not in allowed:
            raise UntrustedCheckpointError(
                f"{path}: {where} names {value!r}, not one of the package's own classes; refused"
            )
        if key == "optimizer" and where.startswith("hyper_parameters.optim."):
            if not isinstance(value, str) or optimizer_class(value, imports=False) is None:
                raise UntrustedCheckpointError(
                    f"{path}: {where} names {value!r}, not a torch.optim optimiser; refused"
                )


def _inside(value: Any, folder: PurePath) -> bool:
    if not value:
        return True
    if not isinstance(value, str):
        return False
    candidate = PurePath(value)
    return ".." not in candidate.parts and candidate.is_relative_to(folder)


def check_callback_paths(callbacks: Any, path: Path) -> None:
    """Paths of a checkpoint callback's state must lie inside the folder it wrote to."""
    if callbacks is None:
        return
    if not isinstance(callbacks, dict):
        raise UntrustedCheckpointError(f"{path}: callbacks is not a mapping; refused")
    for name, state in callbacks.items():
        if not isinstance(state, dict) or "dirpath" not in state:
            continue
        folder = state["dirpath"]
        if not isinstance(folder, str) or not folder or ".." in PurePath(folder).parts:
            raise UntrustedCheckpointError(f"{path}: callbacks.{name}.dirpath {folder!r}; refused")
        entries = [(key, state.get(key)) for key in CALLBACK_PATHS]
        best_k = state.get("best_k_models") or {}
        if not isinstance(best_k, dict):
            raise UntrustedCheckpointError(f"{path}: callbacks.{name}.best_k_models; refused")
        entries += [("best_k_models", k) for k in best_k]
        for key, value in entries:
            if not _inside(value, PurePath(folder)):
                raise UntrustedCheckpointError(
                    f"{path}: callbacks.{name}.{key} {value!r} lies outside its folder "
                    f"{folder}; refused"
                )


def read_checkpoint(path: str | Path, resume: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` as plain tensors and values, checked: a package class,
    allowed targets and (``resume``) callback paths inside their folder.

    Raises FileNotFoundError, ValueError (unreadable: cut off, not a checkpoint, a
    pickled payload) or :class:`UntrustedCheckpointError`.
    """
    return checked_bytes(path, resume)[1]


def checked_bytes(path: str | Path, resume: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes (read once: what is loaded is what was checked) and its checked
    contents (:func:`read_checkpoint`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path}: not a readable kspace_mim checkpoint (cut off by a kill, or not written "
            f"by this package; weights_only load: {first})"
        ) from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a kspace_mim checkpoint (not a mapping)")
    if "kspace_mim_class" not in ckpt:
        raise ValueError(f"{path}: no 'kspace_mim_class' entry; not a kspace_mim checkpoint")
    family_class(ckpt["kspace_mim_class"], path)
    check_hyper_parameters(ckpt.get("hyper_parameters"), path)
    if resume:
        check_callback_paths(ckpt.get("callbacks"), path)
    if not isinstance(ckpt.get("state_dict", {}), dict):
        raise UntrustedCheckpointError(f"{path}: state_dict is not a mapping; refused")
    return data, ckpt


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The model of a kspace_mim checkpoint, rebuilt from its checked contents (class from
    the family table, hyper-parameters allowlisted, tensors only)."""
    data, ckpt = checked_bytes(path)
    cls = family_class(ckpt["kspace_mim_class"], Path(path))
    return cls.load_from_checkpoint(io.BytesIO(data), map_location=map_location, weights_only=True)


def load_pretrained(model: torch.nn.Module, path: str | Path) -> None:
    """Initialise ``model`` from another run's checkpoint (pre-training -> fine-tuning),
    tensors only; a checkpoint that does not fit the model names the keys that differ."""
    state = read_checkpoint(path)["state_dict"]
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"{path}: shapes differ from this config for {mismatched[:5]}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
