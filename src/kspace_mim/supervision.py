"""What a training step learns from: the ``supervision`` config group, one class each.

- :class:`Supervised` (the default): the fully sampled target, with the ``loss`` group's
  weights.
- :class:`SSDU` (Yaman et al. 2020): part of every slice's *acquired* samples is held out
  (points, drawn with a variable density); the model sees the rest, the loss compares its
  k-space with the held-out part.
- :class:`MaskedModeling` (``supervision=mim``): the same, with SimMIM's patch masks over
  the k-space grid applied to the acquired samples (a training device, not an
  acquisition: a 2-D Cartesian readout cannot skip patches).

The last two never read the fully sampled k-space, so they train on undersampled-only
folders (fastMRI's test layout). A strategy takes the batch and returns a :class:`Step`
(what the model sees and the held-out set); the module reconstructs ``step.input`` and
asks the strategy for the loss terms. Hand-written: neither fastmri nor timm has these,
and deepinv's / DIRECT's SSDU splits are tied to their own model classes.
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

import hydra
import torch
from hydra.errors import InstantiationException
from torch import Tensor

from kspace_mim.config import ConfigError
from kspace_mim.data.transforms import KspaceSample
from kspace_mim.physics import apply_mask

SELECTIONS = ("gaussian", "uniform")
SSDU_LOSSES = ("l1l2", "l1")
PROTECTS = ("block", "acs")
RESAMPLES = ("fixed", "step")
WEIGHTINGS = ("none", "density")


class Step(NamedTuple):
    """What one training step learns from.

    input: the batch the model sees (for self-supervision: the input set of the
        acquired samples, in its own normalisation).
    held_out: bool (B, 1, H, W), the acquired samples the loss compares with (None:
        supervised).
    gain: float (B,), the input's normalisation over the batch's (model units of the
        input = the batch's / gain); None: unchanged.
    weights: float (B, 1, H, W), the loss weight of each held-out sample (None: equal).
    """

    input: KspaceSample
    held_out: Tensor | None = None
    gain: Tensor | None = None
    weights: Tensor | None = None


class Supervised:
    """Learn from the fully sampled target (the module's ``loss`` weights)."""

    self_supervised = False
    needs_targets = True
    needs_kspace_output = False
    name = "supervised"

    def prepare(self, batch: KspaceSample) -> Step:
        return Step(batch)


class HeldOut:
    """Self-supervision by held-out acquired samples; a subclass says how they are drawn.

    Args:
        protect: what is never held out: "block" (a ``centre`` x ``centre`` block around
            k = 0, SSDU's small protected block) or "acs" (the slice's fully sampled
            centre columns; the block for masks without them).
        centre: the protected block's side in samples.
        resample: "fixed" (one split per slice, reproducible from the file name, slice
            and ``seed``: SSDU's) or "step" (a fresh split every step).
        splits: K fixed splits per slice (multi-mask SSDU); each step uses one of them,
            drawn at random. Only with ``resample: fixed``.
        loss: "l1l2" (SSDU's normalised L1 + L2: ||r||_1 / ||y||_1 + ||r||_2 / ||y||_2 on
            the held-out samples, per slice) or "l1" (the normalised L1 alone).
        renormalize: normalise what the model sees as at test time, from its own
            samples (the input set), so the held-out samples do not reach the model
            even through the scale; False keeps the scale of every acquired sample.
        seed: of the fixed splits.
        weighting: "none" or "density": each held-out sample's residual weighted by
            q^-1/2, q its probability of being held out (Millard & Chiew 2023's
            variable-density correction for Noisier2Noise / SSDU); equal for a uniform draw.
    """

    self_supervised = True
    needs_targets = False
    needs_kspace_output = True
    name = "held-out"

    def __init__(
        self,
        protect: str = "block",
        centre: int = 4,
        resample: str = "fixed",
        splits: int = 1,
        loss: str = "l1l2",
        renormalize: bool = True,
        seed: int = 0,
        weighting: str = "none",
    ):
        if protect not in PROTECTS:
            raise ConfigError(f"supervision.protect={protect!r}: one of {PROTECTS}")
        if resample not in RESAMPLES:
            raise ConfigError(f"supervision.resample={resample!r}: one of {RESAMPLES}")
        if loss not in SSDU_LOSSES:
            raise ConfigError(f"supervision.loss={loss!r}: one of {SSDU_LOSSES}")
        if centre < 0 or splits < 1:
            raise ConfigError("supervision.centre must be >= 0 and supervision.splits >= 1")
        if splits > 1 and resample != "fixed":
            raise ConfigError(
                f"supervision.splits={splits} are fixed splits per slice: set "
                "supervision.resample=fixed (resample=step draws a new split every step)"
            )
        self.protect, self.centre, self.resample = protect, centre, resample
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"supervision.weighting={weighting!r}: one of {WEIGHTINGS}")
        self.splits, self.loss, self.renormalize, self.seed = splits, loss, renormalize, seed
        self.weighting = weighting

    # --- the split ----------------------------------------------------------------------
    def protected(self, shape: tuple[int, int], num_low: int, device: Any = None) -> Tensor:
        """bool (H, W): the samples never held out."""
        h, w = shape
        keep = torch.zeros(h, w, dtype=torch.bool, device=device)
        if self.protect == "acs" and num_low > 0:
            start = (w - num_low + 1) // 2  # fastMRI's centre columns
            keep[:, start : start + num_low] = True
        elif self.centre:
            r0, c0 = h // 2 - self.centre // 2, w // 2 - self.centre // 2
            keep[r0 : r0 + self.centre, c0 : c0 + self.centre] = True
        return keep

    def draw(self, selectable: Tensor, generator: torch.Generator | None) -> Tensor:
        """bool (H, W) selectable samples -> bool (H, W) held-out ones (a subset)."""
        raise NotImplementedError

    def probability(self, selectable: Tensor) -> Tensor:
        """float (H, W): each selectable sample's probability of being held out (here the
        same for all: the draw's expected share)."""
        return selectable.float() * self.expected_share()

    def expected_share(self) -> float:
        raise NotImplementedError

    def _generator(self, fname: str, slice_num: int) -> torch.Generator | None:
        """The fixed split's generator for one slice (one of ``splits``, drawn from torch's
        RNG); None for a fresh draw from torch's RNG."""
        if self.resample == "step":
            return None
        k = int(torch.randint(self.splits, ())) if self.splits > 1 else 0
        # crc32, not hash(): Python salts string hashes per process.
        key = zlib.crc32(f"{fname}:{int(slice_num)}:{k}:{self.seed}".encode())
        return torch.Generator().manual_seed(key)

    def selectable(self, mask: Tensor, num_low_frequencies: Any) -> Tensor:
        """mask: bool (B, 1, H, W) acquired -> bool (B, H, W) on the CPU: the acquired
        samples that may be held out (all but the protected ones)."""
        b, _, h, w = mask.shape
        lows = torch.as_tensor(num_low_frequencies).reshape(-1).expand(b).tolist()
        keep = torch.stack([self.protected((h, w), int(n)) for n in lows])
        return mask[:, 0].cpu() & ~keep

    def split(
        self,
        mask: Tensor,
        num_low_frequencies: Any,
        fnames: list[str] | None = None,
        slice_nums: Any = None,
    ) -> tuple[Tensor, Tensor]:
        """mask: bool (B, 1, H, W) acquired -> (input, loss) masks: disjoint, their union
        the acquisition, the protected samples in the input. ``fnames`` / ``slice_nums``
        key the fixed splits (required with ``resample: fixed``)."""
        b = mask.shape[0]
        if self.resample == "fixed" and fnames is None:
            raise ValueError("fixed splits are keyed by file and slice: pass fnames, slice_nums")
        slice_nums = torch.as_tensor(slice_nums if slice_nums is not None else [0] * b)
        loss_mask = torch.zeros_like(mask)
        for i, selectable in enumerate(self.selectable(mask, num_low_frequencies)):
            if not selectable.any():
                continue
            name = fnames[i] if fnames is not None else ""
            generator = self._generator(name, int(slice_nums.reshape(-1)[i]))
            loss_mask[i, 0] = self.draw(selectable, generator).to(mask.device)
        return mask & ~loss_mask, loss_mask

    def prepare(self, batch: KspaceSample) -> Step:
        input_mask, held = self.split(
            batch.mask, batch.num_low_frequencies, list(batch.fname), batch.slice_num
        )
        kspace = apply_mask(batch.masked_kspace, input_mask)
        scale, gain = batch.scale, None
        if self.renormalize:
            # The data transform's scale is the RMS of what the model sees (over the
            # acquired samples, the mean image removed); the input set's is this much of it.
            norms = torch.view_as_real(kspace).flatten(1).norm(dim=1)
            full = torch.view_as_real(batch.masked_kspace).flatten(1).norm(dim=1)
            gain = (norms / full.clamp_min(1e-30)).clamp_min(1e-12)
            kspace = kspace / gain.reshape(-1, 1, 1, 1)
            scale = batch.scale * gain
        seen = batch._replace(masked_kspace=kspace, mask=input_mask, scale=scale)
        weights = None
        if self.weighting == "density":
            selectable = self.selectable(batch.mask, batch.num_low_frequencies)
            q = torch.stack([self.probability(s) for s in selectable])[:, None]
            q = q.to(batch.mask.device)
            weights = torch.where(held, q.clamp_min(1e-6).rsqrt(), 0.0)
        return Step(seen, held, gain, weights)

    # --- the loss -----------------------------------------------------------------------
    def held_out_loss(
        self, predicted: Tensor, acquired: Tensor, loss_mask: Tensor, weights: Tensor | None = None
    ) -> Tensor:
        """Normalised error on the held-out samples, per slice, mean over the batch.
        predicted, acquired: complex (B, C, H, W); loss_mask: bool (B, 1, H, W);
        weights: float (B, 1, H, W) per-sample weights of residual and reference."""
        held = loss_mask.expand_as(acquired)
        zero = torch.zeros((), dtype=acquired.dtype, device=acquired.device)
        residual = torch.where(held, predicted - acquired, zero)
        reference = torch.where(held, acquired, zero)
        if weights is not None:
            residual, reference = residual * weights, reference * weights
        residual = torch.view_as_real(residual).flatten(1)
        reference = torch.view_as_real(reference).flatten(1)
        l1 = residual.abs().sum(1) / reference.abs().sum(1).clamp_min(1e-12)
        if self.loss == "l1":
            return l1.mean()
        l2 = residual.norm(dim=1) / reference.norm(dim=1).clamp_min(1e-12)
        return (l1 + l2).mean()

    def terms(self, kspace: Tensor, acquired: Tensor, step: Step) -> dict[str, Tensor]:
        """kspace: complex (B, C, H, W), the model's (the input's units); acquired: the
        slice's acquired k-space (the batch's units) -> {name: loss, "loss": total}."""
        if step.gain is not None:
            acquired = acquired / step.gain.reshape(-1, 1, 1, 1)
        loss = self.held_out_loss(kspace, acquired, step.held_out, step.weights)
        return {self.name: loss, "loss": loss}


class SSDU(HeldOut):
    """SSDU's split: held-out points drawn with a variable density.

    Args:
        loss_fraction: share of the selectable acquired samples (outside the protected
            ones) held out for the loss (SSDU's rho, 0.4).
        selection: "gaussian" (SSDU's variable density: a held-out sample is drawn with
            probability from a 2-D Gaussian centred on k = 0, std = (n - 1) / std_scale
            per axis) or "uniform" (every selectable acquired sample alike).
        std_scale: the Gaussian's width divisor (SSDU: 4).
        **held_out: the arguments of :class:`HeldOut`.
    """

    name = "ssdu"

    def __init__(
        self,
        loss_fraction: float = 0.4,
        selection: str = "gaussian",
        std_scale: float = 4.0,
        **held_out: Any,
    ):
        super().__init__(**held_out)
        if not 0.0 < loss_fraction < 1.0:
            raise ConfigError(f"supervision.loss_fraction={loss_fraction}: between 0 and 1")
        if selection not in SELECTIONS:
            raise ConfigError(f"supervision.selection={selection!r}: one of {SELECTIONS}")
        if std_scale <= 0:
            raise ConfigError("supervision.std_scale must be > 0")
        self.loss_fraction, self.selection, self.std_scale = loss_fraction, selection, std_scale

    def weights(self, shape: tuple[int, int]) -> Tensor:
        """float (H, W): how likely each sample is to be held out (before the mask)."""
        h, w = shape
        if self.selection == "uniform":
            return torch.ones(h, w)
        rows = torch.arange(h, dtype=torch.float32) - h // 2
        cols = torch.arange(w, dtype=torch.float32) - w // 2
        sr, sc = (h - 1) / self.std_scale, (w - 1) / self.std_scale
        return torch.exp(-(rows[:, None] ** 2) / (2 * sr**2) - cols[None, :] ** 2 / (2 * sc**2))

    def expected_share(self) -> float:
        return self.loss_fraction

    def probability(self, selectable: Tensor) -> Tensor:
        # The draw's inclusion probability, to first order: count x w / sum(w), at most 1
        # (exact for the uniform draw).
        count = round(self.loss_fraction * int(selectable.sum()))
        w = self.weights(tuple(selectable.shape)) * selectable
        return (count * w / w.sum().clamp_min(1e-12)).clamp(max=1.0)

    def draw(self, selectable: Tensor, generator: torch.Generator | None) -> Tensor:
        count = round(self.loss_fraction * int(selectable.sum()))
        held = torch.zeros_like(selectable)
        if count:
            # Weighted draws without replacement: SSDU's rejection loop, in one call.
            p = (self.weights(tuple(selectable.shape)) * selectable).flatten()
            picked = torch.multinomial(p, count, replacement=False, generator=generator)
            held.view(-1)[picked] = True
        return held


class MaskedModeling(HeldOut):
    """SimMIM's patch masks over the acquired samples (``supervision=mim``).

    A ``ratio`` of the ``patch_size`` x ``patch_size`` patches tiling the k-space grid
    (SimMIM's exact count, uniformly) is hidden: their acquired samples are held out.
    A patch left without an input sample gets SimMIM's mask token where the encoder sees
    k-space (``model.domain=kspace``); other networks see zeros there.

    Args:
        patch_size: the mask's patch side in k-space samples.
        ratio: share of the patches hidden.
        resample: as :class:`HeldOut`'s, but ``step`` by default (SimMIM draws every step).
        **held_out: the other arguments of :class:`HeldOut`.
    """

    name = "mim"

    def __init__(
        self, patch_size: int = 8, ratio: float = 0.4, resample: str = "step", **held_out: Any
    ):
        super().__init__(resample=resample, **held_out)
        if patch_size < 1:
            raise ConfigError(f"supervision.patch_size={patch_size}: must be >= 1")
        if not 0.0 < ratio < 1.0:
            raise ConfigError(f"supervision.ratio={ratio}: between 0 and 1")
        self.patch_size, self.ratio = patch_size, ratio

    def patches(self, shape: tuple[int, int], generator: torch.Generator | None) -> Tensor:
        """bool (H, W): the hidden patches (the grid tiled from its top-left corner)."""
        h, w = shape
        p = self.patch_size
        rows, cols = -(-h // p), -(-w // p)
        count = round(self.ratio * rows * cols)
        order = torch.randperm(rows * cols, generator=generator)
        hidden = torch.zeros(rows * cols, dtype=torch.bool)
        hidden[order[:count]] = True
        grid = hidden.reshape(rows, cols).repeat_interleave(p, 0).repeat_interleave(p, 1)
        return grid[:h, :w]

    def expected_share(self) -> float:
        return self.ratio

    def draw(self, selectable: Tensor, generator: torch.Generator | None) -> Tensor:
        return selectable & self.patches(tuple(selectable.shape), generator)


class Joint:
    """Joint semi-supervised training (``supervision=joint``): every step, the supervised
    loss (the module's ``loss`` weights against the target) on a batch of the labelled
    training volumes plus ``weight`` x a label-free loss (``label_free``: SSDU or masked
    modeling) on a batch of the pool (``data.pool_path``), in one backward pass, as
    Noise2Recon / VORTEX and JSSL train. The labelled batch comes first in the module's
    logs (``train/supervised``), the pool's second (``train/<label-free name>``).

    Args:
        label_free: the pool's strategy, as the ``supervision`` group configures it.
        weight: the label-free loss's weight.
    """

    self_supervised = False
    needs_targets = True
    needs_kspace_output = True
    needs_pool = True
    name = "joint"

    def __init__(self, label_free: dict | HeldOut | None = None, weight: float = 1.0):
        if isinstance(label_free, dict) or label_free is None:
            label_free = build_supervision(label_free or {"_target_": f"{__name__}.SSDU"})
        if not isinstance(label_free, HeldOut):
            raise ConfigError(
                f"supervision.label_free: a label-free strategy (SSDU, MaskedModeling), "
                f"got {type(label_free).__name__}"
            )
        if weight < 0:
            raise ConfigError(f"supervision.weight must be >= 0, got {weight}")
        self.label_free, self.weight = label_free, weight

    def prepare(self, batch: KspaceSample) -> Step:
        return Step(batch)


# Checkpoints written before the group had _target_ name their strategy.
LEGACY = {"supervised": Supervised, "ssdu": SSDU, "mim": MaskedModeling}
# The strategies a checkpoint's hyper-parameters may name (kspace_mim.checkpoints).
STRATEGIES = (*LEGACY.values(), Joint)


def build_supervision(config: dict | None) -> Supervised | HeldOut | Joint:
    """``supervision`` config (``_target_`` and its arguments) -> its object."""
    config = dict(config or {"_target_": f"{__name__}.Supervised"})
    if "_target_" in config:
        # Nested strategies (Joint's label_free) are built by their owner, not by Hydra.
        try:
            return hydra.utils.instantiate(config, _convert_="all", _recursive_=False)
        except InstantiationException as err:
            if isinstance(err.__cause__, ConfigError):  # our own one-line message
                raise err.__cause__ from None
            raise
    name = config.pop("name", "supervised")
    if name not in LEGACY:
        raise ConfigError(f"supervision={name!r}: one of {tuple(LEGACY)}")
    if name == "ssdu":  # the old SSDU: the ACS columns protected, a fresh split each step
        config = {"protect": "acs", "resample": "step", "renormalize": False, **config}
    return LEGACY[name](**config)
