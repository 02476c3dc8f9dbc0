"""Paired statistics between two evaluations: equal to scipy on the same numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from kspace_mim.compare import bootstrap_ci, compare, load_volumes, significant


def evaluation(values: dict[str, float]) -> dict:
    """An evaluate-style JSON: per-volume SSIM / PSNR / NMSE (PSNR and NMSE derived)."""
    return {
        "volumes": {
            name: {"ssim": v, "psnr": 20 + 10 * v, "nmse": 0.1 * (1 - v)}
            for name, v in values.items()
        }
    }


RNG = np.random.default_rng(0)
NAMES = [f"file{i}.h5" for i in range(15)]
A = dict(zip(NAMES, RNG.uniform(0.6, 0.8, 15), strict=True))
BETTER = {n: v + 0.02 + RNG.normal(0, 0.005) for n, v in A.items()}
SAME = {n: v + RNG.normal(0, 0.01) for n, v in A.items()}


def test_equals_scipy_wilcoxon_and_bootstrap_on_the_same_numbers():
    result = compare(evaluation(A)["volumes"], evaluation(BETTER)["volumes"])
    diff = np.array([BETTER[n] - A[n] for n in sorted(NAMES)])
    s = result["ssim"]
    assert s["n"] == 15
    assert s["mean_difference"] == pytest.approx(diff.mean())
    assert s["wilcoxon_p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    reference = stats.bootstrap(
        (diff,), np.mean, n_resamples=10000, method="percentile", random_state=1
    ).confidence_interval
    lo, hi = s["ci95"]
    width = reference.high - reference.low
    assert lo == pytest.approx(reference.low, abs=0.1 * width)
    assert hi == pytest.approx(reference.high, abs=0.1 * width)
    # NMSE falls as SSIM rises here: its difference has the other sign.
    assert result["nmse"]["mean_difference"] < 0 < result["psnr"]["mean_difference"]


def test_significance_follows_the_data():
    better = compare(evaluation(A)["volumes"], evaluation(BETTER)["volumes"])["ssim"]
    same = compare(evaluation(A)["volumes"], evaluation(SAME)["volumes"])["ssim"]
    assert significant(better) and better["ci95"][0] > 0
    assert not significant(same) and same["ci95"][0] < 0 < same["ci95"][1]
    identical = compare(evaluation(A)["volumes"], evaluation(A)["volumes"])["ssim"]
    assert identical["wilcoxon_p"] == 1.0 and identical["ci95"] == [0.0, 0.0]


def test_volumes_are_paired_by_name_and_unpaired_ones_named():
    a = evaluation(A)["volumes"]
    b = {n: a[n] for n in reversed(NAMES[:10])}  # another order, five missing
    result = compare(a, b)
    assert result["ssim"]["n"] == 10 and result["ssim"]["mean_difference"] == 0
    assert result["unpaired_volumes"] == sorted(NAMES[10:])
    with pytest.raises(ValueError, match="share no volume"):
        compare(a, {"other.h5": a[NAMES[0]]})


def test_bootstrap_interval_holds_the_mean():
    diff = np.array(list(BETTER.values())) - np.array(list(A.values()))
    lo, hi = bootstrap_ci(diff)
    assert lo < diff.mean() < hi and hi - lo < 0.02


def test_command_line_prints_and_writes_the_statistics(tmp_path):
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "stats" / "ab.json"
    a.write_text(json.dumps(evaluation(A)))
    b.write_text(json.dumps(evaluation(BETTER)))
    cmd = [sys.executable, "-m", "kspace_mim.compare", str(a), str(b), "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "ssim" in proc.stdout and "(significant)" in proc.stdout
    written = json.loads(out.read_text())
    assert set(written) == {"ssim", "psnr", "nmse"}
    assert set(written["ssim"]) == {"mean_difference", "ci95", "wilcoxon_p", "n"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ssim": 0.5}))
    proc = subprocess.run(cmd[:3] + [str(a), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no per-volume metrics" in proc.stderr
    with pytest.raises(FileNotFoundError):
        load_volumes(tmp_path / "missing.json")
    # An output that is a link is refused before any work; its target is untouched.
    victim = tmp_path / "victim.json"
    victim.write_text("original")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    proc = subprocess.run([*cmd[:6], str(link)], capture_output=True, text=True)
    assert proc.returncode == 2 and "symbolic link" in proc.stderr
    assert victim.read_text() == "original"


def test_the_hierarchical_bootstrap_widens_when_runs_disagree():
    """One run: about the volume bootstrap's interval. Runs that agree: as narrow;
    runs that disagree by a run-level offset: wider, and the per-run tests say which
    run alone shows the difference."""
    from kspace_mim.compare import hierarchical_statistics

    rng = np.random.default_rng(0)
    volume_effect = 0.02 + 0.01 * rng.standard_normal(13)
    one = hierarchical_statistics({"s0": dict(enumerate(volume_effect))})
    lo, hi = bootstrap_ci(volume_effect)
    assert one["runs"] == 1 and one["n"] == 13
    assert one["ci95"][1] - one["ci95"][0] == pytest.approx(hi - lo, rel=0.15)
    agree = {f"s{i}": dict(enumerate(volume_effect + 1e-4 * i)) for i in range(3)}
    offsets = (-0.03, 0.0, 0.09)
    disagree = {f"s{i}": dict(enumerate(volume_effect + o)) for i, o in enumerate(offsets)}
    narrow, wide = hierarchical_statistics(agree), hierarchical_statistics(disagree)
    assert wide["ci95"][1] - wide["ci95"][0] > 3 * (narrow["ci95"][1] - narrow["ci95"][0])
    assert significant(narrow) and not significant(wide)
    assert wide["mean_difference"] == pytest.approx(volume_effect.mean() + 0.02)
    assert [wide["per_run"][s]["significant"] for s in ("s0", "s1", "s2")] == [True, True, True]
    assert wide["per_run"]["s0"]["mean_difference"] < 0 < wide["per_run"]["s2"]["mean_difference"]
    with pytest.raises(ValueError, match="other volumes"):
        hierarchical_statistics({"a": {"v1": 0.1}, "b": {"v2": 0.1}})
