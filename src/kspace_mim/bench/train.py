"""``bench train``: one training step per encoder, each in its own process (its own peak
memory): slices/s, parameters, FLOPs, memory, and on a GPU the fraction of bf16 peak."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch

from kspace_mim.bench.timing import sync, timed
from kspace_mim.config import model_names

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, no sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def bf16_peak_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak, or None for a card not in the table."""
    for key, peak in BF16_PEAK_TFLOPS.items():  # most specific names first
        if key in device_name:
            return peak
    return None


# Every trainable family, read from its config group (a new family is benchmarked too).
ENCODERS = tuple(model_names(trainable=True))


def parse_grid(grid: str | int) -> tuple[int, int]:
    """ "128" -> (128, 128); "640x368" -> (640, 368)."""
    parts = [int(p) for p in str(grid).lower().split("x")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def training_setup(
    name: str,
    size: str,
    grid: str | int,
    coils: int,
    batch: int,
    device: str,
    overrides: tuple[str, ...] = (),
) -> tuple:
    """A family's system (its config's network, loss and recipe) on ``device``, AdamW, and
    a random batch of ``batch`` slices of ``coils`` coils on ``grid`` (every 4th column and
    8 centre columns acquired): (model, optimizer, sample, generator)."""
    from omegaconf import OmegaConf

    from kspace_mim.config import compose
    from kspace_mim.data.transforms import KspaceSample
    from kspace_mim.modules.reconstruction import ReconstructionModule

    h, w = parse_grid(grid)
    cfg = compose([f"model={name}", f"model.size={size}", *overrides])
    model = ReconstructionModule(
        OmegaConf.to_container(cfg.model, resolve=True),
        coils,
        (h, w),
        loss=dict(cfg.loss),
        optim=dict(cfg.optim),
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    kspace = torch.randn(batch, coils, h, w, dtype=torch.complex64, generator=g)
    mask = torch.zeros(batch, 1, h, w, dtype=torch.bool)
    mask[..., ::4] = True
    mask[..., w // 2 - 4 : w // 2 + 4] = True  # a fully sampled centre (coil maps)
    sample = KspaceSample(
        masked_kspace=torch.where(mask, kspace, 0),
        mask=mask,
        kspace=kspace,
        target=torch.rand(batch, h, w, generator=g),
        scale=torch.ones(batch),
        offset=torch.zeros(batch, coils, dtype=torch.complex64),
        max_value=torch.ones(batch),
        crop_size=torch.tensor([[h, w]] * batch),
        fname=["bench.h5"] * batch,
        slice_num=torch.arange(batch),
        num_low_frequencies=torch.full((batch,), 8),
    )
    sample = KspaceSample(*(x.to(device) if torch.is_tensor(x) else x for x in sample))
    return model, opt, sample, g


def train_step_rate(
    name: str,
    size: str,
    grid: str | int,
    coils: int,
    batch: int,
    repeats: int,
    device: str,
    overrides: tuple[str, ...] = (),
) -> dict:
    """One encoder's training step (forward, loss, backward, optimizer) on a random batch.
    ``overrides``: config overrides of the encoder (e.g. ``model.checkpointing=true``)."""
    h, w = parse_grid(grid)
    model, opt, sample, g = training_setup(name, size, grid, coils, batch, device, overrides)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def step() -> int:
        with autocast:
            loss = model.loss(sample, model.reconstruct(sample))["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        return batch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rate = timed(step, repeats)
    out = {
        "slices_per_s": rate,
        "parameters": sum(p.numel() for p in model.parameters()),
        "grid": [h, w],
        "coils": coils,
        "batch": batch,
        "size": size,
        "overrides": list(overrides),
    }
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops() / batch
    out["gflop_per_slice"] = flops / 1e9
    if device == "cuda":
        out["gpu_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
        out["achieved_tflops"] = rate * flops / 1e12
        peak = bf16_peak_tflops(torch.cuda.get_device_name())
        out["bf16_peak_tflops"] = peak
        out["fraction_of_bf16_peak"] = None if peak is None else out["achieved_tflops"] / peak
    out["cpu_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    bare = bare_fastmri_step(name, model, sample, autocast, g) if name in BARE else None
    if bare is not None:
        out[f"bare_fastmri_{name}_slices_per_s"] = timed(bare, repeats)
        out["module_overhead_ratio"] = out[f"bare_fastmri_{name}_slices_per_s"] / rate
    return out


BARE = ("unet", "varnet")


def bare_fastmri_step(name: str, model, sample, autocast, g: torch.Generator):
    """fastMRI's own network on the same batch, with the module's weights, and nothing
    else (an L1 on its output): what our module's step costs beyond it."""
    import copy

    device = sample.masked_kspace.device
    batch = sample.masked_kspace.shape[0]
    shape = sample.masked_kspace.shape[-2:]
    if name == "unet":
        net = copy.deepcopy(model.net)  # a fastmri.models.Unet
        x = torch.randn(batch, 1, *shape, generator=g).to(device)

        def forward():
            return net(x), x
    else:
        net = copy.deepcopy(model.net)  # a fastmri.models.VarNet
        kspace = torch.view_as_real(sample.masked_kspace)
        mask = sample.mask.unsqueeze(-1)
        target = torch.rand(batch, *shape, generator=g).to(device)

        def forward():
            return net(kspace, mask, 8), target

    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step() -> int:
        with autocast:
            out, target = forward()
            loss = torch.nn.functional.l1_loss(out.float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        return batch

    return step


def bench_train(
    size: str,
    grid: str | int,
    coils: int,
    batch: int,
    repeats: int,
    encoders: tuple[str, ...] = ENCODERS,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Each encoder in its own process, so peak memory is its own."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {}
    for name in encoders:
        cmd = [
            sys.executable,
            "-m",
            "kspace_mim.bench",
            "_train_one",
            name,
            *("--size", size, "--grid", str(grid), "--coils", str(coils)),
            *("--batch", str(batch), "--repeats", str(repeats), "--device", device),
            *(f"--override={o}" for o in overrides),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench train {name}: {proc.stderr[-2000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results
