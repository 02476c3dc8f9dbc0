"""Training from the real Hydra config on CPU: every family learns, checkpoints reload exactly."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
import yaml

from kspace_mim.checkpoints import load_module
from kspace_mim.config import compose
from kspace_mim.data.synthesize import synthesize
from kspace_mim.fingerprint import RunDirError
from kspace_mim.train import build_datamodule, build_model, run

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
        "data=tiny",
        "data.batch_size=2",
        "data.val_batch_size=4",
        "trainer.max_epochs=1000",
        "trainer.check_val_every_n_epoch=1000",
        "optim.lr=3e-3",
        "trainer.log_every_n_steps=1",
        *extra,
        *(["model.size=tiny"] if tiny else []),
    ]


@pytest.fixture(scope="module")
def zero_filled_ssim(overfit_dir, tmp_path_factory):
    cfg = compose(overrides(overfit_dir, "model=zero_filled", tiny=False))
    return run(cfg, tmp_path_factory.mktemp("zf"))["ssim"]


@pytest.mark.parametrize(
    "model",
    [
        ["model=swin"],
        ["model=swin", "model.domain=kspace"],
        ["model=vit", "model.patch_size=4"],
        ["model=unet"],
        ["model=varnet", "model.num_cascades=2", "model.pools=3"],
        ["model=unrolled", "model.cascades=2", "model.pools=3"],
    ],
    ids=["swin-image", "swin-kspace", "vit-image", "unet", "varnet", "unrolled"],
)
def test_each_encoder_overfits_a_few_slices(
    model, overfit_dir, zero_filled_ssim, tmp_path, train_log
):
    cfg = compose(overrides(overfit_dir, *model, "trainer.max_steps=200"))
    metrics = run(cfg, tmp_path)
    assert metrics["ssim"] > zero_filled_ssim + 0.15, (metrics["ssim"], zero_filled_ssim)
    assert metrics["num_volumes"] == 1 and metrics["num_slices"] == 4
    assert ("kspace_ssim" in metrics) == (model[0] != "model=unet")
    log = train_log(tmp_path)
    loss = log["train/loss"].dropna().to_numpy()
    assert loss[-5:].mean() < 0.75 * loss[:5].mean()
    lr = [c for c in log.columns if c.startswith("lr-")]  # lr-AdamW, lr-Adam, lr-RMSprop
    assert log["train/grad_norm"].notna().any() and lr and log[lr[0]].notna().any()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "config.yaml").is_file()
    assert list((tmp_path / "figures").glob("val_epoch*.png"))


def test_checkpoint_reloads_into_identical_outputs(overfit_dir, tmp_path):
    cfg = compose(
        overrides(overfit_dir, "trainer.max_steps=6", "trainer.check_val_every_n_epoch=1")
    )
    metrics = run(cfg, tmp_path)
    assert metrics["evaluation_mask"] == "equispaced4x"  # the yardstick, recorded
    # one stable name, whatever validation improved on: no best-v1.ckpt, nothing to quote
    assert [p.name for p in (tmp_path / "checkpoints").glob("best*")] == ["best.ckpt"]
    best = tmp_path / "checkpoints" / "best.ckpt"

    model = load_module(best)
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


def test_resume_continues_at_the_same_step(overfit_dir, tmp_path, train_log):
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
    log = train_log(tmp_path / "b")
    steps = log.loc[log["train/loss"].notna(), "step"]
    assert steps.min() == 4 and steps.max() == 5  # epoch 3 only: 2 steps per epoch


def test_a_restarted_job_resumes_from_its_own_run_directory(overfit_dir, tmp_path):
    """What a requeued SLURM job does: the same job runs again in its own directory; with
    ckpt_path unset it continues from that directory's last.ckpt at its step (a longer
    budget is the same run, extended)."""
    fresh = run(compose(overrides(overfit_dir, "trainer.max_epochs=1")), tmp_path / "job")
    assert fresh["resumed_from"] is None and fresh["world_size"] == 1
    last = tmp_path / "job" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2
    saved = json.loads((tmp_path / "job" / "fingerprint.json").read_text())
    assert saved["budget"]["trainer.max_epochs"] == 1 and "optim.lr" in saved["identity"]
    # A longer budget and another logging cadence: the same run, continued.
    again = run(
        compose(overrides(overfit_dir, "trainer.max_epochs=2", "trainer.log_every_n_steps=3")),
        tmp_path / "job",
    )
    assert again["resumed_from"] == {"checkpoint": str(last), "step": 2}
    assert torch.load(last, weights_only=False)["global_step"] == 4  # 2 more, not 4
    # An explicit ckpt_path wins over the directory's own.
    other = run(
        compose(overrides(overfit_dir, "trainer.max_epochs=3", f"ckpt_path={last}")),
        tmp_path / "other",
    )
    assert other["resumed_from"] == {"checkpoint": str(last), "step": 4}


def test_a_run_directory_of_another_configuration_is_refused(overfit_dir, tmp_path):
    """A reused directory with another learning rate: nothing of the old run is resumed,
    nothing of it is overwritten, and the one line names the key and the way out."""
    job = tmp_path / "job"
    run(compose(overrides(overfit_dir, "trainer.max_epochs=1")), job)
    before = {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()}
    last = job / "checkpoints" / "last.ckpt"
    step = torch.load(last, weights_only=True)["global_step"]
    with pytest.raises(RunDirError, match=r"optim.lr: 0.003 -> 0.0001.*ckpt_path="):
        run(compose(overrides(overfit_dir, "trainer.max_epochs=2", "optim.lr=1e-4")), job)
    assert {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()} == before
    assert torch.load(last, weights_only=True)["global_step"] == step
    # A checkpoint without a fingerprint is nobody's known run: refused as well.
    (job / "fingerprint.json").unlink()
    with pytest.raises(RunDirError, match="no fingerprint.json"):
        run(compose(overrides(overfit_dir, "trainer.max_epochs=2")), job)
    # ckpt_path= continues those weights on purpose, under the new configuration.
    cfg = compose(
        overrides(overfit_dir, "trainer.max_epochs=2", "optim.lr=1e-4", f"ckpt_path={last}")
    )
    assert run(cfg, job)["resumed_from"]["step"] == step


def test_a_cut_off_last_ckpt_is_named_in_one_line(overfit_dir, tmp_path):
    job = tmp_path / "job"
    run(compose(overrides(overfit_dir, "trainer.max_epochs=1")), job)
    last = job / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"own checkpoint cannot be resumed.*not a readable"):
        run(compose(overrides(overfit_dir, "trainer.max_epochs=2")), job)


def test_pretrain_then_finetune(overfit_dir, tmp_path):
    pre = compose(
        overrides(overfit_dir, "mask=random0.6", "trainer.max_steps=2", "model.domain=kspace")
    )
    run(pre, tmp_path / "pre")
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    fine = compose(
        overrides(
            overfit_dir,
            "mask=equispaced4x",
            "trainer.max_steps=2",
            "model.domain=kspace",
            f"init_from={ckpt}",
        )
    )
    # The fine-tuning model starts from the pre-trained weights, every one of them.
    pretrained = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    start = build_model(fine, build_datamodule(fine)).state_dict()
    assert start.keys() == pretrained.keys()
    for key, value in start.items():
        assert torch.equal(value, pretrained[key]), key
    assert run(fine, tmp_path / "fine")["ssim"] > 0
    wrong = compose(
        overrides(overfit_dir, "trainer.max_steps=2", "model.embed_dim=32", f"init_from={ckpt}")
    )
    with pytest.raises(ValueError, match="shapes differ from this config"):
        run(wrong, tmp_path / "wrong")
    # the domain forgotten: the error names the override that builds the checkpoint's network
    image = compose(overrides(overfit_dir, "trainer.max_steps=2", f"init_from={ckpt}"))
    with pytest.raises(ValueError, match="trained with model.domain=kspace: add that"):
        run(image, tmp_path / "image")


def clean_env(tmp_path):
    """A new user's shell: no data, no outputs; runs start in an empty directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSPACE_MIM")}
    env.update(KSPACE_MIM_DATA=str(tmp_path / "data"), KSPACE_MIM_OUTPUT=str(tmp_path / "out"))
    return env


