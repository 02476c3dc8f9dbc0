"""supervision=ssdu: the split of the acquired samples, its loss, and what it refuses."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from fastmri.data.subsample import EquispacedMaskFractionFunc

from kspace_mim.data.masks import CartesianMask, RandomPatchMask
from kspace_mim.data.mri_data import SliceDataset
from kspace_mim.data.samplers import GridBatchSampler
from kspace_mim.data.transforms import KspaceTransform, collate_slices, prepare_batch
from kspace_mim.models.simmim import ConfigError
from kspace_mim.modules.simmim import SimMIMModule
from kspace_mim.modules.unet import UnetModule
from kspace_mim.supervision import SSDU, build_supervision

H, W = 64, 48


def cartesian(batch: int = 2) -> tuple[torch.Tensor, int]:
    """An equispaced 4x mask (B, 1, H, W) and its centre width."""
    mask, num_low, _ = CartesianMask(EquispacedMaskFractionFunc([0.08], [4]))((H, W), seed=0)
    return mask.expand(H, W).expand(batch, 1, H, W).clone(), num_low


@pytest.mark.parametrize("selection", ["gaussian", "uniform"])
def test_split_is_disjoint_covers_the_acquisition_and_keeps_the_centre(selection):
    mask, num_low = cartesian()
    ssdu = SSDU(loss_fraction=0.4, selection=selection)
    torch.manual_seed(0)
    inp, held = ssdu.split(mask, num_low)
    assert not (inp & held).any()
    assert torch.equal(inp | held, mask)
    centre = ssdu.kept_centre((H, W), num_low, mask.device)
    assert centre.sum() == H * num_low and inp[:, 0][:, centre].all()
    for i in range(mask.shape[0]):
        assert int(held[i].sum()) == round(0.4 * int(mask[i].sum()))
    # A fresh split every step, reproducible under the seed.
    again = ssdu.split(mask, num_low)[1]
    assert not torch.equal(again, held)
    torch.manual_seed(0)
    assert torch.equal(ssdu.split(mask, num_low)[1], held)


def test_masks_without_a_centre_keep_a_centre_block():
    patches = RandomPatchMask(0.6, 4)((H, W), seed=0).mask  # (1, H, W), no ACS columns
    mask = patches.expand(2, 1, H, W).clone()
    mask[..., H // 2 - 2 : H // 2 + 2, W // 2 - 2 : W // 2 + 2] = True
    inp, held = SSDU(centre=4).split(mask, 0)
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
        torch.manual_seed(0)
        held = SSDU(selection=selection).split(mask, num_low)[1][:, 0].float()
        distance[selection] = float((held * radius).sum() / held.sum())
    assert distance["gaussian"] < 0.9 * distance["uniform"]


def test_ssdu_loss_is_the_normalised_l1_plus_l2_on_held_out_samples():
    g = torch.Generator().manual_seed(0)
    acquired = torch.randn(2, 3, H, W, dtype=torch.complex64, generator=g)
    predicted = torch.randn(2, 3, H, W, dtype=torch.complex64, generator=g)
    held = torch.zeros(2, 1, H, W, dtype=torch.bool)
    held[..., ::5] = True
    loss = SSDU().ssdu_loss(predicted, acquired, held)
    expected = []
    for i in range(2):
        r = torch.view_as_real((predicted[i] - acquired[i])[held[i].expand(3, H, W)])
        y = torch.view_as_real(acquired[i][held[i].expand(3, H, W)])
        expected.append(r.abs().sum() / y.abs().sum() + r.norm() / y.norm())
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    # Outside the held-out set nothing counts; equal there means zero loss.
    same = torch.where(held, acquired, predicted)
    assert SSDU().ssdu_loss(same, acquired, held) == 0


def test_bad_options_and_image_only_models_are_configuration_errors():
    for bad in ({"loss_fraction": 1.0}, {"selection": "poisson"}, {"loss": "l3"}):
        with pytest.raises(ConfigError, match="supervision."):
            SSDU(**bad)
    with pytest.raises(ConfigError, match="supervision='semi'"):
        build_supervision({"name": "semi"})
    with pytest.raises(ConfigError, match="UnetModule outputs an image only"):
        UnetModule(4, (32, 32), size="tiny", supervision={"name": "ssdu"})


def _ssdu_batch(folder, i: int = 0):
    dataset = SliceDataset(folder, "multicoil", KspaceTransform(crop_size=32))
    return prepare_batch(collate_slices([dataset[i], dataset[i + 1]]))


def test_the_loss_never_sees_a_sample_that_was_not_acquired(data_root, tmp_path):
    """Writing noise into the unacquired k-space of undersampled training files changes
    neither the SSDU loss nor its gradients."""
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
        module = SimMIMModule(4, (32, 32), size="tiny", supervision={"name": "ssdu"})
        torch.manual_seed(1)
        terms = module.supervision.training_terms(module, _ssdu_batch(folder))
        terms["loss"].backward()
        results.append(
            (
                terms["loss"].detach(),
                [p.grad.clone() for p in module.parameters() if p.grad is not None],
            )
        )
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_model_sees_only_the_input_set(data_root):
    """The held-out samples are removed from what the model sees, data consistency
    included: its k-space there is a prediction, not the acquired value."""
    batch = _ssdu_batch(data_root / "multicoil_test")
    seen = {}

    class Spy(SimMIMModule):
        def reconstruct(self, b):
            seen["batch"] = b
            return super().reconstruct(b)

    torch.manual_seed(0)
    module = Spy(4, (32, 32), size="tiny", supervision={"name": "ssdu"})
    module.supervision.training_terms(module, batch)
    b = seen["batch"]
    held = batch.mask & ~b.mask
    assert held.any() and not (b.mask & ~batch.mask).any()
    assert (b.masked_kspace[held.expand_as(b.masked_kspace)] == 0).all()


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
