"""``bench memory``: each family's peak training memory before a run is launched.

On a CUDA device it is measured: ``torch.cuda.max_memory_allocated`` over a training step
(forward, loss, backward, AdamW), after one step that creates the optimizer state. On the
CPU it is estimated from what a training step must hold at its peak (the end of the
forward): the weights, their gradients and AdamW's two moments (float32), the batch, and
every tensor autograd keeps for the backward pass, counted once per storage in the dtype
autocast gives it (``torch.autograd.graph.saved_tensors_hooks``; activation checkpointing
keeps only its regions' inputs, so it counts what a checkpointed run keeps). The transient
buffers of the backward pass and the allocator's caching are not counted, and the CPU's
autocast and attention kernels save other tensors than CUDA's: against an H100's
measured peaks (base presets, 320 x 320 and the unrolled network at 640 x 368, 15 coils,
bf16) the estimate came to 0.78-1.19 of the measured value. Written here because neither
Lightning nor torch estimates a step's memory without the device.
"""

from __future__ import annotations

from typing import Any

import torch

from kspace_mim.bench.train import parse_grid, training_setup
from kspace_mim.inference import AUTOCAST

# Lightning's precision names -> the autocast dtype of the step (None: float32): the table
# reconstruct uses.
PRECISIONS = AUTOCAST


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def saved_for_backward(step_forward: Any, skip: set[tuple[int, int]]) -> int:
    """Bytes of the tensors autograd saves for backward while ``step_forward()`` runs,
    each storage once, leaving out the storages in ``skip`` (the weights)."""
    seen: set[tuple[int, int]] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in skip and t.device.type != "meta":
            seen.add(key)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step_forward()
    return sum(nbytes for _, nbytes in seen)


def training_memory(
    name: str,
    size: str,
    grid: str | int,
    coils: int,
    batch: int,
    precision: str = "bf16-mixed",
    overrides: tuple[str, ...] = (),
    device: str | None = None,
    cpu_pixels: int = 320 * 320,
) -> dict[str, Any]:
    """Peak training memory (GiB) of family ``name`` at preset ``size`` for ``batch`` slices
    of ``coils`` coils on ``grid`` (``"640x368"``): measured on CUDA, estimated on the CPU
    (``method`` says which; the parts of an estimate are given too). On the CPU a grid of
    more than ``cpu_pixels`` is traced with both sides halved until it has at most that
    many, its activations scaled by the pixel ratio (convolutional and windowed networks
    keep activations in proportion to the pixels): a knee-sized VarNet's CPU forward alone
    would need more memory than a workstation has."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: one of {', '.join(PRECISIONS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = PRECISIONS[precision]
    model, opt, sample, _ = training_setup(name, size, grid, coils, batch, device, overrides)
    model.train()

    autocast = dtype is not None

    def step_of(system: Any, batch_: Any) -> Any:
        """One training forward (to the loss) of ``system`` on ``batch_``."""

        def forward() -> torch.Tensor:
            with torch.autocast(device, dtype=dtype or torch.float32, enabled=autocast):
                return system.loss(batch_, system.reconstruct(batch_))["loss"]

        return forward

    forward = step_of(model, sample)
    params = [p for p in model.parameters() if p.requires_grad]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    out: dict[str, Any] = {
        "family": name,
        "size": size,
        "grid": list(parse_grid(grid)),
        "coils": coils,
        "batch": batch,
        "precision": precision,
        "overrides": list(overrides),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if device == "cuda":
        for step in range(2):  # the first step creates AdamW's state
            if step == 1:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            forward().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["method"] = f"measured ({torch.cuda.get_device_name()})"
        return out
    h, w = parse_grid(grid)
    traced = (h, w)
    while traced[0] * traced[1] > cpu_pixels:
        traced = (traced[0] // 2, traced[1] // 2)
    if traced != (h, w):
        model, _, sample_t, _ = training_setup(
            name, size, f"{traced[0]}x{traced[1]}", coils, batch, device, overrides
        )
        model.train()
        forward = step_of(model, sample_t)
    skip = {_storage_key(p) for p in model.parameters()}
    saved = saved_for_backward(forward, skip) * (h * w) / (traced[0] * traced[1])
    trainable = sum(p.numel() for p in params) * 4  # float32
    batch_bytes = sum(t.numel() * t.element_size() for t in sample if torch.is_tensor(t))
    parts = {
        "weights_gib": weights / 2**30,
        "gradients_gib": trainable / 2**30,
        "optimizer_gib": 2 * trainable / 2**30,  # AdamW: two moments per weight
        "batch_gib": batch_bytes / 2**30,
        "saved_for_backward_gib": saved / 2**30,
    }
    out.update(parts)
    out["peak_gib"] = sum(parts.values())
    out["method"] = "estimate (CPU: weights, gradients, AdamW state, batch, saved activations"
    out["method"] += f", traced at {traced[0]}x{traced[1]} and scaled)" if traced != (h, w) else ")"
    out["traced_grid"] = list(traced)
    return out


def knee_grid(name: str) -> tuple[int, int]:
    """The grid family ``name`` trains on with the knee download (``experiment=
    knee_multicoil``): the file's own 640 x 368 k-space for native-grid families, the
    square crop for the others."""
    from kspace_mim.config import compose

    cfg = compose(["experiment=knee_multicoil", f"model={name}"])
    if cfg.data.grid == "native":
        return 640, 368
    return int(cfg.data.crop_size), int(cfg.data.crop_size)
