"""Training on a real SLURM cluster: a Hydra multirun through ``sbatch``, a requeued job
that resumes at its step, and DDP started by ``srun`` (Lightning's SLURM environment)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kspace_mim.report import collect

# hydra/launcher=slurm asks for 4 GPUs, 8 CPUs and 64 GB per node: shrink it to this node.
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=15",
]
TINY = [
    "model.size=tiny",
    "data.batch_size=2",
    "logger=csv",
    "trainer.enable_progress_bar=false",
]
# Every wait is bounded: a job that dies without a result fails the test instead of
# leaving submitit polling a queue without accounting forever.
WAIT_S = 420


def queue() -> str:
    return subprocess.run(
        ["squeue", "-h", "-o", "%i %T %r"], capture_output=True, text=True, check=False
    ).stdout


def job_logs(sweep: Path) -> str:
    """The tail of every submitit log of a sweep (what a failure message should show)."""
    tails = []
    for log in sorted(sweep.glob(".submitit/*/*_log.*")):
        tails.append(f"--- {log}\n" + "\n".join(log.read_text(errors="ignore").splitlines()[-25:]))
    return "\n".join(tails)


LAUNCHED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_launcher_left():
    """A test that fails half-way leaves no launcher polling the queue behind it."""
    yield
    while LAUNCHED:
        process = LAUNCHED.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def launch(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        command,
        env=env,
        cwd=env["root"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    LAUNCHED.append(process)
    return process


def finish(process: subprocess.Popen, sweep: Path, timeout: float = WAIT_S) -> str:
    """The launcher's output once it has returned 0, within ``timeout`` seconds."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(
            f"the sweep did not end within {timeout:.0f} s; queue: {queue()!r}\n"
            f"{output[-3000:]}\n{job_logs(sweep)}"
        ) from None
    assert process.returncode == 0, f"{output[-3000:]}\n{job_logs(sweep)}"
    return output


def slurm_job_ids(sweep: Path) -> set[str]:
    """The SLURM ids of a sweep's jobs (``<array>_<task>`` for a job array): submitit
    keeps a folder per job under .submitit, with the job it pickled."""
    return {p.parent.name for p in (sweep / ".submitit").glob("*/*_submitted.pkl")}


def test_multirun_of_two_jobs_goes_through_sbatch_and_is_reported(env, tmp_path, train_command):
    sweep = tmp_path / "sweep"
    command = train_command(
        "-m", *LAUNCHER, *TINY, "trainer.max_steps=3", "seed=0,1", f"hydra.sweep.dir={sweep}"
    )
    finish(launch(command, env), sweep)

    assert len(slurm_job_ids(sweep)) == 2  # two SLURM jobs (one array)
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["num_volumes"] == 2 and 0 < metrics["ssim"] <= 1
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "finished"
    frame = collect(sweep)
    assert sorted(frame["seed"].astype(int)) == [0, 1]
    assert list(frame["status"]) == ["finished", "finished"]
    report = subprocess.run(
        [sys.executable, "-m", "kspace_mim.report", str(sweep)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert (sweep / "report.md").read_text().count("finished") == 2


def test_requeued_job_resumes_from_its_last_checkpoint_at_its_step(env, tmp_path, train_command):
    sweep = tmp_path / "sweep"
    steps = 400
    command = train_command(
        "-m",
        *LAUNCHER,
        *TINY,
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        "trainer.check_val_every_n_epoch=1000",
        "checkpoint.every_n_train_steps=5",
        f"hydra.sweep.dir={sweep}",
    )
    process = launch(command, env)
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + WAIT_S
    while not last.is_file():
        assert process.poll() is None, f"the launcher ended early\n{job_logs(sweep)}"
        assert time.monotonic() < deadline, f"no checkpoint within {WAIT_S} s\n{job_logs(sweep)}"
        time.sleep(0.5)
    (job_id,) = slurm_job_ids(sweep)
    # What a pre-emption does: the scheduler kills the job and puts it back in the queue.
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    finish(process, sweep)

    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    resumed = metrics["resumed_from"]
    assert resumed is not None, job_logs(sweep)
    assert resumed["checkpoint"] == str(last)
    assert 0 < resumed["step"] < steps  # continued mid-run, not from step 0
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == steps
    # The second start of the same job (SLURM_RESTART_COUNT) wrote the result.
    logs = job_logs(sweep)
    assert "resuming from" in logs, logs


def test_two_task_job_trains_with_ddp_started_by_srun(env, tmp_path, train_command):
    sweep = tmp_path / "sweep"
    command = train_command(
        "-m",
        *LAUNCHER,
        *TINY,
        "trainer=ddp_cpu",
        "trainer.max_steps=3",
        "hydra.launcher.tasks_per_node=2",
        f"hydra.sweep.dir={sweep}",
    )
    finish(launch(command, env), sweep)

    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    # Two processes, both started by srun: Lightning read SLURM's environment and did not
    # relaunch itself.
    assert metrics["world_size"] == 2
    assert metrics["cluster_environment"] == "SLURMEnvironment"
    assert metrics["num_volumes"] == 2
    logs = job_logs(sweep)
    assert logs.count("_0_log.out") == 1 and logs.count("_1_log.out") == 1, logs
