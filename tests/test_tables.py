"""The one table engine on fixture records: statistics, marks, readings, row files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kspace_mim.compare import compare, difference_statistics
from kspace_mim.tables import (
    RowSpec,
    TableSpec,
    doubling_readings,
    flatness,
    groups,
    page,
    paired,
    read_records,
    readme_summary,
    record,
    table,
    without_pauses,
    write_page,
    write_records,
)

VOLUMES = [f"file{i}.h5" for i in range(12)]


def runs(base: float, shift: float, seeds=(0, 1, 2), noise: float = 0.0, steps=100, curve=None):
    """One run per seed: volume i scores base + 0.01 i + shift (+ seeded noise)."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        volumes = {
            name: {
                "ssim": base + 0.01 * i + shift + noise * rng.standard_normal(),
                "psnr": 20 + i + 10 * shift,
                "nmse": 0.1 - shift,
            }
            for i, name in enumerate(VOLUMES)
        }
        out.append(
            {
                "seed": seed,
                "volumes": volumes,
                "steps": steps,
                "checkpoint_step": steps,
                "curve": curve or [],
                "train_s": 60.0,
            }
        )
    return out


SPEC = TableSpec(
    name="demo",
    title="Demo",
    command="make demo",
    caption="{seeds} seeds, {steps[ref]} steps, {steps[absent]} absent.",
    rows=(
        RowSpec("ref", "s", "ref"),
        RowSpec("better", "s", "better"),
        RowSpec("same", "s", "same"),
        RowSpec("worse", "s", "worse"),
        RowSpec("long", "s", "long", curve_only=True),
    ),
    reference="ref",
    contrasts=(("same", "better"),),
)


@pytest.fixture
def records():
    out = {}
    for group, scale in (("4x", 0.0), ("8x", -0.1)):
        out[("ref", group)] = record("ref", group, runs(0.6 + scale, 0.0, noise=0.001))
        out[("better", group)] = record("better", group, runs(0.6 + scale, 0.05, noise=0.002))
        # A mean difference of zero (alternating signs): not significant.
        same = runs(0.6 + scale, 0.0)
        for r in same:
            for i, name in enumerate(VOLUMES):
                r["volumes"][name]["ssim"] += 0.003 * (-1) ** i
        out[("same", group)] = record("same", group, same)
        out[("worse", group)] = record("worse", group, runs(0.6 + scale, -0.04, noise=0.002))
    return out


def test_a_record_is_the_mean_over_volumes_of_the_seed_means():
    rec = record("a", "4x", runs(0.5, 0.0, noise=0.01))
    per_volume = [
        np.mean([r["volumes"][n]["ssim"] for r in runs(0.5, 0.0, noise=0.01)]) for n in VOLUMES
    ]
    assert rec["ssim"] == pytest.approx(np.mean(per_volume))
    assert rec["seeds"] == [0, 1, 2] and len(rec["evaluations"]) == 3
    assert rec["train_minutes"] == pytest.approx(1.0)


def test_pairing_by_volume_and_by_seed_and_volume(records):
    ref, better = records[("ref", "4x")], records[("better", "4x")]
    by_volume = paired(ref, better, "volume")
    assert by_volume == compare(ref["volumes"], better["volumes"])["ssim"]
    assert by_volume["n"] == len(VOLUMES)
    by_seed = paired(ref, better, "seed_volume")
    diffs = [
        b["volumes"][n]["ssim"] - a["volumes"][n]["ssim"]
        for a, b in zip(ref["evaluations"], better["evaluations"], strict=True)
        for n in sorted(VOLUMES)
    ]
    assert by_seed == difference_statistics(np.array(diffs))
    assert by_seed["n"] == 3 * len(VOLUMES)
    with pytest.raises(ValueError, match="pairing"):
        paired(ref, better, "slice")


