"""Jobs inside Hydra: status files, DDP relaunch inside sweeps, SLURM pickling."""

from __future__ import annotations

import json
import pickle

import pytest

from kspace_mim.config import compose


def test_ddp_cpu_sweep_equals_single_process(env, tmp_path, train_cli):
    """A 2-job multirun of 2-process DDP jobs; validation metrics equal one process."""
    single = tmp_path / "single"
    train_cli(env, "encoder.size=tiny", "trainer.max_steps=2", f"hydra.run.dir={single}")
    ckpt = single / "checkpoints" / "last.ckpt"
    sweep = tmp_path / "ddp"
    train_cli(
        env,
        "-m",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "eval_only=true",
        f"model.init_from={ckpt}",
        "encoder.size=tiny",
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
        f"model.init_from={ckpt}",
        "encoder.size=tiny",
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
