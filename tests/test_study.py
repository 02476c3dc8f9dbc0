"""Studies as sweeps: rows are configs, job directories are rows x seeds, and one engine
writes every page (from the jobs, or again from the committed row files)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kspace_mim import study, tables
from kspace_mim.config import compose, project_root
from kspace_mim.data.synthesize import synthesize_set
from kspace_mim.tables import TableSpec, read_records

ROOT = Path(project_root())
VOLUMES = ["a.h5", "b.h5", "c.h5", "d.h5", "e.h5", "f.h5"]


def fake_job(
    study_dir: Path, name: str, choices: dict, config: dict, metrics: dict, status="finished"
):
    """A job directory as Hydra and ``kspace_mim.train`` leave it."""
    job = study_dir / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}})
    )
    (job / "config.yaml").write_text(yaml.safe_dump(config))
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "status.json").write_text(json.dumps({"status": status}))
    return job


def scores(base: float) -> dict:
    return {
        v: {"ssim": base + 0.01 * i, "psnr": 20.0 + i, "nmse": 0.1} for i, v in enumerate(VOLUMES)
    }


def jobs_at_one_and_all(
    tmp_path: Path, study_dir: Path, row: str, volumes: int, best: bool = False
) -> None:
    """A row's finished jobs (seed 0) at N = 1 and N = all (``data.train_volumes`` null)
    over a train folder of ``volumes`` files; ``best``: evaluated at the best checkpoint."""
    data = tmp_path / "train"
    data.mkdir(exist_ok=True)
    for i in range(volumes):
        (data / f"f{i}.h5").write_text("")
    for n in (1, None):
        config = {"seed": 0, "trainer": {"max_steps": 3}}
        config["data"] = {"train_volumes": n, "train_path": str(data)}
        if best:
            config["evaluation"] = {"checkpoint": "best"}
        metrics = {"ssim": 0.5, "tests": {"equispaced4x": {"volumes": scores(0.6)}}}
        fake_job(
            study_dir,
            f"n={n},row={row},seed=0",
            {"row": row, "model": "swin"},
            config,
            {**metrics, "selected_on": "val"},
        )


def test_jobs_become_records_per_acceleration_with_cs_chosen_on_validation(tmp_path):
    studies = tmp_path / "studies"
    for seed in (0, 1):
        for row, shift in (("varnet", 0.0), ("unet", 0.03)):
            # pre-trained rows count their pre-training's steps
            config = {"seed": seed, "trainer": {"max_steps": 40}, "init_from": None, "model": {}}
            if row == "unet":
                pre = fake_job(
                    studies / "pre",
                    f"seed={seed}",
                    {"row": "p"},
                    {"seed": seed, "trainer": {"max_steps": 10}},
                    {},
                )
                config["init_from"] = str(pre / "checkpoints" / "last.ckpt")
            tests = {
                "equispaced4x": {"volumes": scores(0.7 + shift)},
                "equispaced8x": {"volumes": scores(0.6 + shift)},
            }
            fake_job(
                studies / "results",
                f"row={row},seed={seed}",
                {"row": row, "model": row},
                config,
                {
                    "ssim": 0.5,
                    "volumes": scores(0.5),
                    "tests": tests,
                    "selected_on": "val",
                    "checkpoint_step": 30,
                },
            )
    fake_job(studies / "results", "row=swin,seed=0", {"row": "swin"}, {}, {}, status="failed")
    for maps, lamda, val in (("centre", 0.003, 0.7), ("espirit", 0.01, 0.6)):
        for mask in ("equispaced4x", "equispaced8x"):
            fake_job(
                studies / "results_cs",
                f"mask={mask},maps={maps},lamda={lamda}",
                {"row": "cs", "mask": mask},
                {"seed": 0, "trainer": {"max_steps": 400}, "model": {"maps": maps, "lamda": lamda}},
                {"ssim": val, "test": {"volumes": scores(val)}, "selected_on": None},
            )
    spec = TableSpec(
        **{
            **study.RESULTS.__dict__,
            "rows": tuple(
                r for r in study.RESULTS.rows if r.option in ("varnet", "unet", "cs", "swin")
            ),
            "flops": False,
        }
    )
    records = study.study_records(spec, tmp_path)
    assert set(records) == {
        (label, g)
        for g in ("4x", "8x")
        for label in (
            "E2E-VarNet, fastMRI recipe",
            "U-Net, fastMRI recipe",
            "CS (L1-wavelet SENSE)",
        )
    }  # the failed job is left out
    unet = records[("U-Net, fastMRI recipe", "4x")]
    assert unet["seeds"] == [0, 1] and unet["steps"] == 50 and unet["checkpoint_steps"] == [40, 40]
    assert unet["ssim"] == pytest.approx(0.73 + 0.025)
    cs = records[("CS (L1-wavelet SENSE)", "8x")]
    assert cs["chosen_on_val"]["setting"] == "maps centre, lamda 0.003" and cs[
        "ssim"
    ] == pytest.approx(0.725)
    assert cs["steps"] is None
    text = tables.page(spec, records)
    assert "At 4x, significantly above E2E-VarNet, fastMRI recipe: U-Net, fastMRI recipe" in text


def test_label_pages_group_by_labelled_volumes(tmp_path):
    jobs_at_one_and_all(tmp_path, tmp_path / "studies" / "label_efficiency", "scratch", 3)
    fake_job(
        tmp_path / "studies" / "label_pretrain",
        "row=ssdu,seed=0",
        {"row": "ssdu"},
        {"seed": 0, "trainer": {"max_steps": 6}, "data": {}},
        {"ssim": 0.5, "tests": {"equispaced4x": {"volumes": scores(0.65)}}, "selected_on": "val"},
    )
    spec = TableSpec(**{**study.LABEL_EFFICIENCY.__dict__, "flops": False})
    records = study.study_records(spec, tmp_path)
    assert set(records) == {("from scratch", "1"), ("from scratch", "3"), ("SSDU alone", "0")}


def test_the_long_page_keeps_n_all_and_reads_the_folders_its_experiments_write(
    tmp_path, hydra_job_config
):
    """docs/few_labels_long.md: the study's own jobs at budget 1 and
    experiment=few_labels_long's at 2, 4 and 8, N = all only (the study's N = 1 jobs are left
    out); each row's folder is the one its experiment writes, and fine-tuning reads the
    pre-training at its own budget."""
    spec = study.FEW_LABELS_LONG
    base = ["model=swin", "seed=1", "paths.output_dir=/o", "data.train_volumes=null"]
    for factor in study.LONG_BUDGETS[1:]:
        pre = hydra_job_config(
            ["experiment=few_labels_long_pretrain", "row=ssdu", f"budget.steps={factor}", *base]
        )
        written = Path(pre.hydra.sweep.dir) / pre.hydra.sweep.subdir / "checkpoints" / "last.ckpt"
        assert pre.trainer.max_steps == 600 * factor
        for option, steps in (("ssdu_tuned", 300), ("scratch_equal_total", 900)):
            job = hydra_job_config(
                ["experiment=few_labels_long", f"row={option}", f"budget.steps={factor}", *base]
            )
            assert job.trainer.max_steps == steps * factor and job.data.train_volumes is None
            folder = Path(job.hydra.sweep.dir) / job.hydra.sweep.subdir
            row = next(r for r in spec.rows if r.option == option and f"x{factor}" in r.study)
            assert folder.parent == Path("/o/studies") / row.study
            assert f"{steps * factor:,} steps" in row.label
            if option == "ssdu_tuned":
                assert job.init_from == str(written)
    # `make results-few-labels-long` runs every budget the page reads, no other
    for config in (pre, job):
        swept = str(config.hydra.sweeper.params["budget.steps"]).split(",")
        assert [int(f) for f in swept] == [*study.LONG_BUDGETS[1:]]
    study_dir = tmp_path / "studies" / "few_labels" / "model=swin"
    jobs_at_one_and_all(tmp_path, study_dir, "scratch_equal_total", 41, best=True)
    mine = TableSpec(**{**spec.__dict__, "flops": False})
    records = study.study_records(mine, tmp_path)
    assert set(records) == {("from scratch, 900 steps", "41")}


def few_labels_jobs(studies: Path) -> None:
    """Jobs of both few-labels studies (two seeds, N = 1) whose three selections score
    differently: main = the job's own choice, ``also`` = the others."""
    also = ["best", "heldout", "last"]

    def tested(base: float, step: int, val: float = 0.7, heldout: float = 1.0) -> dict:
        return {
            "tests": {"equispaced4x": {"volumes": scores(base)}},
            "checkpoint_step": step,
            "val": {"ssim": val, "heldout_loss": heldout},
        }

    fake_job(
        studies / "few_labels_pretrain" / "model=zero_filled",
        "row=zero_filled,seed=0",
        {"row": "zero_filled", "model": "zero_filled"},
        {
            "seed": 0,
            "trainer": {"max_steps": 1},
            "evaluation": {"checkpoint": "best", "also": also},
        },
        {"tests": {"equispaced4x": {"volumes": scores(0.40)}}},
    )
    for seed in (0, 1):
        lift = 0.002 * seed
        pre = fake_job(
            studies / "few_labels_pretrain" / "model=swin",
            f"row=ssdu,seed={seed}",
            {"row": "ssdu", "model": "swin"},
            {
                "seed": seed,
                "trainer": {"max_steps": 600},
                "data": {},
                "evaluation": {"checkpoint": "last", "also": also},
            },
            {
                **tested(0.60 + lift, 600),
                "selected_on": "val",
                "also": {"best": tested(0.62 + lift, 400), "heldout": tested(0.61 + lift, 500)},
            },
        )
        # ssdu_tuned_lr3e4: below ssdu_tuned on labelled validation, above it by the
        # held-out loss (0.9 < 1.0): each page's learning-rate row chooses another rate
        rows = (
            ("scratch", 0.50),
            ("ssdu_tuned", 0.65),
            ("ssdu_tuned_lr3e4", 0.66),
            ("joint", 0.63),
        )
        for row, base in rows:
            low = row.endswith("lr3e4")
            config = {
                "optim": {"lr": 3e-4 if low else 1e-3},
                "seed": seed,
                "trainer": {"max_steps": 900 if row == "joint" else 300},
                "data": {"train_volumes": 1},
                "evaluation": {"checkpoint": "best", "also": also},
                "init_from": str(pre / "checkpoints" / "last.ckpt") if "tuned" in row else None,
                "supervision": {"_target_": "kspace_mim.supervision.Joint"}
                if row == "joint"
                else {},
            }
            # the held-out choice is the best one's file for ssdu_tuned (its numbers again)
            same = row == "ssdu_tuned"
            heldout = tested(base + lift, 200) if same else tested(base - 0.01, 100)
            if low:
                heldout = tested(base - 0.01, 100, val=0.69, heldout=0.9)
            fake_job(
                studies / "few_labels" / "model=swin",
                f"n=1,row={row},seed={seed}",
                {"row": row, "model": "swin"},
                config,
                {
                    **tested(base + lift, 200),
                    "ssim": 0.69 if low else 0.7,
                    "heldout_loss": 1.0,
                    "selected_on": "val",
                    "also": {"heldout": heldout, "last": tested(base - 0.02, 300)},
                    "train_seconds": 60,
                },
            )


