"""Reading checkpoints that anyone may have written: only what this package writes loads.

A checkpoint is the file researchers download from strangers. ``torch.load(weights_only=
True)`` stops pickled code, but not the file's *contents*: its hyper-parameters become
constructor arguments, and a ``_target_`` among them is code once Hydra instantiates it
(``{_target_: builtins.open, _args_: [PATH, "w"]}`` truncates PATH); a class name read
from the file is an import. So before anything is built from a file:

- its class must be the package's reconstruction system (:data:`FAMILIES`; a file of
  the earlier one-class-per-family layout is mapped onto it, :data:`LEGACY`), looked up
  by name in a table, never imported;
- every ``_target_`` at any depth of its hyper-parameters must be one of the package's
  own networks (its ``model`` configs), strategies and recipes (:func:`allowed_targets`),
  or a network the user trusts by name (``KSPACE_MIM_TRUSTED_NETS``), and an optimiser
  named there must be a ``torch.optim`` class;
- the paths a checkpoint callback recorded must lie inside the folder that callback
  wrote to (Lightning deletes rotated checkpoints by those paths and reloads the "best"
  one), for files that resume a run.

A refused file raises :class:`UntrustedCheckpointError`, one line naming the file and the
entry. Hand-written: neither Lightning nor Hydra has an allowlist for a file's contents.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from typing import Any

import torch

from kspace_mim.config import model_targets
from kspace_mim.optim import RECIPES, optimizer_class
from kspace_mim.supervision import STRATEGIES

# The class a checkpoint may name: the reconstruction system, named in a table, imported
# only from it (the network it holds is a hyper-parameter, allowlisted below).
SYSTEM = "kspace_mim.modules.reconstruction.ReconstructionModule"
FAMILIES = frozenset({SYSTEM})
# Checkpoints written before the one-system layout (one LightningModule per family): the
# family's class -> its network, whose parameters have the same names under ``net.``.
LEGACY = {
    "kspace_mim.modules.simmim.SimMIMModule": "kspace_mim.models.simmim.SimMIMReconstructor",
    "kspace_mim.modules.unet.UnetModule": "kspace_mim.models.unet.UnetReconstructor",
    "kspace_mim.modules.varnet.VarNetModule": "kspace_mim.models.varnet.VarNetReconstructor",
    "kspace_mim.modules.unrolled.UnrolledModule": (
        "kspace_mim.models.unrolled.UnrolledReconstructor"
    ),
}
# The system's own arguments in a legacy file's hyper-parameters; the rest are the network's.
SYSTEM_ARGS = (
    "num_coils",
    "img_size",
    "loss",
    "optim",
    "data",
    "on_nonfinite",
    "supervision",
    "heldout_validation",
)
# A user's own model families (their configs name these classes), trusted by name:
# comma-separated ``module.Class`` targets.
TRUSTED_NETS_ENV = "KSPACE_MIM_TRUSTED_NETS"
# Checkpoint-callback entries that hold paths (Lightning's ModelCheckpoint state).
CALLBACK_PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")


class UntrustedCheckpointError(ValueError):
    """A checkpoint that names something outside what this package writes."""


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def allowed_targets() -> frozenset[str]:
    """The ``_target_`` values a checkpoint's hyper-parameters may hold: the package's
    networks, supervision strategies and optimiser recipes, and the networks named in
    ``KSPACE_MIM_TRUSTED_NETS`` (a user's own families)."""
    own = {qualified_name(cls) for cls in (*STRATEGIES, *RECIPES)}
    trusted = {t.strip() for t in os.environ.get(TRUSTED_NETS_ENV, "").split(",") if t.strip()}
    return frozenset(own | set(model_targets().values()) | trusted)


def family_class(name: Any, path: Path) -> type:
    """The system class a checkpoint records, from the table (no import of a name the
    file chose)."""
    if name in LEGACY:
        name = SYSTEM
    if not isinstance(name, str) or name not in FAMILIES:
        raise UntrustedCheckpointError(
            f"{path}: kspace_mim_class {name!r} is not the package's model class "
            f"({', '.join(sorted(FAMILIES | set(LEGACY)))}); refused"
        )
    module, cls = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def upgrade_legacy(ckpt: dict[str, Any], path: Path, resume: bool) -> None:
    """A checkpoint of the one-LightningModule-per-family layout, in place as the system's:
    its network's arguments become ``net`` (state-dict keys are unchanged). Its weights
    load (``reconstruct``, ``init_from``); resuming its training state does not."""
    name = ckpt.get("kspace_mim_class")
    if name not in LEGACY:
        return
    if resume:
        raise UntrustedCheckpointError(
            f"{path}: written by an earlier layout ({name}); its weights load with "
            "init_from=, resuming its optimiser state is not supported"
        )
    hparams = ckpt.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        raise UntrustedCheckpointError(f"{path}: hyper_parameters is not a mapping; refused")
    net = {k: v for k, v in hparams.items() if k not in SYSTEM_ARGS}
    system = {k: hparams[k] for k in SYSTEM_ARGS if k in hparams}
    ckpt["hyper_parameters"] = {**system, "net": {"_target_": LEGACY[name], **net}}
    ckpt["kspace_mim_class"] = SYSTEM


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


def check_hyper_parameters(hparams: Any, path: Path, trusted: Iterable[str] = ()) -> None:
    """Refuse hyper-parameters that would run code the package did not write (or the
    user's own config names: ``trusted``)."""
    if hparams is None:
        return
    if not isinstance(hparams, dict):
        raise UntrustedCheckpointError(f"{path}: hyper_parameters is not a mapping; refused")
    allowed = allowed_targets() | set(trusted)
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


def read_checkpoint(
    path: str | Path, resume: bool = False, trusted: Iterable[str] = ()
) -> dict[str, Any]:
    """The checkpoint at ``path`` as plain tensors and values, checked: a package class,
    allowed targets (the package's, and ``trusted``: the network the user's own config
    names) and (``resume``) callback paths inside their folder.

    Raises FileNotFoundError, ValueError (unreadable: cut off, not a checkpoint, a
    pickled payload) or :class:`UntrustedCheckpointError`.
    """
    return checked_bytes(path, resume, trusted)[1]


def checked_bytes(
    path: str | Path, resume: bool = False, trusted: Iterable[str] = ()
) -> tuple[bytes, dict[str, Any]]:
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
    upgrade_legacy(ckpt, path, resume)
    check_hyper_parameters(ckpt.get("hyper_parameters"), path, trusted)
    if resume:
        check_callback_paths(ckpt.get("callbacks"), path)
    if not isinstance(ckpt.get("state_dict", {}), dict):
        raise UntrustedCheckpointError(f"{path}: state_dict is not a mapping; refused")
    return data, ckpt


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The model of a kspace_mim checkpoint, rebuilt from its checked contents (the system
    class from the table, its network and hyper-parameters allowlisted, tensors only)."""
    ckpt = read_checkpoint(path)
    cls = family_class(ckpt["kspace_mim_class"], Path(path))
    model = cls(**(ckpt.get("hyper_parameters") or {}))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(map_location)


def load_pretrained(model: torch.nn.Module, path: str | Path) -> None:
    """Initialise ``model`` from another run's checkpoint (pre-training -> fine-tuning),
    tensors only; a checkpoint that does not fit the model names the keys that differ."""
    # The network of the model being initialised is the user's own choice: trusted.
    net = dict(getattr(model, "hparams", {}).get("net", {}))
    own = net.get("_target_")
    ckpt = read_checkpoint(path, trusted=[own] if own else [])
    state = ckpt["state_dict"]
    hint = _net_differences(((ckpt.get("hyper_parameters") or {}).get("net") or {}), net)
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"{path}: shapes differ from this config for {mismatched[:5]}{hint}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}{hint}"
        )


def _net_differences(theirs: dict, mine: dict) -> str:
    """The model overrides that would build the checkpoint's network (its network
    settings that differ from this config's), as the fix to name in an error."""
    keys = [k for k in theirs if k != "_target_" and k in mine and theirs[k] != mine[k]]
    if not keys:
        return ""

    def value(v: Any) -> str:
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    fix = " ".join(f"model.{k}={value(theirs[k])}" for k in keys)
    return f"; the checkpoint's network was trained with {fix}: add that to this command"
