"""Size presets per encoder family (``model.size=tiny|small|base``).

A config value that is not null wins over its preset, so a sweep can change one
knob of a preset. ``tiny`` is for CPU tests (a training step on a 128x128 8-coil
grid well under a second on 2 cores); ``small`` for a laptop / quick GPU runs;
``base`` for real GPU training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kspace_mim.config import ConfigError

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "swin": {
        # tiny: 8 x 8 windows as small and base (measured above 4 x 4: docs/design.md)
        "tiny": dict(embed_dim=24, depths=(2, 2), num_heads=(2, 4), window_size=8),
        "small": dict(embed_dim=48, depths=(2, 2, 2), num_heads=(3, 6, 12), window_size=8),
        "base": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=8),
    },
    "vit": {
        "tiny": dict(embed_dim=48, depth=2, num_heads=2),
        "small": dict(embed_dim=192, depth=6, num_heads=3),
        "base": dict(embed_dim=384, depth=12, num_heads=6),
    },
    "unet": {  # fastmri.models.Unet arguments; base is fastMRI's published baseline
        "tiny": dict(chans=8, num_pool_layers=3),
        "small": dict(chans=16, num_pool_layers=4),
        "base": dict(chans=32, num_pool_layers=4),
    },
    # fastmri.models.VarNet arguments; base is fastMRI's leaderboard model
    "varnet": {
        "tiny": dict(num_cascades=4, chans=8, pools=4, sens_chans=4, sens_pools=4),
        "small": dict(num_cascades=8, chans=12, pools=4, sens_chans=6, sens_pools=4),
        "base": dict(num_cascades=12, chans=18, pools=4, sens_chans=8, sens_pools=4),
    },
    # models.unrolled.Unrolled; the U-Net denoiser and sensitivity sizes match VarNet's
    # preset of the same name (the SimMIM first estimate adds its Swin of that size)
    "unrolled": {
        "tiny": dict(cascades=4, chans=8, pools=4, sens_chans=4, sens_pools=4),
        "small": dict(cascades=8, chans=12, pools=4, sens_chans=6, sens_pools=4),
        "base": dict(cascades=8, chans=18, pools=4, sens_chans=8, sens_pools=4),
    },
}


def resolve(family: str, size: str, **overrides: Any) -> dict[str, Any]:
    """The preset of ``family``/``size`` with every non-None override applied."""
    if family not in PRESETS:
        raise ValueError(f"unknown encoder family {family!r}; one of {sorted(PRESETS)}")
    if size not in PRESETS[family]:
        raise ValueError(
            f"model.size={size!r} unknown for {family}; one of {sorted(PRESETS[family])}"
        )
    out = dict(PRESETS[family][size])
    unknown = sorted(set(overrides) - set(out))
    if unknown:
        raise ConfigError(
            f"model.{unknown[0]}: not an argument of the {family} network; its size preset "
            f"sets {', '.join(sorted(out))}"
        )
    # Lists from a config (ListConfig included) become tuples, as the presets hold them.
    given = {
        k: (tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
        for k, v in overrides.items()
    }
    out.update({k: v for k, v in given.items() if v is not None})
    if family == "swin" and given.get("depths") and given.get("num_heads") is None:
        # Heads follow the stages when only the stages are set (a sweep over depths):
        # the preset's first stage's heads, doubling per stage as in Swin.
        first = PRESETS[family][size]["num_heads"][0]
        out["num_heads"] = tuple(first * 2**i for i in range(len(out["depths"])))
    return out