def test_few_labels_rows_read_the_pages_selection_and_repeat_the_label_free_rows(tmp_path):
    """Each page reads every row under its own checkpoint selection (the main numbers, or
    ``evaluation.also``'s; zero-filling trains nothing and has one); the
    label-free rows stand at N = 0 and again beside the labelled rows; pre-training steps
    are counted, joint training counts two slices a step; pairs are by seed and volume."""
    few_labels_jobs(tmp_path / "studies")
    mean = sum(scores(0)[v]["ssim"] for v in VOLUMES) / len(VOLUMES)
    for selection, ssdu, scratch, scratch_step in (
        ("best", 0.62, 0.50, 200),
        ("heldout", 0.61, 0.49, 100),
    ):
        spec = TableSpec(**{**study.few_labels_spec("swin", selection).__dict__, "flops": False})
        records = study.study_records(spec, tmp_path)
        alone = records[("SSDU alone", "0")]
        assert alone["ssim"] == pytest.approx(ssdu + 0.001 + mean)  # seeds 0 and 1: +0.001
        assert records[("SSDU alone", "1")]["volumes"] == alone["volumes"]
        assert records[("zero-filled", "0")]["ssim"] == pytest.approx(0.40 + mean)
        assert records[("from scratch", "1")]["ssim"] == pytest.approx(
            scratch + (0.001 if selection == "best" else 0.0) + mean
        )
        assert records[("from scratch", "1")]["checkpoint_steps"] == [scratch_step] * 2
        # the last step's test beside the chosen checkpoint's, under either selection
        assert records[("from scratch", "1")]["ssim_last"] == pytest.approx(0.48 + mean)
        assert records[("SSDU alone", "1")]["ssim_last"] is None  # none evaluated
        # every trained row chooses its learning rate on validation under the page's
        # selection: SSDU's fine-tuning 1e-3 by labelled SSIM, 3e-4 by the held-out loss
        tuned = records[("SSDU + fine-tuned", "1")]
        assert tuned["steps"] == 900
        if selection == "best":  # 1e-3: the higher validation SSIM
            assert tuned["ssim"] == pytest.approx(0.651 + mean)
            assert tuned["checkpoint_steps"] == [800, 800]  # 200 + the 600 of pre-training
            assert tuned["chosen_on_val"]["setting"] == "learning rate 0.001"
        else:  # 3e-4: the lower held-out loss, its held-out checkpoint's test
            assert tuned["ssim"] == pytest.approx(0.65 + mean)
            assert tuned["checkpoint_steps"] == [700, 700]
            assert tuned["chosen_on_val"]["setting"] == "learning rate 0.0003"
        assert records[("from scratch", "1")]["chosen_on_val"]["setting"] == (
            "learning rate 0.001"  # the only rate it ran at here
        )
        text = tables.page(spec, records)
        assert "SSDU + fine-tuned, N = 1: learning rate" in text
        gain = f"{tuned['ssim'] - alone['ssim']:+.4f}"
        assert f"SSDU + fine-tuned against SSDU alone (paired): N = 1: {gain}" in text
    assert spec.pairing == "hierarchical" and spec.name == "few_labels_heldout"
    best = study.few_labels_spec("swin", "best")
    assert [r.option for r in best.rows[-2:]] == ["joint", "scratch_equal_compute"]
    assert (study.SCRATCH_COMPUTE, study.JOINT) in best.contrasts  # compute held equal
    unrolled = study.few_labels_spec("unrolled", "best")
    assert unrolled.title == "Few labels: the unrolled network, selected on labelled validation"
    assert "saw. The unrolled network `tiny`, 4x" in unrolled.caption  # a sentence's start


