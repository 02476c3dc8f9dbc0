"""The generated results pages from their studies: ``python -m kspace_mim.study PAGE``.

A study is a Hydra multirun of ``python -m kspace_mim.train`` over rows (``row=<name>``,
``conf/row/``) and seeds; its protocol and its sweep are an experiment config
(``experiment=results``, ``label_pretrain``, ``label_efficiency``, ``label_free_variants``,
``parity``). Each job's directory is its row and seed (``outputs/studies/<study>/
row=<name>,seed=<s>``), it holds its own held-out test evaluation (``metrics.json``:
``tests``), and a finished job with the same configuration is reused when the sweep runs
again. This module reads the jobs and hands them, as row records, to the one table engine
(:mod:`kspace_mim.tables`), which writes the page, its row files and its plot::

    python -m kspace_mim.study results               # from outputs/studies/*
    python -m kspace_mim.study results --row-files   # again from docs/results/*.json

Pages: ``results`` (``make results``), ``swin_variants`` (``make results-swin``),
``label_efficiency`` and ``label_free_variants``
(``make results-label``), ``parity`` (``make parity``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from kspace_mim.files import read_json
from kspace_mim.report import job_dirs
from kspace_mim.tables import (
    Records,
    RowSpec,
    TableSpec,
    read_records,
    record,
    sentence,
    without_pauses,
    write_page,
)

# --- the pages -----------------------------------------------------------------------
REFERENCE = "E2E-VarNet, fastMRI recipe"
VARNET_FLOPS = "E2E-VarNet, fastMRI recipe, 9 cascades (the unrolled row's FLOPs)"
NO_FIRST_FLOPS = "unrolled without its first estimate, 9 cascades (its FLOPs)"
PRETRAINED = "unrolled, pre-trained + fine-tuned"
CONTROL = "unrolled, from scratch at the same total steps"
RESULTS = TableSpec(
    name="results",
    title="Results",
    command="make results",
    caption=(
        "Held-out test volumes of the default set (Colin27 brain, 8 coils, 64 x 64 images, "
        "2x readout oversampling), `tiny` models, **{steps[E2E-VarNet, fastMRI recipe]} "
        "optimizer steps each at batch 1** (pre-training counted: its rows show the total), "
        "one model for 4x and 8x, the checkpoint chosen on validation; means over {seeds} "
        "seeds of the per-volume fastMRI metrics (`experiment=results`). Δ SSIM: paired by "
        f"volume against **{REFERENCE}** (95 % bootstrap CI); **✓** = significant (Wilcoxon "
        "p < 0.05 and the CI excludes 0), · = not. Training time on this 2-core CPU is noisy "
        "(±15-20 %): read FLOPs. The two 9-cascade rows hold the unrolled row's training "
        "FLOPs (within 4 %) and spend them on cascades: what the SimMIM first estimate adds "
        "beyond compute is the unrolled row against them (paired below the table)."
    ),
    rows=(
        RowSpec("zero-filled", "results", "zero_filled"),
        RowSpec("CS (L1-wavelet SENSE)", "results_cs", "cs", select_on_val=True),
        RowSpec("U-Net, fastMRI recipe", "results", "unet"),
        RowSpec(REFERENCE, "results", "varnet"),
        RowSpec("E2E-VarNet, package recipe", "results", "varnet_package"),
        RowSpec("SimMIM-Swin", "results", "swin"),
        RowSpec("unrolled", "results", "unrolled"),
        RowSpec(VARNET_FLOPS, "results", "varnet_flops"),
        RowSpec(NO_FIRST_FLOPS, "results", "unrolled_no_first_flops"),
        RowSpec(PRETRAINED, "results", "unrolled_pretrained"),
        RowSpec(CONTROL, "results", "unrolled_equal_total"),
        RowSpec(
            "U-Net, fastMRI recipe, 5x the steps (curve only)",
            "results",
            "unet_long",
            curve_only=True,
        ),
    ),
    reference=REFERENCE,
    contrasts=((CONTROL, PRETRAINED), (VARNET_FLOPS, "unrolled"), (NO_FIRST_FLOPS, "unrolled")),
    readme=((REFERENCE,), ("SimMIM-Swin",), ("unrolled",), (VARNET_FLOPS,)),
    readme_contrasts=((VARNET_FLOPS, "unrolled"), (NO_FIRST_FLOPS, "unrolled")),
)

SWIN_DEFAULT = (
    "SimMIM-Swin (the default: coil maps, starts at the zero-filled image, soft DC, 8 x 8 windows)"
)
_SWIN_VARIANTS = {
    "the previous default (every coil as channels, default initialisation, hard DC, "
    "4 x 4 windows)": ("swin_old_default"),
    "every coil as channels (no coil maps)": "swin_channels",
    "default initialisation (not zero)": "swin_no_zero",
    "hard data consistency (soft: a learned weight)": "swin_hard",
    "4 x 4 windows (8 x 8)": "swin_window4",
    "a third stage (stride 8)": "swin_stages3",
    "k-space input with mask tokens (channels)": "swin_kspace",
    "batch 4, 100 steps (the same slices seen)": "swin_batch4",
    "learning rate 3e-4 (1e-3)": "swin_lr3e4",
    "starts at the coil-combined image through untrained maps (maps_start=sense)": (
        "swin_sense_start"
    ),
}
UNROLLED_FIRST_CHANNELS = (
    "unrolled, first estimate on every coil as channels, default initialisation"
)
UNROLLED_SENSE_START = (
    "unrolled, starts through untrained maps, cascades ungated (maps_start=sense, no gates)"
)
SWIN_VARIANTS = TableSpec(
    name="swin_variants",
    title="SimMIM-Swin variants",
    command="make results-swin",
    caption=(
        "SimMIM-Swin `tiny`, one change at a time from its default, on the results protocol "
        "(`experiment=swin_variants`): the default set's held-out test volumes, "
        "{steps[" + SWIN_DEFAULT + "]} optimizer steps at batch 1 (the batch-4 row: a "
        "quarter of the steps, the same slices), one model for 4x and 8x, the checkpoint "
        "chosen on validation, {seeds} seeds. Δ SSIM: paired by volume against **the "
        "default** (95 % bootstrap CI); ✓ = significant (Wilcoxon p < 0.05 and the CI "
        "excludes 0), · = not. E2E-VarNet (fastMRI's recipe) is the results table's row, "
        "for scale. The last two rows change the unrolled network: its first estimate "
        "with the previous defaults (every coil as channels, default initialisation), and "
        "the start it had before it started at the zero-filled image; the unrolled "
        "network's default is paired with each below the table."
    ),
    rows=(
        RowSpec(SWIN_DEFAULT, "results", "swin"),
        *(RowSpec(label, "swin_variants", option) for label, option in _SWIN_VARIANTS.items()),
        RowSpec(REFERENCE, "results", "varnet"),
        RowSpec("unrolled", "results", "unrolled"),
        RowSpec(UNROLLED_FIRST_CHANNELS, "swin_variants", "unrolled_first_channels"),
        RowSpec(UNROLLED_SENSE_START, "swin_variants", "unrolled_sense_start"),
    ),
    reference=SWIN_DEFAULT,
    contrasts=((UNROLLED_FIRST_CHANNELS, "unrolled"), (UNROLLED_SENSE_START, "unrolled")),
)

SCRATCH, SCRATCH_TOTAL = "from scratch", "from scratch, equal total steps"
SSDU, MIM = "SSDU", "masked modeling (patches)"
LABEL_EFFICIENCY = TableSpec(
    name="label_efficiency",
    title="Label efficiency",
    command="make results-label",
    caption=(
        "Held-out test volumes of the default set (Colin27 brain, 8 coils, 64 x 64 images), "
        "4x equispaced, SimMIM-Swin `tiny` (image domain) in every row, batch 1, {seeds} "
        "seeds. Label-free pre-training (`experiment=label_pretrain`): {steps[SSDU alone]} "
        "steps on the undersampled-only copy of all training volumes; fine-tuning "
        "(`experiment=label_efficiency`): {steps[from scratch]} supervised steps on the "
        "first N fully sampled volumes (4 slices each), the checkpoint chosen on validation "
        "(the label-free rows at N = 0: their last); steps are cumulative. Δ: paired by "
        "volume (means over seeds) against **from scratch** at the same N (at N = 0: "
        "against zero-filling; 95 % bootstrap CI); the second Δ: against from scratch at "
        "the equal total steps; ✓ = significant (Wilcoxon p < 0.05 and the CI excludes 0), "
        "· = not. The same network in every row: training FLOPs follow the steps; minutes "
        "on this noisy 2-core CPU are beside them, not for ranking."
    ),
    rows=(
        RowSpec("zero-filled", "results", "zero_filled", group="0"),
        RowSpec(f"{SSDU} alone", "label_pretrain", "ssdu", group="0"),
        RowSpec(f"{MIM} alone", "label_pretrain", "mim", group="0"),
        RowSpec(SCRATCH, "label_efficiency", "scratch"),
        RowSpec(SCRATCH_TOTAL, "label_efficiency", "scratch_equal_total"),
        RowSpec(f"{SSDU} + fine-tuned", "label_efficiency", "ssdu_tuned"),
        RowSpec(f"{MIM} + fine-tuned", "label_efficiency", "mim_tuned"),
        RowSpec(
            "supervised patch masks + fine-tuned (fully sampled pre-training)",
            "label_efficiency",
            "patch_tuned",
        ),
    ),
    reference=SCRATCH,
    reference_by_group={"0": "zero-filled"},
    control=SCRATCH_TOTAL,
    group_by="labels",
    group_title="N labelled",
    contrasts=((f"{SSDU} alone", f"{MIM} alone"), (f"{SSDU} + fine-tuned", f"{MIM} + fine-tuned")),
    readme=(
        (SCRATCH_TOTAL, "zero-filled"),
        (f"{SSDU} + fine-tuned", f"{SSDU} alone"),
        (f"{MIM} + fine-tuned", f"{MIM} alone"),
    ),
)

SSDU_DEFAULT = "SSDU as published (the default)"
MIM_DEFAULT = "masked modeling (the default: 8 x 8 patches, 40 %)"
_VARIANTS = {
    "SSDU, the previous split (centre columns kept, fresh each step, old scale)": (
        "ssdu_previous_split"
    ),
    "SSDU, a fresh split each step": "ssdu_fresh_split",
    "SSDU, multi-mask (K = 4 fixed splits)": "ssdu_multi_mask",
    "SSDU, input not renormalised": "ssdu_not_renormalised",
    "SSDU, loss weighted by the selection density": "ssdu_density_weighted",
    "masked modeling, 4 x 4 patches": "mim_patch4",
    "masked modeling, 60 % of the patches": "mim_ratio60",
    "masked modeling, k-space encoder with mask tokens": "mim_kspace",
}
LABEL_FREE_VARIANTS = TableSpec(
    name="label_free_variants",
    title="Label-free variants",
    command="make results-label",
    caption=(
        "Label-free training only (N = 0): SimMIM-Swin `tiny`, {steps[" + SSDU_DEFAULT + "]} "
        "steps on the undersampled-only copy of the training volumes, 4x, the last "
        "checkpoint, held-out test volumes, {seeds} seeds (`experiment=label_free_variants`; "
        "the defaults are `experiment=label_pretrain`'s runs). Δ: paired by volume against "
        f"**{SSDU_DEFAULT}** (95 % bootstrap CI); ✓ = significant. The masked-modeling "
        "variants are also paired with their own default below the table."
    ),
    rows=(
        RowSpec(SSDU_DEFAULT, "label_pretrain", "ssdu", group="0"),
        *(
            RowSpec(k, "label_free_variants", v, group="0")
            for k, v in _VARIANTS.items()
            if "SSDU" in k
        ),
        RowSpec(MIM_DEFAULT, "label_pretrain", "mim", group="0"),
        *(
            RowSpec(k, "label_free_variants", v, group="0")
            for k, v in _VARIANTS.items()
            if "SSDU" not in k
        ),
    ),
    reference=SSDU_DEFAULT,
    group_by="labels",
    group_title="N labelled",
    contrasts=tuple((MIM_DEFAULT, k) for k in _VARIANTS if "SSDU" not in k),
    flops=False,
)

LOOP = (
    "fastMRI's own loop: `SliceDataset` + `VarNetDataTransform`, `VarNet`, Adam, `SSIMLoss`, "
    "batch 1 (reference)"
)
_PARITY_ROWS = {
    LOOP: "fastmri_loop",
    "`model=varnet` (defaults: its recipe, native grid)": "varnet",
    "`model=varnet data.grid=square`": "varnet_square",
    "`model=unrolled` (defaults: the package's recipe, batch 4, native grid)": "unrolled",
    "`model=unrolled recipe=fastmri_varnet` (batch 1, native grid)": "unrolled_varnet_recipe",
    "`model=unrolled recipe=fastmri_varnet data.grid=square`": "unrolled_varnet_recipe_square",
    "`model=varnet recipe=package data.grid=native` (batch 4)": "varnet_package_native",
    "`model=unet` (defaults: fastMRI's U-Net recipe, square grid)": "unet",
    "`model=unet data.grid=native`": "unet_native",
    "`model=swin` (defaults: the package's recipe, square grid)": "swin",
    "`model=swin data.grid=native`": "swin_native",
}
_LABEL = {option: label for label, option in _PARITY_ROWS.items()}
PARITY = TableSpec(
    name="parity",
    title="Reference parity: fastMRI's E2E-VarNet loop beside this package",
    command="make parity",
    caption=(
        "`experiment=parity`: {steps[" + LOOP + "]} optimizer steps per run, {seeds} seeds, "
        "4x equispaced, the default set; scored at the final step on the validation volumes "
        "(no checkpoint selection, nothing tuned on them). Differences are paired per (seed, "
        "volume) against fastMRI's loop (the grid rows also against their family's default "
        "grid, below the table): mean, 95 % bootstrap interval; ✓ significant (Wilcoxon p < "
        "0.05 and the interval excludes 0, the rule of every generated table). Wall-clock "
        "is of a shared 2-core machine (±20 % between identical runs): read it beside the "
        "steps, never as the ranking."
    ),
    rows=tuple(RowSpec(label, "parity", option) for label, option in _PARITY_ROWS.items()),
    reference=LOOP,
    group_by=None,
    group_title="",
    pairing="seed_volume",
    contrasts=(
        (_LABEL["unet"], _LABEL["unet_native"]),
        (_LABEL["swin"], _LABEL["swin_native"]),
    ),
    flops=False,
)

NETWORKS = {"swin": "SimMIM-Swin `tiny`", "unrolled": "the unrolled network `tiny`"}
SELECTIONS = {
    "best": "the checkpoint with the best SSIM on the 13 fully sampled validation volumes "
    "(labels used for selection)",
    "heldout": "the checkpoint with the lowest loss on a held-out 20 % of the validation "
    "scans' acquired samples (no fully sampled scan used for selection: no more labels "
    "than training had)",
}
FEW_SSDU, FEW_DENSITY, FEW_MIM = "SSDU", "SSDU, density-weighted", "masked modeling (patches)"
JOINT = "joint (supervised + SSDU on the pool, from scratch)"
SCRATCH_COMPUTE = "from scratch, joint's slices (1,800 steps)"
ALL_TRAIN = "41"  # data.train_volumes=null: every train volume of data=people
# The learning rates each network's supervised and fine-tuned rows choose between on
# validation, the package recipe's 1e-3 first (the row option itself; each other rate its
# own row, <option>_lr<rate> such as scratch_lr3e4). SimMIM-Swin chose 1e-3 for every row
# from 1e-3 and 3e-4, then 3e-3 for every row, so it also runs the rates above until one
# is worse (the unrolled network: not run).
FEW_RATES = {"swin": ("1e-3", "3e-4", "3e-3", "1e-2"), "unrolled": ("1e-3", "3e-4")}


def few_labels_spec(network: str, selection: str) -> TableSpec:
    """The few-labels page of one network under one checkpoint selection."""
    name = "few_labels" + ("" if network == "swin" else f"_{network}")
    name += "" if selection == "best" else f"_{selection}"
    study, pre = f"few_labels/model={network}", f"few_labels_pretrain/model={network}"
    labelled = ("1", "4", ALL_TRAIN)
    rates = FEW_RATES[network]
    free = [(FEW_SSDU, "ssdu"), (FEW_DENSITY, "ssdu_density_weighted"), (FEW_MIM, "mim")]
    tuned = [(FEW_SSDU, "ssdu_tuned"), (FEW_DENSITY, "ssdu_density_tuned"), (FEW_MIM, "mim_tuned")]
    return TableSpec(
        name=name,
        title=f"Few labels: {NETWORKS[network].split(' `')[0]}, "
        + ("selected on labelled validation" if selection == "best" else "selected without labels"),
        command="make results-few-labels",
        caption=(
            f"Split by person (`data=people`): labelled volumes and validation from the "
            f"Colin27 brain (held-out slabs), the label-free pool (undersampled-only scans) "
            f"Colin27's 41 train volumes and every slab of a second head (the MNI152 "
            f"template, 82 in all), the held-out test every slab of a third, real person "
            f"(ITK's clinical T1) whom no pool saw. {sentence(NETWORKS[network])}, 4x "
            f"equispaced, batch 1, {{seeds}} seeds. Label-free pre-training "
            f"(`experiment=few_labels_pretrain`): {{steps[{FEW_SSDU} alone]}} steps on the "
            "pool; then "
            "(`experiment=few_labels`) supervised steps on N fully sampled volumes drawn at "
            "random per seed (stratified by orientation; N = 41: all), with MRAugment-style "
            "augmentation, from scratch ({steps[from scratch]} steps, and at the "
            "pre-trained rows' total), fine-tuned from the same seed's pre-training, or "
            "joint (both losses every step); steps are cumulative. Every supervised and "
            f"fine-tuned row trains at learning rates {', '.join(rates[:-1])} and "
            f"{rates[-1]} and keeps the best on validation under the page's selection "
            "(joint and the compute control: 1e-3). Every run is validated "
            f"at step 0 too; the checkpoint is {SELECTIONS[selection]}. Δ: paired by "
            "volume and seed against **from scratch** at the same N (at N = 0: "
            "zero-filling), a crossed bootstrap over seeds (each its own labelled draw) and "
            "volumes (95 % CI), Wilcoxon over volumes; ✓ = significant (p < 0.05 and the CI "
            "excludes 0), · = not. The label-free rows are repeated at each N: what the "
            "labels add over them is read out below the table. Joint training counts two "
            "slices a step (a labelled one and a pool one); its compute-held-equal control "
            "trains from scratch for as many slices. FLOPs: every training slice on its own "
            "folder's grid (the pool's own-mask files keep their width), pre-training "
            "included."
        ),
        rows=(
            RowSpec("zero-filled", "few_labels_pretrain/model=zero_filled", "zero_filled", "0"),
            *(
                RowSpec(f"{label} alone", pre, option, group="0", also_groups=labelled)
                for label, option in free
            ),
            *(
                RowSpec(
                    label,
                    study,
                    option,
                    select_on_val=True,
                    candidates=tuple(f"{option}_lr{r.replace('-', '')}" for r in rates[1:]),
                )
                for label, option in (
                    (SCRATCH, "scratch"),
                    (SCRATCH_TOTAL, "scratch_equal_total"),
                    *((f"{label} + fine-tuned", option) for label, option in tuned),
                )
            ),
            RowSpec(JOINT, study, "joint"),
            RowSpec(SCRATCH_COMPUTE, study, "scratch_equal_compute"),
        ),
        reference=SCRATCH,
        reference_by_group={"0": "zero-filled"},
        control=SCRATCH_TOTAL,
        group_by="labels",
        group_title="N labelled",
        pairing="hierarchical",
        contrasts=tuple((f"{label} alone", f"{label} + fine-tuned") for label, _ in free)
        + ((JOINT, f"{FEW_SSDU} + fine-tuned"), (SCRATCH_COMPUTE, JOINT)),
        readme=(
            (SCRATCH_TOTAL, "zero-filled"),
            (f"{FEW_SSDU} alone",),
            (f"{FEW_SSDU} + fine-tuned",),
            (f"{FEW_MIM} + fine-tuned",),
            (JOINT,),
        ),
        # what the labels add to the label-free model: do they ever hurt? (Without labels
        # for selection the README has no table: the comparisons with from scratch too.)
        readme_contrasts=(
            (f"{FEW_SSDU} alone", f"{FEW_SSDU} + fine-tuned"),
            (SCRATCH_COMPUTE, JOINT),  # joint's gain with its compute held equal
            *(
                ()
                if selection == "best"
                else ((SCRATCH_TOTAL, f"{FEW_SSDU} + fine-tuned"), (SCRATCH_TOTAL, JOINT))
            ),
        ),
        selection=selection,
        readme_table=selection == "best",
        readme_names={
            JOINT: "joint training",
            SCRATCH_COMPUTE: "from scratch, joint's compute",
            f"{FEW_MIM} + fine-tuned": "masked modeling + fine-tuned",
        },
    )


LONG_BUDGETS = (1, 2, 4, 8)  # budget.steps of the rows of the long page


def few_labels_long_spec() -> TableSpec:
    """SimMIM-Swin at N = all with the few-labels budget doubled three times: from
    scratch at the pre-trained rows' total steps and SSDU + fine-tuning, each at every
    budget (the study's own jobs at 1); what each doubling gains on validation."""

    def study(factor: int) -> str:
        return (
            "few_labels/model=swin"
            if factor == 1
            else f"few_labels_long/model=swin/steps=x{factor}"
        )

    scratch = {f: f"from scratch, {900 * f:,} steps" for f in LONG_BUDGETS}
    tuned = {f: f"{FEW_SSDU} + fine-tuned, {600 * f:,} + {300 * f:,} steps" for f in LONG_BUDGETS}
    doubled = list(zip(LONG_BUDGETS, LONG_BUDGETS[1:], strict=False))
    return TableSpec(
        name="few_labels_long",
        title="Few labels at N = all, trained longer: SimMIM-Swin",
        command="make results-few-labels-long",
        caption=(
            "The few-labels study's N = all (the 41 labelled Colin27 volumes; validation "
            "Colin27's held-out slabs, the test the ITK person; SimMIM-Swin `tiny`, 4x "
            "equispaced, batch 1, learning rate 1e-3, {seeds} seeds) at its own budget and "
            "at 2, 4 and 8 times its steps (`experiment=few_labels_long`, pre-training "
            "`experiment=few_labels_long_pretrain`): from scratch at the pre-trained rows' "
            "total steps, and SSDU pre-training on the label-free pool then fine-tuning. "
            "The checkpoint with the best validation SSIM; Δ: paired by seed and volume "
            "(hierarchical bootstrap) against from scratch at the study's 900 steps. Is "
            "the study's N = all trained long enough, and does its reading (SSDU "
            "pre-training costs at N = all) hold with longer training?"
        ),
        rows=(
            *(RowSpec(scratch[f], study(f), "scratch_equal_total") for f in LONG_BUDGETS),
            *(RowSpec(tuned[f], study(f), "ssdu_tuned") for f in LONG_BUDGETS),
        ),
        reference=scratch[1],
        group_by="labels",
        group_title="N labelled",
        pairing="hierarchical",
        contrasts=(
            *((scratch[a], scratch[b]) for a, b in doubled),
            *((tuned[a], tuned[b]) for a, b in doubled),
            *((scratch[f], tuned[f]) for f in LONG_BUDGETS[1:]),
        ),
        doublings=(tuple(scratch.values()), tuple(tuned.values())),
        only_groups=(ALL_TRAIN,),
        selection="best",
    )


FEW_LABELS_LONG = few_labels_long_spec()


PAGES = {
    s.name: s
    for s in (
        RESULTS,
        SWIN_VARIANTS,
        LABEL_EFFICIENCY,
        LABEL_FREE_VARIANTS,
        PARITY,
        *(few_labels_spec(network, selection) for network in NETWORKS for selection in SELECTIONS),
        FEW_LABELS_LONG,
    )
}
# The evaluation a page reads from each job: its held-out test under this mask
# (``metrics.json`` ``tests``), every test mask (None), or validation ("val").
EVALUATION = {
    "results": None,
    "swin_variants": None,
    "label_efficiency": "equispaced4x",
    "parity": "val",
}
EVALUATION["label_free_variants"] = EVALUATION["label_efficiency"]
EVALUATION.update(
    {
        few_labels_spec(network, selection).name: "equispaced4x"
        for network in NETWORKS
        for selection in SELECTIONS
    }
)
EVALUATION[FEW_LABELS_LONG.name] = "equispaced4x"


# --- the jobs ------------------------------------------------------------------------
def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


def finished_jobs(study_dir: Path) -> list[dict[str, Any]]:
    """The finished jobs of a study folder: directory, the row and mask chosen (Hydra's
    record), the resolved config and metrics. Others are named on stderr and left out."""
    jobs = []
    for job in job_dirs(Path(study_dir)):
        marker = job / ".hydra" / "hydra.yaml"
        status = job / "status.json"
        finished = status.is_file() and read_json(status).get("status") == "finished"
        if not finished or not (job / "metrics.json").is_file():
            print(f"{job}: not finished, left out", file=sys.stderr)
            continue
        choices = _yaml(marker)["hydra"]["runtime"]["choices"]
        jobs.append(
            {
                "dir": job,
                "choices": choices,
                "config": _yaml(job / "config.yaml"),
                "metrics": read_json(job / "metrics.json"),
            }
        )
    return jobs


def _version(log: Path) -> tuple[int, str]:
    """Order of a CSV log's ``version_N`` folder (numeric: version_10 after version_9)."""
    number = log.parent.name.removeprefix("version_")
    return (int(number) if number.isdigit() else -1, log.parent.name)


def _seconds_at(points: dict[int, tuple[float, float]], step: int) -> float:
    """Training seconds at ``step`` from the points before it, at their mean rate (a run
    resumed from a checkpoint that did not record its seconds; exact when ``step`` was
    validated)."""
    earlier = [s for s in points if s <= step]
    if not earlier:
        return 0.0
    last = max(earlier)
    seconds = points[last][0]
    return seconds * step / last if last else seconds


def curve(job: Path, offset_steps: int = 0, offset_s: float = 0.0) -> list[dict]:
    """Validation SSIM at each scheduled step: steps, training seconds (the CSV logs).

    A resumed run logs to a new ``version_N``: the versions are read in order, a later
    one's point replacing an earlier one's at the same step, so the curve is the whole
    run's, its seconds without the intervals it stood paused (:func:`without_pauses`).
    Seconds are ``time/train_s_total`` where logged; a version without it (a run
    resumed from a checkpoint that did not record it) adds its own seconds to the
    earlier ones', estimated at the step it resumed from (``metrics.json``'s
    ``resumed_from``, else its predecessor's last point)."""
    import pandas as pd

    logs = sorted(Path(job).glob("csv/*/metrics.csv"), key=_version)
    metrics = Path(job) / "metrics.json"
    resumed = (read_json(metrics).get("resumed_from") if metrics.is_file() else None) or {}
    points: dict[int, tuple[float, float]] = {}  # step: (seconds, validation SSIM)
    for i, log in enumerate(logs):
        frame = pd.read_csv(log)
        if "time/steps" not in frame:
            continue
        frame = frame.dropna(subset=["time/steps"])
        if "time/train_s_total" in frame and frame["time/train_s_total"].notna().all():
            seconds = frame["time/train_s_total"]
        else:
            last = i == len(logs) - 1 and isinstance(resumed.get("step"), int)
            start = resumed["step"] if last else max(points, default=0)
            seconds = frame["time/train_s"] + _seconds_at(points, start)
        for step, second, ssim in zip(frame["time/steps"], seconds, frame["val/ssim"], strict=True):
            points[int(step)] = (float(second), float(ssim))
    steps = sorted(points)
    seconds = without_pauses(steps, [points[step][0] for step in steps])
    return [
        {"step": step + offset_steps, "train_s": second + offset_s, "ssim": points[step][1]}
        for step, second in zip(steps, seconds, strict=True)
    ]


def _start(config: dict) -> tuple[int, float, list[dict]]:
    """Steps, seconds and curve of the job a run was initialised from (its ``init_from``
    checkpoint in a job directory), zeros for a run from scratch."""
    init = config.get("init_from")
    source = Path(init).parent.parent if init else None
    if source is None or not (source / "config.yaml").is_file():
        return 0, 0.0, []
    steps = int(_yaml(source / "config.yaml")["trainer"]["max_steps"])
    pre = curve(source)
    return steps, (pre[-1]["train_s"] if pre else 0.0), pre


def _acceleration(mask: str) -> str:
    digits = "".join(c for c in mask.removesuffix("x").split("equispaced")[-1] if c.isdigit())
    return f"{digits}x"


def selected(job: dict, selection: str | None) -> dict | None:
    """The job's numbers under one checkpoint selection (``best``, ``heldout``, ``last``;
    None: its own ``evaluation.checkpoint``): its main numbers when that is the selection
    asked for or nothing was trained (zero-filling), else ``evaluation.also``'s entry;
    None when the job did not evaluate that selection."""
    metrics, config = job["metrics"], job["config"]
    evaluation = config.get("evaluation") or {}
    if selection in (None, evaluation.get("checkpoint")) or not metrics.get("selected_on"):
        return metrics
    return (metrics.get("also") or {}).get(selection)


def evaluations(
    job: dict, page: str, fixed_group: str | None, selection: str | None = None
) -> dict[str, dict]:
    """``{group: evaluation}`` of one job for a page: per acceleration of its held-out
    tests (results), its 4x test under the labelled-volume count (label pages), or its
    validation (parity); under the page's checkpoint selection."""
    metrics, config = selected(job, selection), job["config"]
    if metrics is None:
        print(f"{job['dir']}: no {selection} selection evaluated, left out", file=sys.stderr)
        return {}
    wanted = EVALUATION[page]
    if wanted == "val":
        return {"": metrics}
    tests = dict(metrics.get("tests") or {})
    if "test" in metrics:  # tested once, under the job's own mask
        tests[job["choices"].get("mask", "")] = metrics["test"]
    if wanted is None:
        return {_acceleration(mask): test for mask, test in tests.items()}
    if wanted not in tests:
        return {}
    if fixed_group is not None:
        return {fixed_group: tests[wanted]}
    n = config["data"].get("train_volumes")
    if n is None:
        n = len(list(Path(config["data"]["train_path"]).glob("*.h5")))
    return {str(n): tests[wanted]}


def model_overrides(model: dict[str, Any]) -> tuple[str, ...]:
    """A job's network keys as command-line overrides (``model.cascades=9``, lists and
    nulls in Hydra's syntax), so that a count is of the job's own network."""

    def value(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(value(x) for x in v) + "]"
        return str(v)

    return tuple(f"model.{k}={value(v)}" for k, v in model.items() if k != "_target_")


def _flops_per_step(job: dict, part: str = "train") -> float | None:
    """Training FLOPs of one slice at batch 1 with the job's own network on the model grid
    of one of its training folders (``train`` or a joint run's label-free ``pool``; a
    square-grid family's crop, not the file's k-space; an own-mask file keeps its width):
    ``bench train``'s count. None when the job has no such folder."""
    from omegaconf import OmegaConf

    from kspace_mim.bench.train import train_step_rate
    from kspace_mim.train import build_datamodule

    datamodule = build_datamodule(OmegaConf.create(job["config"]))
    datamodule.setup("fit")
    if part not in datamodule.datasets:
        return None
    keys = [datamodule.slice_key(v) for v in datamodule.datasets[part].volumes]
    grid = f"{max(g[0] for _, g in keys)}x{max(g[1] for _, g in keys)}"
    coils = datamodule.facts().num_coils
    model = job["config"]["model"]
    rate = train_step_rate(
        job["choices"]["model"],
        model.get("size", "tiny"),
        grid,
        coils,
        1,
        1,
        "cpu",
        model_overrides(model),
    )
    return rate["gflop_per_slice"] * 1e9


def _job_at(folder: Path) -> dict:
    """A job folder's Hydra choices and resolved config (as :func:`finished_jobs`)."""
    choices = _yaml(folder / ".hydra" / "hydra.yaml")["hydra"]["runtime"]["choices"]
    return {"dir": folder, "choices": choices, "config": _yaml(folder / "config.yaml")}


def _train_flops(job: dict) -> float | None:
    """All training FLOPs behind a job's weights: its own steps x slices a step on each
    training folder's grid (a joint run: one labelled and one pool batch a step), plus
    those of the job it was initialised from (pre-training on the pool's grid)."""
    config = job["config"]
    steps = int(config["trainer"]["max_steps"])
    batch = int(config.get("data", {}).get("batch_size") or 1)
    per_slice = [_flops_per_step(job, part) for part in ("train", "pool")]
    if per_slice[0] is None:
        return None
    total = steps * batch * sum(f for f in per_slice if f is not None)
    init = config.get("init_from")
    source = Path(init).parent.parent if init else None
    if source is not None and (source / "config.yaml").is_file():
        before = _train_flops(_job_at(source))
        total = None if before is None else total + before
    return total


def row_records(spec: TableSpec, row: RowSpec, study_jobs: list[dict[str, Any]]) -> Records:
    """One record per group of a row, from its study's finished jobs (CS: the setting
    chosen on validation per group)."""
    options = (row.option, *row.candidates)
    jobs = [j for j in study_jobs if row.option is None or j["choices"].get("row") in options]
    per_group: dict[str, list[tuple[dict, dict]]] = {}
    for job in jobs:
        found = evaluations(job, spec.name, row.group, spec.selection)
        for group, evaluation in found.items():
            per_group.setdefault(group, []).append((job, evaluation))
    trained = [
        j for j in jobs if j["metrics"].get("selected_on") or "train_seconds" in j["metrics"]
    ]
    # Every job of a row trains the same network on the same folders: counted once.
    flops = _train_flops(trained[0]) if spec.flops and trained else None
    records: Records = {}
    for group, found in per_group.items():
        chosen = None
        if row.select_on_val:
            found, chosen = _best_on_validation(found, spec.selection)
        runs = []
        for job, evaluation in found:
            offset, offset_s, _ = _start(job["config"])
            steps = int(job["config"]["trainer"]["max_steps"]) + offset
            trains = job in trained
            mine = curve(job["dir"], offset, offset_s) if trains else []
            seconds = job["metrics"].get("train_seconds") or (mine[-1]["train_s"] if mine else None)
            step = (selected(job, spec.selection) or {}).get("checkpoint_step")
            last = _last_ssim(job, spec, row.group, group) if trains else None
            runs.append(
                {
                    "seed": job["config"].get("seed"),
                    "volumes": evaluation["volumes"],
                    "steps": steps if trains else None,
                    "checkpoint_step": None if step is None or not trains else step + offset,
                    "curve": mine,
                    "train_s": seconds,
                    "train_flops": flops if trains else None,
                    "chosen_on_val": chosen,
                    "ssim_last": last,
                }
            )
        split = "val" if EVALUATION[spec.name] == "val" else "test"
        records[(row.label, group)] = record(row.label, group, runs, split)
        for other in row.also_groups:
            records[(row.label, other)] = {**records[(row.label, group)], "group": other}
    return records


def _last_ssim(job: dict, spec: TableSpec, fixed: str | None, group: str) -> float | None:
    """The job's test SSIM (mean over volumes) at its last step, where the page chooses
    checkpoints and the job evaluated its last one too (``evaluation.also``)."""
    if spec.selection is None or "last" not in (job["metrics"].get("also") or {}):
        return None
    found = evaluations(job, spec.name, fixed, "last").get(group)
    if not found:
        return None
    return statistics.fmean(v["ssim"] for v in found["volumes"].values())


def _validation_score(job: dict, selection: str | None) -> float:
    """Higher is better: the validation SSIM of the job's selected checkpoint, or, when
    the selection uses no label (``heldout``), minus its held-out loss."""
    chosen = selected(job, selection) or {}
    val = chosen.get("val", chosen)
    return -val["heldout_loss"] if selection == "heldout" else val["ssim"]


def _best_on_validation(
    found: list[tuple[dict, dict]], selection: str | None = None
) -> tuple[list[tuple[dict, dict]], dict]:
    """The jobs of the setting (seed aside: CS's maps and lamda, or a learning rate) with
    the best mean validation score (:func:`_validation_score`)."""
    settings: dict[str, list] = {}
    for job, evaluation in found:
        config = job["config"]
        model = config.get("model") or {}
        if "lamda" in model:
            key = f"maps {model.get('maps')}, lamda {model.get('lamda')}"
        else:
            key = f"learning rate {config['optim']['lr']:g}"
        settings.setdefault(key, []).append((job, evaluation))

    def val(key: str) -> float:
        scores = [_validation_score(j, selection) for j, _ in settings[key]]
        return sum(scores) / len(scores)

    best = max(settings, key=val)
    grid = {k: val(k) for k in sorted(settings)}
    # what the score is: validation SSIM, or minus the held-out loss (no label)
    name = "val_minus_heldout_loss" if selection == "heldout" else "val_ssim"
    return settings[best], {"setting": best, name: val(best), "val_grid": grid}


def study_records(spec: TableSpec, outputs: Path) -> Records:
    """Every row's records from the studies under ``outputs/studies``; rows without a
    finished job are named and left out."""
    records: Records = {}
    found: dict[str, list[dict[str, Any]]] = {}
    for row in spec.rows:
        if row.study not in found:
            found[row.study] = finished_jobs(outputs / "studies" / row.study)
        mine = row_records(spec, row, found[row.study])
        if spec.only_groups:  # a page of some groups of a study's jobs (N = all)
            mine = {key: r for key, r in mine.items() if key[1] in spec.only_groups}
        if not mine:
            print(
                f"{spec.name}: no finished job for row {row.label!r} ({row.study})", file=sys.stderr
            )
        records.update(mine)
    return records


def save_overview(records: Records, outputs: Path, root: Path) -> Path | None:
    """The README's picture: a held-out test volume reconstructed at 4x by the trained
    row with the best test SSIM (its first seed's checkpoint): target | zero-filled |
    reconstruction | error, k-space before / after."""
    import shutil

    from kspace_mim.config import compose
    from kspace_mim.reconstruct import run as reconstruct

    trained = {label: r for (label, g), r in records.items() if g == "4x" and r.get("steps")}
    if not trained:
        return None
    best = max(trained, key=lambda label: trained[label]["ssim"])
    option = next(r.option for r in RESULTS.rows if r.label == best)
    job = next(
        j for j in finished_jobs(outputs / "studies" / "results") if j["choices"]["row"] == option
    )
    folder = outputs / "studies" / "overview"
    shutil.rmtree(folder, ignore_errors=True)
    overrides = [
        f"ckpt='{job['metrics']['checkpoint']}'",  # quoted: checkpoint names hold '='
        f"input={job['config']['data']['test_path']}",
        f"output={folder}",
        "mask=equispaced4x",
        "figures=true",
    ]
    reconstruct(compose(overrides, "reconstruct"))
    figures = sorted((folder / "figures").glob("*.png"))
    if not figures:
        return None
    shutil.copyfile(figures[len(figures) // 2], root / "docs" / "overview.png")
    return root / "docs" / "overview.png"


def main(argv: list[str] | None = None) -> None:
    from kspace_mim.config import project_root

    parser = argparse.ArgumentParser(
        prog="python -m kspace_mim.study", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("page", choices=sorted(PAGES), help="the page to write")
    parser.add_argument(
        "--outputs",
        type=Path,
        help="the folder holding studies/ (default: KSPACE_MIM_OUTPUT or ./outputs)",
    )
    parser.add_argument(
        "--row-files",
        action="store_true",
        help="write the page again from its committed row files (docs/<page>/*.json)",
    )
    parser.add_argument("--root", type=Path, help="the repository (docs/, README.md)")
    args = parser.parse_args(argv)
    import os

    spec = PAGES[args.page]
    root = args.root or Path(project_root())
    outputs = args.outputs or Path(os.environ.get("KSPACE_MIM_OUTPUT", root / "outputs"))
    try:
        if args.row_files:
            records = read_records(root / "docs" / spec.name)
        else:
            records = study_records(spec, outputs)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if not records:
        print(
            f"error: no finished job of {spec.name} under {outputs / 'studies'}: run its "
            f"studies first ({spec.command}), or pass --row-files",
            file=sys.stderr,
        )
        sys.exit(2)
    page = write_page(spec, records, root)
    if spec is RESULTS and not args.row_files:
        save_overview(records, outputs, root)
    print(f"{len(records)} row record(s); wrote {page}")


if __name__ == "__main__":
    main()
