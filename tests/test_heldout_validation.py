"""Selection without labels: validation by a held-out share of the acquired samples of
validation scans (zero-shot SSDU's stopping rule), never a fully sampled sample."""

from __future__ import annotations

import pytest
import torch

import kspace_mim.train as train_module
from helpers.overrides import stepwise
from kspace_mim.config import ConfigError, compose
from kspace_mim.modules.reconstruction import system_of
from kspace_mim.train import run
from test_unrolled import C, H, W, make_batch


def test_the_heldout_loss_reads_only_acquired_samples():
    """Changing what was not acquired (and the target) leaves the held-out losses as
    they are; changing an acquired sample moves them."""
    torch.manual_seed(0)
    module = system_of(
        "swin", C, (H, W), net={"size": "tiny", "zero_init": False}, heldout_validation=0.2
    ).eval()
    batch = make_batch()
    with torch.no_grad():
        losses = module.heldout_losses(batch)
        unacquired = ~batch.mask.expand_as(batch.kspace)
        noise = torch.randn_like(batch.kspace)
        other = batch._replace(
            kspace=torch.where(unacquired, noise, batch.kspace),
            target=torch.rand_like(batch.target),
        )
        assert module.heldout_losses(other) == losses
        moved = batch._replace(masked_kspace=batch.masked_kspace * (1 + 0.5 * batch.mask))
        assert module.heldout_losses(moved) != losses
    assert len(losses) == batch.mask.shape[0] and all(v > 0 for v in losses)


def test_heldout_validation_needs_kspace_output_and_a_share():
    with pytest.raises(ConfigError, match="validation.heldout"):
        system_of("unet", C, (H, W), net={"size": "tiny"}, heldout_validation=0.2)
    with pytest.raises(ConfigError, match="set validation.heldout"):
        from kspace_mim.train import selection

        selection(compose(["evaluation.checkpoint=heldout"]))


STEPS = stepwise(6, 3)


def test_a_label_free_run_chooses_on_undersampled_validation_scans(
    data_root, tmp_path, small_overrides, train_log
):
    """SSDU on undersampled scans, validated on undersampled scans (no target anywhere):
    the checkpoint kept is the one with the lowest held-out loss."""
    folder = data_root / "multicoil_test"  # fastMRI's test layout: masked k-space, no target
    overrides = small_overrides(
        folder,
        *STEPS,
        "supervision=ssdu",
        "validation.heldout=0.2",
        "optimized_metric=val/heldout_loss",
        "optimized_mode=min",
        "model=swin",
    )
    metrics = run(compose(overrides), tmp_path / "run")
    log = train_log(tmp_path / "run").dropna(subset=["time/steps"])
    best = log.loc[log["val/heldout_loss"].idxmin()]
    assert metrics["checkpoint_step"] == int(best["time/steps"])
    assert metrics["heldout_loss"] == pytest.approx(best["val/heldout_loss"], rel=1e-5)
    assert "ssim" not in metrics  # nothing to score against: no label was read


def test_every_selection_asked_for_is_tested_whatever_file_was_loaded_first(
    data_root, tmp_path, small_overrides
):
    """The few-labels setting (best on labels, held-out and last beside): validating the
    best file first restores the callbacks' state of that moment, which must not hide the
    held-out best found later; a selection of the same file repeats the main numbers."""
    overrides = small_overrides(
        data_root / "multicoil_train",
        *STEPS,
        "validation.heldout=0.2",
        "validation.at_zero=true",
        # nothing learns: every validation ties, so both selections keep step 0, whose
        # best-* file was written before the held-out callback had a best of its own
        "optim.lr=0",
        "evaluation.also=[best,heldout,last]",
        f"data.test_path={data_root}/multicoil_val",
        "model=swin",
    )
    metrics = run(compose(overrides), tmp_path / "run")
    also = metrics["also"]
    assert "best.ckpt" in metrics["checkpoint"] and set(also) == {"best", "heldout", "last"}
    assert "heldout.ckpt" in also["heldout"]["checkpoint"] and also["last"]["checkpoint_step"] == 6
    assert metrics["checkpoint_step"] == also["heldout"]["checkpoint_step"] == 0
    assert also["best"]["checkpoint"] == metrics["checkpoint"]
    assert also["best"]["test"] == metrics["test"]
    # the held-out choice is of the same step: the same weights, tested once
    assert also["heldout"]["test"] == metrics["test"]
    assert also["last"]["test"]["checkpoint"] == also["last"]["checkpoint"]


def test_heldout_selection_beside_the_labelled_one(
    data_root, tmp_path, small_overrides, monkeypatch
):
    """With labelled validation files too: heldout.ckpt is kept beside best.ckpt and
    evaluation.checkpoint=heldout makes it the one every number is of."""
    overrides = small_overrides(
        data_root / "multicoil_train",
        *STEPS,
        "validation.heldout=0.2",
        "evaluation.checkpoint=heldout",
        "evaluation.also=[best,last]",
        f"data.test_path={data_root}/multicoil_val",
        "model=swin",
    )
    tested = []
    real_test = train_module.held_out_test

    def counted(trainer, model, datamodule, masks, source):
        tested.append(source["checkpoint_step"])
        return real_test(trainer, model, datamodule, masks, source)

    monkeypatch.setattr(train_module, "held_out_test", counted)
    metrics = run(compose(overrides), tmp_path / "run")
    assert "heldout.ckpt" in metrics["checkpoint"] and "heldout_loss" in metrics
    # The other selections' numbers beside, each of its own checkpoint; a step already
    # tested (the same weights) is read again, not tested twice.
    last = metrics["also"]["last"]
    assert last["checkpoint"].endswith("last.ckpt") and last["checkpoint_step"] == 6
    assert "best.ckpt" in metrics["also"]["best"]["checkpoint"] and "ssim" in last["val"]
    steps = [
        metrics["checkpoint_step"],
        *(metrics["also"][w]["checkpoint_step"] for w in ("best", "last")),
    ]
    assert sorted(tested) == sorted(set(steps))
    for which in ("best", "last"):
        mine = metrics["also"][which]
        if mine["checkpoint_step"] == metrics["checkpoint_step"]:
            assert mine["test"] == metrics["test"]
        else:
            assert mine["test"]["checkpoint"] == mine["checkpoint"]
    names = {p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt")}
    assert names == {"best.ckpt", "heldout.ckpt", "last.ckpt"}  # stable names, one each