def test_the_command_line_refuses_a_missing_study_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        study.main(["results", "--outputs", str(tmp_path), "--root", str(tmp_path)])
    assert stop.value.code == 2
    assert "no finished job of results" in capsys.readouterr().err


def test_fine_tuning_reads_its_pre_training_by_interpolation():
    cfg = compose(
        ["experiment=label_efficiency", "row=ssdu_tuned", "seed=2", "paths.output_dir=/o"]
    )
    assert cfg.init_from == "/o/studies/label_pretrain/row=ssdu,seed=2/checkpoints/last.ckpt"
    assert cfg.trainer.max_steps == 300 and cfg.model._target_.endswith("SimMIMReconstructor")
    cfg = compose(
        ["experiment=results", "row=unrolled_pretrained", "seed=1", "paths.output_dir=/o"]
    )
    assert cfg.init_from == (
        "/o/studies/results_pretrain/row=unrolled_patch_pretraining,seed=1/checkpoints/last.ckpt"
    )
    label_free = compose(["experiment=label_pretrain", "row=ssdu"])
    assert label_free.data.train_path.endswith("multicoil_train_undersampled4x")
    assert label_free.evaluation.checkpoint == "last"


def write_log(job: Path, version: int, rows: list[dict]) -> None:
    """A CSV log of a run's validations, as Lightning's CSVLogger writes one per process."""
    import pandas as pd

    folder = job / "csv" / f"version_{version}"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


