"""The one table engine: every generated results page, its reading and its plot.

A page is a :class:`TableSpec` (its rows, their labels, the reference, the pairing unit,
the groups: accelerations or labelled-volume counts, the contrasts it reads out) applied
to *row records*: one per (row, group), as :mod:`kspace_mim.study` aggregates them from a
study's job directories and as the page's row files (``docs/<page>/*.json``) keep them::

    {"row": label, "group": "4x", "split": "test", "seeds": [0, 1, 2],
     "ssim": .., "psnr": .., "nmse": ..,           # means over volumes of the seed means
     "ssim_per_seed": [..], "steps": 400, "checkpoint_steps": [..],
     "train_flops": .., "train_minutes": .., "last_gain": .., "last_steps": [a, b],
     "curves": [[{"step", "train_s", "ssim"}, ..] per seed],
     "volumes": {file: {metric: seed mean}},      # what "volume" pairing pairs
     "evaluations": [{"volumes": {..}} per seed]} # what "seed_volume" pairing pairs

Statistics are :mod:`kspace_mim.compare`'s (bootstrap CI of the paired differences,
Wilcoxon p) and one rule decides significance everywhere (:func:`compare.significant`).
Nothing here trains or reads job folders: it runs on fixture JSON in milliseconds.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kspace_mim.compare import difference_statistics, hierarchical_statistics, significant
from kspace_mim.compare import paired as paired_volumes
from kspace_mim.files import write_json

METRICS = ("ssim", "psnr", "nmse")
# SSIM gained over a curve's last log-spaced interval below which it counts as flat.
FLAT = 0.005
# An interval between validation points that took this many times its run's median
# seconds per step stood paused (a shared machine stops a run while it runs something
# else): it counts at the median rate. No interval of an unpaused run came near (the
# slowest of every page's runs: 2.2 times).
PAUSED = 3.0


@dataclass(frozen=True)
class RowSpec:
    """One row of a page: its label and where its jobs are.

    study: the study folder of its jobs (``outputs/studies/<study>``); option: its
    ``row=`` option (None: every job of the study, e.g. CS's settings); group: a fixed
    group for all its records (the label-free rows at N = 0); select_on_val: per group,
    the jobs' setting with the best validation score (CS's lamda and maps; a learning
    rate among the jobs of ``option`` and ``candidates``, under the page's selection);
    curve_only:
    plotted, not tabled (a longer run of the cheapest model); also_groups: the record
    repeated in these groups (a label-free row beside the fine-tuned ones at each N)."""

    label: str
    study: str
    option: str | None = None
    group: str | None = None
    select_on_val: bool = False
    curve_only: bool = False
    also_groups: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """One generated page.

    name: ``docs/<name>.md`` and its row files ``docs/<name>/``; caption: the prose above
    the table, formatted with ``seeds`` (the most seeds of a row) and ``steps`` (label ->
    steps); group_by: ``acceleration`` | ``labels`` | None (one group, validation) and
    group_title its column's title; reference: the row every other is paired against,
    reference_by_group: another one for some groups (N = 0: zero-filling); control: a
    second paired column (from scratch at the same total steps); pairing: ``volume``
    (each volume's mean over seeds), ``seed_volume`` (each seed's run of both, each
    volume) or ``hierarchical`` (per seed and volume, a crossed bootstrap over both:
    :func:`kspace_mim.compare.hierarchical_statistics`); selection: which checkpoint's
    evaluation every row reads (``best``, ``heldout``, ``last``; None: the job's own
    ``evaluation.checkpoint``); contrasts: further pairs read out per group (label A,
    label B: B - A); readme: the README's short form, a column per tuple of alternative labels (the
    first found per group), the first tuple the reference; readme_contrasts: contrasts
    whose reading the README's short form repeats (with ``readme_table=False`` the
    short form is those readings alone, no table); readme_names: shorter names the README
    gives rows (the page keeps the full ones); doublings: chains of rows, one recipe at
    budgets each twice the last, read out as what each doubling gained on validation;
    only_groups: the groups the page keeps (empty: all); flops: the FLOPs column."""

    name: str
    title: str
    command: str
    caption: str
    rows: tuple[RowSpec, ...]
    reference: str
    group_by: str | None = "acceleration"
    group_title: str = "accel."
    reference_by_group: dict[str, str] = field(default_factory=dict)
    control: str | None = None
    pairing: str = "volume"
    contrasts: tuple[tuple[str, str], ...] = ()
    readme: tuple[tuple[str, ...], ...] | None = None
    readme_contrasts: tuple[tuple[str, str], ...] = ()
    flops: bool = True
    selection: str | None = None
    readme_table: bool = True
    readme_names: dict[str, str] = field(default_factory=dict)
    doublings: tuple[tuple[str, ...], ...] = ()
    only_groups: tuple[str, ...] = ()

    def readme_name(self, label: str) -> str:
        return self.readme_names.get(label, label)

    def labels(self, tabled: bool = True) -> list[str]:
        return [r.label for r in self.rows if not (tabled and r.curve_only)]

    def reference_of(self, group: str) -> str:
        return self.reference_by_group.get(group, self.reference)


Records = dict[tuple[str, str], dict[str, Any]]


# --- records -------------------------------------------------------------------------
def record(
    label: str, group: str, runs: list[dict[str, Any]], split: str = "test"
) -> dict[str, Any]:
    """The row record of ``runs`` (one per seed: ``seed``, ``volumes``, optional
    ``steps``, ``checkpoint_step``, ``curve``, ``train_s``, ``train_flops``,
    ``chosen_on_val``, ``ssim_last``: its test SSIM at the last step): means over
    volumes of the per-volume seed means, per-seed SSIM, the last step's SSIM, steps,
    cost, the curves and how much their last interval still gained."""
    from kspace_mim.compare import seed_mean_volumes

    runs = sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
    evaluations = [{"volumes": r["volumes"]} for r in runs]
    volumes = seed_mean_volumes(evaluations)
    curves = [r.get("curve") or [] for r in runs]
    seconds = [r.get("train_s") for r in runs]
    out = {
        "row": label,
        "group": group,
        "split": split,
        "seeds": [r.get("seed") for r in runs],
        **{m: statistics.fmean(v[m] for v in volumes.values()) for m in METRICS},
        "ssim_per_seed": [statistics.fmean(v["ssim"] for v in r["volumes"].values()) for r in runs],
        # the last step's checkpoint beside the chosen one (where every run evaluated it)
        "ssim_last": (
            statistics.fmean(r["ssim_last"] for r in runs)
            if all(r.get("ssim_last") is not None for r in runs)
            else None
        ),
        "steps": runs[0].get("steps"),
        "checkpoint_steps": [r.get("checkpoint_step") for r in runs],
        "train_flops": runs[0].get("train_flops"),
        "train_minutes": train_minutes(seconds),
        "chosen_on_val": runs[0].get("chosen_on_val"),
        **last_gain(curves),
        "curves": curves,
        "volumes": volumes,
        "evaluations": evaluations,
    }
    return out


def without_pauses(steps: Sequence[int], seconds: Sequence[float]) -> list[float]:
    """Cumulative training seconds at ``steps`` (ascending) with paused intervals taken
    out: an interval slower than ``PAUSED`` times the run's median seconds per step
    counts at that median (a median needs 3 intervals at least; fewer: unchanged)."""
    points = list(zip(steps, seconds, strict=True))
    intervals = list(zip(points, points[1:], strict=False))
    rates = [(s1 - s0) / (t1 - t0) for (t0, s0), (t1, s1) in intervals if t1 > t0]
    if len(rates) < 3:
        return list(seconds)
    typical = statistics.median(rates)
    out = list(seconds[:1])
    for (t0, s0), (t1, s1) in intervals:
        took = s1 - s0
        if t1 > t0 and took > PAUSED * typical * (t1 - t0):
            took = typical * (t1 - t0)
        out.append(out[-1] + took)
    return out


def train_minutes(seconds: Sequence[float | None]) -> float | None:
    """A row's training minutes: the median of its seeds' wall-clock seconds (on a shared
    machine a seed that stood paused, or shared its cores, moves a mean but not the
    median); None when a seed has none."""
    return statistics.median(seconds) / 60 if seconds and all(seconds) else None


def last_gain(curves: Sequence[list[dict]]) -> dict[str, Any]:
    """Validation SSIM gained over the curves' last interval (mean over seeds): whether
    they had flattened by the end of the budget."""
    curves = [c for c in curves if len(c) >= 2]
    if not curves:
        return {}
    gain = statistics.fmean(c[-1]["ssim"] - c[-2]["ssim"] for c in curves)
    return {"last_gain": gain, "last_steps": [curves[0][-2]["step"], curves[0][-1]["step"]]}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def record_file(spec: TableSpec, rec: dict[str, Any]) -> str:
    group = rec["group"]
    suffix = f"_n{group}" if spec.group_by == "labels" else f"_{group}" if group else ""
    return f"{slug(rec['row'])}{suffix}.json"


def write_records(spec: TableSpec, records: Records, folder: Path) -> list[Path]:
    """The row files (``folder/<row>_<group>.json``); files of rows no longer in the page
    are removed (a page's folder holds its rows and nothing else)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / record_file(spec, r) for r in records.values()]
    for old in folder.glob("*.json"):
        if old not in written:
            old.unlink()
    for path, rec in zip(written, records.values(), strict=True):
        write_json(path, rec)
    return written


def read_records(folder: Path) -> Records:
    """The row files of a page, as :func:`write_records` wrote them."""
    records = {}
    for path in sorted(Path(folder).glob("*.json")):
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict) or not {"row", "group", "volumes"} <= set(rec):
            raise ValueError(f"{path}: not a row record (row, group, volumes)")
        records[(rec["row"], rec["group"])] = rec
        # Row files written when a row's minutes were its seeds' mean (of the curves'
        # last seconds): the median, from the same seconds.
        last = [c[-1].get("train_s") for c in rec.get("curves") or [] if c]
        stored = rec.get("train_minutes")
        if last and len(last) == len(rec.get("seeds") or []) and all(last) and stored:
            if abs(statistics.fmean(last) / 60 - stored) < 1e-9:
                rec["train_minutes"] = train_minutes(last)
    if not records:
        raise FileNotFoundError(f"{folder} holds no row files")
    return records


