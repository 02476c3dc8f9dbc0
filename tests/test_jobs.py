"""Jobs inside Hydra: status files, DDP relaunch inside sweeps, SLURM pickling."""

from __future__ import annotations

import json
import pickle

import pytest

from kspace_mim.config import compose


@pytest.mark.slow
def test_ddp_cpu_sweep_equals_single_process(env, tmp_path, train_cli):
    """A 2-job multirun of 2-process DDP jobs; validation metrics equal one process."""
    single = tmp_path / "single"
    train_cli(env, "model.size=tiny", "trainer.max_steps=2", f"hydra.run.dir={single}")
    ckpt = single / "checkpoints" / "last.ckpt"
    sweep = tmp_path / "ddp"
    train_cli(
        env,
        "-m",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "eval_only=true",
        f"init_from={ckpt}",
        "model.size=tiny",
        "data.val_batch_size=1,2",
        f"hydra.sweep.dir={sweep}",
    )
    reference = train_eval_single(env, ckpt, tmp_path / "single_eval", train_cli)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["num_slices"] == reference["num_slices"] == 4
        for key in ("ssim", "psnr", "nmse", "kspace_ssim"):
            assert metrics[key] == pytest.approx(reference[key], rel=1e-5)
        assert len(list((sweep / job).glob("train_ddp_process_1.log"))) == 1
    assert not (tmp_path / "out").exists()  # no stray sweep started by the second rank


def train_eval_single(env, ckpt, run_dir, train_cli):
    train_cli(
        env,
        "eval_only=true",
        f"init_from={ckpt}",
        "model.size=tiny",
        f"hydra.run.dir={run_dir}",
    )
    return json.loads((run_dir / "metrics.json").read_text())


def test_slurm_launcher_composes_and_job_pickles():
    cfg = compose(
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"], return_hydra_config=True
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.nodes == 2 and launcher.tasks_per_node == launcher.gpus_per_node
    assert cfg.trainer.strategy == "ddp"
    from kspace_mim import jobs
    from kspace_mim import train as train_module

    assert pickle.loads(pickle.dumps(train_module.main)) is train_module.main
    assert pickle.loads(pickle.dumps(jobs.run_job)) is jobs.run_job


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0])
def test_a_killed_ddp_rank_ends_the_run_and_last_ckpt_resumes_it(
    env, tmp_path, train_command, rank
):
    """``kill -9`` of one of two ``ddp_cpu`` processes mid-run: the whole run ends with a
    non-zero status within a bounded time (no rank left waiting in a collective), and
    ``ckpt_path=<last.ckpt>`` continues it at its step."""
    import subprocess
    import time

    import psutil
    import torch

    run_dir = tmp_path / "run"
    tiny = [
        "trainer=ddp_cpu",
        "model.size=tiny",
        "data.batch_size=1",
        "trainer.max_epochs=-1",
        "trainer.check_val_every_n_epoch=1000",
        "trainer.enable_progress_bar=false",
        "checkpoint.every_n_train_steps=2",
    ]
    command = train_command(*tiny, "trainer.max_steps=100000", f"hydra.run.dir={run_dir}")
    launcher = subprocess.Popen(
        command, env=env, cwd=env["root"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    ranks: list[psutil.Process] = [psutil.Process(launcher.pid)]
    try:
        deadline = time.monotonic() + 300
        while not last.is_file() or len(ranks) < 2:
            assert launcher.poll() is None, launcher.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            # rank 1: the same command, started by Lightning's launcher (not a helper)
            ranks = [
                ranks[0],
                *(c for c in ranks[0].children() if "kspace_mim.train" in c.cmdline()),
            ]
            time.sleep(0.2)
        ranks[rank].kill()  # SIGKILL: no handler, no checkpoint, no goodbye
        # The other rank must end by itself (a timeout here is a rank left hanging). Rank 0
        # is our child: Popen reaps it (psutil would, and hide its status from Popen).
        if rank == 0:
            ranks[1].wait(timeout=120)
        assert launcher.wait(timeout=120) != 0
    finally:
        for process in ranks:
            if process.is_running():
                process.kill()
        launcher.wait()
    if rank == 1:
        status = json.loads((run_dir / "status.json").read_text())
        assert status["status"] == "failed"

    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert step >= 2
    resumed_dir = tmp_path / "resumed"
    result = subprocess.run(
        train_command(
            *tiny,
            f"trainer.max_steps={step + 4}",
            f"ckpt_path={last}",
            f"hydra.run.dir={resumed_dir}",
        ),
        env=env,
        cwd=env["root"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((resumed_dir / "metrics.json").read_text())
    assert metrics["resumed_from"] == {"checkpoint": str(last), "step": step}
    assert metrics["world_size"] == 2
    final = torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == step + 4


def test_a_finished_job_of_the_same_configuration_is_reused(tmp_path):
    """A job directory whose fingerprint (identity and budget) is this configuration's and
    whose job finished gives back its metrics; a longer budget, another configuration, an
    unfinished job or an explicit checkpoint do not."""
    from kspace_mim.fingerprint import fingerprint, finished_run, write_fingerprint

    base = ["model=swin", "model.size=tiny", "trainer.max_steps=4"]
    mine = fingerprint(compose(base))
    job = tmp_path / "model=swin,seed=0"
    job.mkdir()
    assert finished_run(job, mine) is None  # nothing ran here
    write_fingerprint(job, mine)
    metrics = {"ssim": 0.7, "psnr": 25.0, "nmse": 0.02}
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "status.json").write_text(json.dumps({"status": "running"}))
    assert finished_run(job, mine) is None  # killed before the end
    (job / "status.json").write_text(json.dumps({"status": "finished"}))
    assert finished_run(job, mine) == metrics
    assert finished_run(job, fingerprint(compose([*base, "trainer.max_steps=8"]))) is None
    assert finished_run(job, fingerprint(compose([*base, "optim.lr=3e-4"]))) is None
    (job / "metrics.json").write_text("{cut off")
    assert finished_run(job, mine) is None


@pytest.mark.slow
def test_a_study_relaunched_reuses_its_finished_jobs(env, tmp_path, train_cli):
    """A study as a sweep with job directories named by their overrides: launched again,
    every finished job is reused (no training, its files untouched) and only a new
    configuration trains."""
    sweep = tmp_path / "study"
    common = [
        "-m",
        "model.size=tiny",
        "trainer.max_steps=2",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
    ]
    train_cli(env, *common, "seed=0,1")
    (job,) = sweep.glob("*seed=0*")  # named by its overrides
    ckpt = job / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns
    again = train_cli(env, *common, "seed=0,1,2")
    assert again.stderr.count("(reused)") == 2
    assert ckpt.stat().st_mtime_ns == before
    (new,) = sweep.glob("*seed=2*")
    assert json.loads((new / "status.json").read_text())["status"] == "finished"
