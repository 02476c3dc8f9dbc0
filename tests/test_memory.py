"""``bench memory``: what a training step holds, counted before a run (on the CPU: an
estimate whose parts are checked here; on a GPU: measured)."""

from __future__ import annotations

import json

import pytest
import torch

from kspace_mim.bench.__main__ import main as bench
from kspace_mim.bench.memory import knee_grid, saved_for_backward, training_memory


def test_saved_activations_are_counted_once_per_storage_without_the_weights():
    """A linear layer keeps its input for the weight's gradient: 4 x 10 float32 = 160
    bytes; the weight itself is not counted twice, a tensor saved twice counts once."""
    layer = torch.nn.Linear(10, 10)
    x = torch.randn(4, 10, requires_grad=True)
    skip = {
        (p.untyped_storage().data_ptr(), p.untyped_storage().nbytes()) for p in layer.parameters()
    }
    assert saved_for_backward(lambda: layer(x).sum(), skip) == 160
    # x * x saves x twice (one storage): still 160 bytes
    assert saved_for_backward(lambda: (x * x).sum(), set()) == 160


def test_the_estimate_is_its_parts_and_scales_with_the_batch():
    one = training_memory("unet", "tiny", "32", 4, 1, "32-true", device="cpu")
    two = training_memory("unet", "tiny", "32", 4, 2, "32-true", device="cpu")
    parts = [k for k in one if k.endswith("_gib") and k != "peak_gib"]
    assert one["peak_gib"] == pytest.approx(sum(one[k] for k in parts))
    assert one["weights_gib"] * 2**30 == pytest.approx(4 * one["parameters"])
    assert one["optimizer_gib"] == pytest.approx(2 * one["gradients_gib"])
    ratio = two["saved_for_backward_gib"] / one["saved_for_backward_gib"]
    assert 1.8 < ratio < 2.2  # activations are per slice
    assert one["method"].startswith("estimate")


def test_checkpointing_and_bf16_lower_the_estimate():
    """Activation checkpointing keeps only its regions' inputs; bf16 autocast halves what
    the matrix products keep."""
    plain = training_memory("unrolled", "tiny", "32", 4, 1, "32-true", device="cpu")
    ckpt = training_memory(
        "unrolled", "tiny", "32", 4, 1, "32-true", ("model.checkpointing=true",), device="cpu"
    )
    assert ckpt["saved_for_backward_gib"] < 0.7 * plain["saved_for_backward_gib"]
    full = training_memory("swin", "tiny", "32", 4, 1, "32-true", device="cpu")
    half = training_memory("swin", "tiny", "32", 4, 1, "bf16-mixed", device="cpu")
    assert half["saved_for_backward_gib"] < 0.9 * full["saved_for_backward_gib"]
    with pytest.raises(ValueError, match="precision='fp8'"):
        training_memory("swin", "tiny", "32", 4, 1, "fp8", device="cpu")


def test_the_knee_grid_is_the_one_each_family_trains_on():
    assert knee_grid("varnet") == (640, 368) and knee_grid("unrolled") == (640, 368)
    assert knee_grid("swin") == (320, 320) and knee_grid("unet") == (320, 320)


def test_the_command_prints_a_table_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "memory.json"
    argv = ["memory", "--families", "unet,swin", "--sizes", "tiny", "--grid", "32"]
    bench([*argv, "--coils", "4", "--out", str(out)])
    rows = json.loads(out.read_text())["memory"]
    assert [(r["family"], r["size"]) for r in rows] == [("unet", "tiny"), ("swin", "tiny")]
    text = capsys.readouterr().out
    assert "| unet | tiny | 32x32 | 4 | 1 | bf16-mixed |" in text and "estimate" in text


def test_the_bench_page_sets_each_estimate_beside_a_gpus_measured_peak():
    from kspace_mim.bench.tables import memory_lines

    machine = {"cpu_cores": 2, "cpu": "x86_64", "gpu": None}
    gpu = {"gpu": "H100", "cpu_cores": 16, "cpu": "x86_64"}
    row = {"size": "base", "grid": [320, 320], "coils": 15, "batch": 1, "overrides": []}
    runs = [
        {"train": {"swin": {**row, "gpu_max_allocated_gb": 2.0}}, "machine": gpu},
        {
            "memory": [
                {
                    **row,
                    "family": "swin",
                    "precision": "bf16-mixed",
                    "peak_gib": 1.5,
                    "method": "estimate (CPU: ...)",
                },
                {
                    **row,
                    "family": "vit",
                    "precision": "bf16-mixed",
                    "peak_gib": 1.0,
                    "method": "estimate (CPU: ...)",
                },
            ],
            "machine": machine,
        },
    ]
    text = "\n".join(memory_lines(runs))
    assert "| swin | base | 320x320 | 15 | 1 | bf16-mixed | 1.50 | estimate | 2.00 | 0.75 |" in text
    assert "| vit | base | 320x320 | 15 | 1 | bf16-mixed | 1.00 | estimate | - | - |" in text


def test_bench_tables_put_the_knee_memory_table_into_the_how_to(tmp_path):
    """The how-to page that plans a knee run carries the knee memory table, written
    between its markers by the command that writes docs/bench.md."""
    from kspace_mim.bench.tables import write_tables

    how_to = tmp_path / "docs" / "how-to" / "distributed.md"
    how_to.parent.mkdir(parents=True)
    how_to.write_text("before\n<!-- memory:start -->\nold\n<!-- memory:end -->\nafter\n")
    row = {"size": "base", "grid": [640, 368], "coils": 15, "batch": 1, "overrides": []}
    run = {
        "memory": [
            {
                **row,
                "family": "varnet",
                "precision": "bf16-mixed",
                "peak_gib": 7.25,
                "method": "estimate (CPU)",
            }
        ],
        "machine": {"cpu_cores": 2, "cpu": "x86_64", "gpu": None},
    }
    path = tmp_path / "memory_cpu_knee.json"
    path.write_text(json.dumps(run))
    write_tables([path], tmp_path)
    text = how_to.read_text()
    assert "old" not in text and text.startswith("before") and text.endswith("after\n")
    assert "| varnet | base | 640x368 | 15 | 1 | bf16-mixed | 7.25 | estimate | - | - |" in text
    assert "7.25" in (tmp_path / "docs" / "bench.md").read_text()
    how_to.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- memory:start -->"):
        write_tables([path], tmp_path)


@pytest.mark.parametrize("family", ["unet", "varnet"])
def test_a_grid_too_large_for_the_cpu_is_traced_smaller_and_scaled(family):
    """Activations grow with the pixels: tracing a quarter of the pixels and scaling by 4
    lands near the full trace (a knee-sized VarNet's CPU forward would not fit)."""
    full = training_memory(family, "tiny", "128x96", 4, 1, "32-true", device="cpu")
    scaled = training_memory(
        family, "tiny", "128x96", 4, 1, "32-true", device="cpu", cpu_pixels=64 * 48
    )
    assert scaled["traced_grid"] == [64, 48] and full["traced_grid"] == [128, 96]
    assert "traced at 64x48 and scaled" in scaled["method"]
    ratio = scaled["saved_for_backward_gib"] / full["saved_for_backward_gib"]
    assert 0.95 < ratio < 1.05  # (a grid that its U-Nets pad would count its padding)
    assert scaled["weights_gib"] == full["weights_gib"]
