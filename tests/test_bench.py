"""The benchmark commands run and emit their JSON (speed goals live in the numbers, not here)."""

from __future__ import annotations

import json

import pytest

from kspace_mim.bench.__main__ import main as bench
from kspace_mim.bench.tables import write_tables
from kspace_mim.bench.train import bf16_peak_tflops

pytestmark = pytest.mark.slow


def test_bench_data_emits_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench(["data", "--size", "32", "--coils", "2", "--repeats", "1", "--out", str(out)])
    data = json.loads(out.read_text())["data"]
    assert json.loads(capsys.readouterr().out)["machine"]["cpu_cores"] >= 1
    for key in (
        "kspace_mim_slices_per_s",
        "fastmri_slices_per_s",
        "raw_h5_slices_per_s",
        "device_step_slices_per_s",
        "end_to_end_slices_per_s",
    ):
        assert data[key] > 0
    assert set(data["stages_ms_per_slice"]) == {
        "loader_h5_read",
        "loader_mask_and_target",
        "device_grid_crop",
        "device_all",
    }
    assert data["setup"]["slices"] == 24 and data["setup"]["model_grid"] == [32, 32]
    assert data["setup"]["device_step_on"] in ("cpu", "cuda")
    # the README's bench section is generated from this JSON
    (tmp_path / "README.md").write_text("# x\n<!-- bench:start -->\nold\n<!-- bench:end -->\n")
    bench(["tables", str(out), "--root", str(tmp_path)])
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme
    assert (
        f"| {data['kspace_mim_slices_per_s']:.0f} | {data['fastmri_slices_per_s']:.0f} |" in readme
    )
    assert f"{data['speedup_vs_fastmri']:.2f}x" in (tmp_path / "docs" / "bench.md").read_text()


def test_bench_train_emits_json(tmp_path):
    out = tmp_path / "train.json"
    bench(
        [
            "train",
            "--grid",
            "32",
            "--coils",
            "2",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    for name in ("swin", "vit", "unet"):
        row = result["train"][name]
        assert row["slices_per_s"] > 0 and row["parameters"] > 0 and row["cpu_peak_rss_gb"] > 0
        assert row["gflop_per_slice"] > 0
    assert result["train"]["unet"]["module_overhead_ratio"] > 0
    page = write_tables([out], tmp_path)
    for name, row in result["train"].items():
        assert f"| {name} | {row['slices_per_s']:.1f} |" in page.read_text()


def test_bf16_peaks_by_card_name():
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bf16_peak_tflops("Tesla T4") is None  # no bf16 tensor cores: no claim


def test_the_device_check_script_runs_on_a_cpu_with_tiny_sizes(tmp_path):
    """.ci/gpu-check, the one prepared script a GPU machine runs, on the CPU with tiny
    sizes: the memory table and 2 steps of every family on the native grid, each
    writing its JSON."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from kspace_mim.config import model_names

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "SIZE": "16",
        "COILS": "2",
        "TRAINER": "cpu",
        "SIZES": "tiny",
        "BENCH": "0",
        "OUT": str(tmp_path),
        "PY": sys.executable,
    }
    result = subprocess.run(
        [str(root / ".ci" / "gpu-check")], env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "memory_cpu_knee.json").read_text())["memory"]
    assert {r["family"] for r in rows} == set(model_names(trainable=True))
    assert all(r["grid"] == [32, 16] for r in rows)
    for family in model_names(trainable=True):
        metrics = json.loads((tmp_path / f"steps_cpu_{family}.json").read_text())
        assert metrics["ssim"] > 0, family
