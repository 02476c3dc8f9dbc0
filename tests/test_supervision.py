"""supervision=ssdu | mim: the splits of the acquired samples, their loss, what they refuse."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastmri.data.subsample import EquispacedMaskFractionFunc
from omegaconf import OmegaConf

from kspace_mim.config import CONFIG_DIR, ConfigError
from kspace_mim.data.masks import CartesianMask, RandomPatchMask
from kspace_mim.data.mri_data import SliceDataset
from kspace_mim.data.samplers import GridBatchSampler
from kspace_mim.data.transforms import KspaceTransform, collate_slices, prepare_batch
from kspace_mim.modules.reconstruction import ReconstructionModule, system_of
from kspace_mim.supervision import SSDU, Joint, MaskedModeling, Supervised, build_supervision

H, W = 64, 48


def cartesian(batch: int = 2) -> tuple[torch.Tensor, int]:
    """An equispaced 4x mask (B, 1, H, W) and its centre width."""
    mask, num_low, _ = CartesianMask(EquispacedMaskFractionFunc([0.08], [4]))((H, W), seed=0)
    return mask.expand(H, W).expand(batch, 1, H, W).clone(), num_low


def keys(batch: int) -> tuple[list[str], torch.Tensor]:
    """File names and slice numbers of a batch (what fixed splits are keyed by)."""
    return [f"file{i // 2}.h5" for i in range(batch)], torch.arange(batch) % 2


@pytest.mark.parametrize("selection", ["gaussian", "uniform"])
def test_split_is_disjoint_covers_the_acquisition_and_keeps_the_centre(selection):
    """Today's variant (the ACS columns protected, a fresh split each step)."""
    mask, num_low = cartesian()
    ssdu = SSDU(loss_fraction=0.4, selection=selection, protect="acs", resample="step")
    torch.manual_seed(0)
    inp, held = ssdu.split(mask, num_low)
    assert not (inp & held).any()
    assert torch.equal(inp | held, mask)
    centre = ssdu.protected((H, W), num_low, mask.device)
    assert centre.sum() == H * num_low and inp[:, 0][:, centre].all()
    outer = int((mask[0, 0] & ~centre).sum())
    for i in range(mask.shape[0]):
        assert int(held[i].sum()) == round(0.4 * outer)
    # A fresh split every step, reproducible under the seed.
    again = ssdu.split(mask, num_low)[1]
    assert not torch.equal(again, held)
    torch.manual_seed(0)
    assert torch.equal(ssdu.split(mask, num_low)[1], held)