def test_a_resumed_runs_curve_and_seconds_are_the_whole_runs(tmp_path):
    """A resumed run logs to a new CSV version: the curve has every validation of both
    parts (a later one replacing an earlier one at the same step, version_10 after
    version_9), and its seconds continue: exactly where the logs carry the total, at
    the earlier part's rate up to the resume step (metrics.json) where they do not."""

    def point(step: int, seconds: float, ssim: float, total: float | None = None) -> dict:
        row = {"time/steps": step, "time/train_s": seconds, "val/ssim": ssim, "step": step}
        return row if total is None else {**row, "time/train_s_total": total}

    old = tmp_path / "old"  # logs without totals: the seconds restart at the resume
    write_log(old, 0, [point(0, 0.0, 0.5), point(10, 2.0, 0.6), point(30, 6.0, 0.65)])
    write_log(old, 1, [point(100, 4.0, 0.7)])
    (old / "metrics.json").write_text(json.dumps({"resumed_from": {"step": 80}}))
    got = study.curve(old)
    assert [p["step"] for p in got] == [0, 10, 30, 100]
    assert [p["ssim"] for p in got] == [0.5, 0.6, 0.65, 0.7]
    assert got[-1]["train_s"] == pytest.approx(6.0 * 80 / 30 + 4.0)  # 0.2 s a step, then 4 s

    new = tmp_path / "new"  # totals logged: exact, whatever metrics.json says
    write_log(new, 9, [point(0, 0.0, 0.5, 0.0), point(10, 2.0, 0.6, 2.0), point(30, 6, 0.4, 6)])
    write_log(new, 10, [point(30, 1.0, 0.65, 7.0), point(100, 9.0, 0.7, 15.0)])
    (new / "metrics.json").write_text(json.dumps({"resumed_from": {"step": 25}}))
    got = study.curve(new, offset_steps=5, offset_s=1.0)
    assert [(p["step"], p["train_s"], p["ssim"]) for p in got] == [
        (5, 1.0, 0.5),
        (15, 3.0, 0.6),
        (35, 8.0, 0.65),
        (105, 16.0, 0.7),
    ]


def test_a_curve_leaves_out_the_seconds_its_run_stood_paused(tmp_path):
    """The page's seconds (and so its minutes) are the curve's: an interval between
    validations far slower than the run's rate (stopped while the machine ran CI) counts
    at the run's median rate."""
    rows = [(0, 0.0), (5, 1.0), (15, 3.0), (40, 8.0), (100, 620.0), (300, 660.0)]
    write_log(
        tmp_path,
        0,
        [{"time/steps": t, "time/train_s": s, "val/ssim": 0.5, "step": t} for t, s in rows],
    )
    got = study.curve(tmp_path)
    assert [p["train_s"] for p in got] == pytest.approx([0.0, 1.0, 3.0, 8.0, 20.0, 60.0])


