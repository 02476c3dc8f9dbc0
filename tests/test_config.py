"""Every option of every config group composes and instantiates; experiments are the paper's."""

from __future__ import annotations

import json
import re
import subprocess

import hydra
import lightning as L
import pytest
import yaml
from omegaconf import OmegaConf

from kspace_mim.config import CONFIG_DIR, ConfigError, compose, model_names
from kspace_mim.modules.reconstruction import ReconstructionModule


def options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["mask", "augmentation", "data"])
def test_data_groups_instantiate(group):
    for option in options(group):
        cfg = compose([f"{group}={option}"])
        assert hydra.utils.instantiate(cfg[group]) is not None


@pytest.mark.parametrize("name", model_names())
def test_every_model_config_builds_the_system(name):
    learns = name in model_names(trainable=True)
    cfg = compose([f"model={name}", *(["model.size=tiny"] if learns else [])])
    model = ReconstructionModule(
        OmegaConf.to_container(cfg.model), 4, (32, 32), loss=dict(cfg.loss), optim=dict(cfg.optim)
    )
    assert model.trainable == learns
    assert model.hparams["net"]["_target_"] == cfg.model._target_


def test_cpu_trainer_and_loggers(tmp_path):
    for logger in options("logger"):
        cfg = compose([f"logger={logger}"])
        assert hydra.utils.instantiate(cfg.logger, save_dir=str(tmp_path)) is not None
    for trainer in ("auto", "cpu", "ddp_cpu"):
        cfg = compose([f"trainer={trainer}"])
        t = hydra.utils.instantiate(cfg.trainer, logger=False, default_root_dir=str(tmp_path))
        assert isinstance(t, L.Trainer)
    assert compose(["trainer=ddp"]).trainer.precision == "bf16-mixed"


