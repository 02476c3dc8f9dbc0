"""Loggers: W&B offline without a key or network, with metrics and pictures."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_offline_wandb_run_holds_metrics_and_an_image(env, tmp_path, train_cli):
    run_dir = tmp_path / "wandb_run"
    clean = {k: v for k, v in env.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    train_cli(
        clean,
        "logger=wandb",
        "model.size=tiny",
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
