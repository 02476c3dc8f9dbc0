"""The generated results table."""

from __future__ import annotations

from kspace_mim.results import MARK_END, MARK_START, make_results


def test_results_table_is_generated(data_root, tmp_path):
    data = tmp_path / "synthetic"
    (data).mkdir()
    (data / "multicoil_train").symlink_to(data_root / "multicoil_train")
    (data / "multicoil_val").symlink_to(data_root / "multicoil_val")
    (tmp_path / "README.md").write_text(f"# x\n{MARK_START}\nold\n{MARK_END}\nend\n")
    rows = make_results(steps=2, data=data, out_dir=tmp_path / "runs", batch_size=2, root=tmp_path)
    assert len(rows) == 10  # 5 models x 2 accelerations
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and readme.endswith(f"{MARK_END}\nend\n")
    for row in rows:
        assert f"| {row['model']} | {row['acceleration']}x | {row['ssim']:.4f} |" in readme
    assert "the U-Net at equal budget" in (tmp_path / "docs" / "results.md").read_text()
