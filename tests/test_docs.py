"""The README and the documentation site: size, links, and every command they show.

Each command in a ``bash`` block of the README or of ``docs/`` is checked here: a Hydra
command (``train``, ``reconstruct``, ``evaluate``) composes with exactly its overrides
(the first value of a sweep), an argparse command knows every flag it is shown with, and
a ``make`` target exists. What they do is tested where the code lives (and by CI's own
steps: ``make test-slurm``, ``make wheel-check``, ``make docs``).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType

from kspace_mim.config import compose

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
HYDRA = {
    "kspace_mim.train": "train",
    "kspace_mim.reconstruct": "reconstruct",
    "kspace_mim.evaluate": "evaluate",
    "kspace_mim.reference_loop": "train",  # a Hydra app on the train config
}
pytestmark = pytest.mark.docs
SCRIPTS = {"kspace-mim-train": "kspace_mim.train"}


def commands(page: Path) -> list[str]:
    """The command lines of a page's ``bash`` blocks (continuations joined, comments and
    prompts stripped)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


ALL = [(page, line) for page in PAGES for line in commands(page)]


def _id(case: tuple[Path, str]) -> str:
    return f"{case[0].relative_to(ROOT)}: {case[1][:60]}"


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """A multirun's overrides as one job: the first value of every choice / range sweep
    (interval sweeps of an Optuna search are left to the sweeper)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for override, text in zip(parsed, overrides, strict=True):
        if not override.is_sweep_override():
            out.append(text)
        elif override.value_type == ValueType.INTERVAL_SWEEP:
            continue
        else:
            first = next(override.sweep_string_iterator())
            out.append(f"{override.get_key_element()}={first}")
    return out


def module_and_args(line: str) -> tuple[str, list[str]] | None:
    """``(module, arguments)`` of a ``python -m kspace_mim.X`` or console-script line."""
    # [optional parts] of a usage line are left out; a <placeholder> is one word.
    line = re.sub(r"\s\[[^\]]*\]", "", line)
    words = shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", line))
    for i, word in enumerate(words):
        if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("kspace_mim"):
            return words[i + 1], words[i + 2 :]
        if word in SCRIPTS:
            return SCRIPTS[word], words[i + 1 :]
    return None


def test_readme_is_short_and_links_into_the_site():
    readme = (ROOT / "README.md").read_text()
    # short: the lead result (two networks' few-labels tables) and the results table
    assert len(readme.encode()) <= 13_000
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert "docs/reference/configuration.md" in links and "docs/get-started.md" in links
    for link in links:
        assert (ROOT / link).exists(), link


def test_every_page_of_the_site_is_in_its_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        rel = page.relative_to(ROOT / "docs").as_posix()
        assert rel in nav, rel


@pytest.mark.parametrize("case", ALL, ids=[_id(c) for c in ALL])
def test_every_command_in_the_docs_is_valid(case):
    page, line = case
    if line.startswith("make"):
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
        assert line.split()[1] in targets, line
        args = [w.split("=", 1)[1] for w in shlex.split(line) if w.startswith("ARGS=")]
        if line.split()[1] == "train" and args and "=" in args[0]:  # the train config's
            compose(first_of_sweeps(shlex.split(args[0])), "train", return_hydra_config=True)
        return
    found = module_and_args(line)
    if found is None:
        return  # pip, mkdir, cd, jupyter, wandb, .ci/ scripts: not this package's commands
    module, args = found
    if module in HYDRA:
        overrides = [a for a in args if not a.startswith("-")]
        compose(first_of_sweeps(overrides), HYDRA[module], return_hydra_config=True)
        return
    main = __import__(
        f"{module}.__main__" if module == "kspace_mim.bench" else module, fromlist=["main"]
    ).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*(a for a in args if a in ("data", "train", "memory", "tables", "parity")), "--help"])
    for flag in (a.split("=")[0] for a in args if a.startswith("--")):
        assert flag in out.getvalue(), f"{line}: {flag} is not an option of {module}"


def test_commands_are_found_in_the_pages():
    # the parser itself: a multi-line train command of the distributed guide, joined
    lines = commands(ROOT / "docs" / "how-to" / "distributed.md")
    assert any("hydra/launcher=slurm" in line and "data=fastmri_knee" in line for line in lines)
    assert len(ALL) > 60


@pytest.mark.slow
def test_the_label_free_pair_and_the_benchmark_commands_run_as_written(data_root, tmp_path):
    """The label-free how-to's block (an undersampled folder, SSDU, masked modeling, then
    each fine-tuned from its own pre-training) and the benchmark page's reconstruct ->
    evaluate pair, executed as the pages write them on tiny data: only the data's size,
    the budget and the run placeholders (<ssdu run>, <run>) are filled in."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KSPACE_MIM")}
    env["WANDB_MODE"] = "offline"
    runs = tmp_path / "outputs" / "runs"
    tiny = {
        "kspace_mim.data.synthesize": ["--anatomy", "phantom", "--volumes", "2", "--slices", "2"]
        + ["--coils", "4", "--size", "32"],
        "kspace_mim.train": [
            f"data.val_path={data_root}/multicoil_val",
            "data=tiny",
            "model.size=tiny",
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
        ],
    }

    def execute(line: str, fill: dict[str, str]) -> str | None:
        for placeholder, value in fill.items():
            line = line.replace(placeholder, value)
        module, args = module_and_args(line)
        extra = list(tiny.get(module, []))
        if module == "kspace_mim.train" and not any(a.startswith("data.train_path") for a in args):
            extra.append(f"data.train_path={data_root}/multicoil_train")
        before = set(runs.iterdir()) if runs.is_dir() else set()
        result = subprocess.run(
            [sys.executable, "-m", module, *args, *extra],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
        made = sorted(set(runs.iterdir()) - before) if runs.is_dir() else []
        return made[-1].name if made else None

    lines = [line for line in commands(ROOT / "docs" / "how-to" / "self-supervised.md")]
    block = lines[lines.index(next(x for x in lines if "--undersampled" in x)) :][:5]
    assert "supervision=ssdu" in block[1] and "supervision=mim" in block[2]
    execute(block[0], {})
    named = {"<ssdu run>": execute(block[1], {}), "<mim run>": execute(block[2], {})}
    for line in block[3:]:
        assert "<" in line  # a fine-tuning from one of the two runs above
        execute(line, named)

    bench = commands(ROOT / "docs" / "how-to" / "benchmark.md")
    recon = next(x for x in bench if x.startswith("python -m kspace_mim.reconstruct"))
    score = next(x for x in bench if x.startswith("python -m kspace_mim.evaluate"))
    val = f"{data_root}/multicoil_val"
    run = runs / named["<ssdu run>"]
    execute(recon, {"<run>": str(run), "data/knee/val99_test100/test": val})
    execute(score, {"data/knee/val99_test100/test_full": val})
    assert list((tmp_path / "predictions" / "bench").glob("*.h5"))