def test_hierarchical_pairing_pairs_each_seed_with_the_same_seed(records):
    """Seeds (each its own labelled draw) pair with the same seed, whatever their order
    or which seeds a row lacks; the interval comes from the crossed bootstrap."""
    from kspace_mim.compare import hierarchical_statistics

    ref, better = records[("ref", "4x")], records[("better", "4x")]
    stat = paired(ref, better, "hierarchical")
    expected = {
        str(s): {n: b["volumes"][n]["ssim"] - a["volumes"][n]["ssim"] for n in VOLUMES}
        for s, a, b in zip(ref["seeds"], ref["evaluations"], better["evaluations"], strict=True)
    }
    assert stat == hierarchical_statistics(expected)
    assert stat["runs"] == 3 and stat["mean_difference"] == pytest.approx(0.05, abs=0.003)
    # seed 2 only, stored first: paired with the reference's seed 2, not its first run
    shuffled = record("later", "4x", runs(0.6, 0.05, seeds=(2,), noise=0.002))
    alone = paired(ref, shuffled, "hierarchical")
    assert alone["runs"] == 1
    assert alone["mean_difference"] == pytest.approx(
        np.mean(
            [
                shuffled["volumes"][n]["ssim"] - ref["evaluations"][2]["volumes"][n]["ssim"]
                for n in VOLUMES
            ]
        )
    )
    with pytest.raises(ValueError, match="share no seed"):
        paired(ref, record("none", "4x", runs(0.6, 0.0, seeds=(7,))), "hierarchical")


def test_a_reference_that_did_not_train_pairs_with_every_seed():
    """Zero-filling is evaluated once (seed 0) and is the same for every seed: a trained
    row's three seeds each pair with it, not its seed 0 alone."""
    zero = record("zero-filled", "0", runs(0.5, 0.0, seeds=(0,), steps=None))
    trained = record("alone", "0", runs(0.6, 0.0, noise=0.01))
    stat = paired(zero, trained, "hierarchical")
    assert stat["runs"] == 3
    assert stat["mean_difference"] == pytest.approx(trained["ssim"] - zero["ssim"])
    # a trained reference with one seed so far still pairs by seed
    one = record("one seed", "0", runs(0.5, 0.0, seeds=(0,)))
    assert paired(one, trained, "hierarchical")["runs"] == 1


def test_the_table_marks_what_is_significant_and_reads_it_out(records):
    text, found = table(SPEC, records)
    lines = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in text.splitlines()[2:]}
    assert "reference" in lines[("4x", "ref")]
    assert "| ✓ |" in lines[("4x", "better")] and "| ✓ |" in lines[("8x", "worse")]
    assert "| · |" in lines[("4x", "same")]
    assert ("4x", "long") not in lines  # curve only
    assert {(g, label) for g, label, _, _ in found} == {
        (g, label) for g in ("4x", "8x") for label in ("better", "same", "worse")
    }
    full = page(SPEC, records)
    assert "At 4x, significantly above ref: better. Significantly below: worse." in full
    assert "Not distinguishable from it: same." in full
    assert "better against same (paired): 4x: +0.05" in full
    assert full.startswith("3 seeds, 100 steps, - absent.")


def test_a_control_column_and_a_reference_per_group():
    spec = TableSpec(
        name="labels",
        title="Labels",
        command="x",
        caption="",
        rows=(
            RowSpec("zero", "s", group="0"),
            RowSpec("scratch", "s"),
            RowSpec("total", "s"),
            RowSpec("tuned", "s"),
        ),
        reference="scratch",
        reference_by_group={"0": "zero"},
        control="total",
        group_by="labels",
        group_title="N",
        readme=(("total", "zero"), ("tuned",)),
    )
    recs = {
        ("zero", "0"): record("zero", "0", runs(0.5, 0.0)),
        ("tuned", "0"): record("tuned", "0", runs(0.5, 0.08, noise=0.002)),
    }
    for n in ("1", "28"):
        recs[("scratch", n)] = record("scratch", n, runs(0.6, 0.0))
        recs[("total", n)] = record("total", n, runs(0.6, 0.02, noise=0.002))
        recs[("tuned", n)] = record("tuned", n, runs(0.6, 0.05 if n == "1" else -0.03, noise=0.002))
    assert groups(recs) == ["0", "1", "28"]  # by value, not by text
    text = page(spec, recs)
    assert "At N = 0, significantly above zero: tuned." in text
    assert (
        "**tuned** against total: significantly better at N = 1; significantly worse at N = 28"
        in text
    )
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in text.splitlines()}
    cells = [c.strip() for c in rows[("28", "tuned")].split("|")]
    assert cells[7].startswith("-0.029") and cells[9].startswith("-0.0500")  # ref, control
    summary = readme_summary(spec, recs)
    assert "| 0 | 0.5550 (zero) | 0.6352 (+0.080 ✓) |" in summary
    assert "| 28 | 0.6752 | 0.6252 (-0.050 ✓) |" in summary


