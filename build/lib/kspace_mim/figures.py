"""Pictures people look at: target | zero-filled | reconstruction | error, and k-space."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def comparison_figure(
    target: np.ndarray | None,
    zero_filled: np.ndarray,
    reconstruction: np.ndarray,
    kspace_zero_filled: np.ndarray | None = None,
    kspace_reconstruction: np.ndarray | None = None,
    title: str = "",
    metrics: dict[str, float] | None = None,
) -> Figure:
    """One row of images on a shared grey scale (the target's range), error x5,
    and when given, a second row with the log k-space before and after."""
    with_k = kspace_zero_filled is not None and kspace_reconstruction is not None
    rows = 2 if with_k else 1
    fig, axes = plt.subplots(rows, 4, figsize=(13, 3.4 * rows), squeeze=False)
    # One grey scale for every image: the target's, or the reconstruction's without one.
    vmax = float((target if target is not None else reconstruction).max()) or 1.0
    panels = [("target", target), ("zero-filled", zero_filled), ("reconstruction", reconstruction)]
    for ax, (name, image) in zip(axes[0], panels, strict=False):
        if image is None:
            ax.axis("off")
            continue
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(name)
    if target is not None:
        axes[0, 3].imshow(np.abs(reconstruction - target), cmap="magma", vmin=0, vmax=vmax / 5)
        axes[0, 3].set_title("|error| x5")
    else:
        axes[0, 3].axis("off")
    if with_k:
        axes[1, 0].imshow(kspace_zero_filled, cmap="viridis", vmin=0, vmax=1)
        axes[1, 0].set_title("k-space acquired (log)")
        axes[1, 1].imshow(kspace_reconstruction, cmap="viridis", vmin=0, vmax=1)
        axes[1, 1].set_title("k-space predicted (log)")
        axes[1, 2].axis("off")
        axes[1, 3].axis("off")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if metrics:
        title = title + "  " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
