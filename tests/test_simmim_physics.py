"""SimMIM that uses the physics: coil maps (reduce / expand), a start at its input, soft
data consistency, and the unrolled network's first estimate through the same maps."""

from __future__ import annotations

import pytest
import torch
from fastmri.models.varnet import VarNetBlock

from kspace_mim.config import ConfigError
from kspace_mim.models.coils import coil_expand, coil_maps, coil_reduce
from kspace_mim.models.family import NetFacts, zero_filled_image
from kspace_mim.models.simmim import SimMIM, SimMIMReconstructor
from kspace_mim.models.unrolled import Unrolled
from kspace_mim.modules.reconstruction import system_of
from kspace_mim.physics import data_consistency
from test_families import second_step_gradients
from test_unrolled import ADJACENT, B, C, H, W, make_batch


def random_complex(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.complex64, generator=g)


def test_reduce_and_expand_are_fastmris_and_adjoint():
    """coil_reduce / coil_expand equal fastMRI's VarNetBlock.sens_reduce / sens_expand on
    the same inputs, and <expand(x), k> = <x, reduce(k)> (adjoint pair)."""
    n = 3
    kspace, maps = random_complex(n, C, H, W), random_complex(n, C, H, W, seed=1)
    image = random_complex(n, H, W, seed=2)
    block = VarNetBlock(torch.nn.Identity())
    real_maps = torch.view_as_real(maps)
    theirs_reduce = block.sens_reduce(torch.view_as_real(kspace), real_maps)  # (n, 1, H, W, 2)
    theirs_expand = block.sens_expand(torch.view_as_real(image).unsqueeze(1), real_maps)
    torch.testing.assert_close(torch.view_as_real(coil_reduce(kspace, maps)), theirs_reduce[:, 0])
    torch.testing.assert_close(torch.view_as_real(coil_expand(image, maps)), theirs_expand)
    lhs = torch.vdot(coil_expand(image, maps).flatten(), kspace.flatten())
    rhs = torch.vdot(image.flatten(), coil_reduce(kspace, maps).flatten())
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("decoder", ["skip", "linear"])
def test_zero_init_returns_the_input(decoder):
    torch.manual_seed(0)
    net = SimMIM("swin", 2, (H, W), decoder=decoder, size="tiny", zero_init=True)
    x, mask = torch.randn(B, 4, H, W), torch.ones(B, 1, H, W, dtype=torch.bool)
    torch.testing.assert_close(net(x, mask), x)
    plain = SimMIM("swin", 2, (H, W), decoder=decoder, size="tiny")
    assert not torch.allclose(plain(x, mask), x)  # without it, the start is not the input


@pytest.mark.parametrize("coils, start", [("channels", None), ("maps", None), ("maps", "sense")])
def test_the_untrained_default_starts_at_its_input(coils, start):
    """With zero_init the untrained family's image is its starting point: the zero-filled
    image (every coil as channels; through maps by default), or with maps_start=sense the
    image of the SENSE-combined estimate after data consistency, never something the
    network made up."""
    torch.manual_seed(0)
    net = {"size": "tiny", "coils": coils, **({"maps_start": start} if start else {})}
    module = system_of("swin", C, (H, W), net=net).eval()
    net = module.net
    batch = make_batch()
    with torch.no_grad():
        out = module.reconstruct(batch)
        if start is None:
            expected = zero_filled_image(batch, 1)
        else:
            maps = coil_maps(net.sens_net, batch.masked_kspace, batch.mask, 4)
            start = coil_expand(coil_reduce(batch.masked_kspace, maps), maps)
            expected_k = data_consistency(start, batch.masked_kspace, batch.mask)
            torch.testing.assert_close(out.kspace, expected_k)
            expected = zero_filled_image(batch._replace(masked_kspace=expected_k), 1)
    torch.testing.assert_close(out.image, expected)