def test_a_paused_interval_counts_at_the_runs_median_rate():
    """A run stopped for 100 s between two validations (a shared machine running
    something else): that interval counts at the run's median seconds per step, the
    others as measured; a run that never stood still keeps its seconds."""
    steps = [0, 5, 15, 40, 100, 300]
    steady = [0.0, 2.5, 7.0, 20.0, 50.0, 150.0]  # 0.5 s a step, a slow first interval
    assert without_pauses(steps, steady) == steady
    paused = [0.0, 2.5, 7.0, 20.0, 150.0, 250.0]  # 40 -> 100 stood paused
    assert without_pauses(steps, paused) == pytest.approx([0.0, 2.5, 7.0, 20.0, 50.0, 150.0])
    # two intervals cannot tell a pause from a rate: unchanged
    assert without_pauses([0, 5, 100], [0.0, 2.5, 500.0]) == [0.0, 2.5, 500.0]


def test_flatness_names_the_curves_still_rising():
    rising = [{"step": 10, "train_s": 1, "ssim": 0.5}, {"step": 100, "train_s": 9, "ssim": 0.6}]
    flat = [{"step": 10, "train_s": 1, "ssim": 0.6}, {"step": 100, "train_s": 9, "ssim": 0.601}]
    recs = {
        ("ref", "4x"): record("ref", "4x", runs(0.6, 0.0, curve=flat)),
        ("better", "4x"): record("better", "4x", runs(0.6, 0.05, curve=rising)),
    }
    text = flatness(SPEC, recs)
    assert "better +0.100 (10 -> 100)" in text and "ref +0.001 (10 -> 100)" in text
    assert "Still rising (more than 0.005 over the last interval): better:" in text


def test_flatness_reads_every_n_on_a_labels_page():
    """A row flat at N = 1 but still rising with all labels is named at that N: the
    converged end is the one that must flatten."""
    rising = [{"step": 10, "train_s": 1, "ssim": 0.5}, {"step": 100, "train_s": 9, "ssim": 0.6}]
    flat = [{"step": 10, "train_s": 1, "ssim": 0.6}, {"step": 100, "train_s": 9, "ssim": 0.601}]
    spec = TableSpec(
        name="labels",
        title="Labels",
        command="x",
        caption="",
        rows=(RowSpec("scratch", "s"),),
        reference="scratch",
        group_by="labels",
        group_title="N",
    )
    recs = {
        ("scratch", "1"): record("scratch", "1", runs(0.6, 0.0, curve=flat)),
        ("scratch", "41"): record("scratch", "41", runs(0.6, 0.0, curve=rising)),
    }
    text = flatness(spec, recs)
    assert "scratch (N = 1) +0.001 (10 -> 100)" in text
    assert "Still rising (more than 0.005 over the last interval): scratch (N = 41):" in text


def test_a_rows_minutes_are_the_median_over_seeds_also_from_older_row_files(tmp_path):
    """A seed that stood paused (600 s against 60 s) does not move a row's minutes: the
    median over seeds; a row file written when they were the mean of its curves' last
    seconds reads as the median; minutes from elsewhere (no curve) stay as written."""
    curve = [{"step": 1, "train_s": 1.0, "ssim": 0.5}]
    seeds = runs(0.7, 0.0, curve=curve)
    for run, seconds in zip(seeds, (60.0, 60.0, 600.0), strict=True):
        run["train_s"] = seconds
        run["curve"] = [{**curve[0], "train_s": seconds}]
    rec = record("ref", "4x", seeds)
    assert rec["train_minutes"] == pytest.approx(1.0)
    assert "the median over seeds" in page(SPEC, {("ref", "4x"): rec})
    folder = tmp_path / "rows"
    write_records(SPEC, {("ref", "4x"): {**rec, "train_minutes": 4.0}}, folder)  # the mean
    assert read_records(folder)[("ref", "4x")]["train_minutes"] == pytest.approx(1.0)
    write_records(SPEC, {("ref", "4x"): {**rec, "train_minutes": 7.0}}, folder)  # not theirs
    assert read_records(folder)[("ref", "4x")]["train_minutes"] == 7.0


