"""The sweep report: one table, CSV, Markdown and plots of a multirun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kspace_mim.report import collect, report


@pytest.mark.slow
def test_sweep_with_a_failing_job_and_its_report(env, tmp_path, train_cli):
    sweep = tmp_path / "sweep"
    # The U-Net with no image loss is a bad combination: exactly one of the four jobs fails.
    result = train_cli(
        env,
        "-m",
        "model=unet,swin",
        "loss.image_l1=0,1",
        "loss.image_ssim=0",
        "model.size=tiny",
        "trainer.max_steps=2",
        f"hydra.sweep.dir={sweep}",
        check=False,
    )
    assert result.returncode != 0  # the sweep reports the failure at the end
    statuses = {
        d.name: json.loads((d / "status.json").read_text()) for d in sweep.iterdir() if d.is_dir()
    }
    assert sorted(s["status"] for s in statuses.values()) == ["failed"] + ["finished"] * 3
    (failed,) = [d for d, s in statuses.items() if s["status"] == "failed"]
    assert (
        "UnetReconstructor outputs an image only: it needs loss.image_l1"
        in statuses[failed]["reason"]
    )
    assert "Traceback" in (sweep / failed / "error.log").read_text()
    frame = report(sweep)
    assert list(frame["status"]) == ["finished"] * 3 + ["failed"]  # sorted by SSIM, failed last
    assert frame["ssim"].iloc[:3].is_monotonic_decreasing
    assert {"model", "loss.image_l1"} <= set(frame.columns)
    assert (sweep / "report.csv").is_file() and "| model" in (sweep / "report.md").read_text()
    assert (sweep / "ssim_vs_model.png").is_file() and (
        sweep / "ssim_vs_loss.image_l1.png"
    ).is_file()
    cli = subprocess.run(
        [sys.executable, "-m", "kspace_mim.report", str(sweep)], capture_output=True, text=True
    )
    assert cli.returncode == 0 and "UnetReconstructor outputs" in cli.stdout


def test_seeds_are_grouped_with_means_and_intervals(tmp_path):
    """A sweep over seeds: one row per configuration, the mean over its seeds and an
    interval that holds it; failed jobs left out."""
    import numpy as np

    from kspace_mim.report import by_seed, collect

    ssim = {("unet", 0): 0.80, ("unet", 1): 0.82, ("unet", 2): 0.84, ("swin", 0): 0.70}
    for n, ((encoder, seed), value) in enumerate([*ssim.items(), (("swin", 1), None)]):
        job = tmp_path / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- model={encoder}\n- seed={seed}\n")
        status = "finished" if value is not None else "failed"
        (job / "status.json").write_text(json.dumps({"status": status}))
        if value is not None:
            metrics = {"ssim": value, "psnr": 30 * value, "nmse": 1 - value}
            (job / "metrics.json").write_text(json.dumps(metrics))
    grouped = by_seed(collect(tmp_path))
    unet = grouped[grouped["model"] == "unet"].iloc[0]
    assert unet["seeds"] == 3 and unet["ssim"] == np.mean([0.80, 0.82, 0.84])
    lo, hi = (float(x) for x in unet["ssim_ci95"].strip("[]").split(","))
    assert 0.80 <= lo < unet["ssim"] < hi <= 0.84
    assert grouped[grouped["model"] == "swin"].iloc[0]["seeds"] == 1
    report(tmp_path)
    assert "| unet" in (tmp_path / "report_by_seed.md").read_text()


def test_a_job_whose_files_cannot_be_read_is_named_and_the_others_tabled(tmp_path, capsys):
    """One truncated status.json (a job killed while writing it, before writes were
    atomic) or a foreign metrics file must not stop the report of the whole sweep."""
    from kspace_mim.report import collect

    for n, status in enumerate(['{"status": "finished"}', '{"status": "fini', "[1, 2]"]):
        job = tmp_path / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={n}\n")
        (job / "status.json").write_text(status)
        (job / "metrics.json").write_text(json.dumps({"ssim": 0.5 + n, "psnr": 1, "nmse": 1}))
    frame = collect(tmp_path).set_index("job")
    assert frame.loc["0", "status"] == "finished" and frame.loc["0", "ssim"] == 0.5
    for job in ("1", "2"):
        assert frame.loc[job, "status"] == "unreadable"
        assert f"{tmp_path / job / 'status.json'}" in frame.loc[job, "reason"]
    err = capsys.readouterr().err
    assert "job 1: files cannot be read" in err and "job 2: files cannot be read" in err


def fixture_sweep(root, per_volume: dict, tested: bool = True) -> None:
    """Job directories as a sweep over ``model`` and ``seed`` writes them:
    ``per_volume[(model, seed)]`` = {volume: ssim}."""
    for n, ((model, seed), volumes) in enumerate(per_volume.items()):
        job = root / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- model={model}\n- seed={seed}\n")
        (job / "status.json").write_text(json.dumps({"status": "finished"}))
        rows = {v: {"ssim": s, "psnr": 40 * s, "nmse": 1 - s} for v, s in volumes.items()}
        metrics = {"ssim": sum(volumes.values()) / len(volumes), "volumes": rows}
        if tested:
            metrics["test"] = {
                "volumes": {v: dict(m, ssim=m["ssim"] - 0.1) for v, m in rows.items()}
            }
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_a_sweep_is_paired_by_volume_against_its_reference(tmp_path):
    """``--reference``: each configuration's per-volume means over its seeds, paired by
    volume against the reference's: a constant gain is that gain and significant, a
    mixed one is not; the held-out test volumes when every job has them."""
    import numpy as np

    from kspace_mim.report import paired

    rng = np.random.default_rng(0)
    base = {f"file{i}.h5": 0.6 + 0.02 * i for i in range(12)}
    jitter = {v: float(rng.normal(0, 0.01)) for v in base}
    per_volume = {}
    for seed in (0, 1, 2):
        per_volume[("varnet", seed)] = {v: s + 0.001 * seed for v, s in base.items()}
        per_volume[("unrolled", seed)] = {v: s + 0.05 + 0.001 * seed for v, s in base.items()}
        per_volume[("swin", seed)] = {v: s + jitter[v] + 0.001 * seed for v, s in base.items()}
    fixture_sweep(tmp_path, per_volume)
    table = paired(collect(tmp_path), tmp_path, {"model": "varnet"}).set_index("model")
    assert set(table["split"]) == {"test"} and set(table["seeds"]) == {3}
    assert table.loc["varnet", "vs_reference"] == "reference"
    assert table.loc["unrolled", "d_ssim"] == pytest.approx(0.05)
    assert table.loc["unrolled", "d_ssim_significant"]
    assert not table.loc["swin", "d_ssim_significant"]
    assert table.loc["swin", "d_ssim"] == pytest.approx(np.mean(list(jitter.values())))
    assert table.loc["varnet", "ssim"] == pytest.approx(np.mean(list(base.values())) - 0.099)
    report(tmp_path, "model=varnet")
    assert "| unrolled" in (tmp_path / "report_paired.md").read_text()
    with pytest.raises(ValueError, match="matches 0 configurations"):
        paired(collect(tmp_path), tmp_path, {"model": "vit"})
    with pytest.raises(ValueError, match="not swept here"):
        paired(collect(tmp_path), tmp_path, {"optim.lr": "1e-3"})
    cli = subprocess.run(
        [sys.executable, "-m", "kspace_mim.report", str(tmp_path), "--reference", "model"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and "KEY=VALUE" in cli.stderr and "Traceback" not in cli.stderr


def test_without_test_volumes_the_pairing_is_on_validation(tmp_path):
    from kspace_mim.report import paired

    per_volume = {
        (m, s): {f"f{i}.h5": 0.5 + 0.01 * i + (0.02 if m == "b" else 0) for i in range(6)}
        for m in ("a", "b")
        for s in (0, 1)
    }
    fixture_sweep(tmp_path, per_volume, tested=False)
    table = paired(collect(tmp_path), tmp_path, {"model": "a"}).set_index("model")
    assert set(table["split"]) == {"val"}
    assert table.loc["b", "d_ssim"] == pytest.approx(0.02)


def test_a_study_tested_under_several_masks_is_paired_under_each(tmp_path):
    """Jobs tested inside the job under ``evaluation.test_masks``: one paired table block
    per mask, each on its own volumes."""
    from kspace_mim.report import paired

    for n, (model, seed) in enumerate((m, s) for m in ("a", "b") for s in (0, 1)):
        job = tmp_path / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- model={model}\n- seed={seed}\n")
        (job / "status.json").write_text(json.dumps({"status": "finished"}))
        gain = {"equispaced4x": 0.01, "equispaced8x": 0.03}
        tests = {
            mask: {
                "volumes": {
                    f"f{i}.h5": {"ssim": 0.5 + 0.01 * i + (g if model == "b" else 0)}
                    for i in range(8)
                }
            }
            for mask, g in gain.items()
        }
        metrics = {"ssim": 0.5, "volumes": {"f0.h5": {"ssim": 0.5}}, "tests": tests}
        (job / "metrics.json").write_text(json.dumps(metrics))
    table = paired(collect(tmp_path), tmp_path, {"model": "a"})
    b = table[table["model"] == "b"].set_index("split")
    assert set(b.index) == {"test equispaced4x", "test equispaced8x"}
    assert b.loc["test equispaced4x", "d_ssim"] == pytest.approx(0.01)
    assert b.loc["test equispaced8x", "d_ssim"] == pytest.approx(0.03)


def test_jobs_one_level_deeper_are_found_and_ordered(tmp_path):
    """A sweep whose subdir has a ``/`` (``model=swin/row=ssdu,seed=0``) keeps its jobs one
    level down: they are found beside flat ones, grouped by their parent folder, and a
    folder without Hydra's record (checkpoints, logs) is not a job."""
    from kspace_mim.report import job_dirs

    names = ["model=unrolled/seed=10", "model=swin/seed=2", "model=swin/seed=10", "flat"]
    for name in names:
        (tmp_path / name / ".hydra").mkdir(parents=True)
    (tmp_path / "model=swin" / "seed=2" / "checkpoints").mkdir()
    (tmp_path / "model=swin" / "notes").mkdir()
    found = [str(p.relative_to(tmp_path)) for p in job_dirs(tmp_path)]
    assert found == ["flat", "model=swin/seed=2", "model=swin/seed=10", "model=unrolled/seed=10"]


def test_the_report_says_which_mask_each_number_is_on(tmp_path, capsys):
    """A mask sweep's table has a column with each job's evaluation mask (the one
    yardstick), which is never mistaken for a swept parameter."""
    from kspace_mim.report import print_report, swept_parameters

    for n, mask in enumerate(["random0.4", "random0.75"]):
        job = tmp_path / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- mask={mask}\n")
        (job / "status.json").write_text(json.dumps({"status": "finished"}))
        metrics = {"ssim": 0.5 + n / 10, "evaluation_mask": "equispaced4x"}
        (job / "metrics.json").write_text(json.dumps(metrics))
    frame = collect(tmp_path)
    assert list(frame["eval_mask"]) == ["equispaced4x"] * 2
    assert swept_parameters(frame) == ["mask"]
    print_report(frame)
    out = capsys.readouterr().out
    assert "eval_mask" in out and out.count("equispaced4x") == 2
