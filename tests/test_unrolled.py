"""E2E-VarNet as a family (equal to fastMRI's) and the unrolled network's options."""

from __future__ import annotations

import pytest
import torch
from fastmri.models import VarNet

from kspace_mim.config import ConfigError
from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.unrolled import Unrolled
from kspace_mim.modules.reconstruction import system_of
from kspace_mim.physics import center_crop

B, C, H, W = 2, 4, 32, 24


def make_batch(scale: float = 1.0, coils: int = C) -> KspaceSample:
    g = torch.Generator().manual_seed(0)
    kspace = torch.randn(B, coils, H, W, dtype=torch.complex64, generator=g)
    mask = torch.zeros(B, 1, H, W, dtype=torch.bool)
    mask[..., ::3] = True
    mask[..., W // 2 - 2 : W // 2 + 2] = True
    return KspaceSample(
        masked_kspace=torch.where(mask, kspace, 0),
        mask=mask,
        kspace=kspace,
        target=torch.rand(B, 20, 20, generator=g),
        scale=torch.full((B,), scale),
        offset=torch.zeros(B, coils, dtype=torch.complex64),
        max_value=torch.ones(B),
        crop_size=torch.tensor([[20, 20]] * B),
        fname=["f.h5"] * B,
        slice_num=torch.arange(B),
        num_low_frequencies=torch.tensor([4] * B),
    )


def test_varnet_module_equals_fastmri_varnet():
    """Same weights, same masked k-space: our module's image is fastMRI's VarNet's,
    in original units and cropped to the recon size."""
    torch.manual_seed(0)
    module = system_of("varnet", C, (H, W), net={"size": "tiny"}).eval()
    reference = VarNet(num_cascades=4, chans=8, pools=4, sens_chans=4, sens_pools=4).eval()
    reference.load_state_dict(module.net.state_dict())
    batch = make_batch(scale=3.5)
    with torch.no_grad():
        ours = module.reconstruct(batch)
        theirs = reference(torch.view_as_real(batch.masked_kspace), batch.mask.unsqueeze(-1), 4)
    expected = center_crop(theirs, (20, 20)) * 3.5
    torch.testing.assert_close(ours.image, expected, rtol=1e-5, atol=1e-6)
    assert ours.kspace is not None and ours.kspace.shape == (B, C, H, W)


@pytest.mark.parametrize("denoiser", ["unet", "swin", "vit"])
@pytest.mark.parametrize("first_estimate", ["none", "simmim"])
def test_unrolled_learns_with_every_denoiser(denoiser, first_estimate):
    torch.manual_seed(0)
    module = system_of(
        "unrolled",
        C,
        (H, W),
        net={"size": "tiny", "cascades": 2, "denoiser": denoiser, "first_estimate": first_estimate},
    )
    batch = make_batch()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = module.loss(batch, module.reconstruct(batch))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert (module.net.first is not None) == (first_estimate == "simmim")


def test_first_estimate_keeps_the_acquired_samples():
    torch.manual_seed(0)
    net = Unrolled(C, (H, W), cascades=1, first_estimate="simmim")
    batch = make_batch()
    first = net.first_estimate(batch.masked_kspace, batch.mask)
    assert torch.equal(
        first[batch.mask.expand_as(first)], batch.masked_kspace[batch.mask.expand_as(first)]
    )
    assert not torch.equal(first, batch.masked_kspace)  # the missing samples are predicted


def test_shared_weights_are_one_denoiser():
    shared = Unrolled(C, (H, W), cascades=3, share_weights=True, first_estimate="none")
    separate = Unrolled(C, (H, W), cascades=3, share_weights=False, first_estimate="none")
    assert all(c.model is shared.cascades[0].model for c in shared.cascades)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    denoiser = count(separate.cascades[0].model)
    assert count(separate) - count(shared) == 2 * denoiser


def test_checkpointing_gives_the_same_values_and_gradients():
    batch = make_batch()
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        net = Unrolled(C, (H, W), cascades=2, checkpointing=checkpointing).train()
        out = net(batch.masked_kspace, batch.mask, 4)
        out.abs().sum().backward()
        grads.append((out.detach(), [p.grad for p in net.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        assert (a is None) == (b is None)  # e.g. SimMIM's mask token, unused here
        if a is not None:
            torch.testing.assert_close(a, b)


def test_bad_options_are_configuration_errors():
    with pytest.raises(ConfigError, match="model.denoiser='cnn'"):
        Unrolled(C, (H, W), denoiser="cnn")
    with pytest.raises(ConfigError, match="model.first_estimate='zero'"):
        Unrolled(C, (H, W), first_estimate="zero")


def test_patch_masks_give_finite_sensitivity_maps():
    """SimMIM patch masks have no fully sampled centre column: the coil maps are
    estimated from every column instead of an empty centre (0 / 0)."""
    from kspace_mim.data.masks import RandomPatchMask
    from kspace_mim.models.family import common_low_frequencies

    batch = make_batch()
    patches = RandomPatchMask(0.6, 4)((H, W), seed=0).mask
    batch = batch._replace(
        mask=patches.expand(B, 1, H, W),
        masked_kspace=torch.where(patches, batch.kspace, 0),
        num_low_frequencies=torch.zeros(B, dtype=torch.long),
    )
    assert common_low_frequencies(batch) == W
    torch.manual_seed(0)
    for module in (
        system_of("varnet", C, (H, W)),
        system_of("unrolled", C, (H, W), net={"cascades": 1}),
    ):
        assert torch.isfinite(module.reconstruct(batch).image).all()
    cartesian = make_batch()._replace(num_low_frequencies=torch.tensor([4, 6]))
    assert common_low_frequencies(cartesian) is None  # fastMRI reads each slice's centre


ADJACENT = {"adjacent_slices": 1}  # stacks of 3 slices: C coils each, 3 * C channels


@pytest.mark.parametrize(
    "family, kwargs",
    [
        # Gates off: an untrained network that returns its input ignores neighbours.
        ("unrolled", {"denoiser": "unet", "first_estimate": "none", "residual_gate": False}),
        ("unrolled", {"denoiser": "swin", "first_estimate": "simmim", "residual_gate": False}),
        ("unet", {}),
        ("swin", {}),
    ],
)
def test_adjacent_slices_reach_the_network_and_the_image_is_the_middle(family, kwargs):
    """With a stack of 3 slices the network sees the neighbours (changing one changes the
    image), the image and k-space are the middle slice's, and the loss trains."""

    torch.manual_seed(0)
    build = {
        "unrolled": lambda: system_of(
            "unrolled", 3 * C, (H, W), net={"cascades": 1, **kwargs}, data=ADJACENT
        ),
        "unet": lambda: system_of("unet", 3 * C, (H, W), net={"size": "tiny"}, data=ADJACENT),
        # zero_init off: an untrained network that returns its input ignores neighbours
        "swin": lambda: system_of(
            "swin",
            3 * C,
            (H, W),
            net={"size": "tiny", "zero_init": False, "dc": "hard"},
            data=ADJACENT,
        ),
    }
    module = build[family]()
    batch = make_batch(coils=3 * C)
    out = module.reconstruct(batch)
    assert out.image.shape == (B, 20, 20)
    if out.kspace is not None:
        assert out.kspace.shape == (B, C, H, W)  # the middle slice's coils
        middle = batch.masked_kspace[:, C : 2 * C]
        acquired = batch.mask.expand_as(middle)
        if family == "swin":  # hard data consistency: the middle slice's samples exactly
            assert torch.equal(out.kspace[acquired], middle[acquired])
    neighbour = batch.masked_kspace.clone()
    # The first slice of the stack only, changed in content: a scale alone is normalised
    # away (coil maps and the denoisers' per-image normalisation are scale-free).
    neighbour[:, :C] += 0.5 * batch.masked_kspace[:, 2 * C :]
    changed = module.reconstruct(batch._replace(masked_kspace=neighbour)).image
    assert not torch.allclose(changed, out.image)
    loss = module.loss(batch, out)["loss"]
    loss.backward()
    assert torch.isfinite(loss)


def test_adjacent_slices_zero_filled_is_the_middle_slice():

    batch = make_batch(coils=3 * C)
    stacked = system_of("zero_filled", 3 * C, (H, W), data=ADJACENT).reconstruct(batch).image
    middle = batch._replace(
        masked_kspace=batch.masked_kspace[:, C : 2 * C], offset=batch.offset[:, C : 2 * C]
    )
    alone = system_of("zero_filled", C, (H, W)).reconstruct(middle).image
    torch.testing.assert_close(stacked, alone)


def test_varnet_refuses_adjacent_slices():
    with pytest.raises(ConfigError, match="adjacent_slices"):
        system_of("varnet", 3 * C, (H, W), data=ADJACENT)


def test_the_unet_loss_is_fastmris_on_normalised_images():
    """The U-Net family's image L1 is fastMRI's UnetModule loss: output and target
    normalised by the zero-filled image's mean and std (``normalize_instance``), the
    target clamped to +-6 (``UnetDataTransform``)."""
    from fastmri.data.transforms import normalize, normalize_instance

    torch.manual_seed(0)
    module = system_of("unet", C, (H, W), net={"size": "tiny"}, loss={"image_l1": 1.0})
    batch = make_batch(scale=2.0)
    out = module.reconstruct(batch)
    zero_filled = module.zero_filled_image(batch)
    expected = []
    for i in range(B):
        image, mean, std = normalize_instance(zero_filled[i], eps=1e-11)
        target = normalize(batch.target[i], mean, std, eps=1e-11).clamp(-6, 6)
        output = module.net(image.clamp(-6, 6)[None, None])[0, 0]
        expected.append(torch.nn.functional.l1_loss(output, target))
    loss = module.loss(batch, out)["image_l1"]
    torch.testing.assert_close(loss, torch.stack(expected).mean(), rtol=1e-4, atol=1e-5)
