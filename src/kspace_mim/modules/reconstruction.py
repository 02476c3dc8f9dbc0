"""The reconstruction system: one LightningModule for every model family.

It receives the network as a config (``net``: a ``_target_`` mapping, the ``model`` group)
and owns everything else: supervision, losses, per-volume fastMRI metrics (DDP-safe),
pictures, optimiser and schedule, checkpoints. A family is an ``nn.Module`` with
``reconstruct(batch)`` (:mod:`kspace_mim.models.family`). Port of the *algorithm* of
fastMRI's ``MriModule`` (its Lightning 1.x hooks are gone in 2.x); Lightning's "systems vs
models" split.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
import yaml
from fastmri.losses import SSIMLoss
from hydra.errors import InstantiationException
from lightning.pytorch.utilities import grad_norm
from torch import Tensor

from kspace_mim.config import CONFIG_DIR, ConfigError
from kspace_mim.data.transforms import KspaceSample
from kspace_mim.figures import comparison_figure, save_figure
from kspace_mim.metrics import VolumeMetrics, kspace_picture, kspace_ssim
from kspace_mim.models.family import (
    NetFacts,
    ReconOutput,
    centre_slice,
    zero_filled_image,
)
from kspace_mim.supervision import Joint, build_supervision

log = logging.getLogger(__name__)
# The held-out validation split's seed (fixed: every run and epoch holds out the same).
HELDOUT_SEED = 20201

DEFAULT_LOSS = {"kspace_l1": 0.0, "image_l1": 1.0, "image_ssim": 0.0}
# The optim group's default (conf/optim/warmup_cosine.yaml); a dict without _target_ is
# read as its arguments (checkpoints written before the group existed).
DEFAULT_OPTIM = {"_target_": "kspace_mim.optim.WarmupCosine"}


class NonFiniteMetricError(FloatingPointError):
    """A validation or test metric that is NaN for some volume."""


def check_finite_metrics(result: dict[str, Any], stage: str, step: int) -> None:
    """Stop on a NaN metric, naming the volumes: a NaN would freeze best-checkpoint
    selection at its first checkpoint while the run reported "selected on validation".
    (An infinite PSNR, a volume reconstructed exactly, is a number.)"""
    bad = [
        f"{fname} ({', '.join(k for k, v in metrics.items() if math.isnan(v))})"
        for fname, metrics in result["volumes"].items()
        if any(math.isnan(v) for v in metrics.values())
    ]
    if bad:
        raise NonFiniteMetricError(
            f"{stage} metrics are NaN at step {step} for {len(bad)} volume(s): "
            f"{'; '.join(bad[:5])}; the checkpoint choice would be meaningless, so the run "
            "stops (a NaN reconstruction, or a target that is all zeros)"
        )


class ReconstructionModule(L.LightningModule):
    """The system every model family trains and evaluates in.

    Args:
        net: the network, a ``_target_`` mapping (the ``model`` config group); built here
            with ``facts`` (:class:`~kspace_mim.models.family.NetFacts`) added. Kept as a
            mapping in the hyper-parameters, so a checkpoint rebuilds it from its own file
            (through the allowlist of :mod:`kspace_mim.checkpoints`).
        num_coils: coils of the data (after compression; slices x coils with adjacent
            slices); img_size: model grid (H, W).
        loss: weights ``kspace_l1`` (SimMIM's, on unacquired samples), ``image_l1`` and
            ``image_ssim`` (on the image after data consistency, data range = volume max).
        optim: the optimiser and its schedule, a config of the ``optim`` group
            (``_target_`` a recipe of :mod:`kspace_mim.optim` and its arguments; default
            AdamW with warm-up and cosine).
        data: the data settings the model is trained with (``challenge``, ``normalize``,
            ``crop_size``, ``virtual_coils``, ``adjacent_slices``, ``grid``, ``readout``:
            :func:`data_settings`), saved with the hyperparameters so that ``reconstruct``
            rebuilds the inputs from the checkpoint alone.
        on_nonfinite: a NaN / Inf loss "stop"s training (naming the batch) or "skip"s
            the optimizer step.
        supervision: what training learns from, a config of the ``supervision`` group
            (:mod:`kspace_mim.supervision`: ``_target_`` Supervised, the default, SSDU or
            MaskedModeling, and its arguments).
    """

    def __init__(
        self,
        net: dict[str, Any],
        num_coils: int = 0,
        img_size: tuple[int, int] = (0, 0),
        loss: dict | None = None,
        optim: dict | None = None,
        data: dict | None = None,
        on_nonfinite: str = "stop",
        supervision: dict | None = None,
        heldout_validation: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"train.on_nonfinite must be stop or skip, got {on_nonfinite!r}")
        # The data settings the model was trained with (challenge, normalize, ...).
        self.data_config: dict[str, Any] = dict(data or {})
        # Slices per input stack (data.adjacent_slices on either side of the middle one).
        self.slices = 2 * int(self.data_config.get("adjacent_slices") or 0) + 1
        self.num_coils = num_coils
        self.img_size = tuple(img_size)
        self.net = build_net(net, NetFacts(num_coils, self.img_size, self.slices))
        # Validated only, never trained: a network that says so, or one without weights.
        self.trainable = bool(getattr(self.net, "trainable", True)) and any(
            p.requires_grad for p in self.net.parameters()
        )
        self.has_kspace_output = bool(getattr(self.net, "has_kspace_output", True))
        self.supervision = build_supervision(supervision)
        if self.supervision.needs_kspace_output and not self.has_kspace_output:
            raise ConfigError(
                f"supervision={self.supervision.name} learns in k-space: "
                f"{type(self.net).__name__} outputs an image only; model=swin, vit, varnet "
                "or unrolled can"
            )
        self.on_nonfinite = on_nonfinite
        self.loss_weights = {**DEFAULT_LOSS, **(loss or {})}
        unknown = set(self.loss_weights) - set(DEFAULT_LOSS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; known: {sorted(DEFAULT_LOSS)}")
        optim = dict(optim or {})
        self.optim = {**DEFAULT_OPTIM, **optim} if "_target_" not in optim else optim
        self.ssim_loss = SSIMLoss()
        self.val_metrics = VolumeMetrics()
        # Label-free validation: a fixed share of each validation slice's acquired samples
        # held out (uniform, outside the fully sampled centre, keyed by file and slice),
        # the rest reconstructed, the normalised error on the held-out ones logged as
        # val/heldout_loss (zero-shot SSDU's stopping rule). Needs k-space output.
        self.heldout_validation = (
            build_supervision(
                {
                    "_target_": "kspace_mim.supervision.SSDU",
                    "loss_fraction": heldout_validation,
                    "selection": "uniform",
                    "protect": "acs",
                    "resample": "fixed",
                    "seed": HELDOUT_SEED,
                }
            )
            if heldout_validation
            else None
        )
        if self.heldout_validation is not None and not self.has_kspace_output:
            raise ConfigError(
                f"validation.heldout={heldout_validation} scores held-out k-space samples: "
                f"{type(self.net).__name__} outputs an image only"
            )
        self._heldout: list[tuple[str, int, float]] = []
        self.best: dict[str, float] = {}
        self.last_metrics: dict[str, dict[str, Any]] = {}
        self._figure_batch: tuple | None = None

    @property
    def varying_coils(self) -> bool:
        """Whether the network takes any coil count (batches of one count each)."""
        return bool(getattr(self.net, "varying_coils", True))

    def setup(self, stage: str) -> None:
        # In place (``nn.Module.compile``): the state dict keeps its keys, so compiled and
        # uncompiled configs share checkpoints.
        if getattr(self.net, "compile_network", False):
            self.net.compile()

    # --- checkpoints ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The class, so that `reconstruct` rebuilds the model from the file alone (its
        # network and data settings are hyperparameters).
        cls = type(self)
        checkpoint["kspace_mim_class"] = f"{cls.__module__}.{cls.__qualname__}"

    # --- the network --------------------------------------------------------------------
    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        """The network's reconstruction of ``batch`` (image, and k-space where it has one)."""
        return self.net.reconstruct(batch)

    def centre_slice(self, batch: KspaceSample) -> KspaceSample:
        """The slice being reconstructed (the middle of a stack of adjacent slices)."""
        return centre_slice(batch, self.slices)

    def zero_filled_image(self, batch: KspaceSample, index: int | None = None) -> Tensor:
        """The zero-filled image of the middle slice (or of slice ``index`` of the stack)."""
        return zero_filled_image(batch, self.slices, index)

    # --- losses -----------------------------------------------------------------------
    def loss(self, batch: KspaceSample, out: ReconOutput) -> dict[str, Tensor]:
        w = self.loss_weights
        batch = self.centre_slice(batch)
        terms: dict[str, Tensor] = {}
        if w["kspace_l1"] and out.prediction is not None:
            # SimMIM's masked L1: mean over unacquired samples and real/imag channels.
            missing = (~batch.mask).unsqueeze(-1).to(torch.float32)  # (B, 1, H, W, 1)
            diff = torch.view_as_real(out.prediction - batch.kspace).abs()
            denom = missing.sum() * diff.shape[1] * 2 + 1e-5
            terms["kspace_l1"] = (diff * missing).sum() / denom
        if w["image_l1"] or w["image_ssim"]:
            max_value = batch.max_value.reshape(-1, 1, 1).clamp_min(1e-12)
            image, target = out.image / max_value, batch.target / max_value
            if w["image_l1"] and out.normalization is not None:
                # In the network's own input normalisation (fastMRI's U-Net loss).
                mean, std = out.normalization
                normalized_target = ((batch.target - mean) / std).clamp(-6, 6)
                terms["image_l1"] = torch.nn.functional.l1_loss(
                    (out.image - mean) / std, normalized_target
                )
            elif w["image_l1"]:
                terms["image_l1"] = torch.nn.functional.l1_loss(image, target)
            if w["image_ssim"]:
                ones = torch.ones(image.shape[0], device=image.device)
                terms["image_ssim"] = self.ssim_loss(image[:, None], target[:, None], ones)
        if not terms:
            only_image = out.prediction is None
            raise ValueError(
                f"{type(self.net).__name__} outputs an image only: it needs loss.image_l1 or "
                f"loss.image_ssim > 0 (got {w})"
                if only_image
                else f"every loss weight is zero for this model: {w}"
            )
        terms["loss"] = sum(w[k] * v for k, v in terms.items())
        return terms

    # --- training ---------------------------------------------------------------------
    def training_terms(self, batch: KspaceSample) -> dict[str, Tensor]:
        """What this step learns from (the supervision strategy): the model reconstructs
        the strategy's input; the loss is the strategy's on the held-out samples, or the
        ``loss`` weights against the fully sampled target."""
        if isinstance(batch, dict):  # joint training: a labelled batch and a pool batch
            return self.joint_terms(batch["labelled"], batch["pool"])
        if getattr(self.supervision, "needs_pool", False):
            raise ConfigError(
                f"supervision={self.supervision.name} learns from a pool beside the labelled "
                "volumes: set data.pool_path (e.g. the label-free copy of train)"
            )
        step = self.supervision.prepare(batch)
        out = self.reconstruct(step.input)
        if not self.supervision.self_supervised:
            return self.loss(batch, out)
        return self.supervision.terms(out.kspace, self.centre_slice(batch).masked_kspace, step)

    def joint_terms(self, labelled: KspaceSample, pool: KspaceSample) -> dict[str, Tensor]:
        """The supervised loss on ``labelled`` plus the weighted label-free loss on
        ``pool`` (:class:`kspace_mim.supervision.Joint`)."""
        joint = self.supervision
        if not isinstance(joint, Joint):
            raise ConfigError(
                "data.pool_path is set: a pool trains only with supervision=joint (got "
                f"supervision={self.supervision.name})"
            )
        supervised = self.loss(labelled, self.reconstruct(labelled))
        step = joint.label_free.prepare(pool)
        out = self.reconstruct(step.input)
        free = joint.label_free.terms(out.kspace, self.centre_slice(pool).masked_kspace, step)
        total = supervised["loss"] + joint.weight * free["loss"]
        return {
            "supervised": supervised["loss"],
            joint.label_free.name: free["loss"],
            "loss": total,
        }

    def training_step(self, batch: KspaceSample | dict, batch_idx: int) -> Tensor | None:
        terms = self.training_terms(batch)
        if isinstance(batch, dict):
            batch = batch["labelled"]
        bs = batch.masked_kspace.shape[0]
        if not torch.isfinite(terms["loss"]):
            slices = zip(batch.fname, batch.slice_num, strict=True)
            where = ", ".join(f"{f} slice {int(s)}" for f, s in slices)
            loss = terms["loss"].item()
            message = f"non-finite loss {loss} at step {self.global_step} on {where}"
            if self.on_nonfinite == "skip":
                # Returning None skips the optimizer step (single process; under DDP every
                # rank must skip together, so prefer `stop` there).
                log.warning("%s: step skipped (train.on_nonfinite=skip)", message)
                return None
            raise FloatingPointError(f"{message}; train.on_nonfinite=skip skips such steps")
        for name, value in terms.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=bs)
        return terms["loss"]

    def on_before_optimizer_step(self, optimizer) -> None:
        norms = grad_norm(self, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"])

    def configure_optimizers(self) -> dict[str, Any]:
        recipe = hydra.utils.instantiate(self.optim)
        return recipe([p for p in self.parameters() if p.requires_grad], self.trainer)

    # --- evaluation -------------------------------------------------------------------
    def heldout_losses(self, batch: KspaceSample) -> list[float]:
        """Per slice: the normalised error on the held-out share of the acquired samples,
        the network given the rest (only ``masked_kspace`` and ``mask`` are read: never
        a fully sampled sample, never the target)."""
        assert self.heldout_validation is not None
        acquired = batch._replace(kspace=batch.masked_kspace, target=torch.zeros(0, 0))
        step = self.heldout_validation.prepare(acquired)
        kspace = self.reconstruct(step.input).kspace
        reference = self.centre_slice(acquired).masked_kspace
        if step.gain is not None:
            reference = reference / step.gain.reshape(-1, 1, 1, 1)
        return [
            float(
                self.heldout_validation.held_out_loss(
                    kspace[i : i + 1], reference[i : i + 1], step.held_out[i : i + 1]
                )
            )
            for i in range(kspace.shape[0])
        ]

    def _eval_step(self, batch: KspaceSample, batch_idx: int, stage: str) -> None:
        if self.heldout_validation is not None and stage == "val":
            losses = self.heldout_losses(batch)
            slices = zip(batch.fname, batch.slice_num, losses, strict=True)
            self._heldout += [(f, int(s), value) for f, s, value in slices]
        if batch.target.numel() == 0:
            return  # challenge files: no target to score against
        out = self.reconstruct(batch)
        full_kspace = self.centre_slice(batch).kspace
        image = out.image.float().cpu().numpy()
        target = batch.target.float().cpu().numpy()
        for i, (fname, slice_num) in enumerate(zip(batch.fname, batch.slice_num, strict=True)):
            k_ssim = None
            if out.kspace is not None:
                k_ssim = kspace_ssim(out.kspace[i], full_kspace[i])
            max_value = float(batch.max_value[i]) or float(target[i].max())
            self.val_metrics.update(fname, int(slice_num), target[i], image[i], max_value, k_ssim)
        if batch_idx == 0 and self._figure_batch is None:
            self._figure_batch = (batch, out)

    def validation_step(self, batch: KspaceSample, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: KspaceSample, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _gather(self) -> dict[str, Any]:
        """Merge every rank's per-slice statistics; every rank gets the same result."""
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            states = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(states, self.val_metrics.state())
            for state in states:
                self.val_metrics.merge(state)
        result = self.val_metrics.compute()
        self.val_metrics.reset()
        return result

    def _gather_heldout(self) -> float | None:
        """The mean held-out loss over every rank's validation slices (None: not scored)."""
        values = self._heldout
        self._heldout = []
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            states = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(states, values)
            values = [v for state in states for v in state]
        unique = {(f, s): v for f, s, v in values}  # a padded DDP sampler repeats slices
        return sum(unique.values()) / len(unique) if unique else None

    def _eval_epoch_end(self, stage: str) -> None:
        result = self._gather()
        heldout = self._gather_heldout() if stage == "val" else None
        if heldout is not None:
            # Logged whether or not the validation files have targets (label-free runs).
            self.log("val/heldout_loss", heldout, sync_dist=False)
            if result["num_volumes"] == 0:
                self.last_metrics[stage] = {"heldout_loss": heldout}
                return
            result["heldout_loss"] = heldout
        if result["num_volumes"] == 0:
            return
        check_finite_metrics(result, stage, self.global_step)
        self.last_metrics[stage] = result
        scalars = {k: v for k, v in result.items() if k != "volumes"}
        # Identical on every rank already: no sync_dist (ranks logging different keys hang).
        for name, value in scalars.items():
            self.log(f"{stage}/{name}", float(value), prog_bar=name == "ssim", sync_dist=False)
        if stage == "val" and not self.trainer.sanity_checking:
            self.best["ssim"] = max(self.best.get("ssim", -math.inf), result["ssim"])
            self.log("val/ssim_best", self.best["ssim"])
        self._save_figure(stage)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def _save_figure(self, stage: str) -> None:
        if self._figure_batch is None:
            return
        batch, out = self._figure_batch
        self._figure_batch = None
        if not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return
        i = 0
        target = batch.target[i].float().cpu().numpy()
        recon = out.image[i].float().cpu().numpy()
        zero_filled = self.zero_filled_image(batch)[i].float().cpu().numpy()
        k_zf = k_rec = None
        if out.kspace is not None:
            k_zf = kspace_picture(self.centre_slice(batch).masked_kspace[i])
            k_rec = kspace_picture(out.kspace[i])
        metrics = {
            "ssim": self.last_metrics[stage]["ssim"],
            "psnr": self.last_metrics[stage]["psnr"],
        }
        fig = comparison_figure(
            target,
            zero_filled,
            recon,
            k_zf,
            k_rec,
            f"{stage} epoch {self.current_epoch} {batch.fname[i]}:{int(batch.slice_num[i])}",
            metrics,
        )
        root = Path(self.trainer.default_root_dir)
        path = save_figure(fig, root / "figures" / f"{stage}_epoch{self.current_epoch:03d}.png")
        for logger in self.loggers:
            if hasattr(logger, "log_image"):  # W&B
                logger.log_image(key=f"{stage}/panels", images=[str(path)], step=self.global_step)
            elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
                import matplotlib.pyplot as plt

                pixels = plt.imread(path)[..., :3]
                logger.experiment.add_image(
                    f"{stage}/panels", np.transpose(pixels, (2, 0, 1)), self.global_step
                )


def build_net(net: Any, facts: NetFacts) -> torch.nn.Module:
    """The network of a ``model`` config (a ``_target_`` mapping), built with ``facts``."""
    if not isinstance(net, dict) or not isinstance(net.get("_target_"), str):
        raise ConfigError(
            f"model: a mapping with a _target_ (a network class), got {net!r}; choose one "
            "with model=<name> (conf/model/)"
        )
    try:
        # Partial, then called: the facts stay a dataclass (Hydra would make it a dict).
        build = hydra.utils.instantiate(net, _partial_=True, _convert_="all")
    except InstantiationException as err:
        raise ConfigError(f"model: {err}") from None
    try:
        return build(facts=facts)
    except TypeError as err:
        raise ConfigError(f"model={net['_target_']}: {err}") from None


def data_settings(cfg: Any) -> dict[str, Any]:
    """The data settings a model is trained with (saved in its checkpoint, so that
    ``reconstruct`` rebuilds the inputs from the file alone), from a train config."""
    return {
        "challenge": cfg.data.challenge,
        "normalize": bool(cfg.augmentation.normalize),
        "crop_size": cfg.data.crop_size,
        "virtual_coils": cfg.data.virtual_coils,
        "adjacent_slices": cfg.data.adjacent_slices,
        "grid": cfg.data.grid,
        "readout": cfg.data.readout,
    }


def system_of(
    model: str,
    num_coils: int,
    img_size: tuple[int, int],
    net: dict[str, Any] | None = None,
    **system: Any,
) -> ReconstructionModule:
    """The system around the network of ``conf/model/<model>.yaml`` (its arguments, with
    ``net`` overriding them): a model outside the command line (notebooks, tests).
    ``system``: the other arguments of :class:`ReconstructionModule`."""
    path = CONFIG_DIR / "model" / f"{model}.yaml"
    if not path.is_file():
        raise ConfigError(f"model={model}: no {path.name} in {path.parent}")
    config = dict(yaml.safe_load(path.read_text())["model"])
    return ReconstructionModule({**config, **(net or {})}, num_coils, img_size, **system)
