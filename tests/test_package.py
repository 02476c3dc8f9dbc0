"""The package as installed: configs inside it, data and outputs under the current folder,
console scripts, extras named when missing, and the configuration reference."""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
from pathlib import Path

import pytest

import kspace_mim
from kspace_mim import config_reference
from kspace_mim.config import CONFIG_DIR, compose, require_extras

tomllib = pytest.importorskip("tomllib")  # the standard library's from Python 3.11
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_configs_live_inside_the_package_and_ship_as_package_data():
    assert CONFIG_DIR == Path(kspace_mim.__file__).resolve().parent / "conf"
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["kspace_mim"]
    yamls = [p.relative_to(CONFIG_DIR.parent).as_posix() for p in CONFIG_DIR.rglob("*.yaml")]
    assert len(yamls) > 40
    for path in yamls:  # what the wheel takes (the wheel check installs one)
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path


def test_data_and_outputs_default_to_the_current_folder(tmp_path, monkeypatch):
    for name in ("KSPACE_MIM_ROOT", "KSPACE_MIM_DATA", "KSPACE_MIM_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = compose(["paths.run_dir=x"], return_hydra_config=True)
    assert cfg.paths.data_dir == f"{tmp_path}/data"
    assert cfg.data.synthetic_root == f"{tmp_path}/data/colin27"
    assert cfg.hydra.run.dir.startswith(f"{tmp_path}/outputs/runs/")
    monkeypatch.setenv("KSPACE_MIM_DATA", "/somewhere/data")
    monkeypatch.setenv("KSPACE_MIM_OUTPUT", "/elsewhere")
    cfg = compose(return_hydra_config=True)
    assert cfg.paths.data_dir == "/somewhere/data"
    assert cfg.hydra.sweep.dir.startswith("/elsewhere/multirun/")


def test_console_scripts_name_real_entry_points():
    scripts = PYPROJECT["project"]["scripts"]
    assert {"kspace-mim-train", "kspace-mim-reconstruct", "kspace-mim-evaluate"} <= set(scripts)
    assert {"kspace-mim-report", "kspace-mim-compare"} <= set(scripts)
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_the_core_install_downgrades_nothing():
    """SQLAlchemy < 2 (the Optuna sweeper's optuna 2.x) is the optuna extra's, not the core's."""
    core = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    assert "<" not in core and "optuna" not in core and "sqlalchemy" not in core
    extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["optuna"]).lower()
    assert "hydra-optuna-sweeper" in extra and "sqlalchemy" in extra


def test_a_search_without_its_extra_names_the_extra(monkeypatch):
    real = importlib.util.find_spec

    def without_optuna(name, *args):
        return None if name.startswith("hydra_plugins.hydra_optuna") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_optuna)
    with pytest.raises(SystemExit, match=r"pip install 'kspace_mim\[optuna\]'"):
        require_extras(["-m", "hparams_search=optuna", "seed=1"])
    require_extras(["-m", "seed=0,1"])  # nothing to say without the search
    monkeypatch.setattr(importlib.util, "find_spec", real)
    require_extras(["hparams_search=optuna"])  # installed here (make install): silent


@pytest.mark.docs
def test_configuration_reference_lists_every_group_option_and_key():
    text = config_reference.markdown()
    for group in ("data", "model", "recipe", "mask", "supervision", "trainer", "hydra/launcher"):
        assert group in config_reference.groups()
    for path in CONFIG_DIR.rglob("*.yaml"):
        group = path.parent.relative_to(CONFIG_DIR).as_posix()
        title = f"`{path.stem}.yaml`" if group == "." else f"`{group}={path.stem}`"
        assert f"### {title}" in text, title
    # a key's default and its comment (inline here), nested keys dotted
    assert "| `model.encoder_stride` | `null` | null: the real downsampling, patch_size" in text
    assert "| `init_from` | `null` | a checkpoint to start from" in text
    # ... or the comment lines just above it
    assert "| `optimized_metric` | `val/ssim` | What a sweep optimises" in text
    # a key without a comment of its own: the argument of the option's _target_
    assert "| `accelerator` | `auto` | argument of `lightning.Trainer` |" in text
    # the defaults list, and brackets that are not Markdown links
    assert "| `defaults` | `[_self_, trainer: auto, data: synthetic," in text
    assert "\\[key=value ...\\]" in text


@pytest.mark.docs
def test_every_key_of_every_option_is_explained():
    """A key without a comment takes its group's (or its full path's) meaning; a new key
    that nothing explains fails here until its YAML says what it is."""
    unexplained = [
        f"{o.group or '.'}/{o.name}: {k.path}"
        for o in config_reference.options()
        for k in o.keys
        if not k.meaning
    ]
    assert not unexplained
    text = config_reference.markdown()
    gpu = text.split("### `trainer=gpu`")[1].split("###")[0]
    assert "| `precision` | `bf16-mixed` | argument of `lightning.Trainer` |" in gpu
    varnet = text.split("### `recipe=fastmri_varnet`")[1].split("###")[0]
    # a global option's key: the data group's meaning of batch_size
    assert "| `data.batch_size` | `1` | argument of `kspace_mim.data.datamodule." in varnet


@pytest.mark.docs
def test_the_configuration_page_is_up_to_date():
    page = ROOT / "docs" / "reference" / "configuration.md"
    assert page.read_text() == config_reference.markdown(), (
        "run: python -m kspace_mim.config_reference docs/reference/configuration.md"
    )


def test_every_mutation_finds_its_text_once():
    """`make mutation` breaks each promise by replacing one text: a text the code no longer
    holds (or holds twice) would stop the whole run, so each is checked here, fast."""
    import importlib.util
    import sys

    path = ROOT / "tests" / "mutations.py"
    spec = importlib.util.spec_from_file_location("kspace_mim_mutations", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    src = ROOT / "src" / "kspace_mim"
    astray = [
        f"{m.name} ({m.file}: {(src / m.file).read_text().count(m.old)} times)"
        for m in module.MUTATIONS
        if (src / m.file).read_text().count(m.old) != 1
    ]
    assert not astray, astray
