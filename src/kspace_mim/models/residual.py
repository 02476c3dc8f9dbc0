"""Networks that start at their input: the untrained network returns the zero-filled image.

A residual network whose last layer has PyTorch's random initialisation adds noise to its
input before it has learned anything, so its first validations (and a checkpoint chosen
early) sit below zero-filling. Two ways to start at the input, whichever is exact for the
network's shape:

- zero the last layer of the correction (:func:`zero_last_conv`, and SimMIM's
  ``zero_init``), when nothing follows it but the addition of the input;
- scale the correction by a learned gate that starts at 0 (:class:`Gate`, "ReZero",
  Bachlechner et al. 2021), when a normalisation undone after the last layer would
  otherwise turn a zero output into the image mean (fastMRI's ``NormUnet`` in every
  VarNet cascade). The gate's own gradient is not zero, so the correction opens on the
  first step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Gate(nn.Module):
    """``scale * module(x)``, the scale learned and 0 at the start: (…) -> same shape."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.module(x)


def gate_cascades(cascades: nn.ModuleList) -> None:
    """Every VarNet cascade's denoiser term gated (each cascade its own gate, shared
    denoisers stay shared): with the k-space starting at the acquired samples, the soft
    data-consistency step is zero too, so the untrained cascades return their input."""
    for cascade in cascades:
        cascade.model = Gate(cascade.model)


def zero_last_conv(unet: nn.Module) -> None:
    """Zero the 1x1 output convolution of a fastMRI ``Unet`` (weight and bias): the
    network returns 0 until it learns."""
    last = unet.up_conv[-1][-1]
    if not isinstance(last, nn.Conv2d):
        raise TypeError(f"expected fastMRI's Unet with a final Conv2d, got {type(last).__name__}")
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
