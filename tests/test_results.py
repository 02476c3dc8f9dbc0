"""The generated results table: every model at an equal budget, means over seeds."""

from __future__ import annotations

import statistics

import pytest

from kspace_mim.results import (
    MARK_END,
    MARK_START,
    MODELS,
    as_max_time,
    make_label_results,
    make_results,
    summarize,
)
from kspace_mim.utils import markers

pytestmark = pytest.mark.slow


def test_results_table_is_generated(data_root, tmp_path):
    data = tmp_path / "synthetic"
    (data).mkdir()
    (data / "multicoil_train").symlink_to(data_root / "multicoil_train")
    (data / "multicoil_val").symlink_to(data_root / "multicoil_val")
    (tmp_path / "README.md").write_text(f"# x\n{MARK_START}\nold\n{MARK_END}\nend\n")
    rows = make_results(
        steps=2, seeds=(0, 1), data=data, out_dir=tmp_path / "runs", batch_size=2, root=tmp_path
    )
    trained = len(MODELS) - 1  # zero-filled runs once
    assert len(rows) == 2 * (1 + 2 * trained)  # 2 accelerations, 2 seeds per trained model
    assert all(r["steps"] == 2 and r["parameters"] > 0 for r in rows if r["trained"])
    assert len(list((tmp_path / "runs").glob("pretrain_*_seed*"))) == 2  # once per seed
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and readme.endswith(f"{MARK_END}\nend\n")
    for s in summarize(rows):
        runs = [
            r["ssim"]
            for r in rows
            if r["model"] == s["model"] and r["acceleration"] == s["acceleration"]
        ]
        assert s["ssim"] == pytest.approx(statistics.fmean(runs))
        cell = f"{s['ssim']:.4f}" + (f" ({min(runs):.4f}-{max(runs):.4f})" if len(runs) > 1 else "")
        assert f"| {s['model']} | {s['acceleration']}x | {cell} |" in readme
    page = (tmp_path / "docs" / "results.md").read_text()
    assert "At 4x, against E2E-VarNet's SSIM" in page and "At 8x, against E2E-VarNet's" in page
    assert (tmp_path / "docs" / "overview.png").is_file()


def test_budget_in_lightning_format():
    assert as_max_time(90) == "00:00:01:30"
    assert as_max_time(3725) == "00:01:02:05"


def test_command_line_passes_budget_and_seeds_and_writes_json(tmp_path, monkeypatch, capsys):
    """`python -m kspace_mim.results --budget 30 --seeds 3,4 --out F` (what `make results`
    runs), with the training itself stubbed: arguments reach make_results, rows reach F."""
    import json

    from kspace_mim import results

    seen = {}

    def fake(budget_s, seeds, data, batch_size):
        seen.update(budget_s=budget_s, seeds=seeds, data=data, batch_size=batch_size)
        return [{"model": "zero-filled", "ssim": 0.5}]

    monkeypatch.setattr(results, "make_results", fake)
    out = tmp_path / "results.json"
    results.main(["--budget", "30", "--seeds", "3,4", "--batch", "2", "--out", str(out)])
    assert seen == {"budget_s": 30, "seeds": (3, 4), "data": None, "batch_size": 2}
    assert json.loads(out.read_text())["results"] == [{"model": "zero-filled", "ssim": 0.5}]
    assert json.loads(capsys.readouterr().out)["machine"]["cpu_cores"] >= 1


def test_label_efficiency_table_is_generated(data_root, tmp_path):
    """The SSDU table: the undersampled-only folder holds the train folder's anatomy, the
    fine-tuning starts from the SSDU run of its seed, every row and verdict is written."""
    import h5py
    import numpy as np

    data = tmp_path / "synthetic"
    data.mkdir()
    (data / "multicoil_train").symlink_to(data_root / "multicoil_train")
    (data / "multicoil_val").symlink_to(data_root / "multicoil_val")
    start, end = markers("label_efficiency")
    (tmp_path / "README.md").write_text(f"# x\n{start}\nold\n{end}\n")
    rows = make_label_results(
        steps=2,
        seeds=(0,),
        data=data,
        out_dir=tmp_path / "runs",
        batch_size=2,
        root=tmp_path,
        few=1,
        synthesis={"volumes": 5, "slices": 3, "coils": 4, "size": 32},  # as data_root's
    )
    name = "file1000000.h5"
    with (
        h5py.File(data / "multicoil_train" / name) as full,
        h5py.File(data / "multicoil_train_undersampled4x" / name) as under,
    ):
        mask = under["mask"][()]
        np.testing.assert_array_equal(under["kspace"][()], np.where(mask, full["kspace"][()], 0))
    assert [r["model"] for r in rows] == [
        "zero-filled",
        "supervised, 1 fully sampled volumes",
        "SSDU only, 5 undersampled-only volumes",
        "SSDU pre-trained + supervised fine-tuned on the 1",
        "supervised, all 5 volumes fully sampled",
    ]
    saved = (tmp_path / "runs" / "ssdu_finetuned" / "seed0" / "config.yaml").read_text()
    assert f"init_from: {tmp_path / 'runs' / 'ssdu' / 'seed0'}" in saved
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme
    for r in rows:
        assert f"| {r['model']} | {r['ssim']:.4f} |" in readme
    assert "SSDU alone reaches SSIM" in readme and "SSDU pre-training then fine-tuning" in readme
