"""Callbacks: checkpoint on SIGTERM, periodic checkpoints, atomic writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import fsspec.implementations.local as fsspec_local
import lightning as L
import pytest
import torch

from kspace_mim.config import compose
from kspace_mim.data.synthesize import synthesize
from kspace_mim.modules import load_module
from kspace_mim.train import run


def test_kill_and_resume_continues_at_the_checkpointed_step(
    env, tmp_path, train_cli, train_command, train_log
):
    run_dir = tmp_path / "killed"
    cmd = train_command(
        "encoder.size=tiny",
        "data.batch_size=1",
        "trainer.max_epochs=1000",
        "checkpoint.every_n_train_steps=3",
        f"hydra.run.dir={run_dir}",
    )
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
    train_cli(
        env,
        "encoder.size=tiny",
        "data.batch_size=1",
        f"trainer.max_steps={step + 2}",
        "trainer.log_every_n_steps=1",
        f"ckpt_path={last}",
        f"hydra.run.dir={resumed}",
    )
    log = train_log(resumed)
    steps = log.loc[log["train/loss"].notna(), "step"]
    assert steps.min() == step and steps.max() == step + 1


def test_interrupted_checkpoint_write_keeps_the_old_one(
    data_root, tmp_path, monkeypatch, small_overrides
):
    run(compose(small_overrides(data_root / "multicoil_val")), tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    model = load_module(last)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    trainer.strategy.connect(model)

    def crash_mid_write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(fsspec_local.LocalFileOpener, "write", crash_mid_write)
    with pytest.raises(OSError, match="simulated"):
        trainer.save_checkpoint(last)
    monkeypatch.undo()
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == before
    assert sorted(p.name for p in last.parent.iterdir() if "last" in p.name) == ["last.ckpt"]


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resumes(tmp_path, train_log):
    data = tmp_path / "data"
    # 240 steps an epoch: the SIGTERM lands mid-epoch (an epoch boundary is Lightning's
    # end-of-epoch restart, which can resume one step off; see the README).
    synthesize(data, "multicoil", "val", volumes=8, slices=30, coils=4, size=32, progress=False)
    run_dir = tmp_path / "run"
    base = [
        sys.executable,
        "-m",
        "kspace_mim.train",
        f"data.train_path={data}",
        f"data.val_path={data}",
        "data.crop_size=32",
        "data.num_workers=0",
        "encoder.size=tiny",
        "data.batch_size=1",
        "trainer.log_every_n_steps=1",
    ]
    proc = subprocess.Popen(
        [
            *base,
            "trainer.max_epochs=1000",
            "checkpoint.every_n_train_steps=2",
            f"hydra.run.dir={run_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and not last.is_file():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and "ckpt_path=" in status["reason"]
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step > 0
    resumed = tmp_path / "resumed"
    result = subprocess.run(
        [*base, f"trainer.max_steps={step + 2}", f"ckpt_path={last}", f"hydra.run.dir={resumed}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    log = train_log(resumed)
    steps = log.loc[log["train/loss"].notna(), "step"]
    assert steps.min() == step and steps.max() == step + 1