def train_in(tmp_path, *overrides, env=None):
    cmd = [sys.executable, "-m", "kspace_mim.train", "data.num_workers=0", *overrides]
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        cmd, env=env or clean_env(tmp_path), capture_output=True, text=True, cwd=cwd
    )


def test_first_run_writes_the_default_data(tmp_path):
    """`python -m kspace_mim.train model=swin mask=random0.6` with no data/ folder: the
    default set (the brain) is written on first use, once."""
    result = train_in(tmp_path, "model=swin", "mask=random0.6", "trainer.max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    data = tmp_path / "data" / "colin27"
    assert len(list((data / "multicoil_train").glob("*.h5"))) == 28
    assert len(list((data / "multicoil_val").glob("*.h5"))) == 13
    assert len(list((data / "multicoil_test").glob("*.h5"))) == 13  # for `reconstruct`
    assert len(list((data / "multicoil_test_full").glob("*.h5"))) == 13  # its targets
    assert not list(data.glob(".*tmp*"))  # written in place by rename, nothing left over
    assert "wrote the default data set (first use; the Colin27 brain): 28 + 13 + 13 + 13" in (
        result.stdout
    )
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"ssim", "psnr", "nmse", "kspace_ssim", "num_volumes", "num_slices"} <= metrics.keys()
    assert metrics["num_volumes"] == 13
    assert "SSIM" in result.stdout and "k-space SSIM" in result.stdout
    again = train_in(tmp_path, "model.size=tiny", "trainer.max_steps=1")
    assert again.returncode == 0 and "first use" not in again.stdout


