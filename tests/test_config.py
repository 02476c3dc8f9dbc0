"""Every option of every config group composes and instantiates; experiments are the paper's."""

from __future__ import annotations

import hydra
import lightning as L
import pytest

from kspace_mim.config import CONFIG_DIR, compose
from kspace_mim.models.simmim import ConfigError
from kspace_mim.modules.base import ReconstructionModule


def options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["mask", "augmentation", "data"])
def test_data_groups_instantiate(group):
    for option in options(group):
        cfg = compose([f"{group}={option}"])
        assert hydra.utils.instantiate(cfg[group]) is not None


@pytest.mark.parametrize("encoder", ["swin", "vit", "unet", "zero_filled"])
def test_encoders_instantiate(encoder):
    extra = [] if encoder == "zero_filled" else ["encoder.size=tiny"]
    cfg = compose([f"encoder={encoder}", *extra])
    model = hydra.utils.instantiate(cfg.encoder)(
        num_coils=4, img_size=(32, 32), loss=dict(cfg.loss), optim=dict(cfg.optim)
    )
    assert isinstance(model, ReconstructionModule)
    assert model.trainable == (encoder != "zero_filled")


def test_cpu_trainer_and_loggers(tmp_path):
    for logger in options("logger"):
        cfg = compose([f"logger={logger}"])
        assert hydra.utils.instantiate(cfg.logger, save_dir=str(tmp_path)) is not None
    for trainer in ("cpu", "ddp_cpu"):
        cfg = compose([f"trainer={trainer}"])
        t = hydra.utils.instantiate(cfg.trainer, logger=False, default_root_dir=str(tmp_path))
        assert isinstance(t, L.Trainer)
    assert compose(["trainer=ddp"]).trainer.precision == "bf16-mixed"


@pytest.mark.parametrize(
    "experiment, family, patch, stride", [("paper_swin", "swin", 1, 8), ("paper_vit", "vit", 4, 4)]
)
def test_paper_experiments(experiment, family, patch, stride):
    cfg = compose([f"experiment={experiment}"])
    assert cfg.encoder.family == family and cfg.encoder.patch_size == patch
    assert cfg.encoder.domain == "kspace" and cfg.encoder.decoder == "linear"
    assert cfg.mask.mask_ratio == 0.6 and cfg.data.crop_size == 192 and cfg.data.batch_size == 1
    assert cfg.loss.kspace_l1 == 1.0 and cfg.loss.image_l1 == 0 and cfg.trainer.max_epochs == 100
    assert not cfg.augmentation.flip_prob and not cfg.augmentation.normalize
    model = hydra.utils.instantiate(cfg.encoder)(
        num_coils=2, img_size=(192, 192), loss=dict(cfg.loss)
    )
    assert model.model.stride == stride


def test_wrong_encoder_stride_from_config():
    cfg = compose(["encoder=swin", "encoder.size=tiny", "encoder.encoder_stride=32"])
    with pytest.raises(ConfigError, match="Set encoder.encoder_stride=4"):
        hydra.utils.instantiate(cfg.encoder)(num_coils=2, img_size=(32, 32))


def test_wandb_goes_offline_without_key_or_network(monkeypatch, tmp_path):
    from kspace_mim.config import wandb_offline

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_offline()  # no key
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: no network
    assert wandb_offline()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline()
    assert compose(["logger=wandb"]).logger.offline is True
