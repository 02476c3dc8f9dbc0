"""Reliability: bad data, non-finite losses, AMP, interrupts, atomic checkpoints,
untrusted checkpoints, reproducibility."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import fsspec.implementations.local as fsspec_local
import lightning as L
import pytest
import torch

from kspace_mim.config import compose
from kspace_mim.data.masks import RandomPatchMask
from kspace_mim.data.mri_data import BadFilesError, SliceDataset
from kspace_mim.data.synthesize import synthesize, synthesize_set
from kspace_mim.data.transforms import KspaceTransform, collate_slices
from kspace_mim.modules import load_module
from kspace_mim.modules.simmim import SimMIMModule
from kspace_mim.train import run


@pytest.fixture
def batch(data_root):
    transform = KspaceTransform(RandomPatchMask(0.6, 4), 32)
    ds = SliceDataset(data_root / "multicoil_val", "multicoil", transform)
    return transform.model_input(collate_slices([ds[0], ds[1]]))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SimMIMModule(num_coils=4, img_size=(32, 32), size="tiny")


def test_nonfinite_loss_stops_naming_the_batch(model, batch):
    class Diverged(torch.nn.Module):
        def forward(self, x, mask, use_mask_tokens=True):
            return torch.full_like(x, float("nan"))

    model.network = Diverged()
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite loss .* file1001000.h5 slice 0, "
        r"file1001000.h5 slice 1.*on_nonfinite=skip",
    ):
        model.training_step(batch, 0)
    model.on_nonfinite = "skip"
    assert model.training_step(batch, 0) is None  # Lightning skips the optimizer step


def test_bf16_autocast_keeps_ffts_in_float32(model, batch):
    reference = model.reconstruct(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.reconstruct(batch)
    assert out.kspace.dtype == torch.complex64 and out.image.dtype == torch.float32
    # acquired samples are exact (data consistency in float32), the image close
    acquired = batch.mask.expand_as(out.kspace)
    assert torch.equal(out.kspace[acquired], batch.masked_kspace[acquired])
    torch.testing.assert_close(
        out.image, reference.image, rtol=0.05, atol=0.05 * float(reference.image.max())
    )


def _small_run_overrides(folder, *extra):
    return [
        f"data.train_path={folder}",
        f"data.val_path={folder}",
        "data.crop_size=32",
        "data.num_workers=0",
        "encoder.size=tiny",
        "trainer.max_steps=3",
        "data.batch_size=2",
        *extra,
    ]


def test_bad_training_files_named_before_training(copy_folder, tmp_path):
    folder = copy_folder("multicoil_train")
    (folder / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    (folder / "notes.h5").write_text("not a volume")
    with pytest.raises(BadFilesError, match=r"(?s)2 unusable.*corrupt.h5.*notes.h5"):
        run(compose(_small_run_overrides(folder)), tmp_path / "a")
    assert not (tmp_path / "a" / "checkpoints").exists()  # nothing trained
    metrics = run(compose(_small_run_overrides(folder, "data.skip_bad_files=true")), tmp_path / "b")
    assert metrics["num_volumes"] == 5


def test_same_seed_same_metrics(data_root, tmp_path):
    folder = data_root / "multicoil_train"
    overrides = _small_run_overrides(folder, "mask=random0.6", "augmentation=flip_crop")
    first = run(compose(overrides), tmp_path / "a")
    second = run(compose(overrides), tmp_path / "b")
    other = run(compose([*overrides, "seed=1"]), tmp_path / "c")
    for key in ("ssim", "psnr", "nmse", "kspace_ssim"):
        assert first[key] == second[key]
    assert first["ssim"] != other["ssim"]


def test_interrupted_checkpoint_write_keeps_the_old_one(data_root, tmp_path, monkeypatch):
    run(compose(_small_run_overrides(data_root / "multicoil_val")), tmp_path)
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


class Payload:
    """Anything that is not tensors / containers: torch.load(weights_only=True) refuses it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_untrusted_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "kspace_mim_class": "x.Y", "payload": Payload()}, path)
    with pytest.raises(ValueError, match="not a readable kspace_mim checkpoint"):
        load_module(path)
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match="not a kspace_mim checkpoint"):
        load_module(tmp_path / "foreign.ckpt")


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resumes(tmp_path):
    data = tmp_path / "data"
    # 60 steps an epoch: the SIGTERM lands mid-epoch (an epoch boundary is Lightning's
    # end-of-epoch restart, which can resume one step off; see the README).
    synthesize(data, "multicoil", "val", volumes=2, slices=30, coils=4, size=32, progress=False)
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
        time.sleep(0.5)
    time.sleep(2)
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
    import pandas as pd

    log = pd.read_csv(resumed / "csv" / "version_0" / "metrics.csv")
    steps = log.loc[log["train/loss"].notna(), "step"]
    assert steps.min() == step and steps.max() == step + 1


@pytest.mark.slow
def test_concurrent_sweeps_never_share_a_directory(tmp_path):
    synthesize_set(
        tmp_path / "data" / "synthetic",
        splits=("train", "val"),
        volumes=2,
        slices=1,
        coils=2,
        size=16,
        progress=False,
    )
    env = {
        **os.environ,
        "KSPACE_MIM_DATA": str(tmp_path / "data"),
        "KSPACE_MIM_OUTPUT": str(tmp_path / "out"),
    }
    cmd = [
        sys.executable,
        "-m",
        "kspace_mim.train",
        "-m",
        "encoder=zero_filled",
        "data.crop_size=16",
        "data.num_workers=0",
        "seed=0,1",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    sweeps = sorted((tmp_path / "out" / "multirun").iterdir())
    assert len(sweeps) == 2
    for sweep in sweeps:
        assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == ["0", "1"]
        for job in ("0", "1"):
            assert json.loads((sweep / job / "status.json").read_text())["status"] == "finished"


def test_finishing_on_the_device_trains_as_in_the_loader(data_root, tmp_path):
    """Lightning's on_after_batch_transfer path (GPU default) trains to the same metrics as
    the CPU default, on batches that mix 4- and 6-coil volumes of different widths."""
    overrides = _small_run_overrides(
        data_root / "mixed_coils", "data.virtual_coils=4", "data.batch_size=3"
    )
    loader = run(compose([*overrides, "data.finish_on=loader"]), tmp_path / "loader")
    device = run(compose([*overrides, "data.finish_on=device"]), tmp_path / "device")
    for key in ("ssim", "psnr", "nmse", "kspace_ssim"):
        assert device[key] == pytest.approx(loader[key], rel=1e-4)