def test_lightning_trainer_arguments_and_a_time_budget(tmp_path, train_log):
    """Trainer arguments the config does not set itself, and training for a wall-clock
    budget alone (max_epochs=-1): the learning rate decays over the time budget."""
    result = train_in(
        tmp_path,
        "model.size=tiny",
        "data=tiny",
        "trainer.max_epochs=-1",
        "trainer.max_time=00:00:00:06",
        "trainer.limit_val_batches=2",
        "trainer.accumulate_grad_batches=2",
        "trainer.val_check_interval=0.5",
        "trainer.log_every_n_steps=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    assert config["max_time"] == "00:00:00:06" and config["accumulate_grad_batches"] == 2
    log = train_log(run_dir)
    lr = log["lr-AdamW"].dropna().to_numpy()
    assert lr.max() == pytest.approx(1e-3, rel=0.2)  # optim.lr, reached after the warm-up
    assert lr[-1] < 0.2 * lr.max()  # cosine over the budget, near zero when it ends
    # limit_val_batches=2 of 8 slices per batch: at most 2 batches of the 32 slices scored
    val_slices = log["val/num_slices"].dropna()
    assert len(val_slices) >= 2 and (val_slices <= 16).all()
    assert json.loads((run_dir / "metrics.json").read_text())["ssim"] > 0


def test_expected_failures_are_one_line(tmp_path):
    """A missing folder, an unknown option, a wrong stride: a clear line, no traceback,
    a non-zero status; HYDRA_FULL_ERROR=1 shows the traceback."""
    missing = train_in(tmp_path, f"data.train_path={tmp_path}/nowhere", "trainer.max_steps=1")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr
    assert f"data.train_path: data folder {tmp_path}/nowhere does not exist" in missing.stderr
    assert not (tmp_path / "nowhere").exists()  # only the default folders are synthesized
    unknown = train_in(tmp_path, "model=foo")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "Could not find 'model/foo'" in unknown.stderr
    # the earlier layout's names: one line naming their successors
    renamed = train_in(tmp_path, "encoder=varnet", "encoder.size=tiny")
    assert renamed.returncode != 0 and "Traceback" not in renamed.stderr
    assert "encoder is now model (model=swin|vit|unet|varnet|unrolled" in renamed.stderr
    old_init = train_in(tmp_path, "model.init_from=x.ckpt")
    assert "model.init_from is now init_from" in old_init.stderr
    stride = train_in(tmp_path, "model.size=tiny", "model.encoder_stride=3")
    assert stride.returncode != 0 and "Traceback" not in stride.stderr
    assert "Set model.encoder_stride=4" in stride.stderr
    full = train_in(
        tmp_path,
        f"data.train_path={tmp_path}/nowhere",
        env={**clean_env(tmp_path), "HYDRA_FULL_ERROR": "1"},
    )
    assert full.returncode != 0 and "Traceback" in full.stderr


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
        "ARGS=trainer.max_steps=2 data.num_workers=0 model.size=tiny",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for split in ("train", "val", "test", "test_full"):
        assert len(list((tmp_path / "data" / "colin27" / f"multicoil_{split}").glob("*.h5"))) == 2
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
            "model.size=tiny",
            "trainer.max_steps=2",
            *extra,
        ]
    )
    assert run(cfg, tmp_path)["num_slices"] > 0