def compose_job(overrides: list[str]):
    """A study job's config as Hydra's launcher resolves it (``${hydra:...}`` set)."""
    from hydra.core.hydra_config import HydraConfig

    cfg = compose(overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def hydra_job_config():
    """Clears Hydra's job config after a test that set it."""
    from hydra.core.hydra_config import HydraConfig

    yield compose_job
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize("network", ["swin", "unrolled"])
def test_few_labels_fine_tunes_its_own_networks_pre_training(network, hydra_job_config):
    """Each network's fine-tuning rows read the checkpoint its own pre-training job writes
    (same network, row and seed); the labelled volumes are a random draw, augmented, split
    by person; the joint row learns from the label-free pool for the total steps."""
    base = [f"model={network}", "seed=2", "paths.output_dir=/o"]
    pre = hydra_job_config(["experiment=few_labels_pretrain", "row=ssdu_density_weighted", *base])
    written = Path(pre.hydra.sweep.dir) / pre.hydra.sweep.subdir / "checkpoints" / "last.ckpt"
    assert pre.supervision.weighting == "density" and pre.data.synthetic_set == "people"
    assert pre.validation.at_zero and pre.validation.heldout > 0
    tuned = hydra_job_config(["experiment=few_labels", "row=ssdu_density_tuned", *base])
    assert tuned.init_from == str(written)
    assert f"model={network}/" in tuned.init_from
    assert tuned.data.train_draw == "random" and tuned.trainer.max_steps == 300
    assert tuned.augmentation.affine_prob > 0 and tuned.augmentation.flip_prob > 0
    joint = hydra_job_config(["experiment=few_labels", "row=joint", "data.train_volumes=1", *base])
    assert joint.supervision._target_.endswith(".Joint") and joint.trainer.max_steps == 900
    assert joint.data.pool_path.startswith(joint.data.synthetic_root)
    assert joint.data.pool_path.endswith("_train_undersampled4x")
    assert joint.hydra.sweep.subdir == f"model={network}/n=1,row=joint,seed=2"


def test_the_gpu_budget_scales_every_step_count_and_the_grid(hydra_job_config):
    """budget=gpu: every step count of the few-labels study (pre-training, fine-tuning,
    the equal-steps and compute controls, joint) 8 times, on a 128 x 128 embedded set of
    its own folder; budget=cpu leaves what the committed tables ran with, and out of the
    run's identity (their jobs stay their own)."""
    from omegaconf.errors import InterpolationResolutionError

    from kspace_mim.fingerprint import fingerprint

    runs = {
        "pretrain": ["experiment=few_labels_pretrain", "row=ssdu"],
        "tuned": ["experiment=few_labels", "row=ssdu_tuned"],
        "total": ["experiment=few_labels", "row=scratch_equal_total"],
        "joint": ["experiment=few_labels", "row=joint"],
        "compute": ["experiment=few_labels", "row=scratch_equal_compute"],
    }
    cpu = {"pretrain": 600, "tuned": 300, "total": 900, "joint": 900, "compute": 1800}
    for name, overrides in runs.items():
        base = [*overrides, "model=unrolled", "paths.data_dir=/d", "paths.output_dir=/o"]
        gpu = hydra_job_config([*base, "budget=gpu"])
        gpu_identity = fingerprint(gpu).identity
        mine = hydra_job_config(base)
        assert mine.trainer.max_steps == cpu[name] and gpu.trainer.max_steps == 8 * cpu[name]
        assert mine.data.synthetic_root == "/d/people" and mine.data.crop_size == 64
        assert gpu.data.synthetic_root == "/d/people_128"
        assert gpu.data.crop_size == gpu.data.synthetic_size == 128
        identity = fingerprint(mine).identity
        assert "budget.steps" not in identity and "data.synthetic_size" not in identity
        assert gpu_identity["budget.steps"] == 8
    # the default set follows its grid too; a budget of no steps is refused
    assert compose(["data.synthetic_size=96", "paths.data_dir=/d"]).data.synthetic_root == (
        "/d/colin27_96"
    )
    with pytest.raises(InterpolationResolutionError, match="budget.steps must be > 0"):
        compose([*runs["tuned"], "budget.steps=0"]).trainer.max_steps  # noqa: B018


def test_every_page_row_names_a_row_config():
    options = {p.stem for p in (ROOT / "src" / "kspace_mim" / "conf" / "row").glob("*.yaml")}
    for spec in study.PAGES.values():
        for row in spec.rows:
            assert row.option in options, (spec.name, row.label)


@pytest.mark.docs
@pytest.mark.parametrize("name", sorted(study.PAGES))
def test_each_generated_page_is_its_row_files_rendering(name, tmp_path):
    """``make tables`` changes nothing: a page's numbers are those of its row files."""
    (tmp_path / "docs").mkdir()
    shutil.copytree(ROOT / "docs" / name, tmp_path / "docs" / name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    tables.write_page(
        study.PAGES[name], read_records(tmp_path / "docs" / name), tmp_path, picture=False
    )
    assert (tmp_path / "docs" / f"{name}.md").read_text() == (
        ROOT / "docs" / f"{name}.md"
    ).read_text()
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def study_env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("study")
    synthesize_set(root / "data" / "colin27", volumes=2, slices=2, coils=4, size=32, progress=False)
    return {
        **os.environ,  # PYTHONPATH included: the package under test
        "KSPACE_MIM_DATA": str(root / "data"),
        "KSPACE_MIM_OUTPUT": str(root / "out"),
        "WANDB_MODE": "offline",
        "root": str(root),
    }


def run(env: dict, module: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        env={k: v for k, v in env.items() if k != "root"},
        cwd=env["root"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def written_page(env: dict, name: str) -> tuple[Path, str]:
    """``python -m kspace_mim.study NAME`` into a fresh repository folder: it, the page."""
    root = Path(env["root"]) / f"repo_{name}"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("")
    run(env, "kspace_mim.study", name, "--root", str(root))
    return root, (root / "docs" / f"{name}.md").read_text()


TINY = ("data=tiny", "trainer.max_steps=4", "validation.points=2")


@pytest.mark.slow
def test_a_study_runs_as_a_sweep_reuses_its_jobs_and_makes_its_page(study_env):
    """experiment=results over two rows and two seeds (tiny): job directories are rows x
    seeds with their held-out tests inside; the sweep run again trains nothing; the page
    pairs the rows by volume."""
    args = ("-m", "experiment=results", "row=zero_filled,varnet", "seed=0,1", *TINY)
    run(study_env, "kspace_mim.train", *args)
    jobs = Path(study_env["KSPACE_MIM_OUTPUT"]) / "studies" / "results"
    names = sorted(p.name for p in jobs.iterdir() if p.is_dir())
    assert names == [f"row={r},seed={s}" for r in ("varnet", "zero_filled") for s in (0, 1)]
    metrics = json.loads((jobs / "row=varnet,seed=1" / "metrics.json").read_text())
    assert set(metrics["tests"]) == {"equispaced4x", "equispaced8x"}
    again = run(study_env, "kspace_mim.train", *args)
    assert again.stderr.count("(reused)") == 4
    root, page = written_page(study_env, "results")
    assert "| 4x | zero-filled |" in page and "| 8x | E2E-VarNet, fastMRI recipe |" in page
    assert "significantly" in page and (root / "docs" / "results.png").is_file()
    assert (root / "docs" / "results" / "zero_filled_8x.json").is_file()


@pytest.mark.slow
def test_fastmris_loop_writes_a_job_the_parity_page_pairs(study_env):
    """The reference loop is a job of experiment=parity like any row (row=fastmri_loop
    from the command line wins over the study's list); paired per (seed, volume)."""
    loop_args = ("-m", "experiment=parity", "row=fastmri_loop", "seed=0", *TINY)
    run(study_env, "kspace_mim.reference_loop", *loop_args)
    run(study_env, "kspace_mim.train", "-m", "experiment=parity", "row=varnet", "seed=0", *TINY)
    jobs = Path(study_env["KSPACE_MIM_OUTPUT"]) / "studies" / "parity"
    assert sorted(p.name for p in jobs.iterdir() if p.is_dir()) == [
        "row=fastmri_loop,seed=0",
        "row=varnet,seed=0",
    ]
    loop = json.loads((jobs / "row=fastmri_loop,seed=0" / "metrics.json").read_text())
    assert loop["steps"] == 4 and set(loop["volumes"]) == {
        p.name
        for p in (Path(study_env["KSPACE_MIM_DATA"]) / "colin27" / "multicoil_val").glob("*.h5")
    }
    again = run(study_env, "kspace_mim.reference_loop", *loop_args)
    assert "(reused)" in again.stderr
    _, page = written_page(study_env, "parity")
    assert "| fastMRI's own loop" in page and "| reference |" in page
    assert "`model=varnet` (defaults: its recipe, native grid)" in page


def test_model_overrides_are_hydra_syntax():
    model = {"_target_": "x.Y", "cascades": 9, "depths": [2, 2, 2], "chans": None, "compile": False}
    assert study.model_overrides(model) == (
        "model.cascades=9",
        "model.depths=[2,2,2]",
        "model.chans=null",
        "model.compile=false",
    )


def test_flops_are_of_the_jobs_own_network_and_grid(data_root):
    """A row that changes its network (E2E-VarNet with more cascades, a FLOP-matched row)
    is counted with its own network, not its family's default, and a square-grid family
    on its own crop, not on the file's k-space grid."""
    from omegaconf import OmegaConf

    def job(model: str, *overrides: str) -> dict:
        folder = data_root / "multicoil_val"
        cfg = compose(
            [f"model={model}", "model.size=tiny", f"data.train_path={folder}"]
            + [f"data.val_path={folder}", "data.num_workers=0", *overrides]
        )
        return {"config": OmegaConf.to_container(cfg, resolve=True), "choices": {"model": model}}

    four = study._flops_per_step(job("varnet"))
    eight = study._flops_per_step(job("varnet", "model.num_cascades=8"))
    two = study._flops_per_step(job("varnet", "model.num_cascades=2"))
    assert two < four < eight
    # cascades add equal cost: 8 - 4 cascades cost twice 4 - 2
    assert abs((eight - four) - 2 * (four - two)) < 0.01 * eight
    # the U-Net on a 16 x 16 crop against a 32 x 32 one: about a quarter of the work
    small = study._flops_per_step(job("unet", "data.crop_size=16"))
    large = study._flops_per_step(job("unet", "data.crop_size=32"))
    assert 3.5 < large / small < 4.5


def write_people(root: Path, size: int) -> None:
    """``data=people`` at test size under ``root``: 2 volumes a split (2 slices, 4 coils,
    ``size`` x ``size``), and the label-free pool's first 2 (undersampled-only)."""
    from kspace_mim.data.synthesize import LABEL_FREE_TRAIN, split_folders, synthesize

    kw = {"slices": 2, "coils": 4, "size": size, "progress": False, "anatomy": "people"}
    synthesize_set(root, volumes=2, **kw)
    pool = split_folders(root, "multicoil")[LABEL_FREE_TRAIN]
    synthesize(
        pool, "multicoil", "train", 2, undersampled=True, accelerations=(4,), pool=True, **kw
    )


@pytest.fixture(scope="module")
def people_env(tmp_path_factory) -> dict[str, str]:
    """``data=people`` at test size (:func:`write_people`, 32 x 32)."""
    root = tmp_path_factory.mktemp("people")
    write_people(root / "data" / "people", 32)
    return {
        **os.environ,
        "KSPACE_MIM_DATA": str(root / "data"),
        "KSPACE_MIM_OUTPUT": str(root / "out"),
        "WANDB_MODE": "offline",
        "root": str(root),
    }


@pytest.mark.slow
def test_the_few_labels_study_runs_its_commands_on_tiny_budgets(people_env):
    """``make results-few-labels``'s commands with tiny budgets (the GPU run is the same
    with its own), the fine-tuning sweep's jobs side by side: zero-filling, a label-free
    pre-training, fine-tuning from it, from scratch and joint at N = 1; each job holds
    every selection's test; both pages pair the rows by seed and volume and read out what
    the label added."""
    tiny = ("data.crop_size=32", "data.num_workers=0", "validation.points=2")
    study_args = ("-m", "experiment=few_labels_pretrain", "seed=0", *tiny)
    zero = ("model=zero_filled", "row=zero_filled", "~model.size")  # it has no sizes
    run(people_env, "kspace_mim.train", *study_args, *zero)
    run(
        people_env, "kspace_mim.train", *study_args, "model=swin", "row=ssdu", "trainer.max_steps=4"
    )
    rows = "row=scratch,ssdu_tuned,joint"
    run(
        people_env,
        "kspace_mim.train",
        "-m",
        "experiment=few_labels",
        "model=swin",
        rows,
        "seed=0",
        "data.train_volumes=1",
        "trainer.max_steps=2",
        # as make results-few-labels runs them: two jobs side by side (joblib)
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *tiny,
    )
    out = Path(people_env["KSPACE_MIM_OUTPUT"]) / "studies"
    tuned = out / "few_labels" / "model=swin" / "n=1,row=ssdu_tuned,seed=0"
    config = yaml.safe_load((tuned / "config.yaml").read_text())
    assert config["init_from"] == str(
        out / "few_labels_pretrain" / "model=swin" / "row=ssdu,seed=0" / "checkpoints" / "last.ckpt"
    )
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert set(metrics["also"]) | {config["evaluation"]["checkpoint"]} >= {"heldout", "last"}
    for selection in ("best", "heldout"):
        spec = TableSpec(**{**study.few_labels_spec("swin", selection).__dict__, "flops": False})
        records = study.study_records(spec, Path(people_env["KSPACE_MIM_OUTPUT"]))
        page = tables.page(spec, records)
        assert "| 0 | zero-filled |" in page and "| 1 | SSDU + fine-tuned |" in page
        assert "SSDU + fine-tuned against SSDU alone (paired): N = 1:" in page
        assert records[("SSDU + fine-tuned", "1")]["steps"] == 6  # 4 label-free + 2


@pytest.mark.slow
def test_the_gpu_budget_runs_on_the_cpu_with_tiny_steps(people_env, tmp_path):
    """``make results-few-labels FEW_BUDGET=gpu``'s jobs, on the CPU with the budget's
    factor shrunk: the 128 x 128 grid (its own folder) pre-trains and fine-tunes."""
    root = Path(people_env["KSPACE_MIM_DATA"]) / "people_128"
    write_people(root, 128)
    env = {**people_env, "KSPACE_MIM_OUTPUT": str(tmp_path / "out")}  # other runs' folders
    tiny = ("budget=gpu", "budget.steps=0.004", "data.num_workers=0", "validation.points=2")
    sweep = ("-m", "model=swin", "seed=0", *tiny)
    run(env, "kspace_mim.train", *sweep, "experiment=few_labels_pretrain", "row=ssdu")
    tuned_args = ("experiment=few_labels", "row=ssdu_tuned", "data.train_volumes=1")
    run(env, "kspace_mim.train", *sweep, *tuned_args)
    out = tmp_path / "out" / "studies"
    tuned = out / "few_labels" / "model=swin" / "n=1,row=ssdu_tuned,seed=0"
    config = yaml.safe_load((tuned / "config.yaml").read_text())
    assert config["data"]["crop_size"] == 128 and config["data"]["synthetic_root"] == str(root)
    assert config["trainer"]["max_steps"] == 1  # 300 x 0.004, at least one
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert metrics["checkpoint_step"] is not None and metrics["tests"]["equispaced4x"]["ssim"] > 0


def test_training_flops_count_each_folder_on_its_grid_and_the_pre_training(
    people_env, monkeypatch, tmp_path
):
    """FLOPs of a fine-tuned row are its pre-training on the label-free pool's grid (own-mask
    files keep their width) plus its fine-tuning on the labelled grid; a joint run counts a
    labelled and a pool slice every step; all on one network."""
    from omegaconf import OmegaConf

    monkeypatch.setenv("KSPACE_MIM_DATA", people_env["KSPACE_MIM_DATA"])
    people = Path(people_env["KSPACE_MIM_DATA"]) / "people"
    pool = str(people / "multicoil_train_undersampled4x")
    base = ["model=swin", "model.size=tiny", "data=people", "data.crop_size=32"]
    base += ["data.num_workers=0", "data.batch_size=1"]

    def job(*overrides: str) -> dict:
        cfg = OmegaConf.to_container(compose([*base, *overrides]), resolve=True)
        return {"config": cfg, "choices": {"model": "swin"}}

    labelled = study._flops_per_step(job())
    on_pool = study._flops_per_step(job(f"data.train_path={pool}", "supervision=ssdu"))
    assert on_pool > labelled  # the pool's files keep their k-space width
    assert study._flops_per_step(job(), "pool") is None

    pre = job(f"data.train_path={pool}", "supervision=ssdu", "trainer.max_steps=6")
    source = fake_job(tmp_path, "pre", pre["choices"], pre["config"], {})
    tuned = job("trainer.max_steps=3", f"init_from={source}/checkpoints/last.ckpt")
    assert study._train_flops(tuned) == pytest.approx(3 * labelled + 6 * on_pool, rel=1e-9)
    joint = job(
        "supervision=joint", f"data.pool_path={pool}", "trainer.max_steps=5", "data.batch_size=2"
    )
    assert study._train_flops(joint) == pytest.approx(2 * 5 * (labelled + on_pool), rel=1e-9)
    assert study._train_flops(job("trainer.max_steps=5")) == pytest.approx(5 * labelled)


def make_dry_run(target: str, *variables: str) -> str:
    """What ``make -n TARGET VARIABLES`` would run, continued lines joined."""
    return subprocess.run(
        ["make", "-n", target, *variables], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")


@pytest.mark.parametrize(("budget", "jobs"), [("cpu", "2"), ("gpu", "1")])
def test_make_runs_the_few_labels_jobs_side_by_side_on_a_cpu(budget, jobs):
    """``make results-few-labels``: on a CPU two jobs at a time, each on its share of the
    cores; with the GPU budget one at a time; every sweep under the budget asked for."""
    out = make_dry_run("results-few-labels", f"FEW_BUDGET={budget}")
    sweeps = [line for line in out.splitlines() if "kspace_mim.train -m" in line]
    assert len(sweeps) == 5
    for line in sweeps:
        assert line.startswith("OMP_NUM_THREADS=") and f"budget={budget}" in out
        assert "hydra/launcher=joblib" in line and f"hydra.launcher.n_jobs={jobs}" in line


@pytest.mark.parametrize("network", sorted(study.FEW_RATES))
def test_make_runs_every_learning_rate_the_few_labels_pages_choose_between(
    network, hydra_job_config
):
    """Every candidate of a row the few-labels pages choose on validation is a row that
    ``make results-few-labels FEW_MODELS=<network>`` sweeps for that network, and trains
    at its own rate of ``study.FEW_RATES`` (SimMIM-Swin's rates above 1e-3: a sweep of
    their own)."""
    out = make_dry_run("results-few-labels", f"FEW_MODELS={network}")
    experiment = ROOT / "src" / "kspace_mim" / "conf" / "experiment" / "few_labels.yaml"
    params = yaml.safe_load(experiment.read_text())["hydra"]["sweeper"]["params"]
    run: set[str] = set()
    for line in out.splitlines():
        words = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if "kspace_mim.train" in line and words.get("experiment") == "few_labels":
            assert words["model"] == network
            run.update((words.get("row") or params["row"]).split(","))
    for selection in study.SELECTIONS:
        chosen = [r for r in study.few_labels_spec(network, selection).rows if r.select_on_val]
        assert chosen
        for row in chosen:
            options = (row.option, *row.candidates)
            assert set(options) <= run, (network, row.label)
            rates = [
                hydra_job_config(
                    ["experiment=few_labels", f"model={network}", f"row={option}"]
                ).optim.lr
                for option in options
            ]
            assert rates == [float(r) for r in study.FEW_RATES[network]], row.label


def test_make_runs_the_long_check_at_its_own_budgets_and_makes_its_page():
    """``make results-few-labels-long``: its pre-training, then its fine-tuning, two jobs
    side by side on a CPU, each sweeping its own budget factors (no ``budget=`` group
    that would set them all to one), then the page."""
    out = make_dry_run("results-few-labels-long")
    sweeps = [line for line in out.splitlines() if "kspace_mim.train -m" in line]
    assert [line.split("experiment=")[1].split()[0] for line in sweeps] == [
        "few_labels_long_pretrain",
        "few_labels_long",
    ]
    assert all("hydra.launcher.n_jobs=2" in line and "budget=" not in line for line in sweeps)
    # (make's own "Leaving directory" lines may follow under a parent make)
    commands = [line for line in out.splitlines() if "kspace_mim." in line]
    assert commands[-1].endswith("kspace_mim.study few_labels_long")
