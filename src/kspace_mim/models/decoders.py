"""Decoders from encoder features back to the full grid.

Both take the feature pyramid ``[input, stage 1, ..., stage N]`` (full resolution first).
``LinearDecoder`` is SimMIM's (and the paper's): a 1x1 conv of the deepest stage to
stride^2 x channels and a PixelShuffle. ``SkipDecoder`` is hierarchical: it upsamples
stage by stage with skips from every encoder stage and ends on a full-resolution
convolutional stem of the input, which the linear decoder lacks (docs/design.md,
"Measured probes": the largest single gain).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LinearDecoder(nn.Module):
    """SimMIM's decoder. embed_dim, stride: channels and downsampling of the deepest stage."""

    def __init__(self, embed_dim: int, stride: int, out_chans: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(embed_dim, stride**2 * out_chans, kernel_size=1),
            nn.PixelShuffle(stride),
        )

    @property
    def output_layer(self) -> nn.Conv2d:
        """The last learned layer (zeroed for a network that starts at its input)."""
        return self.proj[0]

    def forward(self, pyramid: list[Tensor]) -> Tensor:
        return self.proj(pyramid[-1])


def _conv_block(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, padding=1),
        nn.GroupNorm(1, out_chans),
        nn.GELU(),
        nn.Conv2d(out_chans, out_chans, 3, padding=1),
        nn.GroupNorm(1, out_chans),
        nn.GELU(),
    )


class _Up(nn.Module):
    """Upsample by ``factor`` (1x1 conv + PixelShuffle, as SimMIM), concat a skip, convolve."""

    def __init__(self, in_chans: int, skip_chans: int, out_chans: int, factor: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Conv2d(in_chans, out_chans * factor**2, 1), nn.PixelShuffle(factor)
        )
        self.conv = _conv_block(out_chans + skip_chans, out_chans)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class SkipDecoder(nn.Module):
    """Hierarchical decoder. in_chans: channels of the input (its full-resolution stem);
    stage_channels, strides: every encoder stage's channels and downsampling."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        stage_channels: list[int],
        strides: list[int],
        stem_chans: int = 32,
    ):
        super().__init__()
        self.stem = _conv_block(in_chans, stem_chans)
        ups = []
        for i in reversed(range(len(stage_channels) - 1)):
            factor = strides[i + 1] // strides[i]
            ups.append(_Up(stage_channels[i + 1], stage_channels[i], stage_channels[i], factor))
        self.ups = nn.ModuleList(ups)
        self.to_full = _Up(stage_channels[0], stem_chans, stem_chans, strides[0])
        self.head = nn.Conv2d(stem_chans, out_chans, 1)

    @property
    def output_layer(self) -> nn.Conv2d:
        """The last learned layer (zeroed for a network that starts at its input)."""
        return self.head

    def forward(self, pyramid: list[Tensor]) -> Tensor:
        x, features = pyramid[0], pyramid[1:]
        y = features[-1]
        for up, skip in zip(self.ups, reversed(features[:-1]), strict=True):
            y = up(y, skip)
        return self.head(self.to_full(y, self.stem(x)))


DECODERS = ("linear", "skip")


def build_decoder(
    name: str, in_chans: int, out_chans: int, stage_channels: list[int], strides: list[int]
) -> LinearDecoder | SkipDecoder:
    """``model.decoder``: "linear" (SimMIM's) or "skip", for an encoder's stages."""
    if name == "linear":
        return LinearDecoder(stage_channels[-1], strides[-1], out_chans)
    if name == "skip":
        return SkipDecoder(in_chans, out_chans, stage_channels, strides)
    raise ValueError(f"model.decoder={name!r}: one of {DECODERS}")
