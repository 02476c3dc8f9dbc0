"""Training from the real Hydra config on CPU: every family learns, checkpoints reload exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import lightning as L
import pandas as pd
import pytest

from kspace_mim.config import compose
from kspace_mim.data.synthesize import synthesize, synthesize_set
from kspace_mim.train import build_datamodule, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def overfit_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overfit")
    synthesize(folder, "multicoil", "val", volumes=1, slices=4, coils=4, size=32, progress=False)
    return folder


def overrides(folder, *extra, tiny=True):
    return [
        f"data.train_path={folder}",
        f"data.val_path={folder}",
        "data.crop_size=32",
        "data.batch_size=2",
        "data.val_batch_size=4",
        "data.num_workers=0",
        "trainer.max_epochs=1000",
        "trainer.check_val_every_n_epoch=1000",
        "optim.lr=3e-3",
        "trainer.log_every_n_steps=1",
        *extra,
        *(["encoder.size=tiny"] if tiny else []),
    ]


@pytest.fixture(scope="module")
def zero_filled_ssim(overfit_dir, tmp_path_factory):
    cfg = compose(overrides(overfit_dir, "encoder=zero_filled", tiny=False))
    return run(cfg, tmp_path_factory.mktemp("zf"))["ssim"]


@pytest.mark.parametrize(
    "model",
    [
        ["encoder=swin"],
        ["encoder=swin", "encoder.domain=kspace"],
        ["encoder=vit", "encoder.patch_size=4"],
        ["encoder=unet"],
    ],
    ids=["swin-image", "swin-kspace", "vit-image", "unet"],
)
def test_each_encoder_overfits_a_few_slices(model, overfit_dir, zero_filled_ssim, tmp_path):
    cfg = compose(overrides(overfit_dir, *model, "trainer.max_steps=200"))
    metrics = run(cfg, tmp_path)
    assert metrics["ssim"] > zero_filled_ssim + 0.15, (metrics["ssim"], zero_filled_ssim)
    assert metrics["num_volumes"] == 1 and metrics["num_slices"] == 4
    assert ("kspace_ssim" in metrics) == (model[0] != "encoder=unet")
    log = pd.read_csv(tmp_path / "csv" / "version_0" / "metrics.csv")
    loss = log["train/loss"].dropna().to_numpy()
    assert loss[-5:].mean() < 0.75 * loss[:5].mean()
    assert log["train/grad_norm"].notna().any() and log["lr-AdamW"].notna().any()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "config.yaml").is_file()
    assert list((tmp_path / "figures").glob("val_epoch*.png"))


def test_checkpoint_reloads_into_identical_outputs(overfit_dir, tmp_path):
    cfg = compose(
        overrides(overfit_dir, "trainer.max_steps=6", "trainer.check_val_every_n_epoch=1")
    )
    metrics = run(cfg, tmp_path)
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    from kspace_mim.modules.simmim import SimMIMModule

    model = SimMIMModule.load_from_checkpoint(best)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path / "again",
    )
    datamodule = build_datamodule(cfg)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    again = model.last_metrics["val"]
    for key in ("ssim", "psnr", "nmse", "kspace_ssim"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6)


def test_resume_continues_at_the_same_step(overfit_dir, tmp_path):
    first = compose(
        overrides(overfit_dir, "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1")
    )
    run(first, tmp_path / "a")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    second = compose(
        overrides(
            overfit_dir,
            "trainer.max_epochs=3",
            "trainer.check_val_every_n_epoch=1",
            f"ckpt_path={last}",
        )
    )
    run(second, tmp_path / "b")
    log = pd.read_csv(tmp_path / "b" / "csv" / "version_0" / "metrics.csv")
    steps = log.loc[log["train/loss"].notna(), "step"]
    assert steps.min() == 4 and steps.max() == 5  # epoch 3 only: 2 steps per epoch


def test_pretrain_then_finetune(overfit_dir, tmp_path):
    pre = compose(
        overrides(overfit_dir, "mask=random0.6", "trainer.max_steps=2", "encoder.domain=kspace")
    )
    run(pre, tmp_path / "pre")
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    fine = compose(
        overrides(
            overfit_dir,
            "mask=equispaced4x",
            "trainer.max_steps=2",
            "encoder.domain=kspace",
            f"model.init_from={ckpt}",
        )
    )
    assert run(fine, tmp_path / "fine")["ssim"] > 0
    wrong = compose(
        overrides(
            overfit_dir, "trainer.max_steps=2", "encoder.embed_dim=32", f"model.init_from={ckpt}"
        )
    )
    with pytest.raises(ValueError, match="shapes differ from this config"):
        run(wrong, tmp_path / "wrong")


def test_design_card_command_runs(tmp_path):
    """`python -m kspace_mim.train encoder=swin mask=random0.6` on the default data layout."""
    data = tmp_path / "data"
    synthesize_set(
        data / "synthetic",
        splits=("train", "val"),
        volumes=2,
        slices=2,
        coils=4,
        size=32,
        progress=False,
    )
    env = {**os.environ, "KSPACE_MIM_DATA": str(data), "KSPACE_MIM_OUTPUT": str(tmp_path / "out")}
    cmd = [
        sys.executable,
        "-m",
        "kspace_mim.train",
        "encoder=swin",
        "mask=random0.6",
        "trainer.max_steps=2",
        "data.num_workers=0",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"ssim", "psnr", "nmse", "kspace_ssim", "num_volumes", "num_slices"} <= metrics.keys()
    assert "SSIM" in result.stdout and "k-space SSIM" in result.stdout


def test_make_train_writes_data_and_trains(tmp_path):
    """`make train` as the README says, on a small data set in a temporary folder."""
    root = __import__("pathlib").Path(__file__).parents[1]
    env = {**os.environ, "KSPACE_MIM_OUTPUT": str(tmp_path / "out")}
    cmd = [
        "make",
        "-C",
        str(root),
        "train",
        f"DATA_ROOT={tmp_path / 'data'}",
        "SYNTH_ARGS=--volumes 2 --slices 2 --size 32 --coils 4",
        "ARGS=trainer.max_steps=2 data.num_workers=0 encoder.size=tiny",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for split in ("train", "val", "test"):
        assert len(list((tmp_path / "data" / "synthetic" / f"multicoil_{split}").glob("*.h5"))) == 2
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.parametrize(
    "data, folder, extra",
    [
        ("fastmri_knee", "multicoil_train", []),
        ("fastmri_brain", "mixed_coils", ["data.virtual_coils=4"]),
    ],
)
def test_real_data_configs_train(data, folder, extra, data_root, tmp_path):
    """The README's real-data commands, pointed at fastMRI-layout files."""
    cfg = compose(
        [
            f"data={data}",
            f"data.train_path={data_root}/{folder}",
            f"data.val_path={data_root}/{folder}",
            "data.crop_size=32",
            "data.num_workers=0",
            "encoder.size=tiny",
            "trainer.max_steps=2",
            *extra,
        ]
    )
    assert run(cfg, tmp_path)["num_slices"] > 0
