"""What the numbers were measured on, and timers: warm-up first, medians of repeats."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


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


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
