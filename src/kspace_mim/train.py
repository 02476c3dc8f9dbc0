"""Train (or just evaluate) one configuration: ``python -m kspace_mim.train [overrides]``.

Composes conf/train.yaml and builds the DataModule, the model, the callbacks, the logger
and the Trainer from their groups; fits, validates the best checkpoint, tests when a test
set with targets is given, writes ``metrics.json`` and prints a table. Returns the
``optimized_metric`` for Hydra sweepers. Job status, errors and DDP relaunch inside
sweeps: :mod:`kspace_mim.jobs`.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf

from kspace_mim.callbacks import HELDOUT_METRIC, instantiate_callbacks
from kspace_mim.checkpoint_io import AtomicCheckpointIO
from kspace_mim.checkpoints import load_pretrained, read_checkpoint
from kspace_mim.config import CONFIG_DIR, ConfigError, check_renamed, require_extras
from kspace_mim.data.datamodule import FastMRIDataModule
from kspace_mim.files import atomic_path, write_json
from kspace_mim.fingerprint import claim, fingerprint, finished_run
from kspace_mim.jobs import relaunch_this_job_only, run_job
from kspace_mim.loggers import build_logger
from kspace_mim.modules.reconstruction import ReconstructionModule, data_settings
from kspace_mim.supervision import build_supervision
from kspace_mim.utils import print_config_tree, print_metrics_table

# Validation metrics are already identical on every rank (gathered per slice, then
# computed): syncing them would be wrong work, so Lightning's advice does not apply.
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed")


def build_datamodule(cfg: DictConfig) -> FastMRIDataModule:
    supervision = build_supervision(OmegaConf.to_container(cfg.supervision, resolve=True))
    return hydra.utils.instantiate(
        cfg.data,
        mask=hydra.utils.instantiate(cfg.mask),
        eval_mask=evaluation_mask(cfg)[0],
        augmentation=hydra.utils.instantiate(cfg.augmentation),
        train_needs_targets=supervision.needs_targets,
    )


def build_model(cfg: DictConfig, datamodule: FastMRIDataModule) -> ReconstructionModule:
    """The system with the ``model`` group's network, sized from the data's facts."""
    facts = datamodule.facts()
    model = ReconstructionModule(
        net=OmegaConf.to_container(cfg.model, resolve=True),
        num_coils=facts.num_coils,
        img_size=facts.img_size,
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        data=data_settings(cfg),
        on_nonfinite=cfg.train.on_nonfinite,
        supervision=OmegaConf.to_container(cfg.supervision, resolve=True),
        heldout_validation=float(OmegaConf.select(cfg, "validation.heldout", default=0.0) or 0),
    )
    if len(facts.coil_counts) > 1 and not model.varying_coils:
        raise ConfigError(
            f"the train / val volumes have {', '.join(map(str, facts.coil_counts))} coils and "
            f"{type(model.net).__name__} is built for one coil count; set data.virtual_coils "
            f"(e.g. {min(facts.coil_counts)}) to compress every volume to that many, or use "
            "a family that takes any coil count (varnet, unet, unrolled with "
            "model.first_estimate=none)"
        )
    if cfg.init_from:
        load_pretrained(model, cfg.init_from)
    return model


def trainer_plugins(cfg: DictConfig) -> list:
    """``trainer.plugins`` plus same-folder atomic checkpoint writes, unless the config
    brings a checkpoint writer of its own."""
    plugins = hydra.utils.instantiate(cfg.trainer.plugins) if cfg.trainer.plugins else []
    plugins = list(plugins) if isinstance(plugins, (list, tuple, ListConfig)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train and evaluate ``cfg`` in ``run_dir``; returns the metrics written to metrics.json.

    The run directory is claimed first (:func:`kspace_mim.fingerprint.claim`): a directory
    of another configuration is refused; the directory's own ``last.ckpt`` is resumed
    only when it is this configuration's. ``config.yaml`` is written after that decision.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.paths.run_dir = str(run_dir)
    trains = not cfg.eval_only
    own = claim(run_dir, fingerprint(cfg), explicit_resume=bool(cfg.ckpt_path))
    trusted = own_targets(cfg)
    if cfg.ckpt_path:
        # refused before Lightning reads it
        read_checkpoint(cfg.ckpt_path, resume=True, trusted=trusted)
    restart = restart_checkpoint(run_dir, trusted) if own and trains else None
    ckpt_path = cfg.ckpt_path or restart
    if rank_zero_only.rank == 0:
        with atomic_path(run_dir / "config.yaml") as tmp:
            OmegaConf.save(cfg, tmp, resolve=True)
    L.seed_everything(cfg.seed, workers=True)
    held_out_masks = evaluation_masks(cfg)  # a wrong name stops here, not after training
    chosen_checkpoint(cfg, [], run_dir)  # so does a wrong evaluation.checkpoint
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    callbacks = instantiate_callbacks(cfg.callbacks)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=build_logger(cfg, run_dir),
        default_root_dir=str(run_dir),
        plugins=trainer_plugins(cfg),
    )

    resumed = None
    if model.trainable and trains:
        if ckpt_path:
            step = checkpoint_step(str(ckpt_path), trusted)
            resumed = {"checkpoint": str(ckpt_path), "step": step}
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        # The final state, whatever the validation / checkpoint cadence was; in full
        # (optimizer and loops: a longer budget resumes from it).
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        chosen = chosen_checkpoint(cfg, callbacks, run_dir)
        # Every selection's file is read now, before any validate(ckpt_path=...):
        # Lightning restores the callbacks' state from the file it loads, and a file saved
        # mid-run holds the other callbacks' records of that moment (a held-out best that
        # came later is then unknown).
        others = {
            which: selected_checkpoint(which, callbacks, run_dir)
            for which in OmegaConf.select(cfg, "evaluation.also", default=None) or []
        }
        trainer.validate(
            model, datamodule=datamodule, ckpt_path=chosen, verbose=False, weights_only=True
        )
        chosen = chosen or str(run_dir / "checkpoints" / "last.ckpt")
    else:
        trainer.validate(model, datamodule=datamodule, verbose=False)
        chosen = cfg.init_from
    # Which weights every number is of (selected on validation by optimized_metric).
    source = {"checkpoint": chosen, "checkpoint_step": checkpoint_step(chosen, trusted)}
    results = {"val": {**model.last_metrics["val"], "split": "val", **source}}
    test, tests = held_out_test(trainer, model, datamodule, held_out_masks, source)
    results.update({"test": test} if test else {})
    results.update({f"test {name}": entry for name, entry in tests.items()})
    # The same numbers of the other selections asked for (evaluation.also: last beside
    # best, ...), each from its own checkpoint: validation and the held-out test. Two
    # files of this run at the same step hold the same weights (no step between them),
    # so a selection that chose the main one's step, or another's, reads its numbers
    # again instead of testing the same weights twice.
    also = {}
    if model.trainable and trains:
        done = {
            source["checkpoint_step"]: {
                "val": results["val"],
                **({"test": test} if test else {}),
                **({"tests": tests} if tests else {}),
            }
        }
        for which, path in others.items():
            if path is None:
                continue
            step = checkpoint_step(path, trusted)
            other = {"checkpoint": path, "checkpoint_step": step}
            numbers = None if step is None else done.get(step)
            if numbers is None:
                trainer.validate(
                    model, datamodule=datamodule, ckpt_path=path, verbose=False, weights_only=True
                )
                extra, extras = held_out_test(trainer, model, datamodule, held_out_masks, other)
                numbers = {
                    "val": {**model.last_metrics["val"], "split": "val"},
                    **({"test": extra} if extra else {}),
                    **({"tests": extras} if extras else {}),
                }
                done.update({step: numbers} if step is not None else {})
            also[which] = {**other, **numbers}

    environment = getattr(trainer.strategy, "cluster_environment", None)
    metrics = {
        **results["val"],
        "selected_on": "val" if model.trainable and trains else None,
        # the yardstick: the mask validation (and a test without test_masks) drew
        "evaluation_mask": evaluation_mask(cfg)[1],
        "resumed_from": resumed,
        # How the run was spread: processes and who started them (SLURM's srun, Lightning's
        # own launcher, a single process).
        "world_size": trainer.world_size,
        "cluster_environment": None if environment is None else type(environment).__name__,
        **({"test": results["test"]} if "test" in results else {}),
        # The held-out test under each of evaluation.test_masks (the protocol's masks).
        **({"tests": tests} if tests else {}),
        **({"also": also} if also else {}),
    }
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        print_metrics_table(results, title=f"{type(model.net).__name__} — {run_dir}")
    return metrics


def held_out_test(
    trainer: L.Trainer,
    model: ReconstructionModule,
    datamodule: FastMRIDataModule,
    masks: dict[str | None, Any],
    source: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The model's current weights on the held-out test files (``data.test_path``), once
    per mask of ``evaluation.test_masks`` (None: under the validation mask): (the test
    without a named mask, {mask name: test}), each entry tagged with ``source``."""
    test, tests = None, {}
    if not datamodule.paths["test"]:
        return test, tests
    for name, mask in masks.items():
        if mask is not None:  # files that bring their own mask keep it
            datamodule.eval_mask = mask
            datamodule.datasets.pop("test", None)
        trainer.test(model, datamodule=datamodule, verbose=False)
        if "test" in model.last_metrics:
            entry = {**model.last_metrics.pop("test"), "split": "test", **source}
            if name is None:
                test = entry
            else:
                tests[name] = {**entry, "mask": name}
    return test, tests