def test_same_seed_same_metrics(data_root, tmp_path, small_overrides):
    folder = data_root / "multicoil_train"
    overrides = small_overrides(folder, "mask=random0.6", "augmentation=flip_crop")
    first = run(compose(overrides), tmp_path / "a")
    second = run(compose(overrides), tmp_path / "b")
    other = run(compose([*overrides, "seed=1"]), tmp_path / "c")
    for key in ("ssim", "psnr", "nmse", "kspace_ssim"):
        assert first[key] == second[key]
    assert first["ssim"] != other["ssim"]


def test_unrolled_pretrained_weights_land_in_every_cascade(overfit_dir, tmp_path):
    """The paper's two stages for the unrolled network: SimMIM patch masks, then Cartesian."""
    import torch

    run(
        compose(overrides(overfit_dir, "model=unrolled", "mask=random0.6", "trainer.max_steps=3")),
        tmp_path / "pre",
    )
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    pretrained = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    fine = compose(
        overrides(overfit_dir, "model=unrolled", "trainer.max_steps=1", f"init_from={ckpt}")
    )
    datamodule = build_datamodule(fine)
    from kspace_mim.train import build_model

    model = build_model(fine, datamodule)
    assert type(model.net).__name__ == "UnrolledReconstructor"
    state = model.state_dict()
    for i in range(len(model.net.cascades)):
        keys = [k for k in pretrained if k.startswith(f"net.cascades.{i}.")]
        assert keys and all(torch.equal(state[k], pretrained[k]) for k in keys)
    first = [k for k in pretrained if k.startswith("net.first.")]
    assert first and all(torch.equal(state[k], pretrained[k]) for k in first)
    fresh = build_model(compose(overrides(overfit_dir, "model=unrolled")), datamodule)
    assert not torch.equal(fresh.state_dict()[keys[0]], pretrained[keys[0]])


@pytest.mark.parametrize("supervision", ["ssdu", "mim"])
def test_self_supervision_trains_on_undersampled_files_alone(
    supervision, data_root, tmp_path, train_log
):
    """supervision=ssdu | mim from the command line's config on a folder of test-layout
    files: its loss is what is logged and trained, validation scores fully sampled files."""
    cfg = compose(
        [
            f"data.train_path={data_root}/multicoil_test",
            f"data.val_path={data_root}/multicoil_val",
            "data=tiny",
            "data.batch_size=2",
            "model.size=tiny",
            f"supervision={supervision}",
            "trainer.max_steps=3",
            "trainer.log_every_n_steps=1",
        ]
    )
    metrics = run(cfg, tmp_path)
    log = train_log(tmp_path)
    assert log[f"train/{supervision}"].notna().sum() == 3
    assert log["train/loss"].dropna().map(math.isfinite).all()
    assert metrics["num_volumes"] == 2 and 0 < metrics["ssim"] < 1


def test_evaluation_checkpoint_chooses_the_best_or_the_last(tmp_path):
    """evaluation.checkpoint=best: the monitored best in this run directory; last: None
    (the final state: label-free rows, where no label may choose); anything else: named."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from kspace_mim.config import ConfigError
    from kspace_mim.train import chosen_checkpoint

    best = tmp_path / "checkpoints" / "best-epoch=001.ckpt"
    best.parent.mkdir()
    best.write_bytes(b"")
    callback = ModelCheckpoint(dirpath=best.parent, monitor="val/ssim", mode="max")
    callback.best_model_path = str(best)
    cfg = compose(["evaluation.checkpoint=best"])
    assert chosen_checkpoint(cfg, [callback], tmp_path) == str(best)
    cfg = compose(["evaluation.checkpoint=last"])
    assert chosen_checkpoint(cfg, [callback], tmp_path) is None
    with pytest.raises(ConfigError, match="evaluation.checkpoint='latest': one of"):
        chosen_checkpoint(compose(["evaluation.checkpoint=latest"]), [callback], tmp_path)
