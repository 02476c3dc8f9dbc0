"""What a training step learns from (``supervision=``): fully sampled targets, or SSDU.

``supervised`` (the default) compares the reconstruction with the fully sampled target.
``ssdu`` is masked modeling of the *acquired* samples (Yaman et al. 2020, "SSDU"): each
step splits every slice's acquired samples into an input set, which the model sees
(its data consistency included), and a held-out loss set, which the loss compares the
model's k-space with. No fully sampled scan is needed, so undersampled-only folders
(fastMRI's test layout) can be trained on. Hand-written: neither fastmri nor timm has
it, and deepinv's / DIRECT's versions are tied to their own model classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.simmim import ConfigError
from kspace_mim.physics import apply_mask

if TYPE_CHECKING:
    from kspace_mim.modules.base import ReconstructionModule

SELECTIONS = ("gaussian", "uniform")
SSDU_LOSSES = ("l1l2", "l1")


class Supervised:
    """Today's training: the loss against the fully sampled target (``loss.*`` weights)."""

    name = "supervised"
    needs_targets = True
    needs_kspace_output = False

    def training_terms(self, module: ReconstructionModule, batch: KspaceSample) -> dict:
        return module.loss(batch, module.reconstruct(batch))


class SSDU:
    """Self-supervision from the acquired samples alone.

    Args:
        loss_fraction: share of each slice's acquired samples held out for the loss
            (SSDU's rho, 0.4).
        selection: "gaussian" (SSDU's variable density: a held-out sample is drawn with
            probability from a 2-D Gaussian centred on k = 0, std = (n - 1) / std_scale
            per axis) or "uniform" (every selectable acquired sample alike).
        std_scale: the Gaussian's width divisor (SSDU: 4).
        centre: the auto-calibration centre always stays in the input: the slice's fully
            sampled centre columns (``num_low_frequencies``), or for masks without one a
            centre block of ``centre`` x ``centre`` samples (SSDU's small ACS block).
        loss: "l1l2" (SSDU's normalised L1 + L2: ||r||_1 / ||y||_1 + ||r||_2 / ||y||_2 on
            the held-out samples, per slice) or "l1" (the normalised L1 alone).
    """

    name = "ssdu"
    needs_targets = False
    needs_kspace_output = True

    def __init__(
        self,
        loss_fraction: float = 0.4,
        selection: str = "gaussian",
        std_scale: float = 4.0,
        centre: int = 4,
        loss: str = "l1l2",
    ):
        if not 0.0 < loss_fraction < 1.0:
            raise ConfigError(f"supervision.loss_fraction={loss_fraction}: between 0 and 1")
        if selection not in SELECTIONS:
            raise ConfigError(f"supervision.selection={selection!r}: one of {SELECTIONS}")
        if loss not in SSDU_LOSSES:
            raise ConfigError(f"supervision.loss={loss!r}: one of {SSDU_LOSSES}")
        if std_scale <= 0 or centre < 0:
            raise ConfigError("supervision.std_scale must be > 0 and supervision.centre >= 0")
        self.loss_fraction = loss_fraction
        self.selection = selection
        self.std_scale = std_scale
        self.centre = centre
        self.loss = loss

    def kept_centre(self, shape: tuple[int, int], num_low: int, device) -> Tensor:
        """bool (H, W): the auto-calibration centre, never held out."""
        h, w = shape
        keep = torch.zeros(h, w, dtype=torch.bool, device=device)
        if num_low > 0:
            start = (w - num_low + 1) // 2  # fastMRI's centre columns
            keep[:, start : start + num_low] = True
        elif self.centre:
            r0, c0 = h // 2 - self.centre // 2, w // 2 - self.centre // 2
            keep[r0 : r0 + self.centre, c0 : c0 + self.centre] = True
        return keep

    def weights(self, shape: tuple[int, int], device) -> Tensor:
        """float (H, W): how likely each sample is to be held out (before the mask)."""
        h, w = shape
        if self.selection == "uniform":
            return torch.ones(h, w, device=device)
        rows = torch.arange(h, device=device, dtype=torch.float32) - h // 2
        cols = torch.arange(w, device=device, dtype=torch.float32) - w // 2
        sr, sc = (h - 1) / self.std_scale, (w - 1) / self.std_scale
        return torch.exp(-(rows[:, None] ** 2) / (2 * sr**2) - cols[None, :] ** 2 / (2 * sc**2))

    def split(
        self, mask: Tensor, num_low_frequencies: Any, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """mask: bool (B, 1, H, W) acquired -> (input, loss) masks, disjoint, their union
        the acquisition, the centre in the input; a fresh draw from torch's RNG (or
        ``generator``) each call."""
        b, _, h, w = mask.shape
        lows = torch.as_tensor(num_low_frequencies).reshape(-1).expand(b).tolist()
        weights = self.weights((h, w), mask.device)
        loss_mask = torch.zeros_like(mask)
        for i in range(b):
            acquired = mask[i, 0]
            selectable = acquired & ~self.kept_centre((h, w), int(lows[i]), mask.device)
            count = min(round(self.loss_fraction * int(acquired.sum())), int(selectable.sum()))
            if count == 0:
                continue
            # Weighted draws without replacement: SSDU's rejection loop, in one call.
            p = (weights * selectable).flatten()
            picked = torch.multinomial(p, count, replacement=False, generator=generator)
            loss_mask[i, 0].view(-1)[picked] = True
        return mask & ~loss_mask, loss_mask

    def ssdu_loss(self, predicted: Tensor, acquired: Tensor, loss_mask: Tensor) -> Tensor:
        """Normalised error on the held-out samples, per slice, mean over the batch.
        predicted, acquired: complex (B, C, H, W); loss_mask: bool (B, 1, H, W)."""
        held = loss_mask.expand_as(acquired)
        zero = torch.zeros((), dtype=acquired.dtype, device=acquired.device)
        residual = torch.view_as_real(torch.where(held, predicted - acquired, zero)).flatten(1)
        reference = torch.view_as_real(torch.where(held, acquired, zero)).flatten(1)
        l1 = residual.abs().sum(1) / reference.abs().sum(1).clamp_min(1e-12)
        if self.loss == "l1":
            return l1.mean()
        l2 = residual.norm(dim=1) / reference.norm(dim=1).clamp_min(1e-12)
        return (l1 + l2).mean()

    def training_terms(self, module: ReconstructionModule, batch: KspaceSample) -> dict:
        input_mask, loss_mask = self.split(batch.mask, batch.num_low_frequencies)
        seen = batch._replace(
            masked_kspace=apply_mask(batch.masked_kspace, input_mask), mask=input_mask
        )
        out = module.reconstruct(seen)
        acquired = module.centre_slice(batch).masked_kspace
        loss = self.ssdu_loss(out.kspace, acquired, loss_mask)
        return {"ssdu": loss, "loss": loss}


SUPERVISIONS = {"supervised": Supervised, "ssdu": SSDU}


def build_supervision(config: dict | None) -> Supervised | SSDU:
    """``supervision`` config (``name`` and the class's arguments) -> its object."""
    config = dict(config or {"name": "supervised"})
    name = config.pop("name", "supervised")
    if name not in SUPERVISIONS:
        raise ConfigError(f"supervision={name!r}: one of {tuple(SUPERVISIONS)}")
    return SUPERVISIONS[name](**config)