def test_published_ssdu_holds_out_its_share_of_the_samples_outside_a_small_block():
    """SSDU's split: rho of the acquired samples outside a centre x centre block; the
    ACS columns outside the block are selectable too."""
    mask, num_low = cartesian()
    ssdu = SSDU(loss_fraction=0.4, centre=4)  # the defaults: protect=block, fixed
    inp, held = ssdu.split(mask, num_low, *keys(2))
    block = torch.zeros(H, W, dtype=torch.bool)
    block[H // 2 - 2 : H // 2 + 2, W // 2 - 2 : W // 2 + 2] = True
    assert torch.equal(ssdu.protected((H, W), num_low), block)
    outer = mask[0, 0] & ~block
    for i in range(2):
        assert int(held[i, 0].sum()) == round(0.4 * int(outer.sum()))
        assert inp[i, 0][block].all() and not held[i, 0][block].any()
    acs = torch.zeros(H, W, dtype=torch.bool)
    start = (W - num_low + 1) // 2
    acs[:, start : start + num_low] = True
    assert (held[:, 0] & acs & ~block).any()  # the centre columns are not all kept
    assert torch.equal(inp | held, mask) and not (inp & held).any()


def test_fixed_splits_are_one_per_slice_whatever_the_rng():
    mask, num_low = cartesian(batch=4)
    fnames, slices = keys(4)
    ssdu = SSDU()
    torch.manual_seed(0)
    first = ssdu.split(mask, num_low, fnames, slices)[1]
    torch.manual_seed(123)
    assert torch.equal(ssdu.split(mask, num_low, fnames, slices)[1], first)
    # Each slice its own split; another seed other splits.
    assert all(not torch.equal(first[i], first[j]) for i in range(4) for j in range(i))
    assert not torch.equal(SSDU(seed=1).split(mask, num_low, fnames, slices)[1], first)
    # Reordering the batch moves the splits with their slices.
    order = [2, 0, 3, 1]
    moved = ssdu.split(mask, num_low, [fnames[i] for i in order], slices[order])[1]
    assert torch.equal(moved, first[order])
    with pytest.raises(ValueError, match="keyed by file and slice"):
        ssdu.split(mask, num_low)


def test_multi_mask_ssdu_draws_among_k_disjoint_splits_per_slice():
    mask, num_low = cartesian(batch=1)
    ssdu = SSDU(splits=3)
    torch.manual_seed(0)
    seen = {}
    for _ in range(40):
        inp, held = ssdu.split(mask, num_low, ["file.h5"], [0])
        assert not (inp & held).any() and torch.equal(inp | held, mask)
        seen[tuple(held.flatten().nonzero().flatten().tolist())] = held
    assert len(seen) == 3  # exactly K splits of that slice, every one used
    single = SSDU().split(mask, num_low, ["file.h5"], [0])[1]
    assert any(torch.equal(single, h) for h in seen.values())  # split 0 is the K = 1 one


def test_masks_without_a_centre_keep_a_centre_block():
    patches = RandomPatchMask(0.6, 4)((H, W), seed=0).mask  # (1, H, W), no ACS columns
    mask = patches.expand(2, 1, H, W).clone()
    mask[..., H // 2 - 2 : H // 2 + 2, W // 2 - 2 : W // 2 + 2] = True
    for protect in ("acs", "block"):
        inp, held = SSDU(centre=4, protect=protect).split(mask, 0, *keys(2))
        assert inp[..., H // 2 - 2 : H // 2 + 2, W // 2 - 2 : W // 2 + 2].all()
        assert held.any() and torch.equal(inp | held, mask)


def test_gaussian_selection_holds_out_near_the_centre_more_than_uniform():
    """Mean distance of the held-out samples from k = 0 (as a fraction of the grid): the
    variable-density draw holds out nearer the centre (SSDU's point)."""
    mask, num_low = cartesian(batch=16)
    rows = (torch.arange(H) - H // 2).float()[:, None] / H
    cols = (torch.arange(W) - W // 2).float()[None, :] / W
    radius = (rows**2 + cols**2).sqrt()
    distance = {}
    for selection in ("gaussian", "uniform"):
        held = SSDU(selection=selection).split(mask, num_low, *keys(16))[1][:, 0].float()
        distance[selection] = float((held * radius).sum() / held.sum())
    assert distance["gaussian"] < 0.9 * distance["uniform"]


def test_mim_holds_out_the_acquired_samples_of_whole_patches():
    mask, num_low = cartesian()
    mim = MaskedModeling(patch_size=8, ratio=0.4)
    torch.manual_seed(0)
    inp, held = mim.split(mask, num_low)
    assert not (inp & held).any() and torch.equal(inp | held, mask)
    block = mim.protected((H, W), num_low)
    for i in range(2):
        # Which 8 x 8 patches lost samples: every acquired sample of those is held out
        # (the protected block aside), none of the others.
        tiles = held[i, 0].reshape(H // 8, 8, W // 8, 8).any(3).any(1)
        grid = tiles.repeat_interleave(8, 0).repeat_interleave(8, 1)
        assert torch.equal(held[i, 0], mask[i, 0] & grid & ~block)
        assert int(tiles.sum()) <= round(0.4 * (H // 8) * (W // 8))
        assert int(tiles.sum()) >= round(0.4 * (H // 8) * (W // 8)) - 1  # the block's tile
    assert not torch.equal(held[0], held[1])  # a mask per slice, fresh each call


def test_held_out_loss_is_the_normalised_l1_plus_l2_on_held_out_samples():
    g = torch.Generator().manual_seed(0)
    acquired = torch.randn(2, 3, H, W, dtype=torch.complex64, generator=g)
    predicted = torch.randn(2, 3, H, W, dtype=torch.complex64, generator=g)
    held = torch.zeros(2, 1, H, W, dtype=torch.bool)
    held[..., ::5] = True
    loss = SSDU().held_out_loss(predicted, acquired, held)
    expected = []
    for i in range(2):
        r = torch.view_as_real((predicted[i] - acquired[i])[held[i].expand(3, H, W)])
        y = torch.view_as_real(acquired[i][held[i].expand(3, H, W)])
        expected.append(r.abs().sum() / y.abs().sum() + r.norm() / y.norm())
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    # Outside the held-out set nothing counts; equal there means zero loss.
    same = torch.where(held, acquired, predicted)
    assert SSDU().held_out_loss(same, acquired, held) == 0


def test_density_weighting_divides_each_residual_by_the_root_of_its_selection_odds():
    """weighting=density: a held-out sample's residual and reference are weighted by
    q^-1/2 (q its chance of being held out). Uniform draws give equal weights, so the
    normalised loss is the unweighted one; the Gaussian draw weights the rarely chosen
    outer samples up."""
    mask, num_low = cartesian()
    g = torch.Generator().manual_seed(0)
    acquired = torch.randn(2, 3, H, W, dtype=torch.complex64, generator=g)
    predicted = torch.randn(2, 3, H, W, dtype=torch.complex64, generator=g)
    for selection in ("uniform", "gaussian"):
        ssdu = SSDU(selection=selection, weighting="density")
        batch = _toy_batch(mask, num_low, acquired)
        step = ssdu.prepare(batch)
        w = step.weights
        assert torch.equal(w > 0, step.held_out)
        selectable = mask[0, 0] & ~ssdu.protected((H, W), num_low)
        q = ssdu.probability(selectable)
        torch.testing.assert_close(w[0, 0][step.held_out[0, 0]], q[step.held_out[0, 0]].rsqrt())
        weighted = ssdu.terms(predicted, acquired, step)["loss"]
        plain = SSDU(selection=selection).terms(predicted, acquired, step._replace(weights=None))
        if selection == "uniform":
            assert torch.unique(w[w > 0]).numel() == 1
            torch.testing.assert_close(weighted, plain["loss"])
        else:
            assert w[w > 0].max() > 1.5 * w[w > 0].min() and not torch.isclose(
                weighted, plain["loss"]
            )


def _toy_batch(mask, num_low, kspace):
    from kspace_mim.data.transforms import KspaceSample

    b = mask.shape[0]
    return KspaceSample(
        masked_kspace=torch.where(mask, kspace, 0),
        mask=mask,
        kspace=torch.zeros_like(kspace),
        target=torch.zeros(b, 0, 0),
        scale=torch.ones(b),
        offset=torch.zeros(b, kspace.shape[1], dtype=kspace.dtype),
        max_value=torch.zeros(b),
        crop_size=torch.tensor([[H, W]] * b),
        fname=[f"file{i}.h5" for i in range(b)],
        slice_num=torch.arange(b),
        num_low_frequencies=torch.tensor([num_low] * b),
    )


def test_bad_options_and_image_only_models_are_configuration_errors():
    bad_ssdu = ({"loss_fraction": 1.0}, {"selection": "poisson"}, {"loss": "l3"},
                {"protect": "none"}, {"resample": "epoch"}, {"splits": 0},
                {"splits": 2, "resample": "step"}, {"weighting": "inverse"})  # fmt: skip
    for bad in bad_ssdu:
        with pytest.raises(ConfigError, match="supervision."):
            SSDU(**bad)
    for bad in ({"patch_size": 0}, {"ratio": 0.0}):
        with pytest.raises(ConfigError, match="supervision."):
            MaskedModeling(**bad)
    with pytest.raises(ConfigError, match="supervision='semi'"):
        build_supervision({"name": "semi"})
    for name in ("ssdu", "mim"):
        with pytest.raises(ConfigError, match="UnetReconstructor outputs an image only"):
            system_of("unet", 4, (32, 32), net={"size": "tiny"}, supervision=group(name))


def group(name: str, **overrides) -> dict:
    """The ``supervision`` group's config as train.py passes it."""
    cfg = OmegaConf.load(CONFIG_DIR / "supervision" / f"{name}.yaml")
    return {**OmegaConf.to_container(cfg), **overrides}


def test_every_supervision_yaml_builds_its_strategy_and_old_names_still_load():
    built = {
        p.stem: build_supervision(group(p.stem))
        for p in (CONFIG_DIR / "supervision").glob("*.yaml")
    }
    assert {type(s) for s in built.values()} == {Supervised, SSDU, MaskedModeling, Joint}
    assert built["ssdu"].protect == "block" and built["ssdu"].resample == "fixed"
    # Joint's pool strategy is supervision=ssdu's, as published.
    assert vars(built["joint"].label_free) == vars(built["ssdu"])
    old = build_supervision({"name": "ssdu", "loss_fraction": 0.3})  # a pre-_target_ checkpoint
    assert isinstance(old, SSDU) and old.loss_fraction == 0.3 and old.resample == "step"
    assert isinstance(build_supervision(None), Supervised)


def _ssdu_batch(folder, i: int = 0):
    dataset = SliceDataset(folder, "multicoil", KspaceTransform(crop_size=32))
    return prepare_batch(collate_slices([dataset[i], dataset[i + 1]]))


@pytest.mark.parametrize("name", ["ssdu", "mim"])
def test_the_loss_never_sees_a_sample_that_was_not_acquired(name, data_root, tmp_path):
    """Writing noise into the unacquired k-space of undersampled training files changes
    neither the loss nor its gradients, bit for bit."""
    clean = data_root / "multicoil_test"
    noisy = shutil.copytree(clean, tmp_path / "noisy")
    for path in noisy.glob("*.h5"):
        with h5py.File(path, "r+") as hf:
            unacquired = ~hf["mask"][()].astype(bool)
            kspace = hf["kspace"][()]
            noise = np.random.default_rng(0).standard_normal(kspace.shape) * 1e-3
            kspace[..., unacquired] = noise[..., unacquired]
            hf["kspace"][...] = kspace
    results = []
    for folder in (clean, noisy):
        torch.manual_seed(0)
        module = system_of("swin", 4, (32, 32), net={"size": "tiny"}, supervision=group(name))
        torch.manual_seed(1)
        terms = module.training_terms(_ssdu_batch(folder))
        terms["loss"].backward()
        results.append(
            (
                terms["loss"].detach(),
                [p.grad.clone() for p in module.parameters() if p.grad is not None],
            )
        )
    assert torch.isfinite(results[0][0]) and results[0][0] > 0
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["ssdu", "mim"])
def test_the_model_sees_only_the_input_set_normalised_as_at_test(name, data_root):
    """The held-out samples are removed from what the model sees, data consistency
    included (its k-space there is a prediction, not the acquired value); the input set
    keeps its original-unit values and is normalised from its own samples, as a test
    input is (same RMS in model units)."""
    batch = _ssdu_batch(data_root / "multicoil_test")
    seen = {}

    class Spy(ReconstructionModule):
        def reconstruct(self, b):
            seen["batch"] = b
            seen["out"] = super().reconstruct(b)
            return seen["out"]

    torch.manual_seed(0)
    swin = system_of("swin", 4, (32, 32), net={"size": "tiny"})
    module = Spy(swin.hparams["net"], 4, (32, 32), supervision=group(name))
    module.training_terms(batch)
    b = seen["batch"]
    held = batch.mask & ~b.mask
    assert held.any() and not (b.mask & ~batch.mask).any()
    assert (b.masked_kspace[held.expand_as(b.masked_kspace)] == 0).all()
    out = seen["out"].kspace[held.expand_as(b.masked_kspace)]
    assert not torch.allclose(out, batch.masked_kspace[held.expand_as(b.masked_kspace)])
    original = b.masked_kspace * b.scale.reshape(-1, 1, 1, 1)
    expected = torch.where(b.mask, batch.masked_kspace * batch.scale.reshape(-1, 1, 1, 1), 0)
    torch.testing.assert_close(original, expected)
    rms = torch.view_as_real(b.masked_kspace).flatten(1).norm(dim=1)
    torch.testing.assert_close(rms, torch.view_as_real(batch.masked_kspace).flatten(1).norm(dim=1))
    # renormalize=false keeps the scale of every acquired sample (the old behaviour).
    step = build_supervision(group(name, renormalize=False)).prepare(batch)
    torch.testing.assert_close(step.input.scale, batch.scale)


def test_mim_gives_the_kspace_encoder_a_mask_token_on_every_hidden_patch(data_root):
    """With model.domain=kspace, SimMIM's mask token stands wherever a hidden patch
    left no input sample: every patch that held acquired samples and lost them all."""
    batch = _ssdu_batch(data_root / "multicoil_test")
    torch.manual_seed(0)
    module = system_of(
        "swin",
        4,
        (32, 32),
        net={"size": "tiny", "domain": "kspace"},
        supervision=group("mim", patch_size=4),
    )
    tokens = {}

    def record(module, args):
        tokens["mask"] = args[1]  # the encoder's token mask (B, h / p, w / p)

    hook = module.net.encoder.register_forward_pre_hook(record)
    torch.manual_seed(1)
    step = module.supervision.prepare(batch)
    torch.manual_seed(1)
    module.training_terms(batch)
    hook.remove()
    p = module.net.patch_size
    lost = F.max_pool2d((batch.mask & ~step.input.mask).float(), p)[:, 0] > 0
    empty = F.max_pool2d(step.input.mask.float(), p)[:, 0] == 0
    assert (lost & empty).any()
    # The encoder's grid is padded evenly to its window multiple: crop back to ours.
    (th, tw), (h, w) = tokens["mask"].shape[-2:], lost.shape[-2:]
    token = tokens["mask"][:, (th - h) // 2 : (th - h) // 2 + h, (tw - w) // 2 : (tw - w) // 2 + w]
    assert token[lost & empty].all()
    assert not token[~empty].any()  # a patch with an input sample keeps its data


def test_grid_batches_never_mix_widths_and_ranks_share_nothing():
    keys = [36] * 7 + [40] * 5 + [-1] * 6
    for world in (1, 2):
        seen = []
        lengths = set()
        for rank in range(world):
            sampler = GridBatchSampler(keys, 2, seed=0, num_replicas=world, rank=rank)
            batches = list(sampler)
            lengths.add(len(batches))
            assert all(len({keys[i] for i in b}) == 1 for b in batches)
            seen += [i for b in batches for i in b]
        assert len(seen) == len(set(seen)) and len(lengths) == 1
    sampler = GridBatchSampler(keys, 2, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
