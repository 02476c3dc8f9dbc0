"""The label-efficiency curve: label-free pre-training on undersampled-only copies, then
N fully sampled volumes, against from scratch at equal fine-tuning and total steps."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
import yaml

from kspace_mim import label_efficiency as le
from kspace_mim.compare import compare
from kspace_mim.data.synthesize import synthesize_set
from kspace_mim.utils import markers

pytestmark = pytest.mark.slow
SYNTHESIS = {"volumes": 2, "slices": 2, "coils": 4, "size": 32}


def test_label_efficiency_curve_is_generated(tmp_path):
    data = synthesize_set(tmp_path / "data", progress=False, **SYNTHESIS)
    start, end = markers("label_efficiency")
    (tmp_path / "README.md").write_text(f"# x\n{start}\nold\n{end}\nend\n")
    runs = le.make_label_efficiency(
        labels=(1,),
        seeds=(0,),
        pretrain_steps=3,
        finetune_steps=2,
        points=2,
        data=data,
        out_dir=tmp_path / "runs",
        root=tmp_path,
        synthesis={**SYNTHESIS, "anatomy": "phantom"},
    )
    # The undersampled-only copy is the train folder's anatomy, acquired samples only.
    under = data / "multicoil_train_undersampled4x"
    for path in sorted((data / "multicoil_train").glob("*.h5")):
        with h5py.File(path) as full, h5py.File(under / path.name) as copy:
            mask = copy["mask"][()].astype(bool)
            assert "reconstruction_rss" not in copy
            np.testing.assert_array_equal(copy["kspace"][()], np.where(mask, full["kspace"][()], 0))
    # Every row at every N (the label-free rows alone at N = 0), steps cumulative.
    got = {(r["row"], r["labels"]): r for r in runs}
    expected = {(le.alone(k), 0) for k, p in le.PRETRAININGS.items() if p.label_free}
    expected.add((le.ZERO_FILLED, 0))
    expected |= {(name, 1) for name in le.row_names()[3:]}
    assert set(got) == expected
    assert got[(le.SCRATCH, 1)]["steps"] == 2 and got[(le.SCRATCH_TOTAL, 1)]["steps"] == 5
    assert got[(le.tuned("mim"), 1)]["steps"] == 5
    # Label-free pre-training reads the undersampled copy; fine-tuning starts from the
    # pre-training of its seed and reads N labelled volumes.
    pre = tmp_path / "runs" / "pretrain"

    def run_dir(folder):  # the one run directory, named by its fingerprint
        (found,) = folder.glob("train-*")
        return found

    for kind, p in le.PRETRAININGS.items():
        pre_dir = run_dir(pre / kind / "seed0")
        config = yaml.safe_load((pre_dir / "config.yaml").read_text())
        assert (config["data"]["train_path"] == str(under)) == p.label_free
        folder = run_dir(tmp_path / "runs" / "n1" / le.slug(le.tuned(kind)) / "seed0")
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["init_from"] == str(pre_dir / "checkpoints" / "last.ckpt")
        assert config["data"]["train_volumes"] == 1
    supervision = yaml.safe_load((run_dir(pre / "mim" / "seed0") / "config.yaml").read_text())
    assert supervision["supervision"]["_target_"].endswith("MaskedModeling")
    # Row files pair by volume; the table and its reading are in the README, the plot saved.
    docs = tmp_path / "docs"
    row = json.loads(
        (docs / "label_efficiency" / f"{le.slug(le.tuned('ssdu'))}_n1.json").read_text()
    )
    scratch = json.loads((docs / "label_efficiency" / f"{le.slug(le.SCRATCH)}_n1.json").read_text())
    assert set(row["volumes"]) == set(scratch["volumes"]) and len(row["volumes"]) == 2
    # FLOPs follow the steps (one network); minutes include the pre-training's.
    assert row["train_flops"] == pytest.approx(scratch["train_flops"] * 5 / 2)
    pre_minutes = json.loads(
        (docs / "label_efficiency" / f"{le.slug(le.alone('ssdu'))}_n0.json").read_text()
    )["train_minutes"]
    assert row["train_minutes"] > pre_minutes > 0
    assert compare(scratch["volumes"], row["volumes"])["ssim"]["mean_difference"] == pytest.approx(
        row["ssim"] - scratch["ssim"]
    )
    page = (docs / "label_efficiency.md").read_text()
    for (name, n), r in got.items():
        assert f"| {n} | {name} | {r['test']['ssim']:.4f} |" in page
    assert "Every comparison: N = 0: SSDU alone is" in page and "zero-filling" in page
    assert "against from scratch at the same total steps: significantly better at N =" in page
    assert "Validation SSIM gained over each curve's last interval: SSDU alone (N = 0)" in page
    assert "; N = 1: " in page
    # The README carries the short form: the label-free rows against the equal-steps control.
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and readme.endswith("end\n")
    assert "| N labelled | from scratch, equal total steps | SSDU, then fine-tuned |" in readme
    total = got[(le.SCRATCH_TOTAL, 1)]["test"]["ssim"]
    ssdu = got[(le.tuned("ssdu"), 1)]["test"]["ssim"]
    assert f"| 1 | {total:.4f} | {ssdu:.4f} (" in readme
    assert "(docs/label_efficiency.md)" in readme
    assert (docs / "label_efficiency.png").stat().st_size > 0
    # The label-free variants: the default shares its run with the curve's pre-training.
    before = (run_dir(pre / "ssdu" / "seed0") / "metrics.json").stat().st_mtime_ns
    variants = {
        "published": ("supervision=ssdu",),
        "patches 4": ("supervision=mim", "supervision.patch_size=4"),
    }
    runs = le.make_variants((0,), 3, 2, data, tmp_path / "runs", tmp_path, variants)
    assert (run_dir(pre / "ssdu" / "seed0") / "metrics.json").stat().st_mtime_ns == before
    variant = run_dir(tmp_path / "runs" / "variants" / "patches_4" / "seed0")
    config = yaml.safe_load((variant / "config.yaml").read_text())
    assert config["supervision"]["patch_size"] == 4 and config["data"]["train_path"] == str(under)
    page = (docs / "label_free_variants.md").read_text()
    assert f"| published | {runs[0]['test']['ssim']:.4f} |" in page and "| patches 4 |" in page


def test_table_marks_differences_against_scratch_and_equal_total_steps():
    names = [f"file{i}.h5" for i in range(12)]
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.7, 12)

    def row(offset, noise=0.0):
        values = base + offset + rng.normal(0, noise, 12)
        vols = {
            n: {"ssim": float(v), "psnr": 20.0, "nmse": 0.1}
            for n, v in zip(names, values, strict=True)
        }
        return {
            "ssim": float(np.mean(values)),
            "psnr": 20.0,
            "steps": 10,
            "volumes": vols,
            "checkpoint_steps": [4, 10],
        }

    rows = {
        (le.SCRATCH, 1): row(0.0),
        (le.SCRATCH_TOTAL, 1): row(0.02, 0.001),
        (le.tuned("ssdu"), 1): row(0.02, 0.02),  # above scratch, not above equal total steps
        (le.tuned("mim"), 1): row(-0.03, 0.001),  # below both
    }
    text = le.table_markdown(rows, 3, 2, 3, 12)
    line = next(x for x in text.splitlines() if f"| {le.tuned('mim')} |" in x)
    assert (
        line.count("✓") == 2
        and line.count("-0.03") >= 1
        and line.endswith("| 10 | 4 / 10 | - | - |")
    )
    assert f"{le.tuned('mim')} is significantly below from scratch" in text
    assert f"{le.tuned('ssdu')} is significantly above from scratch" in text
    ssdu = next(x for x in text.splitlines() if f"| {le.tuned('ssdu')} |" in x)
    assert ssdu.count("✓") == 1 and ssdu.count("·") == 1
    assert "against equal total steps (not significant)" in text
    shapes = r"Patches against points \(masked modeling against SSDU, paired\): "
    shapes += r"N = 1: -0\.0[4-7]\d*"
    assert re.search(shapes + r" \[-0\.\d+, -0\.\d+\] \(significant\)\.", text)
    summary = "against from scratch at the same total steps: significantly better at N = "
    assert f"**{le.tuned('mim')}** {summary}none; significantly worse at N = 1;" in text
    assert f"**{le.tuned('ssdu')}** {summary}none; significantly worse at N = none; " in text


def test_bad_label_counts_are_refused():
    assert le._labels("1,2,all") == (1, 2, None)
    with pytest.raises(Exception, match="positive counts"):
        le._labels("0,1")


def test_the_command_line_passes_its_options(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr(le, "make_label_efficiency", lambda *a: calls.update(curve=a) or [])
    monkeypatch.setattr(le, "make_variants", lambda *a: calls.update(variants=a) or [])
    out = tmp_path / "runs.json"
    le.main(
        [
            "--labels",
            "1,all",
            "--seeds",
            "0,2",
            "--pretrain-steps",
            "6",
            "--finetune-steps",
            "4",
            "--points",
            "3",
            "--data",
            str(tmp_path),
            "--out",
            str(out),
        ]
    )
    assert calls["curve"] == ((1, None), (0, 2), 6, 4, 3, tmp_path)
    assert json.loads(out.read_text())["runs"] == []
    le.main(["--variants", "--seeds", "1", "--pretrain-steps", "5", "--data", str(tmp_path)])
    assert calls["variants"] == ((1,), 5, 5, tmp_path)
    with pytest.raises(SystemExit):
        le.main(["--labels", "0"])
