"""Every family can start at its input: the untrained network returns the zero-filled
image (to 1e-5), so no validation and no early checkpoint sits below doing nothing; and
the option is what does it (without it, the start is elsewhere)."""

from __future__ import annotations

import pytest
import torch

from kspace_mim.config import ConfigError
from kspace_mim.models.family import zero_filled_image
from kspace_mim.modules.reconstruction import system_of
from test_families import second_step_gradients
from test_unrolled import C, H, W, make_batch

MAPS_EXACT = {"size": "tiny", "coils": "maps", "maps_start": "zero_filled"}
# family, the options that start it at the zero-filled image, the same without the start
STARTS = [
    ("swin", MAPS_EXACT, {**MAPS_EXACT, "maps_start": "sense"}),
    (
        "swin",
        {"size": "tiny", "coils": "channels"},
        {"size": "tiny", "coils": "channels", "zero_init": False},
    ),
    ("vit", {**MAPS_EXACT, "patch_size": 4}, {**MAPS_EXACT, "patch_size": 4, "zero_init": False}),
    (
        "unrolled",
        {"cascades": 2, "first_coils": "maps", "maps_start": "zero_filled", "residual_gate": True},
        {"cascades": 2, "first_coils": "maps", "maps_start": "zero_filled", "residual_gate": False},
    ),
    (
        "unrolled",
        {"cascades": 2, "first_estimate": "none", "residual_gate": True},
        {"cascades": 2, "first_estimate": "none", "residual_gate": False},
    ),
    ("varnet", {"residual_gate": True}, {}),
    ("unet", {"size": "tiny", "residual": True}, {"size": "tiny"}),
]


@pytest.mark.parametrize("family, start, other", STARTS, ids=lambda v: str(v)[:60])
def test_the_untrained_network_returns_the_zero_filled_image(family, start, other):
    batch = make_batch()
    expected = zero_filled_image(batch, 1)
    torch.manual_seed(0)
    module = system_of(family, C, (H, W), net=start).eval()
    with torch.no_grad():
        image = module.reconstruct(batch).image
    torch.testing.assert_close(image, expected, rtol=1e-5, atol=1e-5 * float(expected.max()))
    torch.manual_seed(0)
    elsewhere = system_of(family, C, (H, W), net=other).eval()
    with torch.no_grad():
        assert not torch.allclose(elsewhere.reconstruct(batch).image, expected, rtol=1e-3)


@pytest.mark.parametrize("family, start, other", STARTS[3:], ids=lambda v: str(v)[:60])
def test_a_network_that_starts_at_its_input_still_learns_everywhere(family, start, other):
    """Gates and zeroed last layers pass no gradient to what they hide at the first step;
    from the second step every parameter learns."""
    torch.manual_seed(0)
    module = system_of(family, C, (H, W), net=start)
    batch = make_batch()

    def terms():
        return module.loss(batch, module.reconstruct(batch))

    params = second_step_gradients(module, terms)
    silent = [name for name, p in params if not p.grad.abs().sum() > 0]
    assert not silent, silent


def test_a_bad_maps_start_is_named():
    with pytest.raises(ConfigError, match="model.maps_start"):
        system_of("swin", C, (H, W), net={"size": "tiny", "maps_start": "zero"})
    with pytest.raises(ConfigError, match="model.maps_start"):
        system_of("unrolled", C, (H, W), net={"cascades": 1, "maps_start": "zero"})