# --- statistics ----------------------------------------------------------------------
def paired(ref: dict, rec: dict, pairing: str, metric: str = "ssim") -> dict[str, Any]:
    """``rec`` - ``ref`` paired by volume (seed means), by (seed, volume), or by seed and
    volume with a crossed bootstrap over both (``hierarchical``: the same seed's runs,
    which for a labelled subset are the same draw): mean, 95 % bootstrap CI, Wilcoxon p, n."""
    if pairing == "volume":
        x, y = paired_volumes(ref["volumes"], rec["volumes"], metric)
        return difference_statistics(y - x)
    if pairing == "hierarchical":
        mine = dict(zip(rec["seeds"], rec["evaluations"], strict=True))
        theirs = dict(zip(ref["seeds"], ref["evaluations"], strict=True))
        if ref.get("steps") is None and len(theirs) == 1:
            # a reference that did not train (zero-filling) is every seed's: each pairs
            theirs = dict.fromkeys(mine, next(iter(theirs.values())))
        both = [seed for seed in mine if seed in theirs]
        if not both:
            raise ValueError(f"{rec['row']} and {ref['row']} share no seed to pair")
        return hierarchical_statistics(
            {
                str(seed): {
                    name: mine[seed]["volumes"][name][metric]
                    - theirs[seed]["volumes"][name][metric]
                    for name in sorted(set(mine[seed]["volumes"]) & set(theirs[seed]["volumes"]))
                }
                for seed in both
            }
        )
    if pairing != "seed_volume":
        raise ValueError(f"pairing {pairing!r}: volume, seed_volume or hierarchical")
    diffs = [
        mine["volumes"][name][metric] - theirs["volumes"][name][metric]
        for mine, theirs in zip(rec["evaluations"], ref["evaluations"], strict=True)
        for name in sorted(set(mine["volumes"]) & set(theirs["volumes"]))
    ]
    return difference_statistics(np.array(diffs))


