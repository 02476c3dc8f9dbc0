"""A run directory's identity: which configuration it belongs to.

Hydra users name run and sweep directories by hand, and a re-launched Optuna study
numbers its jobs from 0 again, so a directory's ``checkpoints/last.ckpt`` may be another
configuration's. At the start of every run the resolved configuration is fingerprinted
and compared with the one the directory recorded (``fingerprint.json``):

- the same identity: the run continues from the directory's own ``last.ckpt`` (a
  requeued or restarted job); budgets (:data:`BUDGET`) may differ: a resume may extend
  ``trainer.max_steps`` / ``max_epochs`` / ``max_time``;
- another identity, or a checkpoint without a fingerprint: refused in one line naming
  the keys that differ and what to do (a new directory, or ``ckpt_path=`` to continue
  those weights on purpose).

Left out of the identity (:data:`IGNORED`): where things are written (``paths``, the run
directory inside callbacks, ``logger``), Hydra's own keys, ``ckpt_path``, and how the
work is spread or shown (devices, strategy, loader workers and pinned memory, the
validation batch size, logging cadence, model summary, profiler, progress bars, the
learning-rate monitor, the periodic checkpoint's cadence): none changes what is learned.
Options added later (:data:`NEUTRAL`) count only when set to something else than what
the package did before they existed.
The studies key their caches on the identity *and* the budget (:meth:`Fingerprint.digest`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from kspace_mim.files import read_json, write_json

FILE = "fingerprint.json"
RUN_DIR = "<run_dir>"
IGNORED = (
    "paths",
    "hydra",
    "ckpt_path",
    "logger",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.accelerator",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "data.num_workers",
    "data.pin_memory",
    "data.max_open_files",
    "data.val_batch_size",
    "trainer.log_every_n_steps",
    "trainer.enable_model_summary",
    "trainer.profiler",
    "trainer.enable_autolog_hparams",
    "trainer.model_registry",
    "checkpoint.every_n_train_steps",
    "callbacks.progress_bar",
    "callbacks.model_checkpoint.filename",
    "callbacks.model_checkpoint.enable_version_counter",
    "callbacks.periodic_checkpoint",
    "callbacks.lr_monitor",
)
# Keys added after runs were recorded, with the value that does what the package did
# before they existed: at that value a key is left out of the identity, so adding an
# option (off by default) keeps every finished run and study job its own.
NEUTRAL: dict[str, Any] = {
    "augmentation.affine_prob": 0.0,
    "augmentation.rotation_deg": 0.0,
    "augmentation.scaling": 0.0,
    "augmentation.shearing_deg": 0.0,
    "augmentation.translation": 0.0,
    "augmentation.schedule": "constant",
    "augmentation.schedule_c": 5.0,
    "callbacks.augmentation_schedule._target_": "kspace_mim.callbacks.AugmentationSchedule",
    "model.residual_gate": False,
    "model.residual": False,
    "model.maps_start": "sense",
    "validation.at_zero": False,
    "callbacks.validate_at_start._target_": "kspace_mim.callbacks.validate_at_start",
    "callbacks.validate_at_start.enabled": False,
    "data.train_draw": "first",
    "data.synthetic_set": "colin27",
    "data.pool_path": None,
    "validation.heldout": 0.0,
    "callbacks.heldout_checkpoint._target_": "kspace_mim.callbacks.heldout_checkpoint",
    "callbacks.heldout_checkpoint.dirpath": f"{RUN_DIR}/checkpoints",
    "callbacks.heldout_checkpoint.heldout": 0.0,
    "callbacks.heldout_checkpoint.optimized_metric": "val/ssim",
    "optimized_mode": "max",
    "evaluation.also": [],
    "budget.steps": 1,
    "data.synthetic_size": 64,
}
# Keys that change nothing while another key has this value: left out of the identity then.
UNUSED_WHEN: dict[str, tuple[str, Any]] = {
    "data.train_draw": ("data.train_volumes", None),
}
# What a resume may change (and a study's cache may not).
BUDGET = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.max_time",
    "callbacks.validate_at_steps.max_steps",
)


class RunDirError(ValueError):
    """A run directory that belongs to another configuration (or to an unknown one)."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    return {prefix: value}