def test_doubling_the_budget_reads_what_each_doubling_gained_on_validation():
    """A chain of the same recipe at doubling budgets: each run's best validation SSIM
    (mean over seeds), each doubling's gain, and the first budget whose doubling gained
    less than 0.005 named flat; a chain gaining at every doubling is not converged."""

    def rec(label: str, best: tuple[float, float]) -> dict:
        curves = [
            [{"step": 0, "train_s": 0, "ssim": 0.1}, {"step": 9, "train_s": 1, "ssim": b}]
            for b in best
        ]
        return {**record(label, "4x", runs(0.7, 0.0, seeds=(0, 1))), "curves": curves}

    chain = ("short", "twice", "four times")
    rising = ("a", "b")
    records = {
        ("short", "4x"): rec("short", (0.79, 0.81)),
        ("twice", "4x"): rec("twice", (0.83, 0.83)),
        ("four times", "4x"): rec("four times", (0.832, 0.83)),
        ("a", "4x"): rec("a", (0.70, 0.70)),
        ("b", "4x"): rec("b", (0.72, 0.72)),
    }
    spec = TableSpec(**{**SPEC.__dict__, "doublings": (chain, rising)})
    flat, still = doubling_readings(spec, records)
    assert "short: 0.8000; twice: 0.8300 (+0.0300); four times: 0.8310 (+0.0010)" in flat
    assert flat.endswith(". Flat from twice on (its doubling gained less than 0.005).")
    assert "b: 0.7200 (+0.0200). Still gaining" in still and still.endswith("not converged.")
    assert flat in page(spec, records)


def test_row_files_round_trip_and_hold_only_the_pages_rows(tmp_path, records):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "old_row_4x.json").write_text("{}")
    paths = write_records(SPEC, records, folder)
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(p.name for p in paths)
    assert (folder / "better_4x.json").is_file()
    back = read_records(folder)
    assert back.keys() == records.keys()
    assert back[("better", "4x")] == json.loads(json.dumps(records[("better", "4x")]))
    assert page(SPEC, back) == page(SPEC, records)
    (folder / "stray.json").write_text('{"not": "a record"}')
    with pytest.raises(ValueError, match="stray.json: not a row record"):
        read_records(folder)
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "empty")


def test_a_page_is_written_with_its_row_files_picture_and_readme_section(tmp_path, records):
    (tmp_path / "README.md").write_text("x\n<!-- demo:start -->\nold\n<!-- demo:end -->\ny\n")
    spec = TableSpec(**{**SPEC.__dict__, "readme": (("ref",), ("better",))})
    path = write_page(spec, records, tmp_path)
    assert path == tmp_path / "docs" / "demo.md"
    assert "Generated by `make demo`." in path.read_text()
    assert (tmp_path / "docs" / "demo.png").stat().st_size > 10_000
    assert len(list((tmp_path / "docs" / "demo").glob("*.json"))) == len(records)
    readme = (tmp_path / "README.md").read_text()
    assert "\nold\n" not in readme and "| 4x | 0.6551 | 0.7052 (+0.050 ✓) |" in readme


def test_the_readme_repeats_the_contrasts_it_is_asked_to(tmp_path, records):
    """A contrast named in ``readme_contrasts`` is read out in the README's section too
    (the page's sentence in short: difference, CI and mark; its p on the page), others
    stay on the page. The README calls rows by their ``readme_names`` where given (table
    and sentences), the page by their full labels."""
    (tmp_path / "README.md").write_text("<!-- demo:start -->\n<!-- demo:end -->\n")
    spec = TableSpec(
        **{
            **SPEC.__dict__,
            "readme": (("ref",), ("better",)),
            "contrasts": (("same", "better"), ("ref", "worse")),
            "readme_contrasts": (("same", "better"),),
            "readme_names": {"better": "the better one"},
        }
    )
    write_page(spec, records, tmp_path, picture=False)
    readme = (tmp_path / "README.md").read_text()
    sentence = next(
        line for line in readme.splitlines() if line.startswith("The better one against same:")
    )
    page = (tmp_path / "docs" / "demo.md").read_text()
    stat = paired(records[("same", "4x")], records[("better", "4x")], spec.pairing)
    (lo, hi), mean = stat["ci95"], stat["mean_difference"]
    assert sentence.startswith(
        f"The better one against same: 4x: {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] ✓;"
    )
    assert "| accel. | ref | the better one |" in readme
    assert "better against same (paired): 4x: " in page and "the better one" not in page
    assert f"4x: {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] (significant, p = " in page
    assert "worse against ref" not in readme and "worse against ref (paired)" in page