def evaluation_masks(cfg: DictConfig) -> dict[str | None, Any]:
    """The masks the held-out test runs under: ``evaluation.test_masks`` (options of the
    mask group, e.g. ``[equispaced4x, equispaced8x]``, each seeded by file name as
    validation is), or ``{None: None}``: once, under the validation mask."""
    names = OmegaConf.select(cfg, "evaluation.test_masks")
    if not names:
        return {None: None}
    return {name: mask_option(name, "evaluation.test_masks") for name in names}


def mask_option(name: str, key: str) -> Any:
    """The mask of an option of the mask group (``conf/mask/<name>.yaml``), built."""
    options = sorted(p.stem for p in (CONFIG_DIR / "mask").glob("*.yaml"))
    if name not in options:
        raise ConfigError(f"{key}: no mask option {name!r}; one of {options}")
    return hydra.utils.instantiate(OmegaConf.load(CONFIG_DIR / "mask" / f"{name}.yaml"))


def evaluation_mask(cfg: DictConfig) -> tuple[Any, str]:
    """The mask validation (and a test without ``evaluation.test_masks``) draws, and its
    name for the record: ``evaluation.mask``, one yardstick whatever mask training draws
    (a sweep over training masks is judged on the same acquisitions); null: the training
    mask. A benchmark split validates on its protocol's masks instead (the datamodule)."""
    if OmegaConf.select(cfg, "data.split") or OmegaConf.select(cfg, "data.split_file"):
        return None, "protocol (fastMRI test set: random 4x / 8x by file name)"
    name = OmegaConf.select(cfg, "evaluation.mask")
    if not name:
        return None, "the training mask"
    return mask_option(name, "evaluation.mask"), str(name)


