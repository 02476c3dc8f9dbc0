"""Callbacks: checkpoint on SIGTERM, periodic checkpoints, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from helpers.overrides import stepwise
from helpers.step_events import PREFIX
from kspace_mim.checkpoint_io import temporary_name
from kspace_mim.data.synthesize import synthesize

HELPERS = Path(__file__).parent / "helpers"
EVENTS = "+callbacks.events._target_=step_events.StepEvents"


def watched(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a training process whose finished steps are announced on stdout (StepEvents)."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(HELPERS), env.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [*cmd, EVENTS, "trainer.enable_progress_bar=false"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=env.get("root"),
    )


def steps_of(proc: subprocess.Popen):
    """The steps the process announces, as they finish."""
    for line in proc.stdout:
        if line.startswith(PREFIX):
            yield int(line.split()[-1])


def resumed_steps(base: list[str], last: Path, step: int, run_dir: Path, env, train_log):
    """Resume from ``last`` for two more steps; the steps the resumed run trained."""
    result = subprocess.run(
        [*base, f"trainer.max_steps={step + 2}", f"ckpt_path={last}", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=env.get("root"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(run_dir)
    return log.loc[log["train/loss"].notna(), "step"]


@pytest.fixture(scope="module")
def long_epoch(tmp_path_factory, train_command) -> list[str]:
    """A training command whose epoch is 30 steps long (batch 1): stops land mid-epoch."""
    data = tmp_path_factory.mktemp("long_epoch")
    synthesize(data, "multicoil", "val", volumes=1, slices=30, coils=4, size=32, progress=False)
    return [
        *train_command(f"data.train_path={data}", f"data.val_path={data}"),
        "model.size=tiny",
        "data.batch_size=1",
        "trainer.log_every_n_steps=1",
    ]


@pytest.mark.slow
def test_kill_and_resume_continues_at_the_checkpointed_step(long_epoch, tmp_path, train_log):
    """SIGKILL after a periodic checkpoint: resuming from it continues at its step."""
    run_dir = tmp_path / "killed"
    proc = watched(
        [
            *long_epoch,
            "trainer.max_epochs=1000",
            "checkpoint.every_n_train_steps=3",
            f"hydra.run.dir={run_dir}",
        ],
        dict(os.environ),
    )
    for step in steps_of(proc):
        if step >= 6:  # 6 steps finished, their checkpoints written
            proc.kill()
            break
    proc.wait()
    last = run_dir / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step >= 6 and step % 3 == 0
    steps = resumed_steps(long_epoch, last, step, tmp_path / "resumed", dict(os.environ), train_log)
    assert steps.min() == step and steps.max() == step + 1


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resumes_at_that_step(long_epoch, tmp_path, train_log):
    """No periodic checkpoint: SIGTERM mid-epoch alone writes last.ckpt, at the step the
    run had finished; the exit status is 143 and the resumed run continues there."""
    run_dir = tmp_path / "run"
    proc = watched(
        [*long_epoch, "trainer.max_epochs=1000", f"hydra.run.dir={run_dir}"], dict(os.environ)
    )
    finished = []
    for step in steps_of(proc):
        finished.append(step)
        if step == 5:
            proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 143, proc.stderr.read()[-3000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and "ckpt_path=" in status["reason"]
    last = run_dir / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    # Lightning stops after the step running when the signal came: the last one announced.
    assert step == finished[-1] + 1 and 6 <= step < 30
    steps = resumed_steps(long_epoch, last, step, tmp_path / "resumed", dict(os.environ), train_log)
    assert steps.min() == step and steps.max() == step + 1


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(long_epoch, tmp_path, train_log):
    """SIGKILL while our code writes last.ckpt (a 94 MB U-Net checkpoint, written every
    step): the previous last.ckpt is whole, loads and resumes."""
    run_dir = tmp_path / "run"
    big = ["model=unet", "model.size=base", "checkpoint.every_n_train_steps=1"]
    proc = watched(
        [*long_epoch, *big, "trainer.max_epochs=1000", f"hydra.run.dir={run_dir}"], dict(os.environ)
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    next(step for step in steps_of(proc) if step >= 1)  # step 1's last.ckpt is complete
    size = last.stat().st_size
    deadline = time.monotonic() + 120
    # The next write has begun: its temporary file exists (or, were the write not
    # atomic, last.ckpt itself is being rewritten).
    while time.monotonic() < deadline:
        if list(last.parent.glob(temporary_name(last))) or last.stat().st_size != size:
            break
    proc.kill()
    proc.wait()
    # The kill cut that write: its temporary file is left, incomplete.
    assert list(last.parent.glob(temporary_name(last)))
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    step = checkpoint["global_step"]
    assert step >= 1 and last.stat().st_size == size
    steps = resumed_steps(
        [*long_epoch, *big], last, step, tmp_path / "resumed", dict(os.environ), train_log
    )
    assert steps.min() == step


@pytest.mark.slow
def test_a_stop_during_end_of_epoch_validation_resumes_with_the_right_steps(
    tmp_path, train_command, train_log
):
    """SIGTERM while the end-of-epoch validation runs (sent by the run itself, so it lands
    there every time): last.ckpt holds the finished epoch's steps, and resuming trains
    exactly the steps asked for. Lightning's restart of an interrupted epoch end moves its
    logging step (and epoch counter) one ahead (Lightning issue 19403); the optimizer steps
    are right."""
    data = tmp_path / "data"
    synthesize(data, "multicoil", "val", volumes=1, slices=4, coils=4, size=32, progress=False)
    base = [
        *train_command(f"data.train_path={data}", f"data.val_path={data}"),
        "model.size=tiny",
        "data.batch_size=1",
        "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(HELPERS)}
    run_dir = tmp_path / "run"
    stopped = subprocess.run(
        [
            *base,
            "trainer.max_epochs=1000",
            f"hydra.run.dir={run_dir}",
            "+callbacks.stop._target_=step_events.SigtermAtValidation",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step == 4  # one epoch of 4 slices, batch 1
    resumed = tmp_path / "resumed"
    steps = resumed_steps(base, last, step, resumed, env, train_log)
    assert len(steps) == 2  # two batches trained, no more, no fewer
    final = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == step + 2
    assert steps.min() == step + 1  # Lightning's logging step, one ahead (issue 19403)


def test_log_spaced_steps():
    from kspace_mim.callbacks import log_spaced_steps

    steps = log_spaced_steps(400, 6)
    assert steps[-1] == 400 and steps == sorted(set(steps)) and len(steps) == 6
    ratios = [b / a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.3  # evenly spaced on a log axis
    assert log_spaced_steps(3, 6) == [1, 2, 3] and log_spaced_steps(7, 1) == [7]
    with pytest.raises(ValueError, match="must be >= 1"):
        log_spaced_steps(0, 3)


def test_validation_at_log_spaced_steps_keeps_the_best_and_says_so(
    data_root, tmp_path, small_overrides, train_log
):
    """validation.at_steps: validations after exactly the scheduled steps, with the
    training time and steps logged; metrics.json names the checkpoint chosen on val, its
    step and the split of every number; the test split is that checkpoint's."""
    from kspace_mim.callbacks import log_spaced_steps
    from kspace_mim.config import compose
    from kspace_mim.train import run

    overrides = small_overrides(
        data_root / "multicoil_train",
        *stepwise(12, 3),
        f"data.test_path={data_root}/multicoil_val",
        "model=unet",
    )
    metrics = run(compose(overrides), tmp_path / "run")
    log = train_log(tmp_path / "run").dropna(subset=["time/steps"])
    assert log["time/steps"].astype(int).tolist() == log_spaced_steps(12, 3)
    assert log["time/train_s"].is_monotonic_increasing and (log["time/train_s"] > 0).all()
    best = log.loc[log["val/ssim"].idxmax()]
    assert metrics["selected_on"] == "val" and metrics["split"] == "val"
    assert metrics["checkpoint_step"] == int(best["time/steps"])
    assert "best.ckpt" in metrics["checkpoint"] and metrics["ssim"] == pytest.approx(
        best["val/ssim"]
    )
    assert metrics["test"]["split"] == "test"
    assert metrics["test"]["checkpoint"] == metrics["checkpoint"]


