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


def test_parity_table_pairs_each_row_with_its_reference():
    """bench parity's table: differences per (seed, volume) against the row's reference,
    a bootstrap interval around their mean and the Wilcoxon p; significant ones starred
    by the rule of every generated table (p < 0.05 and the interval excludes 0)."""
    from kspace_mim.bench.parity import paired_runs, parity_markdown

    def run(values):
        vols = {f"v{i}.h5": {"ssim": v, "psnr": 30.0, "nmse": 0.01} for i, v in enumerate(values)}
        return {"ssim": sum(values) / len(values), "volumes": vols}

    def row(runs, reference=None):
        mean = sum(r["ssim"] for r in runs) / len(runs)
        return {
            "runs": runs,
            "reference": reference,
            "ssim_mean": mean,
            "psnr_mean": 30.0,
            "train_seconds_mean": 1.0,
        }

    ref = row([run([0.80, 0.81, 0.82, 0.83]), run([0.80, 0.80, 0.81, 0.82])])
    better = row([run([0.85, 0.86, 0.87, 0.88]), run([0.85, 0.85, 0.86, 0.87])], "fastmri_loop")
    stat = paired_runs(better, ref)
    assert stat["mean_difference"] == pytest.approx(0.05) and stat["n"] == 8
    assert stat["ci95"][0] == pytest.approx(0.05) and stat["wilcoxon_p"] < 0.01
    table = parity_markdown(
        {
            "steps": 3,
            "seeds": [0, 1],
            "mask": "m",
            "data": "d",
            "rows": {"fastmri_loop": ref, "varnet": better},
        }
    )
    assert "(reference)" in table and "+0.0500" in table and "* vs `fastmri_loop`" in table
    # an interval that excludes 0 with too few pairs for Wilcoxon (p = 0.25 at n = 2): no star
    few = row([run([0.85, 0.86])], "fastmri_loop")
    table = parity_markdown(
        {
            "steps": 3,
            "seeds": [0],
            "mask": "m",
            "data": "d",
            "rows": {"fastmri_loop": row([run([0.80, 0.81])]), "varnet": few},
        }
    )
    assert "+0.0500" in table and "* vs" not in table


def test_bench_parity_trains_both_sides_on_the_same_files(data_root, tmp_path):
    """`bench parity`, shrunk: fastMRI's own loop and model=varnet, the same steps, the
    same validation volumes scored per volume, and a row merged into an earlier result."""
    from kspace_mim.bench.parity import bench_parity

    (tmp_path / "train").symlink_to(data_root / "multicoil_train")
    (tmp_path / "val").symlink_to(data_root / "multicoil_val")
    kw = dict(steps=2, seeds=(0,), size=32, data=tmp_path)
    first = bench_parity(rows=("fastmri_loop",), **kw)
    result = bench_parity(rows=("varnet",), previous=first, **kw)
    rows = result["rows"]
    assert set(rows) == {"fastmri_loop", "varnet"}
    assert rows["varnet"]["reference"] == "fastmri_loop"
    for row in rows.values():
        (run,) = row["runs"]
        assert run["steps"] == 2 and 0 < run["ssim"] < 1
        assert set(run["volumes"]) == {p.name for p in (data_root / "multicoil_val").glob("*.h5")}
    with pytest.raises(ValueError, match="other"):
        bench_parity(rows=("varnet",), previous=first, **{**kw, "steps": 3})