def groups(records: Records) -> list[str]:
    """The groups in order (numbers by value, then the others by name)."""
    found = dict.fromkeys(g for _, g in records)

    def key(g: str) -> tuple:
        digits = g.rstrip("x")
        return (0, int(digits), g) if digits.isdigit() else (1, 0, g)

    return sorted(found, key=key)


def _delta(stat: dict | None, digits: int = 4) -> tuple[str, str]:
    if stat is None:
        return "-", ""
    lo, hi = stat["ci95"]
    return (
        f"{stat['mean_difference']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]",
        "✓" if significant(stat) else "·",
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _per_run(stat: dict | None) -> str:
    """Each run's (seed's, with its own labelled draw) own Wilcoxon test over the volumes,
    in the runs' order: ✓ significant, · not."""
    if stat is None or "per_run" not in stat:
        return ""
    return " ".join("✓" if r["significant"] else "·" for _, r in sorted(stat["per_run"].items()))


def _verdict(stat: dict) -> str:
    if not significant(stat):
        return "not distinguishable from"
    return "significantly above" if stat["mean_difference"] > 0 else "significantly below"


# --- the page ------------------------------------------------------------------------
def table(spec: TableSpec, records: Records) -> tuple[str, list[tuple]]:
    """The Markdown table and the comparisons it made: (group, label, stat vs
    reference, stat vs control)."""
    control = [spec.control] if spec.control else []
    last = any(r.get("ssim_last") is not None for r in records.values())
    per_run = spec.pairing == "hierarchical"
    head = [
        *([spec.group_title] if spec.group_by else []),
        "model",
        "SSIM",
        "PSNR",
        "NMSE",
        "SSIM per seed",
        *(["SSIM, last step"] if last else []),
        "Δ SSIM vs ref. [95 % CI]",
        "sig.",
        *(["sig. per seed"] if per_run else []),
        *(f"Δ SSIM vs {c} [95 % CI]" for c in control),
        *("sig." for _ in control),
        "steps",
        "chosen at step",
        *(["train GFLOP"] if spec.flops else []),
        "train min",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    found = []
    for group in groups(records):
        ref = records.get((spec.reference_of(group), group))
        for label in spec.labels():
            r = records.get((label, group))
            if r is None:
                continue
            stat = None if ref is None or r is ref else paired(ref, r, spec.pairing)
            delta, mark = _delta(stat) if r is not ref else ("reference", "")
            versus = []
            ctrl_stat = None
            if spec.control:
                ctrl = records.get((spec.control, group))
                own = label in (spec.control, spec.reference_of(group))
                if ctrl is not None and not own:
                    ctrl_stat = paired(ctrl, r, spec.pairing)
                versus = list(_delta(ctrl_stat))
            if stat is not None:
                found.append((group, label, stat, ctrl_stat))
            chosen = " / ".join(str(c) for c in r.get("checkpoint_steps") or [] if c) or "-"
            gflop = f"{r['train_flops'] / 1e9:,.0f}" if r.get("train_flops") else "-"
            minutes = f"{r['train_minutes']:.1f}" if r.get("train_minutes") else "-"
            per_seed = " / ".join(f"{s:.4f}" for s in r.get("ssim_per_seed") or [])
            cells = [
                *([group] if spec.group_by else []),
                label,
                f"{r['ssim']:.4f}",
                f"{r['psnr']:.2f}",
                f"{r['nmse']:.4f}",
                per_seed if len(r.get("ssim_per_seed") or []) > 1 else "-",
                *([_number(r.get("ssim_last"))] if last else []),
                delta,
                mark,
                *([_per_run(stat)] if per_run else []),
                *versus[:1],
                *versus[1:],
                str(r.get("steps") or "-"),
                chosen,
                *([gflop] if spec.flops else []),
                minutes,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), found


def reading(spec: TableSpec, records: Records, found: list[tuple]) -> str:
    """Which differences hold, in words: per group against its reference, each row
    against the control, and the contrasts."""
    parts = []
    for group in groups(records):
        mine = [(label, s) for g, label, s, _ in found if g == group]
        if not mine:
            continue
        above = [n for n, s in mine if significant(s) and s["mean_difference"] > 0]
        below = [n for n, s in mine if significant(s) and s["mean_difference"] < 0]
        ties = [n for n, s in mine if not significant(s)]
        where = f"At {_group_text(spec, group)}" if spec.group_by else "Against it"
        # Row names hold commas: lists are joined with semicolons.
        parts.append(
            f"{where}, significantly above {spec.reference_of(group)}: "
            f"{'; '.join(above) or 'none'}. Significantly below: {'; '.join(below) or 'none'}. "
            f"Not distinguishable from it: {'; '.join(ties) or 'none'}."
        )
    if spec.control:
        for label in spec.labels():
            mine = [(g, c) for g, n, _, c in found if n == label and c is not None]
            if not mine:
                continue
            better = [g for g, c in mine if significant(c) and c["mean_difference"] > 0]
            worse = [g for g, c in mine if significant(c) and c["mean_difference"] < 0]
            ties = [g for g, c in mine if not significant(c)]
            parts.append(
                f"**{label}** against {spec.control}: significantly better at "
                f"{_listed(spec, better)}; significantly worse at {_listed(spec, worse)}; "
                f"not distinguishable at {_listed(spec, ties)}."
            )
    parts.extend(contrast_readings(spec, records, spec.contrasts))
    return "\n\n".join(parts)


def contrast_readings(
    spec: TableSpec,
    records: Records,
    contrasts: tuple[tuple[str, str], ...],
    short: bool = False,
) -> list[str]:
    """One sentence per contrast (A, B): B - A paired, per group, significant or not, its
    Wilcoxon p and each seed's own mean difference and p where the pairing is
    hierarchical; ``short`` (the README): the difference, its CI and the table's mark
    (✓ / ·) alone, the p values left to the page."""
    parts = []
    for a, b in contrasts:
        said = []
        for group in groups(records):
            ra, rb = records.get((a, group)), records.get((b, group))
            if ra is None or rb is None:
                continue
            stat = paired(ra, rb, spec.pairing)
            delta, mark = _delta(stat, 3 if short else 4)
            at = f"{_group_text(spec, group)}: " if spec.group_by else ""
            if short:
                said.append(f"{at}{delta} {mark}")
                continue
            sig = "significant" if significant(stat) else "not significant"
            runs = stat.get("per_run") or {}
            alone = (
                "; per seed "
                + ", ".join(
                    f"{r['mean_difference']:+.4f} (p = {r['wilcoxon_p']:.2g})"
                    for _, r in sorted(runs.items())
                )
                if len(runs) > 1
                else ""
            )
            said.append(f"{at}{delta} ({sig}, p = {stat['wilcoxon_p']:.3g}{alone})")
        if said and short:  # the README's names; its legend says the pairing
            names = f"{sentence(spec.readme_name(b))} against {spec.readme_name(a)}"
            parts.append(f"{names}: " + "; ".join(said) + ".")
        elif said:
            parts.append(f"{b} against {a} (paired): " + "; ".join(said) + ".")
    return parts


def sentence(text: str) -> str:
    """``text`` starting a sentence: its first letter upper-case, the rest unchanged."""
    return text[:1].upper() + text[1:]


def _group_text(spec: TableSpec, group: str) -> str:
    return f"N = {group}" if spec.group_by == "labels" else group


def _listed(spec: TableSpec, values: list[str]) -> str:
    return ", ".join(_group_text(spec, v) for v in values) or "none"


def flatness(spec: TableSpec, records: Records) -> str:
    """Which validation curves had flattened by their last interval and which still rose:
    each row once (its first group with a curve), or, on a page grouped by labelled
    volumes, each row at every N (the largest N is the one that should converge)."""
    seen, parts, rising = set(), [], []
    order, found = spec.labels(tabled=False), groups(records)

    def place(key: tuple[str, str]) -> tuple[int, int]:
        # The page's row order, whatever order the records came in (jobs or row files).
        label, group = key
        return found.index(group), order.index(label) if label in order else len(order)

    for (label, group), r in sorted(records.items(), key=lambda kv: place(kv[0])):
        once = (label, group) if spec.group_by == "labels" else label
        if once in seen or "last_gain" not in r:
            continue
        seen.add(once)
        a, b = r["last_steps"]
        at = f" ({_group_text(spec, group)})" if spec.group_by == "labels" else ""
        parts.append(f"{label}{at} {r['last_gain']:+.3f} ({a} -> {b})")
        if r["last_gain"] > FLAT:
            rising.append(f"{label}{at}")
    if not parts:
        return ""
    verdict = (
        f"Still rising (more than {FLAT} over the last interval): {'; '.join(rising)}: the "
        "comparison is of these budgets, not of converged training."
        if rising
        else "Every curve has flattened."
    )
    return (
        "Validation SSIM gained over each curve's last interval: "
        + "; ".join(parts)
        + ". "
        + verdict
    )


def best_validation(rec: dict[str, Any]) -> float | None:
    """The mean over seeds of each run's best validation SSIM (its curve's highest point:
    the checkpoint labelled selection keeps); None without curves."""
    curves = [c for c in rec.get("curves") or [] if c]
    if not curves:
        return None
    return statistics.fmean(max(p["ssim"] for p in c) for c in curves)


def doubling_readings(spec: TableSpec, records: Records) -> list[str]:
    """Per chain of :attr:`TableSpec.doublings` and group: the best validation SSIM at each
    budget and what each doubling of the budget gained; flat from the first budget whose
    doubling gained less than ``FLAT``."""
    parts = []
    for chain in spec.doublings:
        for group in groups(records):
            found = [(label, best_validation(records.get((label, group)) or {})) for label in chain]
            found = [(label, v) for label, v in found if v is not None]
            if len(found) < 2:
                continue
            steps = [f"{found[0][0]}: {found[0][1]:.4f}"]
            flat = None
            for (before, a), (label, b) in zip(found, found[1:], strict=False):
                steps.append(f"{label}: {b:.4f} ({b - a:+.4f})")
                if flat is None and b - a < FLAT:
                    flat = before
            at = f" ({_group_text(spec, group)})" if spec.group_by else ""
            verdict = (
                f"flat from {flat} on (its doubling gained less than {FLAT})"
                if flat
                else f"still gaining {FLAT} or more at each doubling: not converged"
            )
            parts.append(
                f"Best validation SSIM{at}, each budget doubled: "
                + "; ".join(steps)
                + f". {sentence(verdict)}."
            )
    return parts


def readme_summary(spec: TableSpec, records: Records) -> str | None:
    """The README's short form: per group, SSIM of the first column's row and of the
    others with their paired difference against it."""
    if not spec.readme:
        return None
    head = [spec.group_title, *(spec.readme_name(alts[0]) for alts in spec.readme)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in groups(records):
        found = [
            next((records[(a, group)] for a in alts if (a, group) in records), None)
            for alts in spec.readme
        ]
        ref = found[0]
        cells = ["-"]
        if ref is not None:  # an alternative to the first column is named
            named = "" if ref["row"] == spec.readme[0][0] else f" ({ref['row']})"
            cells = [f"{ref['ssim']:.4f}{named}"]
        for r in found[1:]:
            if r is None:
                cells.append("-")
                continue
            stat = paired(ref, r, spec.pairing) if ref is not None else None
            d = f" ({stat['mean_difference']:+.3f} {_delta(stat)[1]})" if stat else ""
            cells.append(f"{r['ssim']:.4f}{d}")
        lines.append(
            f"| {_group_text(spec, group).removeprefix('N = ')} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


class _Known(dict):
    """A caption's lookup: a row the records lack reads as '-'."""

    def __missing__(self, key: str) -> str:
        return "-"


def page(spec: TableSpec, records: Records) -> str:
    """The whole page below its title: caption, table, reading, flatness, plot."""
    seeds = max((len(r.get("seeds") or []) for r in records.values()), default=0)
    steps = _Known({label: r.get("steps") for (label, _), r in records.items()})
    text, found = table(spec, records)
    blocks = [spec.caption.format(seeds=seeds, steps=steps), text, reading(spec, records, found)]
    blocks.append(flatness(spec, records))
    blocks.extend(doubling_readings(spec, records))
    if any(r.get("train_minutes") for r in records.values()):
        blocks.append(
            "train min: the wall-clock minutes of training (validation excluded; a "
            "fine-tuned row's include its pre-training), the median over seeds, on a "
            f"shared machine; an interval between validation points slower than {PAUSED:g} "
            "times its run's median seconds per step (the run stood paused) counts at "
            "that median."
        )
    choosing = {label for (label, _), r in records.items() if r.get("chosen_on_val")}
    chosen = []
    for label in spec.labels():  # the table's order, whatever order the records came in
        for g in groups(records):
            r = records.get((label, g), {})
            if r.get("chosen_on_val"):  # the row named where more than one chose its setting
                where = f"{label}, {_group_text(spec, g)}" if len(choosing) > 1 else g
                chosen.append(f"{where}: {r['chosen_on_val']['setting']}")
                # a row whose other candidates did not run (yet) says so, not the caption
                if len(r["chosen_on_val"].get("val_grid") or {}) == 1:
                    chosen[-1] += " (the only setting run)"
    if chosen:
        blocks.append(f"Settings chosen on validation ({'; '.join(chosen)}).")
    blocks.append(f"![{spec.title}: test SSIM and learning curves](docs/{spec.name}.png)")
    return "\n\n".join(b for b in blocks if b) + "\n"


# --- the plot ------------------------------------------------------------------------
def plot(spec: TableSpec, records: Records, path: Path) -> Path:
    """Left: the table's SSIM per group and row (bars: seed std). Then validation SSIM
    against optimizer steps, training FLOPs (where the page has them) and wall-clock,
    mean over seeds, each row at its first group (curve-only rows dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kspace_mim.figures import save_figure

    order = groups(records)
    xs = {g: i for i, g in enumerate(order)}
    panels = 4 if spec.flops else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.2))
    labels = spec.labels(tabled=False)
    # more rows than the 10 default colours: 20 distinct ones, not a repeat
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    colours = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    for label in spec.labels():
        mine = [(g, records[(label, g)]) for g in order if (label, g) in records]
        if not mine:
            continue
        spread = [
            statistics.pstdev(r["ssim_per_seed"]) if len(r["ssim_per_seed"]) > 1 else 0
            for _, r in mine
        ]
        axes[0].errorbar(
            [xs[g] for g, _ in mine],
            [r["ssim"] for _, r in mine],
            yerr=spread,
            marker="o",
            ms=4,
            capsize=3,
            color=colours[label],
            label=label,
        )
    axes[0].set_xticks(range(len(order)), [_group_text(spec, g) for g in order])
    axes[0].set_ylabel(
        f"{'test' if any(r['split'] == 'test' for r in records.values()) else 'validation'} SSIM"
    )
    curved = set()
    for label in spec.labels(tabled=False):
        r = next((records[(label, g)] for g in order if (label, g) in records), None)
        curves = [c for c in (r or {}).get("curves") or [] if c]
        if not curves:
            continue
        n = min(map(len, curves))
        steps = np.array([p["step"] for p in curves[0][:n]])
        ssim = np.mean([[p["ssim"] for p in c[:n]] for c in curves], axis=0)
        seconds = np.mean([[p["train_s"] for p in c[:n]] for c in curves], axis=0)
        per_step = (r.get("train_flops") or np.nan) / (r.get("steps") or np.nan)
        xs_curve = [steps, *([steps * per_step] if spec.flops else []), seconds]
        style = ":" if any(s.label == label and s.curve_only for s in spec.rows) else "-"
        for ax, x in zip(axes[1:], xs_curve, strict=True):
            ax.plot(x, ssim, style, marker="o", ms=3, color=colours[label], label=label)
        curved.add(label)
    # The last panel's legend names every row with a curve (same colours): the first
    # panel's names only the others (zero-filling), so it hides fewer of its points.
    shown = zip(*axes[0].get_legend_handles_labels(), strict=True)
    handles = [(h, t) for h, t in shown if t not in curved]
    if handles:
        axes[0].legend(*zip(*handles, strict=True), fontsize=6)
    titles = [
        "optimizer steps",
        *(["training FLOPs"] if spec.flops else []),
        "training wall-clock (s)",
    ]
    for ax, title in zip(axes[1:], titles, strict=True):
        # Logarithmic past the first validation point, linear below it, so step 0 (the
        # untrained network, every curve's start) is drawn at 0: on a plain log axis it
        # falls off the left edge and its segment reads as a plateau.
        drawn = np.array([x for line in ax.get_lines() for x in line.get_xdata()], float)
        positive = drawn[drawn > 0]  # NaN (a row without FLOPs) compares False
        ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
        ax.set_xlabel(title)
        ax.set_ylabel("validation SSIM")
        ax.grid(alpha=0.3)
    if axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize=6, loc="lower right")
    fig.suptitle(spec.title)
    fig.tight_layout()
    return save_figure(fig, path)


def write_page(spec: TableSpec, records: Records, root: Path, picture: bool = True) -> Path:
    """``docs/<name>.md`` (and the README's section, where it has one), its row files and
    its picture, from ``records``."""
    from kspace_mim.utils import write_generated

    write_records(spec, records, root / "docs" / spec.name)
    if picture:
        plot(spec, records, root / "docs" / f"{spec.name}.png")
    summary = readme_summary(spec, records)
    text = page(spec, records)
    marks = "✓ significant: Wilcoxon p < 0.05 and the 95 % bootstrap CI excludes 0; · not"
    more = f"The full table, steps, FLOPs and curves: [docs/{spec.name}.md](docs/{spec.name}.md)."
    if spec.readme and not spec.readme_table:
        readings = contrast_readings(spec, records, spec.readme_contrasts, short=True)
        summary = "\n\n".join(readings) + f"\n\nPaired differences [95 % CI] ({marks}). {more}\n"
    elif summary:
        summary = (
            f"{summary}\nIn brackets: the paired difference against the first column "
            f"({marks}). {more}\n\n![{spec.title}](docs/{spec.name}.png)\n"
        )
        readings = contrast_readings(spec, records, spec.readme_contrasts, short=True)
        if readings:
            summary = summary.replace("\n\n![", "\n\n" + "\n\n".join(readings) + "\n\n![", 1)
    return write_generated(root, spec.name, spec.title, spec.command, text, summary)
