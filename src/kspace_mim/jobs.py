"""One training job inside Hydra: its status file, its outcome, and DDP relaunch.

Every job records ``status.json`` in its run directory (running / finished / failed with
its reason / interrupted with the resume command), so a failed sweep job is visible where
the report and the user look. An expected failure (a missing folder, a bad file, a wrong
setting) ends in one line without a traceback (``HYDRA_FULL_ERROR=1`` shows it; the run
directory's ``error.log`` always has it); a failing sweep job does not stop the others.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.types import RunMode
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import open_dict, read_write

from kspace_mim.callbacks import INTERRUPTS
from kspace_mim.files import write_json, write_text
from kspace_mim.fingerprint import RunDirError
from kspace_mim.loggers import finish_wandb

# Failures a user causes and can fix from the message alone: bad data, missing folders,
# settings that cannot work (our configuration errors are ValueErrors).
EXPECTED = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


class JobError(CompactHydraException):
    """An expected failure of a job: Hydra prints its message alone, no traceback."""


def expected_error(err: BaseException) -> BaseException | None:
    """The user-fixable error behind ``err`` (unwrapping Hydra's instantiation), or None."""
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err if isinstance(err, EXPECTED) else None


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    """``status.json`` of a job (rank 0 only): what the sweep report reads."""
    if rank_zero_only.rank == 0:
        write_json(run_dir / "status.json", {"status": status, **extra})


# Set by Lightning's DDP launcher in the launching process; left behind they make the next
# job of a sweep believe its ranks were started externally, and it waits for them forever.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def isolated_job() -> Iterator[None]:
    """Run one job so that the next in the same process starts from a clean DDP state."""
    saved = {k: os.environ.get(k) for k in LAUNCHER_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_job(
    run: Callable[[Any, Path], dict[str, Any]],
    cfg: Any,
    run_dir: str | Path,
    claim: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """``run(cfg, run_dir)`` with its outcome recorded: a failure leaves its reason and
    traceback; an expected one is re-raised as a one-line :class:`JobError`.

    ``claim`` decides first whether the directory may hold this job
    (:func:`kspace_mim.fingerprint.claim`); a refused directory keeps every file it had
    (its status, its error log): it is another run's.
    """
    run_dir = Path(run_dir)
    if claim is not None:
        try:
            claim()
        except RunDirError as err:
            if rank_zero_only.rank == 0:
                print(f"job refused in {run_dir}: {err}", file=sys.stderr)
            raise JobError(f"error: {err}") from None
    write_status(run_dir, "running")
    try:
        with isolated_job():
            metrics = run(cfg, run_dir)
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}".strip().rstrip(":")
        if isinstance(err, INTERRUPTS):
            last = run_dir / "checkpoints" / "last.ckpt"
            write_status(run_dir, "interrupted", reason=f"{reason}; resume with ckpt_path={last}")
        else:
            write_status(run_dir, "failed", reason=reason)
        finish_wandb(exit_code=1)
        if rank_zero_only.rank == 0:
            write_text(run_dir / "error.log", traceback.format_exc())
        cause = expected_error(err)
        in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if rank_zero_only.rank == 0 and (in_sweep or cause is None):
            stopped = isinstance(err, INTERRUPTS)
            print(
                f"job {'stopped' if stopped else 'failed'} in {run_dir}: {reason}", file=sys.stderr
            )
        if isinstance(err, INTERRUPTS):
            # Lightning's SIGTERMException is a SystemExit with code None (exit status 0):
            # exit as a process killed by the signal does, so schedulers see the stop.
            raise SystemExit(130 if isinstance(err, KeyboardInterrupt) else 143) from err
        if cause is not None and os.environ.get("HYDRA_FULL_ERROR") != "1":
            raise JobError(f"error: {cause} (traceback in {run_dir / 'error.log'})") from None
        raise
    write_status(run_dir, "finished", **{k: metrics[k] for k in ("ssim", "psnr", "nmse")})
    finish_wandb(exit_code=0)
    return metrics


def relaunch_this_job_only() -> None:
    """Make Lightning's subprocess DDP launcher start *this* sweep job on the other ranks.

    The launcher re-runs ``sys.argv`` plus ``hydra.run.dir=<hydra.run.dir>``; inside a
    multirun that restarts the whole sweep in a new directory on every rank (Lightning
    issues 11300 / 18175). We hand it the job's own overrides, single-run mode, and the
    job's directory as the run directory, so every rank runs the same job in one place.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