def test_a_resumed_run_counts_its_training_seconds_from_step_0(tmp_path):
    """ValidateAtSteps keeps its seconds in the checkpoint: a run resumed from it logs
    ``time/train_s_total`` continuing the first part's; resumed from a checkpoint without
    that record it logs no total (the page estimates it) rather than a wrong one."""
    import lightning as L
    import pandas as pd
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.loggers import CSVLogger

    from kspace_mim.callbacks import ValidateAtSteps

    def fit(steps: int, version: int, ckpt: Path | None = None) -> pd.DataFrame:
        trainer = L.Trainer(
            max_steps=steps,
            callbacks=[ValidateAtSteps(steps=[2, 4, 6, 8])],
            check_val_every_n_epoch=None,
            val_check_interval=1,
            logger=CSVLogger(tmp_path, name="csv", version=version),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=1,
        )
        trainer.fit(BoringModel(), ckpt_path=ckpt)
        trainer.save_checkpoint(tmp_path / f"v{version}.ckpt")
        return pd.read_csv(tmp_path / "csv" / f"version_{version}" / "metrics.csv").dropna(
            subset=["time/steps"]
        )

    first = fit(4, 0)
    assert first["time/train_s_total"].tolist() == first["time/train_s"].tolist()
    resumed = fit(8, 1, tmp_path / "v0.ckpt")
    assert resumed["time/steps"].tolist() == [6, 8]
    before = first["time/train_s_total"].iloc[-1]
    assert resumed["time/train_s_total"].tolist() == pytest.approx(
        (resumed["time/train_s"] + before).tolist()
    )
    assert before > 0 and resumed["time/train_s_total"].iloc[0] > before
    ckpt = torch.load(tmp_path / "v0.ckpt", weights_only=True)
    ckpt["callbacks"] = {}  # a checkpoint written before the seconds were recorded
    torch.save(ckpt, tmp_path / "old.ckpt")
    unknown = fit(8, 2, tmp_path / "old.ckpt")
    assert unknown["time/steps"].tolist() == [6, 8]
    assert "time/train_s_total" not in unknown or unknown["time/train_s_total"].isna().all()


