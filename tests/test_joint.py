"""Joint semi-supervised training: the supervised loss on labelled volumes plus a
label-free loss on a pool, in one step (Lightning's CombinedLoader)."""

from __future__ import annotations

import pytest
import torch

from kspace_mim.config import ConfigError, compose
from kspace_mim.modules.reconstruction import system_of
from kspace_mim.train import run
from test_unrolled import C, H, W, make_batch

JOINT = {
    "_target_": "kspace_mim.supervision.Joint",
    "weight": 0.5,
    "label_free": {"_target_": "kspace_mim.supervision.SSDU", "loss_fraction": 0.4},
}


def test_the_joint_loss_is_the_supervised_plus_the_weighted_label_free_one():
    torch.manual_seed(0)
    module = system_of("swin", C, (H, W), net={"size": "tiny"}, supervision=JOINT)
    labelled, pool = make_batch(), make_batch(scale=2.0)
    terms = module.training_terms({"labelled": labelled, "pool": pool})
    supervised = module.loss(labelled, module.reconstruct(labelled))["loss"]
    ssdu = module.supervision.label_free
    step = ssdu.prepare(pool)
    free = ssdu.terms(module.reconstruct(step.input).kspace, pool.masked_kspace, step)["loss"]
    torch.testing.assert_close(terms["supervised"], supervised)
    torch.testing.assert_close(terms["ssdu"], free)
    torch.testing.assert_close(terms["loss"], supervised + 0.5 * free)
    terms["loss"].backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)


def test_joint_needs_a_pool_and_a_pool_needs_joint():
    torch.manual_seed(0)
    module = system_of("swin", C, (H, W), net={"size": "tiny"}, supervision=JOINT)
    with pytest.raises(ConfigError, match="set data.pool_path"):
        module.training_terms(make_batch())
    plain = system_of("swin", C, (H, W), net={"size": "tiny"})
    with pytest.raises(ConfigError, match="supervision=joint"):
        plain.training_terms({"labelled": make_batch(), "pool": make_batch()})
    with pytest.raises(ConfigError, match="label-free strategy"):
        system_of(
            "swin",
            C,
            (H, W),
            net={"size": "tiny"},
            supervision={**JOINT, "label_free": {"_target_": "kspace_mim.supervision.Supervised"}},
        )


def test_a_joint_run_takes_a_labelled_and_a_pool_batch_every_step(
    data_root, tmp_path, small_overrides, train_log
):
    """One labelled volume (3 slices) and a pool of undersampled-only files (2 volumes of
    3 slices): an epoch is the longer loader's length, the labelled one cycled, and both
    losses are logged at every step."""
    overrides = small_overrides(
        data_root / "multicoil_train",
        "supervision=joint",
        f"data.pool_path={data_root}/multicoil_test",
        "data.train_volumes=1",
        "data.batch_size=1",
        "trainer.max_steps=-1",
        "trainer.max_epochs=1",
        "model=swin",
    )
    run(compose([*overrides, "trainer.log_every_n_steps=1"]), tmp_path / "run")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6  # the pool's 6 slices, not the 3 labelled ones
    log = train_log(tmp_path / "run").dropna(subset=["train/loss"])
    assert len(log) == 6
    assert log[["train/supervised", "train/ssdu"]].notna().all().all()
    total = log["train/supervised"] + log["train/ssdu"]
    assert (log["train/loss"] - total).abs().max() < 1e-5  # weight 1