def test_a_page_reads_the_same_whatever_order_its_records_come_in(records):
    """Jobs and row files hand the records over in different orders: the page (the
    flatness sentence included) follows the spec's rows, so ``make tables`` changes
    nothing."""
    curve = [{"step": 10, "train_s": 1.0, "ssim": 0.5}, {"step": 20, "train_s": 2.0, "ssim": 0.6}]
    with_curves = {k: record(k[0], k[1], runs(0.6, 0.0, curve=curve)) for k in records}
    backwards = dict(reversed(list(with_curves.items())))
    text = page(SPEC, with_curves)
    assert "Validation SSIM gained" in text and page(SPEC, backwards) == text


def test_a_hierarchical_page_shows_each_seeds_own_test_and_the_last_step():
    """Pairing by seed and volume: the table marks each seed's own Wilcoxon test (here
    seed 1 gains nothing: · in its place), the page reads each seed's difference and p,
    the README's sentence does not; the last step's SSIM stands beside the chosen one."""
    spec = TableSpec(**{**SPEC.__dict__, "pairing": "hierarchical"})
    better = runs(0.6, 0.05, noise=0.002)
    for i, name in enumerate(VOLUMES):  # seed 1: a zero mean difference
        better[1]["volumes"][name]["ssim"] = 0.6 + 0.01 * i + 0.003 * (-1) ** i
    for r, last in zip(better, (0.61, 0.62, 0.66), strict=True):
        r["ssim_last"] = last
    recs = {
        ("ref", "4x"): record("ref", "4x", runs(0.6, 0.0, noise=0.001)),
        ("better", "4x"): record("better", "4x", better),
        ("same", "4x"): record("same", "4x", runs(0.6, 0.0, noise=0.002)),
    }
    assert recs[("better", "4x")]["ssim_last"] == pytest.approx(0.63)
    assert recs[("ref", "4x")]["ssim_last"] is None
    text, found = table(spec, recs)
    head = [c.strip() for c in text.splitlines()[0].split("|")[1:-1]]
    rows = {line.split("|")[2].strip(): line.split("|")[1:-1] for line in text.splitlines()[2:]}
    cells = dict(zip(head, [c.strip() for c in rows["better"]], strict=True))
    assert cells["SSIM, last step"] == "0.6300" and cells["sig. per seed"] == "✓ · ✓"
    assert dict(zip(head, [c.strip() for c in rows["ref"]], strict=True))["SSIM, last step"] == "-"
    stat = next(s for _, label, s, _ in found if label == "better")
    assert [r["significant"] for _, r in sorted(stat["per_run"].items())] == [True, False, True]
    full = page(spec, recs)
    sentence = next(line for line in full.splitlines() if line.startswith("better against same"))
    assert sentence.count("per seed") == 1 and sentence.count("(p = ") == 3
    # A page whose records hold no last step and pair by volume keeps its columns.
    plain, _ = table(SPEC, {k: {**v, "ssim_last": None} for k, v in recs.items()})
    assert "SSIM, last step" not in plain and "sig. per seed" not in plain


def test_a_readme_section_of_readings_alone(tmp_path, records):
    """readme_table=False: the README's section is the contrasts' sentences and the link,
    no table and no picture (a second selection of the same rows, read in a line)."""
    (tmp_path / "README.md").write_text("<!-- demo:start -->\n<!-- demo:end -->\n")
    spec = TableSpec(
        **{
            **SPEC.__dict__,
            "readme": (("ref",), ("better",)),
            "readme_contrasts": (("same", "better"),),
            "readme_table": False,
        }
    )
    write_page(spec, records, tmp_path, picture=False)
    readme = (tmp_path / "README.md").read_text()
    assert "Better against same: 4x: +0.05" in readme and "(docs/demo.md)" in readme
    assert "| accel. |" not in readme and "![" not in readme
    assert "| accel. |" in (tmp_path / "docs" / "demo.md").read_text()


def test_settings_chosen_on_validation_name_their_row_when_several_chose():
    """One row choosing its setting: "group: setting" (the results page's CS row); several:
    each named with its row, so a reader knows whose learning rate it was."""
    base = {"setting": "learning rate 0.001", "val_ssim": 0.7, "val_grid": {}}
    recs = {
        ("ref", "4x"): record("ref", "4x", runs(0.6, 0.0)),
        ("better", "4x"): {**record("better", "4x", runs(0.6, 0.05)), "chosen_on_val": base},
    }
    assert "Settings chosen on validation (4x: learning rate 0.001)." in page(SPEC, recs)
    other = {**base, "setting": "learning rate 0.0003"}
    recs[("same", "4x")] = {**record("same", "4x", runs(0.6, 0.0)), "chosen_on_val": other}
    text = page(SPEC, recs)
    assert "better, 4x: learning rate 0.001" in text and "same, 4x: learning rate 0.0003" in text


