"""Every model family (each ``conf/encoder/*.yaml``): gradients for every parameter, DDP
training with identical weights on both ranks, its own recipe in the checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class

from kspace_mim.config import compose, model_names
from kspace_mim.train import build_datamodule, build_model, run

FAMILIES = model_names()
TRAINABLE = model_names(trainable=True)
# Small enough for a CPU step; every other argument is the family's default.
SHRINK = {
    "varnet": ["model.num_cascades=2", "model.pools=2", "model.sens_pools=2"],
    "unrolled": ["model.cascades=2", "model.pools=2", "model.sens_pools=2"],
    "vit": ["model.patch_size=4"],
}


def family_overrides(family: str, folder, *extra: str) -> list[str]:
    return [
        f"model={family}",
        f"data.train_path={folder}",
        f"data.val_path={folder}",
        "data=tiny",
        *(["model.size=tiny"] if family in TRAINABLE else []),
        *SHRINK.get(family, []),
        *extra,
    ]


def second_step_gradients(model, terms) -> list[tuple[str, torch.Tensor]]:
    """Gradients of a second training step, after one SGD step on ``terms()``'s loss.

    Every parameter must be in the graph at the first step (DDP with
    find_unused_parameters=False stops otherwise); a zero-initialised output layer passes
    exactly zero gradient back at that step, by design, so "every parameter learns" is
    read at the second.
    """
    terms()["loss"].backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params and all(p.grad is not None for _, p in params)  # all in the graph
    torch.optim.SGD([p for _, p in params], lr=1e-2).step()
    model.zero_grad()
    terms()["loss"].backward()
    return params


def test_families_are_enumerated_from_the_configs():
    assert {"swin", "vit", "unet", "varnet", "unrolled", "zero_filled"} <= set(FAMILIES)
    for family in FAMILIES:  # a recipe of its own, or the package's
        assert "_target_" in compose([f"model={family}"]).optim


@pytest.mark.parametrize("family", TRAINABLE)
def test_every_trainable_parameter_gets_a_nonzero_gradient(family, data_root):
    """One training step: no parameter is left out of the loss (DDP's
    find_unused_parameters=False stops at the first step otherwise), none gets a zero
    gradient (a mask token on the zero-filled image got exactly that)."""
    folder = data_root / "multicoil_val"
    cfg = compose(family_overrides(family, folder, "data.batch_size=2"))
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    datamodule.setup("fit")
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())))
    params = second_step_gradients(model, lambda: model.training_terms(batch))
    dead = [n for n, p in params if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, dead


def kspace_output(family: str) -> bool:
    """Whether the family's output passes through k-space (self-supervision needs it)."""
    return getattr(
        get_class(compose([f"model={family}"]).model._target_), "has_kspace_output", True
    )


@pytest.mark.parametrize("supervision", ["ssdu", "mim"])
@pytest.mark.parametrize("family", [f for f in TRAINABLE if kspace_output(f)])
def test_self_supervision_trains_every_kspace_family(family, supervision, data_root):
    """``model=<family> supervision=ssdu|mim`` as typed: one step on test-layout files
    (no target), a finite held-out loss, a gradient for every parameter (the k-space
    SimMIM's mask token included: masked modeling leaves patches without a sample)."""
    extra = ["model.domain=kspace", "model.coils=channels"] if family in ("swin", "vit") else []
    cfg = compose(
        [
            *family_overrides(family, data_root / "multicoil_test", "data.batch_size=2", *extra),
            f"data.val_path={data_root / 'multicoil_val'}",
            f"supervision={supervision}",
        ]
    )
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    datamodule.setup("fit")
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())))
    assert not batch.kspace.abs().any()  # nothing fully sampled to learn from
    terms = model.training_terms(batch)
    assert set(terms) == {supervision, "loss"} and torch.isfinite(terms["loss"])
    params = second_step_gradients(model, lambda: model.training_terms(batch))
    dead = {n for n, p in params if not bool(p.grad.abs().sum() > 0)}
    # The last soft data-consistency weight (the last cascade's; SimMIM's only one) moves
    # only the input set's samples, which the held-out loss never reads: its gradient is
    # exactly zero, by design.
    weights = sorted(
        (n for n, _ in params if n.endswith("dc_weight")),
        key=lambda n: [int(part) for part in n.split(".") if part.isdigit()],
    )
    assert dead <= set(weights[-1:]), dead


