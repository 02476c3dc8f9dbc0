"""Experiments at scale, on CPU: sweeps with a failing job and their report, DDP on CPU
processes equal to one process, offline W&B, kill-and-resume, SLURM and Optuna configs."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from kspace_mim.config import compose
from kspace_mim.data.synthesize import synthesize_set
from kspace_mim.report import report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The default data layout (synthetic/multicoil_{train,val}) in a temporary root."""
    root = tmp_path_factory.mktemp("root")
    synthesize_set(
        root / "data" / "synthetic",
        splits=("train", "val"),
        volumes=2,
        slices=2,
        coils=4,
        size=32,
        progress=False,
    )
    return {
        **os.environ,
        "KSPACE_MIM_DATA": str(root / "data"),
        "KSPACE_MIM_OUTPUT": str(root / "out"),
        "WANDB_MODE": "offline",
        "root": str(root),
    }


def train(env, *overrides, check=True, timeout=600):
    flags = [o for o in overrides if o.startswith("-")]  # -m must precede the overrides
    cmd = [
        sys.executable,
        "-m",
        "kspace_mim.train",
        *flags,
        "data.num_workers=0",
        "data.crop_size=32",
        *(o for o in overrides if not o.startswith("-")),
    ]
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["root"]
    )
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_sweep_with_a_failing_job_and_its_report(env, tmp_path):
    sweep = tmp_path / "sweep"
    # The U-Net with no image loss is a bad combination: exactly one of the four jobs fails.
    result = train(
        env,
        "-m",
        "encoder=unet,swin",
        "loss.image_l1=0,1",
        "loss.image_ssim=0",
        "encoder.size=tiny",
        "trainer.max_steps=2",
        f"hydra.sweep.dir={sweep}",
        check=False,
    )
    assert result.returncode != 0  # the sweep reports the failure at the end
    statuses = {
        d.name: json.loads((d / "status.json").read_text()) for d in sweep.iterdir() if d.is_dir()
    }
    assert sorted(s["status"] for s in statuses.values()) == ["failed"] + ["finished"] * 3
    (failed,) = [d for d, s in statuses.items() if s["status"] == "failed"]
    assert "U-Net needs loss.image_l1" in statuses[failed]["reason"]
    assert "Traceback" in (sweep / failed / "error.log").read_text()
    frame = report(sweep)
    assert list(frame["status"]) == ["finished"] * 3 + ["failed"]  # sorted by SSIM, failed last
    assert frame["ssim"].iloc[:3].is_monotonic_decreasing
    assert {"encoder", "loss.image_l1"} <= set(frame.columns)
    assert (sweep / "report.csv").is_file() and "| encoder" in (sweep / "report.md").read_text()
    assert (sweep / "ssim_vs_encoder.png").is_file() and (
        sweep / "ssim_vs_loss.image_l1.png"
    ).is_file()
    cli = subprocess.run(
        [sys.executable, "-m", "kspace_mim.report", str(sweep)], capture_output=True, text=True
    )
    assert cli.returncode == 0 and "U-Net needs" in cli.stdout


def test_ddp_cpu_sweep_equals_single_process(env, tmp_path):
    """A 2-job multirun of 2-process DDP jobs; validation metrics equal one process."""
    single = tmp_path / "single"
    train(env, "encoder.size=tiny", "trainer.max_steps=2", f"hydra.run.dir={single}")
    ckpt = single / "checkpoints" / "last.ckpt"
    sweep = tmp_path / "ddp"
    train(
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
    reference = train_eval_single(env, ckpt, tmp_path / "single_eval")
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["num_slices"] == reference["num_slices"] == 4
        for key in ("ssim", "psnr", "nmse", "kspace_ssim"):
            assert metrics[key] == pytest.approx(reference[key], rel=1e-5)
        assert len(list((sweep / job).glob("train_ddp_process_1.log"))) == 1
    assert not (tmp_path / "out").exists()  # no stray sweep started by the second rank


def train_eval_single(env, ckpt, run_dir):
    train(
        env,
        "eval_only=true",
        f"model.init_from={ckpt}",
        "encoder.size=tiny",
        f"hydra.run.dir={run_dir}",
    )
    return json.loads((run_dir / "metrics.json").read_text())


def test_offline_wandb_run_holds_metrics_and_an_image(env, tmp_path):
    run_dir = tmp_path / "wandb_run"
    clean = {k: v for k, v in env.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    train(
        clean,
        "logger=wandb",
        "encoder.size=tiny",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={run_dir}",
        timeout=300,
    )
    (offline,) = (run_dir / "wandb").glob("offline-run-*")  # for `wandb sync` later
    # The run's records (a binary log): every validation metric, the gradient norm, the
    # config, and the validation panels as images under files/media.
    records = next(offline.glob("run-*.wandb")).read_bytes()
    for key in (
        b"val/ssim",
        b"val/psnr",
        b"val/nmse",
        b"val/kspace_ssim",
        b"train/grad_norm",
        b"optimized_metric",
    ):
        assert key in records, key
    assert list((offline / "files" / "media" / "images").rglob("panels_*.png"))


def test_kill_and_resume_continues_at_the_checkpointed_step(env, tmp_path):
    run_dir = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "kspace_mim.train",
        "data.num_workers=0",
        "data.crop_size=32",
        "encoder.size=tiny",
        "data.batch_size=1",
        "trainer.max_epochs=1000",
        "checkpoint.every_n_train_steps=3",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=env["root"]
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    step = 0
    while time.time() < deadline and step < 6:
        time.sleep(1)
        if last.is_file():
            try:
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            except Exception:  # noqa: BLE001 - being written right now
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step >= 6 and step % 3 == 0
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    resumed = tmp_path / "resumed"
    train(
        env,
        "encoder.size=tiny",
        "data.batch_size=1",
        f"trainer.max_steps={step + 2}",
        "trainer.log_every_n_steps=1",
        f"ckpt_path={last}",
        f"hydra.run.dir={resumed}",
    )
    log = pd.read_csv(resumed / "csv" / "version_0" / "metrics.csv")
    steps = log.loc[log["train/loss"].notna(), "step"]
    assert steps.min() == step and steps.max() == step + 1


def test_slurm_launcher_composes_and_job_pickles():
    cfg = compose(
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"], return_hydra_config=True
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.nodes == 2 and launcher.tasks_per_node == launcher.gpus_per_node
    assert cfg.trainer.strategy == "ddp"
    from kspace_mim import train as train_module

    assert pickle.loads(pickle.dumps(train_module.main)) is train_module.main
    assert pickle.loads(pickle.dumps(train_module.run_job)) is train_module.run_job


def test_optuna_search_maximises_validation_ssim(env, tmp_path):
    sweep = tmp_path / "optuna"
    train(
        env,
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        "encoder.size=tiny",
        "trainer.max_steps=2",
        f"hydra.sweep.dir={sweep}",
    )
    import optuna

    study = optuna.load_study(study_name="kspace_mim", storage=f"sqlite:///{sweep}/optuna.db")
    assert len(study.trials) == 2  # the study itself lives in the sweep directory
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [json.loads((sweep / j / "metrics.json").read_text())["ssim"] for j in ("0", "1")]
    assert best["best_value"] == pytest.approx(max(values))
    assert {"optim.lr", "encoder.patch_size"} <= set(best["best_params"])


def test_paper_sweep_config_composes():
    cfg = compose(["experiment=paper_sweep"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert {"encoder.patch_size", "mask", "augmentation"} <= set(params)