def test_a_setting_chosen_from_one_run_says_so():
    """A row offered two learning rates whose second did not run (yet) is named: the
    page's caption promises a choice that row did not have."""
    both = {"learning rate 0.001": 0.71, "learning rate 0.0003": 0.70}
    chose = {"setting": "learning rate 0.001", "val_ssim": 0.71, "val_grid": both}
    recs = {
        ("ref", "4x"): record("ref", "4x", runs(0.6, 0.0)),
        ("better", "4x"): {**record("better", "4x", runs(0.6, 0.05)), "chosen_on_val": chose},
    }
    assert "(4x: learning rate 0.001)." in page(SPEC, recs)
    one = {**chose, "val_grid": {"learning rate 0.001": 0.71}}
    recs[("better", "4x")]["chosen_on_val"] = one
    assert "(4x: learning rate 0.001 (the only setting run))." in page(SPEC, recs)


def test_the_plot_names_curved_rows_once_in_colours_of_their_own(monkeypatch, tmp_path):
    """12 rows: 12 colours (the default cycle has 10, so two rows would share one); the
    test-SSIM panel's legend names only the row without a curve (the curves' panel names
    the others), so it covers fewer of its points."""
    import matplotlib.colors

    import kspace_mim.figures
    from kspace_mim.tables import plot

    figures = []
    monkeypatch.setattr(kspace_mim.figures, "save_figure", lambda fig, path: figures.append(fig))
    labels = [f"row {i}" for i in range(12)]
    spec = TableSpec(
        name="many",
        title="Many",
        command="x",
        caption="",
        rows=tuple(RowSpec(label, "s", label) for label in labels),
        reference="row 0",
    )
    curve = [{"step": 10, "train_s": 1.0, "ssim": 0.5}, {"step": 100, "train_s": 9.0, "ssim": 0.6}]
    recs = {
        (label, "4x"): record(label, "4x", runs(0.6, 0.01 * i, curve=curve if i else None))
        for i, label in enumerate(labels)
    }
    plot(spec, recs, tmp_path / "many.png")
    left, *_, right = figures[0].axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["row 0"]
    assert [t.get_text() for t in right.get_legend().get_texts()] == labels[1:]
    colours = {matplotlib.colors.to_hex(line.get_color()) for line in left.get_lines()}
    assert len(colours) == 12


def test_the_curves_start_at_step_0_inside_their_panels(monkeypatch, tmp_path):
    """Step 0 (the untrained network) is every curve's first point: each curve panel
    draws it at x = 0 inside its limits, not clipped off a logarithmic axis."""
    import kspace_mim.figures
    from kspace_mim.tables import plot

    figures = []
    monkeypatch.setattr(kspace_mim.figures, "save_figure", lambda fig, path: figures.append(fig))
    spec = TableSpec(
        name="start",
        title="Start",
        command="x",
        caption="",
        rows=(RowSpec("a", "s", "a"), RowSpec("b", "s", "b")),
        reference="a",
        flops=False,  # the fake records count none
    )
    curve = [
        {"step": 0, "train_s": 0.0, "ssim": 0.4},
        {"step": 18, "train_s": 2.0, "ssim": 0.7},
        {"step": 900, "train_s": 90.0, "ssim": 0.8},
    ]
    recs = {(label, "4x"): record(label, "4x", runs(0.6, 0.0, curve=curve)) for label in "ab"}
    plot(spec, recs, tmp_path / "start.png")
    _, *panels = figures[0].axes
    assert len(panels) == 2  # steps, seconds
    for ax in panels:
        x = ax.get_lines()[0].get_xdata()
        assert x[0] == 0 and x[1] > 0
        low, high = ax.get_xlim()
        assert low <= 0 < high
        start, first = (ax.transData.transform((v, 0.5))[0] for v in x[:2])
        left = ax.transAxes.transform((0, 0))[0]
        assert np.isfinite(start) and left <= start < first  # step 0 drawn, left of the next