def own_targets(cfg: DictConfig) -> list[str]:
    """The network class the config names: the user's own choice, trusted in the
    checkpoints this run reads (a family from outside the package included)."""
    target = cfg.model.get("_target_") if isinstance(cfg.model, DictConfig) else None
    return [target] if isinstance(target, str) else []


def restart_checkpoint(run_dir: Path, trusted: list[str] | None = None) -> Path | None:
    """``last.ckpt`` of this run directory when the job has run here before (a SLURM
    requeue, a pre-empted or timed-out job restarted by submitit), else None.

    Called only once the directory's fingerprint matched this configuration's
    (:func:`kspace_mim.fingerprint.claim`). A file there that does not load (cut off by
    a kill outside the atomic writer, or planted) is named in one line.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    try:
        read_checkpoint(last, resume=True, trusted=trusted or [])
    except ValueError as err:
        raise ValueError(
            f"this run directory's own checkpoint cannot be resumed: {err}. Remove {last} to "
            "train again from step 0, or pass ckpt_path= to resume from another checkpoint"
        ) from None
    if rank_zero_only.rank == 0:
        print(f"resuming from {last} (this run directory's own checkpoint)", file=sys.stderr)
    return last


def checkpoint_step(path: str | None, trusted: list[str] | None = None) -> int | None:
    """The optimizer step a checkpoint was written at (None without one). Read through
    the package's checked loader (tensors and values only, its contents allowlisted)."""
    if not path or not Path(path).is_file():
        return None
    return int(read_checkpoint(path, trusted=trusted or [])["global_step"])


