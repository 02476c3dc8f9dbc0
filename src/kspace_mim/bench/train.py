"""``bench train``: one training step per encoder, each in its own process (its own peak
memory): slices/s, parameters, FLOPs, memory, and on a GPU the fraction of bf16 peak."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch

from kspace_mim.bench.timing import sync, timed

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


ENCODERS = {
    "swin": ["encoder=swin"],
    "vit": ["encoder=vit"],
    "unet": ["encoder=unet"],
}


def train_step_rate(
    name: str, size: str, grid: int, coils: int, batch: int, repeats: int, device: str
) -> dict:
    """One encoder's training step (forward, loss, backward, optimizer) on a random batch."""
    import hydra

    from kspace_mim.config import compose
    from kspace_mim.data.transforms import KspaceSample

    cfg = compose([*ENCODERS[name], f"encoder.size={size}"])
    model = hydra.utils.instantiate(cfg.encoder)(
        num_coils=coils, img_size=(grid, grid), loss=dict(cfg.loss), optim=dict(cfg.optim)
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    kspace = torch.randn(batch, coils, grid, grid, dtype=torch.complex64, generator=g)
    mask = torch.zeros(batch, 1, grid, grid, dtype=torch.bool)
    mask[..., ::4] = True
    sample = KspaceSample(
        masked_kspace=torch.where(mask, kspace, 0),
        mask=mask,
        kspace=kspace,
        target=torch.rand(batch, grid, grid, generator=g),
        scale=torch.ones(batch),
        offset=torch.zeros(batch, coils, dtype=torch.complex64),
        max_value=torch.ones(batch),
        crop_size=torch.tensor([[grid, grid]] * batch),
        fname=["bench.h5"] * batch,
        slice_num=torch.arange(batch),
        num_low_frequencies=torch.zeros(batch),
    )
    sample = KspaceSample(*(x.to(device) if torch.is_tensor(x) else x for x in sample))
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
        "grid": grid,
        "coils": coils,
        "batch": batch,
        "size": size,
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
    if name == "unet":
        from fastmri.models import Unet

        bare = Unet(1, 1, chans=model.unet.chans, num_pool_layers=model.unet.num_pool_layers)
        bare = bare.to(device)
        bare_opt = torch.optim.AdamW(bare.parameters(), lr=1e-4)
        x = torch.randn(batch, 1, grid, grid, generator=g).to(device)

        def bare_step() -> int:
            with autocast:
                loss = torch.nn.functional.l1_loss(bare(x), x)
            loss.backward()
            bare_opt.step()
            bare_opt.zero_grad(set_to_none=True)
            return batch

        out["bare_fastmri_unet_slices_per_s"] = timed(bare_step, repeats)
        out["module_overhead_ratio"] = out["bare_fastmri_unet_slices_per_s"] / rate
    return out


def bench_train(size: str, grid: int, coils: int, batch: int, repeats: int) -> dict:
    """Each encoder in its own process, so peak memory is its own."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {}
    for name in ENCODERS:
        cmd = [
            sys.executable,
            "-m",
            "kspace_mim.bench",
            "_train_one",
            name,
            "--size",
            size,
            "--grid",
            str(grid),
            "--coils",
            str(coils),
            "--batch",
            str(batch),
            "--repeats",
            str(repeats),
            "--device",
            device,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results