@pytest.mark.parametrize(
    "cuda, bf16, accelerator, precision",
    [
        (False, False, "cpu", "32-true"),
        (True, True, "gpu", "bf16-mixed"),
        (True, False, "gpu", "32-true"),  # a card before Ampere: no bf16
    ],
)
def test_the_default_trainer_takes_the_gpu_when_there_is_one(
    monkeypatch, cuda, bf16, accelerator, precision
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    trainer = compose([]).trainer
    assert (trainer.accelerator, trainer.precision, trainer.devices) == (accelerator, precision, 1)
    pinned = compose(["trainer=cpu"]).trainer
    assert (pinned.accelerator, pinned.precision) == ("cpu", "32-true")


@pytest.mark.parametrize(
    "experiment, family, patch, stride", [("paper_swin", "swin", 1, 8), ("paper_vit", "vit", 4, 4)]
)
def test_paper_experiments(experiment, family, patch, stride):
    cfg = compose([f"experiment={experiment}"])
    assert cfg.model.family == family and cfg.model.patch_size == patch
    assert cfg.model.domain == "kspace" and cfg.model.decoder == "linear"
    assert cfg.mask.mask_ratio == 0.6 and cfg.data.crop_size == 192 and cfg.data.batch_size == 1
    assert cfg.loss.kspace_l1 == 1.0 and cfg.loss.image_l1 == 0 and cfg.trainer.max_epochs == 100
    assert not cfg.augmentation.flip_prob and not cfg.augmentation.normalize
    model = ReconstructionModule(
        OmegaConf.to_container(cfg.model), 2, (192, 192), loss=dict(cfg.loss)
    )
    assert model.net.stride == stride


def test_wrong_encoder_stride_from_config():
    cfg = compose(["model=swin", "model.size=tiny", "model.encoder_stride=32"])
    with pytest.raises(ConfigError, match="Set model.encoder_stride=4"):
        ReconstructionModule(OmegaConf.to_container(cfg.model), 2, (32, 32))


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


@pytest.mark.slow
def test_optuna_search_maximises_validation_ssim(env, tmp_path, train_cli):
    sweep = tmp_path / "optuna"
    search = (
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        "model.size=tiny",
        "trainer.max_steps=2",
        f"hydra.sweep.dir={sweep}",
    )
    train_cli(env, *search)
    import optuna

    study = optuna.load_study(study_name="kspace_mim", storage=f"sqlite:///{sweep}/optuna.db")
    assert len(study.trials) == 2  # the study itself lives in the sweep directory
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [json.loads((sweep / j / "metrics.json").read_text())["ssim"] for j in ("0", "1")]
    assert best["best_value"] == pytest.approx(max(values))
    assert {"optim.lr", "loss.image_ssim"} <= set(best["best_params"])
    # Re-launched into the same sweep directory, the study numbers its jobs from 0 again
    # with new parameters: each job refuses the old trial's directory, which keeps its files.
    before = {j: (sweep / j / "metrics.json").read_bytes() for j in ("0", "1")}
    again = train_cli(env, *search, check=False)
    assert again.returncode != 0
    assert f"run directory {sweep / '0'} belongs to another configuration (" in again.stderr
    assert {j: (sweep / j / "metrics.json").read_bytes() for j in ("0", "1")} == before
    assert json.loads((sweep / "0" / "status.json").read_text())["status"] == "finished"


def test_paper_sweep_config_composes():
    cfg = compose(["experiment=paper_sweep"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert {"model.patch_size", "mask", "augmentation"} <= set(params)


@pytest.mark.slow
def test_concurrent_sweeps_never_share_a_directory(env, tmp_path, train_command):
    env = {**env, "KSPACE_MIM_OUTPUT": str(tmp_path / "out")}
    cmd = train_command("-m", "model=zero_filled", "seed=0,1")
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


def test_every_lightning_trainer_argument_is_in_the_trainer_group():
    """trainer.<argument>=VALUE works for every Trainer argument (no `+`, no struct error)."""
    import inspect

    arguments = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    from_elsewhere = {"logger", "callbacks", "default_root_dir"}  # their own groups / run dir
    for option in options("trainer"):
        keys = set(compose([f"trainer={option}"]).trainer) - {"_target_"}
        assert keys == arguments - from_elsewhere, (option, keys ^ (arguments - from_elsewhere))
    cfg = compose(
        [
            "trainer.max_time=00:01:00:00",
            "trainer.limit_val_batches=2",
            "trainer.accumulate_grad_batches=4",
            "trainer.val_check_interval=0.5",
        ]
    )
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.accumulate_grad_batches == 4 and trainer.limit_val_batches == 2
    assert trainer.val_check_interval == 0.5


def test_callbacks_group_instantiates_and_entries_drop(tmp_path):
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from kspace_mim.callbacks import (
        AugmentationSchedule,
        CheckpointOnInterrupt,
        instantiate_callbacks,
    )

    cfg = compose([f"paths.run_dir={tmp_path}", "trainer.enable_progress_bar=false"])
    kinds = [type(c) for c in instantiate_callbacks(cfg.callbacks)]
    assert kinds == [
        ModelCheckpoint,
        CheckpointOnInterrupt,
        ModelCheckpoint,  # periodic: last.ckpt every 1,000 steps by default
        AugmentationSchedule,
        LearningRateMonitor,
    ]
    assert instantiate_callbacks(cfg.callbacks)[2]._every_n_train_steps == 1000
    off = [f"paths.run_dir={tmp_path}", "checkpoint.every_n_train_steps=null"]
    assert (
        len(
            [
                c
                for c in instantiate_callbacks(compose(off).callbacks)
                if isinstance(c, ModelCheckpoint)
            ]
        )
        == 1
    )
    cfg = compose([f"paths.run_dir={tmp_path}", "checkpoint.every_n_train_steps=5"])
    callbacks = instantiate_callbacks(cfg.callbacks)
    periodic = [c for c in callbacks if isinstance(c, ModelCheckpoint) and not c.monitor]
    assert len(periodic) == 1 and periodic[0]._every_n_train_steps == 5
    assert str(callbacks[0].dirpath) == str(tmp_path / "checkpoints")
    cfg = compose([f"paths.run_dir={tmp_path}", "callbacks.lr_monitor=null"])
    assert LearningRateMonitor not in [type(c) for c in instantiate_callbacks(cfg.callbacks)]


TRAINABLE = ("swin", "vit", "unet", "varnet", "unrolled")


def sweep_jobs(params: dict) -> list[list[str]]:
    """Every job of a sweeper's ``params``: the product of each key's values (an Optuna
    interval at both ends), as Hydra's override parser reads them."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        if override.is_interval_sweep():
            values = [str(override.value().start), str(override.value().end)]
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [str(value)]
        axes.append([f"{key}={v}" for v in values])
    return [list(job) for job in itertools.product(*axes)]


def shipped_sweeps() -> list[tuple[str, list[str], dict]]:
    """(name, base overrides, params) of every shipped sweep and search space."""
    found = []
    for group in ("experiment", "hparams_search"):
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            params = (yaml.safe_load(path.read_text()).get("hydra") or {}).get("sweeper", {})
            params = params.get("params")
            if not params:
                continue
            if group == "experiment":
                found.append((path.stem, [f"experiment={path.stem}"], params))
            else:  # a search space applies to every trainable family
                for family in TRAINABLE:
                    found.append((f"{path.stem}/{family}", [f"model={family}"], params))
    return found


def test_every_shipped_sweep_is_found():
    names = {name for name, _, _ in shipped_sweeps()}
    assert "paper_sweep" in names and {f"optuna/{f}" for f in TRAINABLE} <= names


@pytest.mark.parametrize("name, base, params", shipped_sweeps(), ids=lambda v: str(v)[:40])
def test_every_job_of_every_shipped_sweep_builds_its_model(name, base, params):
    """Each job composes, its data objects instantiate and its model builds (the unique
    model configs once each): a sweep never ships jobs that cannot run."""
    jobs = sweep_jobs(params)
    assert jobs and all(job for job in jobs)
    built = {}
    for job in jobs:
        cfg = compose([*base, *job])
        hydra.utils.instantiate(cfg.mask)
        hydra.utils.instantiate(cfg.augmentation)
        key = yaml.safe_dump(OmegaConf.to_container(cfg.model, resolve=True))
        if key not in built:
            model = ReconstructionModule(
                OmegaConf.to_container(cfg.model, resolve=True),
                num_coils=2,
                img_size=(cfg.data.crop_size or 64,) * 2,
                loss=dict(cfg.loss),
                optim=dict(cfg.optim),
            )
            built[key] = isinstance(model, ReconstructionModule)
    assert all(built.values())
    if name == "paper_sweep":
        assert len(jobs) == 72 and len(built) == 6  # patch sizes x stage counts


def test_swin_heads_follow_the_stages_when_only_depths_are_set():
    from kspace_mim.models.presets import resolve

    assert resolve("swin", "small", depths=[2, 2])["num_heads"] == (3, 6)
    assert resolve("swin", "tiny", depths=[2, 2, 2, 2])["num_heads"] == (2, 4, 8, 16)
    assert resolve("swin", "small", depths=[2, 2], num_heads=[4, 4])["num_heads"] == (4, 4)
    assert resolve("swin", "small")["num_heads"] == (3, 6, 12)


def test_renamed_keys_name_their_successor():
    """Keys of the one-class-per-family layout stop with one line naming the new key;
    the new names (and keys that merely contain an old word) pass."""
    from kspace_mim.config import check_renamed

    for old, new in [
        ("encoder=varnet", "encoder is now model (model=swin|vit"),
        ("+encoder.size=tiny", "encoder.size is now model"),
        ("model.init_from=x.ckpt", "model.init_from is now init_from"),
        ("cs.lamda=0.01", "cs.lamda is now model=cs and model.X"),
    ]:
        with pytest.raises(SystemExit, match=re.escape(new)):
            check_renamed(["-m", old])
    check_renamed(["model=varnet", "init_from=x.ckpt", "model.encoder_stride=4", "seed=1"])


def test_a_misspelt_network_argument_is_named():
    """A key the network does not take (``+model.chan=8`` for ``chans``) stops with the
    preset's keys, whichever family."""
    from kspace_mim.modules.reconstruction import system_of

    for family, key, message in [
        ("varnet", "chan", "model.chan: not an argument of the varnet network; its size preset"),
        ("unet", "pools", "model.pools: not an argument of the unet network"),
        ("unrolled", "chan", "unexpected keyword argument 'chan'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            system_of(family, 4, (32, 32), net={key: 8})


@pytest.mark.parametrize("model, size", [("swin", "base"), ("varnet", "base")])
def test_the_knee_command_on_four_gpus_composes_what_its_page_says(model, size):
    """docs/how-to/distributed.md's one command: DDP on 4 GPUs in bf16, batch 1 per GPU,
    the GPU preset, the knee download's folders and the benchmark split; its SLURM twin
    asks for the same GPUs on one node."""
    cfg = compose(["experiment=knee_multicoil", "trainer.devices=4", f"model={model}"])
    t = cfg.trainer
    assert (t.accelerator, t.strategy, t.devices, t.precision) == ("gpu", "ddp", 4, "bf16-mixed")
    assert cfg.data.batch_size == 1 and cfg.model.size == size
    assert cfg.data.train_path.endswith("knee/multicoil_train")
    assert cfg.data.val_path.endswith("knee/multicoil_val")
    assert cfg.data.split == "val99_test100" and cfg.data.split_dir.endswith("knee/val99_test100")
    assert cfg.checkpoint.every_n_train_steps == 1000
    slurm = compose(
        [
            "experiment=knee_multicoil",
            "trainer.devices=4",
            "hydra/launcher=slurm",
            "hydra.launcher.gpus_per_node=4",
        ],
        return_hydra_config=True,
    )
    launcher = slurm.hydra.launcher
    assert launcher.gpus_per_node == 4 and launcher.tasks_per_node == 4 and launcher.nodes == 1
