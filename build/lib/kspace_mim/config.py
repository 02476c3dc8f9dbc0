"""Where the Hydra configs live, the resolvers they use, and composing them from Python."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

# conf/ sits at the repository root (docs/design.md); an editable install finds it here.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def project_root() -> str:
    """The repository root (``KSPACE_MIM_ROOT`` wins), so runs work from any directory."""
    return os.environ.get("KSPACE_MIM_ROOT", str(CONFIG_DIR.parent))


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


def register_resolvers() -> None:
    """Register the OmegaConf resolvers the configs use (idempotent)."""
    if not OmegaConf.has_resolver("kspace_mim_root"):
        OmegaConf.register_new_resolver("kspace_mim_root", project_root)
    if not OmegaConf.has_resolver("kspace_mim_wandb_offline"):
        OmegaConf.register_new_resolver("kspace_mim_wandb_offline", wandb_offline)
    if not OmegaConf.has_resolver("kspace_mim_mkdir"):
        OmegaConf.register_new_resolver("kspace_mim_mkdir", make_dir)


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
