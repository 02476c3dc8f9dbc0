"""Benchmarks, measured side by side in one run: ``python -m kspace_mim.bench data|train|results``.

- ``data``: slices/s of our data pipeline (read + mask + model input + target) against
  fastMRI's reference (``SliceDataset`` + ``VarNetDataTransform``) and a bare h5 read of
  the same slices, same files, same mask, same worker count.
- ``train``: per encoder, forward+backward slices/s, peak memory, parameters, and on a
  GPU the achieved TFLOP/s; our U-Net training step against a bare ``fastmri.models.Unet``
  forward+backward on the same batch (the Lightning-module overhead).
- ``results``: trains and evaluates every model at 4x and 8x on the synthetic set with
  one budget and writes the README's results table (``docs/results.md``).

Warm-up first, then repeats; medians are reported, with the machine described.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader, Dataset

from kspace_mim.data.masks import CartesianMask
from kspace_mim.data.mri_data import SliceDataset, list_h5, recons_key
from kspace_mim.data.synthesize import synthesize
from kspace_mim.data.transforms import KspaceTransform, collate_slices


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def timed(fn: Callable[[], int], repeats: int) -> float:
    """Median items/s of ``fn`` (which returns how many items it processed), after a warm-up."""
    return timed_side_by_side({"fn": fn}, repeats)["fn"]


def timed_side_by_side(fns: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    """Median items/s of each ``fn``, their repeats interleaved (round-robin), so a busy
    moment of the machine hits every contender alike instead of one of them."""
    for fn in fns.values():
        fn()  # warm-up: page cache, worker start, lazy imports
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            n = fn()
            rates[name].append(n / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


# --- data ------------------------------------------------------------------------------
class RawSlices(Dataset):
    """The limit: the same slices read with h5py (files kept open per worker), nothing else."""

    def __init__(self, root: Path, challenge: str):
        self.key = recons_key(challenge)
        self.items = []
        for path in list_h5(root):
            with h5py.File(path) as hf:
                self.items += [(path, s) for s in range(hf["kspace"].shape[0])]
        self.files: dict[Path, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, s = self.items[i]
        hf = self.files.get(path) or self.files.setdefault(path, h5py.File(path, "r"))
        return hf["kspace"][s], hf[self.key][s]


def _drain(dataset: Dataset, workers: int) -> Callable[[], int]:
    def run() -> int:
        loader = DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=lambda x: x
        )
        return sum(1 for _ in loader)

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _stage_ms(fn: Callable[[], object], repeats: int, per: int = 1) -> float:
    """Median milliseconds of ``fn`` per item (``per`` items per call), after a warm-up."""

    def run() -> int:
        fn()
        return per

    return 1e3 / timed(run, max(repeats, 3))


def _profile_stages(ours: SliceDataset, batch: list, device: torch.device, repeats: int) -> dict:
    """Where a slice's time goes, stage by stage (ms per slice)."""
    from kspace_mim.physics import crop_image_domain

    kspace, mask, target, attrs, fname, slice_num = ours.read(0)
    on_device = move_data_to_device(batch, device)
    grid = tuple(on_device[0].mask.shape[-2:])
    n = len(batch[0].fname)

    def device_step(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            fn()
            _sync(device)

        return run

    with h5py.File(ours.volumes[0].path, "r") as hf:
        read_ms = _stage_ms(lambda: hf["kspace"][0], repeats)
    return {
        "loader_h5_read": read_ms,
        "loader_mask_and_target": _stage_ms(
            lambda: ours.transform(kspace, mask, target, attrs, fname, slice_num), repeats
        ),
        # slice by slice on a CPU, batched on a GPU: as model_input does
        "device_grid_crop": _stage_ms(
            device_step(
                lambda: (
                    [crop_image_domain(k, grid) for k in on_device[0].kspace.split(1)]
                    if device.type == "cpu"
                    else crop_image_domain(on_device[0].kspace, grid)
                )
            ),
            repeats,
            n,
        ),
        "device_all": _stage_ms(
            device_step(lambda: ours.transform.model_input(on_device)), repeats, n
        ),
    }


def bench_data(
    root: Path | None, workers: int, repeats: int, size: int, coils: int, batch: int = 4
) -> dict:
    """Loader throughput against fastMRI's reference and a bare read; the device step beside.

    Our loader reads, checks and draws the mask; the grid crop, masking, coil
    compression and scaling run batched on the device (``KspaceTransform.model_input``),
    so they are measured there: on the GPU when there is one, else on this CPU.
    """
    from fastmri.data import SliceDataset as FastMRISliceDataset
    from fastmri.data.subsample import EquispacedMaskFractionFunc
    from fastmri.data.transforms import VarNetDataTransform

    tmp = None
    if root is None:  # knee-like volumes: 2x readout oversampling, ~1.15x phase encodes
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        synthesize(
            root, "multicoil", "val", volumes=2, slices=12, coils=coils, size=size, progress=False
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mask_func = EquispacedMaskFractionFunc([0.08], [4])
    ours = SliceDataset(root, "multicoil", KspaceTransform(CartesianMask(mask_func)))
    theirs = FastMRISliceDataset(root, "multicoil", VarNetDataTransform(mask_func))
    raw = RawSlices(root, "multicoil")
    result = timed_side_by_side(
        {
            "kspace_mim_slices_per_s": _drain(ours, workers),
            "fastmri_slices_per_s": _drain(theirs, workers),
            "raw_h5_slices_per_s": _drain(raw, workers),
        },
        repeats,
    )
    result["speedup_vs_fastmri"] = (
        result["kspace_mim_slices_per_s"] / result["fastmri_slices_per_s"]
    )
    result["fraction_of_raw_read"] = (
        result["kspace_mim_slices_per_s"] / result["raw_h5_slices_per_s"]
    )

    groups = collate_slices([ours[i] for i in range(batch)])
    on_device = move_data_to_device(groups, device)

    def device_step() -> int:
        ours.transform.model_input(on_device)
        _sync(device)
        return batch

    # As the DataModule's finish_on=auto: the FFT half in the workers on a CPU, on the GPU
    # otherwise.
    in_loader = device.type == "cpu"
    finishing = SliceDataset(
        ours.volumes,
        "multicoil",
        KspaceTransform(CartesianMask(mask_func), finish_in_loader=in_loader),
    )

    def end_to_end() -> int:
        loader = DataLoader(
            finishing,
            batch_size=batch,
            num_workers=workers,
            collate_fn=collate_slices,
            pin_memory=device.type == "cuda",
        )
        count = 0
        for items in loader:
            sample = ours.transform.model_input(move_data_to_device(items, device))
            count += len(sample.fname)
        _sync(device)
        return count

    result["device_step_slices_per_s"] = timed(device_step, repeats)
    result["end_to_end_slices_per_s"] = timed(end_to_end, repeats)
    result["stages_ms_per_slice"] = _profile_stages(ours, groups, device, repeats)
    result["setup"] = {
        "slices": len(ours),
        "kspace_shape": list(ours.volumes[0].shape),
        "model_grid": list(on_device[0].mask.shape[-2:]),
        "workers": workers,
        "device_step_on": str(device),
        "end_to_end_finish_on": "loader" if in_loader else "device",
        "device_batch": batch,
        "repeats": repeats,
        "mask": "equispaced4x",
    }
    if tmp is not None:
        tmp.cleanup()
    return result


# --- train -----------------------------------------------------------------------------
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


def _train_step_rate(
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
        if device == "cuda":
            torch.cuda.synchronize()
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
    import resource

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


# --- tables ----------------------------------------------------------------------------
def _machine_label(machine_info: dict) -> str:
    cpu = f"{machine_info['cpu_cores']}-core {machine_info['cpu']} CPU"
    return f"{machine_info['gpu']} + {cpu}" if machine_info.get("gpu") else cpu


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def bench_markdown(runs: list[dict]) -> str:
    """The README's benchmark tables from ``bench data`` / ``bench train`` JSON outputs."""
    lines = []
    data_runs = [r for r in runs if "data" in r]
    if data_runs:
        lines += [
            "Data pipeline (slices/s, median of interleaved repeats). *Loader*: what the "
            "DataLoader workers deliver (read, mask on the grid, target). *Device step*: "
            "grid crop, mask, coil compression and scaling, batched where training runs. "
            "*End to end*: both, as a training step receives them (`finish_on=auto`: "
            "the FFT half in the loader on a CPU, on the GPU otherwise).",
            "",
            "| machine | k-space | workers | loader | fastMRI reference | bare h5 read "
            "| loader / fastMRI | loader / bare read | device step (on) | end to end |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in data_runs:
            d = r["data"]
            shape = "x".join(map(str, d["setup"]["kspace_shape"]))
            lines.append(
                f"| {_machine_label(r['machine'])} | {shape} | {d['setup']['workers']} "
                f"| {d['kspace_mim_slices_per_s']:.0f} | {d['fastmri_slices_per_s']:.0f} "
                f"| {d['raw_h5_slices_per_s']:.0f} | {d['speedup_vs_fastmri']:.2f}x "
                f"| {d['fraction_of_raw_read']:.2f} "
                f"| {d['device_step_slices_per_s']:.0f} ({d['setup']['device_step_on']}) "
                f"| {d['end_to_end_slices_per_s']:.0f} |"
            )
        lines += ["", "Where a slice's time goes (ms per slice):", ""]
        stages = list(data_runs[0]["data"]["stages_ms_per_slice"])
        lines += [
            "| machine | " + " | ".join(stages) + " |",
            "|---|" + "---|" * len(stages),
        ]
        for r in data_runs:
            ms = r["data"]["stages_ms_per_slice"]
            lines.append(
                f"| {_machine_label(r['machine'])} | "
                + " | ".join(_num(ms.get(k), ".2f") for k in stages)
                + " |"
            )
    for r in (r for r in runs if "train" in r):
        first = next(iter(r["train"].values()))
        lines += [
            "",
            f"Training step on {_machine_label(r['machine'])} (forward, loss, backward, "
            f"optimizer; `{first['size']}` models, {first['coils']} coils, "
            f"{first['grid']}x{first['grid']} grid, batch {first['batch']}):",
            "",
            "| encoder | slices/s | parameters (M) | GFLOP / slice | peak CPU RSS (GB) "
            "| peak GPU memory (GB) | TFLOP/s | of bf16 peak |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in r["train"].items():
            peak = row.get("fraction_of_bf16_peak")
            lines.append(
                f"| {name} | {row['slices_per_s']:.1f} | {row['parameters'] / 1e6:.2f} "
                f"| {row['gflop_per_slice']:.2f} | {row['cpu_peak_rss_gb']:.2f} "
                f"| {_num(row.get('gpu_max_allocated_gb'), '.2f')} "
                f"| {_num(row.get('achieved_tflops'), '.2f')} "
                f"| {'-' if peak is None else f'{100 * peak:.1f}%'} |"
            )
        unet = r["train"].get("unet")
        if unet:
            lines += [
                "",
                f"U-Net: our Lightning module's step against a bare `fastmri.models.Unet` "
                f"step on the same batch: {unet['bare_fastmri_unet_slices_per_s']:.1f} "
                f"against {unet['slices_per_s']:.1f} slices/s, overhead "
                f"{unet['module_overhead_ratio']:.2f}x (our step adds the FFTs, data "
                "consistency and the image losses).",
            ]
    return "\n".join(lines) + "\n"


def write_tables(paths: list[Path], root: Path | None = None) -> Path:
    """docs/bench.md and the README's bench section from benchmark JSON files."""
    from kspace_mim.config import project_root
    from kspace_mim.utils import write_generated

    runs = [json.loads(Path(p).read_text()) for p in paths]
    command = "make bench  # python -m kspace_mim.bench tables " + " ".join(
        Path(p).name for p in paths
    )
    return write_generated(
        Path(root or project_root()), "bench", "Benchmarks", command, bench_markdown(runs)
    )


# --- command line ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kspace_mim.bench", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    p_data = sub.add_parser("data", help="data pipeline throughput vs fastMRI and a bare read")
    p_data.add_argument(
        "--data", type=Path, help="a multicoil folder (default: synthetic, knee-sized)"
    )
    p_data.add_argument("--workers", type=int, default=0)
    p_data.add_argument("--repeats", type=int, default=7)
    p_data.add_argument("--size", type=int, default=320, help="synthetic recon size")
    p_data.add_argument("--coils", type=int, default=15, help="synthetic coils")
    p_data.add_argument("--batch", type=int, default=4, help="slices per device step")
    p_train = sub.add_parser("train", help="training-step throughput and memory per encoder")
    for p in (p_train, sub.add_parser("_train_one")):
        p.add_argument("--size", default="tiny")
        p.add_argument("--grid", type=int, default=128)
        p.add_argument("--coils", type=int, default=8)
        p.add_argument("--batch", type=int, default=4)
        p.add_argument("--repeats", type=int, default=5)
    sub.choices["_train_one"].add_argument("name", choices=sorted(ENCODERS))
    sub.choices["_train_one"].add_argument("--device", default="cpu")
    p_results = sub.add_parser("results", help="the README's results table (trains every model)")
    p_results.add_argument("--steps", type=int, default=600)
    p_results.add_argument("--data", type=Path, default=None)
    for p in (p_data, p_train, p_results):
        p.add_argument("--out", type=Path, help="write the JSON here too")
    p_tables = sub.add_parser("tables", help="README / docs/bench.md tables from bench JSON files")
    p_tables.add_argument("json", nargs="+", type=Path, help="outputs of bench data / train")
    p_tables.add_argument("--root", type=Path, default=None, help="repository (default: this)")
    args = parser.parse_args(argv)

    if args.what == "tables":
        print(write_tables(args.json, args.root))
        return

    if args.what == "_train_one":
        print(
            json.dumps(
                _train_step_rate(
                    args.name,
                    args.size,
                    args.grid,
                    args.coils,
                    args.batch,
                    args.repeats,
                    args.device,
                )
            )
        )
        return
    if args.what == "data":
        result = {
            "data": bench_data(
                args.data, args.workers, args.repeats, args.size, args.coils, args.batch
            )
        }
    elif args.what == "train":
        result = {"train": bench_train(args.size, args.grid, args.coils, args.batch, args.repeats)}
    else:
        from kspace_mim.results import make_results

        result = {"results": make_results(args.steps, args.data)}
    result["machine"] = machine()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
