"""Where the Hydra configs live, the resolvers they use, and composing them from Python."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

# The configs ship inside the package (package data), so an editable install, a wheel and
# ``pip install git+...`` all find them beside this file.
CONFIG_DIR = Path(__file__).resolve().parent / "conf"


class ConfigError(ValueError):
    """A configuration that cannot work; the message says what fits."""


def project_root() -> str:
    """Where data and outputs live by default: ``KSPACE_MIM_ROOT``, else the current
    directory (an installed package has no repository root to write into)."""
    return os.environ.get("KSPACE_MIM_ROOT", os.getcwd())


def make_dir(path: str) -> str:
    """``${kspace_mim_mkdir:PATH}``: PATH, created (Optuna opens its database in the sweep
    directory before Hydra has made it)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def wandb_offline() -> bool:
    """``${kspace_mim_wandb_offline:}``: log to W&B offline unless it can really go online.

    Online needs WANDB_MODE not "offline"/"disabled", an API key (WANDB_API_KEY or a
    ~/.netrc entry) and the W&B host reachable within 3 s: online without network,
    ``wandb.init`` waits 90 s and fails. Offline runs sync later with ``wandb sync``.
    """
    import socket

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )
    if not has_key:
        return True
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
    except OSError:
        return True
    return False


def auto_device(what: str) -> str:
    """``${kspace_mim_auto:accelerator}`` / ``${kspace_mim_auto:precision}``: the default
    trainer's device. ``gpu`` when CUDA sees one, else ``cpu``; bf16 autocast on a card
    that has bf16 (Ampere or newer), float32 elsewhere.

    Lightning's own ``accelerator=auto`` would also pick Apple's MPS, whose complex FFTs
    the physics layers need are incomplete, and it has no automatic precision; written
    here for those two reasons."""
    import torch

    cuda = torch.cuda.is_available()
    if what == "accelerator":
        return "gpu" if cuda else "cpu"
    if what == "precision":
        return "bf16-mixed" if cuda and torch.cuda.is_bf16_supported() else "32-true"
    raise ConfigError(f"kspace_mim_auto: {what!r} is not accelerator or precision")


def scaled_steps(steps: int, factor: float) -> int:
    """``${kspace_mim_steps:600,${budget.steps}}``: a study's step count times the budget's
    factor (budget=cpu: 1, the committed tables' budgets; budget=gpu: longer), at least 1."""
    if float(factor) <= 0:
        raise ConfigError(f"budget.steps must be > 0, got {factor}")
    return max(1, round(int(steps) * float(factor)))


def grid_suffix(size: int) -> str:
    """``${kspace_mim_grid_suffix:${data.synthetic_size}}``: the embedded set's folder at
    another grid than the default 64 x 64 (``people_128``), so two grids never share one."""
    return "" if int(size) == 64 else f"_{int(size)}"


def register_resolvers() -> None:
    """Register the OmegaConf resolvers the configs use (idempotent)."""
    if not OmegaConf.has_resolver("kspace_mim_root"):
        OmegaConf.register_new_resolver("kspace_mim_root", project_root)
    if not OmegaConf.has_resolver("kspace_mim_wandb_offline"):
        OmegaConf.register_new_resolver("kspace_mim_wandb_offline", wandb_offline)
    if not OmegaConf.has_resolver("kspace_mim_mkdir"):
        OmegaConf.register_new_resolver("kspace_mim_mkdir", make_dir)
    if not OmegaConf.has_resolver("kspace_mim_auto"):
        OmegaConf.register_new_resolver("kspace_mim_auto", auto_device)
    if not OmegaConf.has_resolver("kspace_mim_steps"):
        OmegaConf.register_new_resolver("kspace_mim_steps", scaled_steps)
    if not OmegaConf.has_resolver("kspace_mim_grid_suffix"):
        OmegaConf.register_new_resolver("kspace_mim_grid_suffix", grid_suffix)


# Registered on import: every entry point, a submitit job unpickling its task and a notebook
# that imports the package resolve the same configs.
register_resolvers()

# Plugins that live in an optional extra: the override that needs one, what it is, the extra.
EXTRAS = {
    "hydra_plugins.hydra_optuna_sweeper": ("hparams_search=optuna", "the Optuna sweeper", "optuna")
}


# Names of the earlier layout (one LightningModule per family): override key -> its successor.
RENAMED = {
    "encoder": "model (model=swin|vit|unet|varnet|unrolled|zero_filled; encoder.X is model.X)",
    "model.init_from": "init_from",
    "cs": "model=cs and model.X (e.g. model.lamda=0.003)",
}


def check_renamed(overrides: Sequence[str]) -> None:
    """Exit with one line naming the successor of an override key of the earlier layout
    (Hydra alone would say only that the key or group is missing)."""
    for arg in overrides:
        key = arg.lstrip("+~").split("=", 1)[0]
        for old, new in RENAMED.items():
            if key == old or key.startswith(old + "."):
                raise SystemExit(f"error: {key} is now {new}")


def model_targets() -> dict[str, str]:
    """The network class each model family names: ``{name: _target_}`` of conf/model/*.yaml
    (read as YAML, nothing imported)."""
    import yaml

    targets = {}
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        if isinstance(model.get("_target_"), str):
            targets[path.stem] = model["_target_"]
    return targets


def model_names(trainable: bool | None = None) -> list[str]:
    """The model families (conf/model/*.yaml); ``trainable`` keeps those whose network
    learns (True) or does not (False: zero-filling, compressed sensing), read from the
    network class's ``trainable`` attribute (default True)."""
    from hydra.utils import get_class

    return [
        name
        for name, target in model_targets().items()
        if trainable is None or bool(getattr(get_class(target), "trainable", True)) == trainable
    ]


def require_extras(overrides: Sequence[str]) -> None:
    """Exit with one line naming the extra to install when an override needs a plugin
    that is not installed (Hydra alone would say only that a config group is missing)."""
    import importlib.util

    for module, (override, what, extra) in EXTRAS.items():
        needed = any(arg.lstrip("+~") == override for arg in overrides)
        if needed and importlib.util.find_spec(module) is None:
            raise SystemExit(f"error: {override} needs {what}: pip install 'kspace_mim[{extra}]'")


def compose(
    overrides: Sequence[str] = (), config_name: str = "train", return_hydra_config: bool = False
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides (tests, notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(
            config_name=config_name,
            overrides=list(overrides),
            return_hydra_config=return_hydra_config,
        )