@pytest.mark.slow
def test_ddp_trains_every_family_with_identical_weights(env, tmp_path, train_cli):
    """A 2-process DDP run (gloo on the CPU) of every family, 2 steps each, as one Hydra
    multirun: training runs, and both ranks end with the same weights."""
    sweep = tmp_path / "ddp"
    helpers = Path(__file__).parent / "helpers"
    env = {**env, "PYTHONPATH": os.pathsep.join([str(helpers), env.get("PYTHONPATH", "")])}
    result = train_cli(
        env,
        "-m",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "trainer.max_steps=2",
        "trainer.check_val_every_n_epoch=1000",
        "trainer.num_sanity_val_steps=0",
        "model.size=tiny",
        "data.batch_size=2",
        f"model={','.join(TRAINABLE)}",
        "+callbacks.rank_weights._target_=rank_weights.SaveRankWeights",
        f"hydra.sweep.dir={sweep}",
        check=False,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for job, family in enumerate(TRAINABLE):
        folder = sweep / str(job) / "rank_weights"
        first, second = (torch.load(folder / f"rank{r}.pt") for r in (0, 1))
        start = torch.load(folder / "rank0_start.pt")
        assert first.keys() == second.keys() and first, family
        for key in first:
            assert torch.equal(first[key], second[key]), (family, key)
        moved = [k for k in first if not torch.equal(first[k], start[k])]
        assert moved, f"{family}: no weight changed in 2 DDP steps"


@pytest.mark.parametrize(
    "family, optimizer, scheduler, lr, extra",
    [
        ("varnet", "Adam", "StepLR", 3e-4, {"step_size": 40, "gamma": 0.1}),
        ("unet", "RMSprop", "StepLR", 1e-3, {"step_size": 40, "gamma": 0.1}),
        ("swin", "AdamW", "LambdaLR", 1e-3, {}),
    ],
)
def test_the_checkpoint_holds_the_configured_recipe(
    family, optimizer, scheduler, lr, extra, data_root, tmp_path
):
    """Each family's default recipe (recipe/<family>.yaml) is what trains: the optimiser
    class, its rate and the schedule in last.ckpt are the configured ones."""
    folder = data_root / "multicoil_val"
    cfg = compose(family_overrides(family, folder, "trainer.max_steps=1"))
    run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["optim"]["optimizer"] == f"torch.optim.{optimizer}"
    (group,) = ckpt["optimizer_states"][0]["param_groups"]
    assert group["initial_lr"] == pytest.approx(lr)
    assert ("momentum" in group) == (optimizer == "RMSprop")
    assert ("amsgrad" in group) == (optimizer in ("Adam", "AdamW"))
    assert group["weight_decay"] == (0.01 if optimizer == "AdamW" else 0.0)
    (sched,) = ckpt["lr_schedulers"]
    assert ("lr_lambdas" in sched) == (scheduler == "LambdaLR")
    for key, value in extra.items():
        assert sched[key] == value
    # And another recipe is one override away.
    other = compose(family_overrides(family, folder, "recipe=package"))
    assert other.optim._target_ == "kspace_mim.optim.WarmupCosine"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_two_steps_and_is_validated(family, data_root, tmp_path):
    """The command line's run for each family, tiny: a trainable one takes two optimizer
    steps (its weights move) and reports validation metrics of the chosen checkpoint; an
    untrained one (zero-filling, CS) is validated only."""
    folder = data_root / "multicoil_val"
    extra = ["model.max_iter=5"] if family == "cs" else []
    metrics = run(
        compose(family_overrides(family, folder, "trainer.max_steps=2", *extra)), tmp_path
    )
    assert 0 < metrics["ssim"] <= 1 and metrics["num_volumes"] >= 1
    if family in TRAINABLE:
        assert metrics["checkpoint_step"] == 2 and metrics["selected_on"] == "val"
    else:
        assert metrics["checkpoint"] is None and metrics["selected_on"] is None


# A model family from outside the package: a network file and a YAML, nothing else.
NETWORK = """
from torch import nn

from kspace_mim.models.family import NetFacts, kspace_output
from kspace_mim.physics import channels_to_complex, complex_to_channels, fft2c, ifft2c


class TinyCNN(nn.Module):
    varying_coils = False  # every coil is a pair of channels

    def __init__(self, facts: NetFacts, width: int = 8):
        super().__init__()
        channels = 2 * facts.num_coils
        self.slices = facts.slices
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def reconstruct(self, batch):
        x = complex_to_channels(ifft2c(batch.masked_kspace))
        y = channels_to_complex(x + self.body(x))
        return kspace_output(batch, fft2c(y), self.slices)
"""
FAMILY_YAML = """# @package _global_
# A residual CNN on the zero-filled coil images, with its own recipe.
defaults:
  - override /optim: step_lr
  - _self_
model:
  _target_: throwaway_family.TinyCNN
  width: 4
optim:
  lr: 3.0e-3
"""


def test_a_new_family_is_a_network_file_and_a_yaml(tmp_path, data_root, monkeypatch):
    """The extending how-to's two files, in a folder outside the package (the YAML on
    Hydra's search path): composed with its recipe, trained 2 steps, validated; its
    checkpoint is refused by reconstruct's loader until the user trusts the class."""
    from kspace_mim.checkpoints import UntrustedCheckpointError, load_module

    (tmp_path / "throwaway_family.py").write_text(NETWORK)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny_cnn.yaml").write_text(FAMILY_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = data_root / "multicoil_val"
    cfg = compose(
        [
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            "model=tiny_cnn",
            f"data.train_path={folder}",
            f"data.val_path={folder}",
            "data=tiny",
            "data.batch_size=2",
            "trainer.max_steps=2",
        ]
    )
    assert cfg.optim._target_ == "kspace_mim.optim.StepDecay" and cfg.optim.lr == 3e-3
    metrics = run(cfg, tmp_path / "run")
    assert metrics["checkpoint_step"] == 2 and 0 < metrics["ssim"] <= 1
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(UntrustedCheckpointError, match="throwaway_family.TinyCNN"):
        load_module(ckpt)
    monkeypatch.setenv("KSPACE_MIM_TRUSTED_NETS", "throwaway_family.TinyCNN")
    model = load_module(ckpt)
    assert type(model.net).__name__ == "TinyCNN" and model.net.body[0].out_channels == 4
