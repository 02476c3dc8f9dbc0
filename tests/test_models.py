"""SimMIM encoders and decoders: shapes, strides, mask tokens, clear config errors."""

from __future__ import annotations

import pytest
import torch

from kspace_mim.config import ConfigError
from kspace_mim.models.presets import PRESETS, resolve
from kspace_mim.models.simmim import SimMIM


@pytest.mark.parametrize(
    "family, patch_size, decoder, grid",
    [
        ("swin", 1, "skip", (32, 32)),
        ("swin", 2, "linear", (64, 48)),  # rectangular
        ("swin", 4, "skip", (40, 38)),  # not a multiple of the stride: padded inside
        ("vit", 2, "linear", (32, 32)),
        ("vit", 8, "skip", (64, 40)),
    ],
)
def test_simmim_predicts_every_sample(family, patch_size, decoder, grid):
    model = SimMIM(
        family, num_coils=3, img_size=grid, patch_size=patch_size, decoder=decoder, size="tiny"
    )
    x = torch.randn(2, 6, *grid)
    mask = torch.rand(2, 1, *grid) > 0.5
    y = model(x, mask)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert model.encoder.mask_token.grad is not None


@pytest.mark.parametrize("family, stride_ok, stride_bad", [("swin", 4, 8), ("vit", 4, 16)])
def test_encoder_stride_must_match(family, stride_ok, stride_bad):
    SimMIM(
        family,
        2,
        (32, 32),
        patch_size=4 if family == "vit" else 2,
        encoder_stride=stride_ok,
        size="tiny",
    )
    with pytest.raises(
        ConfigError,
        match=rf"model.encoder_stride={stride_bad} .* downsamples by "
        rf"{stride_ok}.*Set model.encoder_stride={stride_ok}",
    ):
        SimMIM(
            family,
            2,
            (32, 32),
            patch_size=4 if family == "vit" else 2,
            encoder_stride=stride_bad,
            size="tiny",
        )


def test_depths_change_the_stride():
    model = SimMIM(
        "swin", 2, (64, 64), patch_size=2, size="tiny", depths=[2, 2, 2], num_heads=[2, 4, 8]
    )
    assert model.stride == 8


def test_mask_tokens_replace_unacquired_patches():
    torch.manual_seed(0)
    model = SimMIM(
        "swin", 1, (16, 16), patch_size=2, size="tiny", decoder="linear", mask_channel=False
    ).eval()
    x = torch.randn(1, 2, 16, 16)
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :8] = True
    with torch.no_grad():
        base = model(x, mask)
        model.encoder.mask_token.add_(1.0)
        moved = model(x, mask)
    assert not torch.allclose(base, moved)


def test_image_networks_have_no_mask_token():
    """A network built without mask tokens holds no token parameter (none without a
    gradient under DDP) and refuses to be asked for one."""
    model = SimMIM("swin", 1, (16, 16), patch_size=2, size="tiny", mask_tokens=False)
    assert model.encoder.mask_token is None
    assert not any("mask_token" in name for name, _ in model.named_parameters())
    x, mask = torch.randn(1, 2, 16, 16), torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    assert model(x, mask).shape == x.shape
    with pytest.raises(ValueError, match="without a mask token"):
        model.encoder.insert_mask_tokens(x.permute(0, 2, 3, 1), torch.ones(1, 16, 16).bool())


def test_presets_for_every_encoder():
    for family in ("swin", "vit", "unet"):
        assert set(PRESETS[family]) == {"tiny", "small", "base"}
    assert resolve("swin", "tiny", embed_dim=32)["embed_dim"] == 32
    with pytest.raises(ValueError, match="model.size='huge' unknown"):
        resolve("swin", "huge")


def test_bad_decoder_and_family():
    with pytest.raises(ConfigError, match="model.decoder='conv'"):
        SimMIM("swin", 1, (16, 16), decoder="conv", size="tiny")
    with pytest.raises(ValueError, match="unknown encoder family"):
        SimMIM("resnet", 1, (16, 16), size="tiny")
