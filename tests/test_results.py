"""The generated results table: equal steps, held-out test volumes, paired statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kspace_mim import results
from kspace_mim.data.synthesize import synthesize_set
from kspace_mim.results import REFERENCE, ROWS, make_results, table_markdown
from kspace_mim.utils import markers

pytestmark = pytest.mark.slow

PRE, CONTROL = (
    "unrolled, pre-trained + fine-tuned",
    "unrolled, from scratch at the same total steps",
)


def test_results_table_is_generated(tmp_path, monkeypatch):
    """Every row of a shrunk table: the untrained rows (CS tuned on val), the reference,
    pre-training counted in the steps with its equal-steps control; row files with the
    per-volume means over seeds, the table with marks, the curves."""
    data = synthesize_set(tmp_path / "data", volumes=2, slices=2, coils=4, size=32, progress=False)
    monkeypatch.setattr(results, "CS_LAMDAS", (0.003,))
    start, end = markers("results")
    (tmp_path / "README.md").write_text(f"# x\n{start}\nold\n{end}\nend\n")
    rows = ("zero-filled", "CS (L1-wavelet SENSE)", REFERENCE, PRE, CONTROL)
    runs = make_results(
        steps=4,
        seeds=(0, 1),
        data=data,
        out_dir=tmp_path / "runs",
        root=tmp_path,
        points=2,
        rows=rows,
    )
    trained = [r for r in runs if r["seed"] is not None]
    assert len(trained) == 2 * 3
    pre = [r for r in trained if r["row"] == PRE]
    control = [r for r in trained if r["row"] == CONTROL]
    assert {r["steps"] for r in pre} == {r["steps"] for r in control} == {6}
    assert all(r["curve"][0]["step"] > 2 for r in pre)  # after its 2 pre-training steps
    (saved,) = (tmp_path / "runs" / results.slug(PRE) / "seed0").glob("train-*")
    (init,) = (tmp_path / "runs" / results.slug(PRE) / "seed0").glob("pretrain-*")
    assert f"init_from: {init / 'checkpoints' / 'last.ckpt'}" in (saved / "config.yaml").read_text()
    for name in rows:
        for accel in (4, 8):
            row = json.loads(
                (tmp_path / "docs" / "results" / f"{results.slug(name)}_{accel}x.json").read_text()
            )
            assert row["split"] == "test" and len(row["volumes"]) == 2
            volume = next(iter(row["volumes"]))
            per_seed = [e["volumes"][volume]["ssim"] for e in row["evaluations"]]
            assert row["volumes"][volume]["ssim"] == pytest.approx(np.mean(per_seed))
    four = json.loads((tmp_path / "docs" / "results" / "zero_filled_4x.json").read_text())
    eight = json.loads((tmp_path / "docs" / "results" / "zero_filled_8x.json").read_text())
    assert four["ssim"] > eight["ssim"]  # the accelerations are what they say
    cs = json.loads(
        (
            tmp_path / "docs" / "results" / f"{results.slug('CS (L1-wavelet SENSE)')}_4x.json"
        ).read_text()
    )
    assert set(cs["chosen_on_val"]["4"]["val_grid"]) == {"espirit 0.003", "centre 0.003"}
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and readme.endswith(f"{end}\nend\n")
    reference = tmp_path / "docs" / "results" / f"{results.slug(REFERENCE)}_4x.json"
    assert f"| {REFERENCE} | 4x | {json.loads(reference.read_text())['ssim']:.4f} |" in readme
    assert "Pre-training against its equal-total-steps control" in readme
    assert (tmp_path / "docs" / "results_curves.png").stat().st_size > 10000


def test_the_cache_is_keyed_by_the_runs_fingerprint(data_root, tmp_path, small_overrides):
    """A cached run is reused only for the same configuration, budgets and data included;
    what the caller reads is what the run trained for."""
    base = tmp_path / "row" / "train"
    short = small_overrides(data_root / "multicoil_val", "trainer.max_steps=2")
    first = results.train_once(short, base)
    metrics = Path(first["run_dir"]) / "metrics.json"
    written = metrics.stat().st_mtime_ns
    again = results.train_once(short, base)
    assert again["run_dir"] == first["run_dir"] and metrics.stat().st_mtime_ns == written
    longer = results.train_once([*short, "trainer.max_steps=3"], base)
    assert longer["run_dir"] != first["run_dir"] and longer["max_steps"] == 3
    assert first["max_steps"] == 2 and metrics.stat().st_mtime_ns == written
    other_data = [*short, f"data.val_path={data_root / 'multicoil_train'}"]
    assert results.train_once(other_data, base)["run_dir"] not in (
        first["run_dir"],
        longer["run_dir"],
    )
    # A directory whose recorded fingerprint is not this run's is trained again.
    json_path = Path(first["run_dir"]) / "fingerprint.json"
    saved = json.loads(json_path.read_text())
    saved["identity"]["optim.lr"] = 1.0
    json_path.write_text(json.dumps(saved))
    assert Path(results.train_once(short, base)["run_dir"]) == Path(first["run_dir"])
    assert metrics.stat().st_mtime_ns != written


def test_test_evaluations_are_reused_only_for_the_same_model(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(results, "split_folders", lambda data, c: {"test_full": data / "t"})

    def reconstruct(cfg):
        calls.append(cfg.ckpt)
        (tmp_path / "test_4x").mkdir()
        return 0

    monkeypatch.setattr(results, "reconstruct", reconstruct)
    monkeypatch.setattr(results, "evaluate_folders", lambda *a: {"ssim": len(calls)})
    monkeypatch.setattr(results, "compose", lambda o, name: type("C", (), {"ckpt": o[0]})())
    one = results.test_evaluations(["ckpt=a"], tmp_path, tmp_path, (4,))
    same = results.test_evaluations(["ckpt=a"], tmp_path, tmp_path, (4,))
    other = results.test_evaluations(["ckpt=b"], tmp_path, tmp_path, (4,))
    assert calls == ["ckpt=a", "ckpt=b"] and one == same and other[4]["ssim"] == 2


def fake_row(values):
    return {
        "ssim": float(np.mean(values)),
        "psnr": 30.0,
        "nmse": 0.01,
        "steps": 10,
        "train_flops": 1e9,
        "train_minutes": 1.0,
        "volumes": {
            f"f{i}.h5": {"ssim": v, "psnr": 30.0, "nmse": 0.01} for i, v in enumerate(values)
        },
    }


def test_table_marks_what_is_significant_against_the_reference():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.7, 0.8, 12)
    rows = {
        (REFERENCE, 4): fake_row(ref),
        ("U-Net, fastMRI recipe", 4): fake_row(ref - 0.03 + rng.normal(0, 0.003, 12)),
        ("SimMIM-Swin", 4): fake_row(ref + rng.normal(0, 0.01, 12)),
    }
    table = table_markdown(rows, 10, 3, (64, 38), 4)
    unet = next(line for line in table.splitlines() if line.startswith("| U-Net"))
    swin = next(line for line in table.splitlines() if line.startswith("| SimMIM-Swin"))
    assert "| ✓ |" in unet and "-0.03" in unet
    assert "| · |" in swin
    assert "Significantly below: U-Net, fastMRI recipe." in table
    assert "Not distinguishable from it: SimMIM-Swin." in table


def test_every_row_names_a_known_model():
    assert REFERENCE in ROWS and list(ROWS)[-2:] == [PRE, CONTROL]
    assert ROWS[PRE].total_steps == ROWS[CONTROL].total_steps > 1


def curve_run(ssims, steps=(8, 40, 200, 400)):
    return {
        "curve": [
            {"step": s, "ssim": v, "train_s": s / 10} for s, v in zip(steps, ssims, strict=True)
        ]
    }


def test_flatness_names_the_curves_still_rising():
    rows = {
        (REFERENCE, 4): {**fake_row([0.8]), **results.last_gain([curve_run([0.5, 0.6, 0.7, 0.8])])},
        ("SimMIM-Swin", 4): {
            **fake_row([0.8]),
            **results.last_gain([curve_run([0.5, 0.7, 0.8, 0.801])]),
        },
    }
    sentence = results.flatness(rows)
    assert f"{REFERENCE} +0.100 (200 -> 400)" in sentence and "SimMIM-Swin +0.001" in sentence
    assert sentence.endswith(
        f"more than {results.FLAT} over the last interval): {REFERENCE}; "
        "the table compares these models before convergence."
    )
    flat = {k: v for k, v in rows.items() if k[0] == "SimMIM-Swin"}
    assert "every curve has flattened" in results.flatness(flat).lower()


def test_long_curve_sentence_reads_the_nearest_validation():
    runs = [
        curve_run([0.5, 0.6, 0.7, 0.72], (40, 380, 2000, 4000)),
        curve_run([0.5, 0.62, 0.7, 0.74], (40, 380, 2000, 4000)),
    ]
    sentence = results.long_curve_sentence(runs, 400)
    assert "0.6100 at step 380" in sentence and "0.7300 at 4000" in sentence
    assert "+0.0300 over its last interval (2000 -> 4000)" in sentence