def test_validation_at_steps_needs_the_step_based_trainer(data_root, tmp_path, small_overrides):
    from kspace_mim.config import compose
    from kspace_mim.train import run

    overrides = small_overrides(data_root / "multicoil_train", "validation.at_steps=true")
    with pytest.raises(ValueError, match="check_val_every_n_epoch=null"):
        run(compose(overrides), tmp_path / "run")


def test_validation_at_step_zero_competes_for_the_best_checkpoint(
    data_root, tmp_path, small_overrides, train_log
):
    """validation.at_zero: a validation before the first step, logged at step 0, equal
    to zero-filling for a network that starts at its input; when training only hurts
    (a learning rate far too large), the checkpoint kept is step 0's."""
    from kspace_mim.config import compose
    from kspace_mim.train import run

    folder = data_root / "multicoil_train"
    steps = stepwise(4, 2)
    overrides = small_overrides(
        folder, *steps, "validation.at_zero=true", "model=unet", "model.residual=true"
    )
    metrics = run(compose([*overrides, "optim.lr=100"]), tmp_path / "run")
    log = train_log(tmp_path / "run").dropna(subset=["time/steps"])
    assert log["time/steps"].astype(int).tolist() == [0, 1, 4]  # step 0, then the schedule
    assert metrics["checkpoint_step"] == 0
    assert metrics["ssim"] == pytest.approx(log["val/ssim"].iloc[0], abs=1e-6)
    zero_filled = [o for o in small_overrides(folder, *steps) if o != "model.size=tiny"]
    baseline = run(compose([*zero_filled, "model=zero_filled"]), tmp_path / "zf")
    assert metrics["ssim"] == pytest.approx(baseline["ssim"], abs=1e-4)