SELECTIONS = ("best", "last", "heldout")


def chosen_checkpoint(cfg: DictConfig, callbacks: list, run_dir: Path) -> str | None:
    """The checkpoint every number is of: the best on validation (``evaluation.checkpoint:
    best``, by ``optimized_metric``; None when there is none: the final state), the
    best by the label-free held-out loss (``heldout``) or the final state (``last``)."""
    return selected_checkpoint(selection(cfg), callbacks, run_dir, final=False)


def selected_checkpoint(
    which: str, callbacks: list, run_dir: Path, final: bool = True
) -> str | None:
    """The checkpoint of a selection (:data:`SELECTIONS`): the best by optimized_metric,
    the best by the held-out loss, or the final state (its ``last.ckpt``; None with
    ``final=False``, for the weights in memory)."""
    if which not in SELECTIONS:
        raise ConfigError(f"evaluation.also: {which!r} is not one of {SELECTIONS}")
    if which == "last":
        last = Path(run_dir) / "checkpoints" / "last.ckpt"
        return str(last) if final and last.is_file() else None
    return best_checkpoint(callbacks, run_dir, HELDOUT_METRIC if which == "heldout" else None)


def selection(cfg: DictConfig) -> str:
    """``evaluation.checkpoint``, checked against what the run validates."""
    which = OmegaConf.select(cfg, "evaluation.checkpoint", default="best")
    if which not in SELECTIONS:
        raise ConfigError(f"evaluation.checkpoint={which!r}: one of {SELECTIONS}")
    also = list(OmegaConf.select(cfg, "evaluation.also", default=None) or [])
    for name in (which, *also):
        if name not in SELECTIONS:
            raise ConfigError(f"evaluation.also: {name!r} is not one of {SELECTIONS}")
        if name == "heldout" and not OmegaConf.select(cfg, "validation.heldout", default=0):
            raise ConfigError(
                "evaluation.checkpoint / also = heldout chooses by the held-out share of the "
                "validation scans' acquired samples: set validation.heldout (e.g. 0.2)"
            )
    return which


def best_checkpoint(callbacks: list, run_dir: Path, monitor: str | None = None) -> str | None:
    """The best checkpoint by the monitored metric (``monitor``; None: the first
    monitoring callback's), if one was written in this run directory and still exists (a
    resumed run restores the callback's record, which may name a file rotated away, or
    another run's file)."""
    for callback in callbacks:
        if not isinstance(callback, ModelCheckpoint) or not callback.monitor:
            continue
        if monitor is None or callback.monitor == monitor:
            best = callback.best_model_path
            inside = best and Path(best).resolve().is_relative_to(Path(run_dir).resolve())
            return best if inside and Path(best).is_file() else None
    return None


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def train(cfg: DictConfig) -> float:
    relaunch_this_job_only()
    if rank_zero_only.rank == 0:
        print_config_tree(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    mine = fingerprint(cfg)
    done = None if cfg.ckpt_path else finished_run(run_dir, mine)
    if done is not None:
        # A study's sweep re-launched: this job finished here with this very configuration.
        if rank_zero_only.rank == 0:
            print(f"finished before with this configuration: {run_dir} (reused)", file=sys.stderr)
        return float(done.get(cfg.optimized_metric.split("/", 1)[1], math.nan))
    metrics = run_job(run, cfg, run_dir, claim=lambda: claim(run_dir, mine, bool(cfg.ckpt_path)))
    return float(metrics.get(cfg.optimized_metric.split("/", 1)[1], math.nan))


def main() -> None:
    """``python -m kspace_mim.train`` / ``kspace-mim-train``: the Hydra command line."""
    check_renamed(sys.argv[1:])
    require_extras(sys.argv[1:])
    train()


if __name__ == "__main__":
    main()