@pytest.mark.parametrize("coils", [2, 5, 8])
def test_maps_take_any_coil_count_and_train_the_sensitivity_network(coils):
    """One network (built for one coil count) reconstructs any coil count through the
    maps; its prediction has every coil, and the sensitivity U-Net gets gradients (from
    the second step: the network starts at the zero-filled image, which no map changes)."""
    torch.manual_seed(0)
    module = system_of("swin", C, (H, W), net={"size": "tiny", "coils": "maps"})
    assert module.varying_coils
    batch = make_batch(coils=coils)
    out = module.reconstruct(batch)
    assert out.image.shape == (B, 20, 20) and out.kspace.shape == (B, coils, H, W)

    def terms():
        return module.loss(batch, module.reconstruct(batch))

    second_step_gradients(module, terms)
    grads = [p.grad for p in module.net.sens_net.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_channels_are_built_for_one_coil_count():
    module = system_of("swin", C, (H, W), net={"size": "tiny", "coils": "channels"})
    assert not module.varying_coils and module.net.sens_net is None


def test_soft_dc_starts_hard_and_learns_its_weight():
    torch.manual_seed(0)
    hard = system_of("swin", C, (H, W), net={"size": "tiny", "dc": "hard", "zero_init": False})
    soft = system_of("swin", C, (H, W), net={"size": "tiny", "dc": "soft", "zero_init": False})
    soft.net.load_state_dict(hard.net.state_dict(), strict=False)
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(soft.reconstruct(batch).kspace, hard.reconstruct(batch).kspace)
    out = soft.reconstruct(batch)
    soft.loss(batch, out)["loss"].backward()
    assert soft.net.dc_weight.grad is not None and soft.net.dc_weight.grad.abs() > 0
    with torch.no_grad():
        soft.net.dc_weight.fill_(0.5)  # halfway between the prediction and the data
        out = soft.reconstruct(batch)
    acquired = batch.mask.expand_as(out.kspace)
    halfway = (out.prediction + batch.masked_kspace) / 2
    torch.testing.assert_close(out.kspace[acquired], halfway[acquired])
    torch.testing.assert_close(out.kspace[~acquired], out.prediction[~acquired])


def test_maps_with_adjacent_slices_reconstruct_the_middle():
    torch.manual_seed(0)
    module = system_of("swin", 3 * C, (H, W), net={"size": "tiny", "dc": "hard"}, data=ADJACENT)
    assert module.net.out_chans == 2 * 3  # one complex image per slice of the stack
    batch = make_batch(coils=3 * C)
    out = module.reconstruct(batch)
    middle = batch.masked_kspace[:, C : 2 * C]
    acquired = batch.mask.expand_as(middle)
    assert out.kspace.shape == (B, C, H, W)
    assert torch.equal(out.kspace[acquired], middle[acquired])


def test_bad_coil_and_consistency_options_are_refused():
    facts = NetFacts(C, (H, W))
    with pytest.raises(ConfigError, match="domain=image"):
        SimMIMReconstructor(facts, domain="kspace", coils="maps", size="tiny")
    assert SimMIMReconstructor(facts, coils="auto", size="tiny").coils == "maps"  # on the image
    auto = SimMIMReconstructor(facts, domain="kspace", coils="auto", size="tiny")
    assert auto.coils == "channels"
    # A network mapping saved before the option existed rebuilds coils as channels.
    assert SimMIMReconstructor(facts, size="tiny").coils == "channels"
    with pytest.raises(ConfigError, match="model.coils"):
        SimMIMReconstructor(facts, coils="both", size="tiny")
    with pytest.raises(ConfigError, match="model.dc"):
        SimMIMReconstructor(facts, dc="medium", size="tiny")
    with pytest.raises(ConfigError, match="model.first_coils"):
        Unrolled(C, (H, W), first_coils="both")


@pytest.mark.parametrize("first_coils", ["channels", "maps"])
def test_the_unrolled_first_estimate_starts_at_its_input(first_coils):
    """zero_init: the first estimate is the zero-filled k-space (channels) or the coil
    maps' projection of it (maps), with the acquired samples put back."""
    torch.manual_seed(0)
    net = Unrolled(C, (H, W), cascades=1, first_coils=first_coils, zero_init=True).eval()
    batch = make_batch()
    ref = torch.view_as_real(batch.masked_kspace)
    with torch.no_grad():
        real_maps = net.sens_net(ref, batch.mask.unsqueeze(-1), 4)
        first = net.first_estimate(batch.masked_kspace, batch.mask, real_maps)
    family = system_of("unrolled", C, (H, W), net={"first_coils": first_coils, "cascades": 1})
    assert family.varying_coils == (first_coils == "maps")  # channels: built for C coils
    if first_coils == "channels":
        torch.testing.assert_close(first, batch.masked_kspace)
    else:
        maps = torch.view_as_complex(real_maps.contiguous())
        start = coil_expand(coil_reduce(batch.masked_kspace, maps), maps)
        torch.testing.assert_close(first, data_consistency(start, batch.masked_kspace, batch.mask))
        with pytest.raises(ValueError, match="coil maps"):
            net.first_estimate(batch.masked_kspace, batch.mask)


@pytest.mark.slow
def test_simmim_learns_at_batch_1_as_at_batch_4_per_slice_seen(tmp_path):
    """The default SimMIM-Swin (coil maps, zero-initialised) trained on the same 80 slices
    at batch 1 (80 steps) and at batch 4 (20 steps): batch 1 is not worse per slice seen,
    and both end above the zero-filled start (the old default collapsed at batch 1)."""
    from kspace_mim.config import compose
    from kspace_mim.data.synthesize import synthesize
    from kspace_mim.train import run

    kw = dict(slices=4, coils=4, size=32, progress=False)
    synthesize(tmp_path / "train", "multicoil", "train", volumes=6, **kw)
    synthesize(tmp_path / "val", "multicoil", "val", volumes=2, seed=1, **kw)

    def ssim(batch: int, steps: int, *model: str) -> float:
        overrides = [
            f"data.train_path={tmp_path / 'train'}",
            f"data.val_path={tmp_path / 'val'}",
            "data=tiny",
            f"data.batch_size={batch}",
            "mask=equispaced4x",
            f"trainer.max_steps={steps}",
            "trainer.max_epochs=-1",
            "trainer.check_val_every_n_epoch=1000",
            "seed=0",
            *model,
        ]
        return run(compose(overrides), tmp_path / f"b{batch}_{steps}")["ssim"]

    zero_filled = ssim(1, 1, "model=zero_filled")
    one = ssim(1, 80, "model=swin", "model.size=tiny")
    four = ssim(4, 20, "model=swin", "model.size=tiny")
    assert one > zero_filled + 0.05 and four > zero_filled
    assert one >= four - 0.02, (one, four)