def _under(key: str, names: tuple[str, ...]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


@dataclass(frozen=True)
class Fingerprint:
    """identity: flattened key -> value of everything that makes the run what it is;
    budget: the keys a resume may extend."""

    identity: dict[str, Any]
    budget: dict[str, Any]

    def digest(self, budget: bool = True) -> str:
        """SHA-256 of the identity (and the budget)."""
        value = {"identity": self.identity, **({"budget": self.budget} if budget else {})}
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()

    def differences(self, other: Fingerprint) -> list[str]:
        """``key: mine -> other's`` for every identity key that differs."""
        keys = sorted(set(self.identity) | set(other.identity))
        missing = "(absent)"
        return [
            f"{k}: {self.identity.get(k, missing)!r} -> {other.identity.get(k, missing)!r}"
            for k in keys
            if self.identity.get(k, missing) != other.identity.get(k, missing)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.digest(),
            "identity_sha256": self.digest(budget=False),
            "identity": self.identity,
            "budget": self.budget,
        }


def _same_mask(flat: dict[str, Any]) -> bool:
    """Whether ``evaluation.mask`` names the training mask (or is null): validation then
    draws what it drew before the option existed."""
    from kspace_mim.config import CONFIG_DIR

    name = flat.get("evaluation.mask")
    if not name:
        return True
    option = CONFIG_DIR / "mask" / f"{name}.yaml"
    if not option.is_file():
        return False
    mine = {k: v for k, v in flat.items() if k.startswith("mask.")}
    return _flatten({"mask": OmegaConf.to_container(OmegaConf.load(option))}) == mine


def fingerprint(cfg: DictConfig) -> Fingerprint:
    """The fingerprint of a composed training config (resolved; the run directory where
    it is interpolated replaced by a placeholder)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        if "paths" in cfg:
            cfg.paths.run_dir = RUN_DIR
        for group in ("hydra", "logger"):  # never resolved: the logger's may probe the network
            cfg.pop(group, None)
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    budget = {k: v for k, v in flat.items() if _under(k, BUDGET)}
    return Fingerprint(_identity({k: v for k, v in flat.items() if not _under(k, BUDGET)}), budget)


def _identity(flat: dict[str, Any]) -> dict[str, Any]:
    """The keys of a flattened config (budget aside) that make a run what it is, by
    today's rules: also applied to a recorded identity, so that a key ignored or made
    neutral after a run was recorded does not disown it."""
    flat = dict(flat)
    if _same_mask(flat):
        flat.pop("evaluation.mask", None)  # what every run did before the key existed
    return {
        k: v
        for k, v in flat.items()
        if not _under(k, IGNORED)
        and not (k in NEUTRAL and v == NEUTRAL[k])
        and not (k in UNUSED_WHEN and flat.get(UNUSED_WHEN[k][0]) == UNUSED_WHEN[k][1])
    }


def read_fingerprint(run_dir: Path) -> Fingerprint | None:
    """The fingerprint a run directory recorded (None: it has none)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    saved = read_json(path)
    if not isinstance(saved, dict) or not all(
        isinstance(saved.get(k), dict) for k in ("identity", "budget")
    ):
        raise RunDirError(f"{path}: not a run fingerprint; choose a new run directory")
    return Fingerprint(_identity(saved["identity"]), saved["budget"])


def write_fingerprint(run_dir: Path, mine: Fingerprint) -> None:
    if rank_zero_only.rank == 0:
        write_json(Path(run_dir) / FILE, mine.to_json())


def finished_run(run_dir: Path, mine: Fingerprint) -> dict[str, Any] | None:
    """The metrics of a job that already finished in ``run_dir`` with this configuration
    and budget (fingerprint equal, identity and budget), else None: a study re-launched
    as the same sweep reuses its finished jobs instead of training them again. A longer
    budget is not finished (the job resumes and extends it); any other configuration is
    refused by :func:`claim`."""
    run_dir = Path(run_dir)
    try:
        saved = read_fingerprint(run_dir)
        status, metrics = (
            read_json(run_dir / name) if (run_dir / name).is_file() else None
            for name in ("status.json", "metrics.json")
        )
    except ValueError:
        return None  # unreadable files: claim() names them
    finished = isinstance(status, dict) and status.get("status") == "finished"
    if saved is None or saved != mine or not finished or not isinstance(metrics, dict):
        return None
    return metrics


def claim(run_dir: Path, mine: Fingerprint, explicit_resume: bool) -> bool:
    """Decide whether ``run_dir`` may hold this run; True when its own ``last.ckpt`` is
    this configuration's and may be resumed. Raises :class:`RunDirError` (one line) for
    a directory of another configuration. Records ``mine`` (rank 0) once decided."""
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        saved = read_fingerprint(run_dir)
    except ValueError as err:
        raise RunDirError(f"{err}") from None
    resume = False
    if explicit_resume:
        pass  # ckpt_path= continues those weights on purpose, under this configuration
    elif saved is None and last.exists():
        raise RunDirError(
            f"run directory {run_dir} holds {last} but no {FILE}: not known to be this "
            f"configuration's; choose a new directory, or pass ckpt_path={last} to continue "
            "those weights on purpose"
        )
    elif saved is not None and saved.identity != mine.identity:
        changes = saved.differences(mine)
        shown = "; ".join(changes[:6]) + (
            f"; and {len(changes) - 6} more" if len(changes) > 6 else ""
        )
        what = (
            f"choose a new directory, or pass ckpt_path={last} to continue its weights on purpose"
            if last.exists()
            else "choose a new directory, or delete this one"
        )
        raise RunDirError(
            f"run directory {run_dir} belongs to another configuration ({shown}): {what}"
        )
    else:
        resume = last.exists()
    write_fingerprint(run_dir, mine)
    return resume
