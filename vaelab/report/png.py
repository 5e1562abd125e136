"""matplotlib without a display, the one PNG writer of the report's figures (atomic, closes the figure), and the
labelled rows of image grids that several figures draw."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaelab.imaging import make_grid
from vaelab.io import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    plt = pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def show_grid(ax: Any, grid: np.ndarray) -> None:
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")


def rows_figure(rows: list[tuple[str, np.ndarray]], path: Path, title: str, n_col: int | None = None,
                 pad: int = 1) -> None:
    """Draw labelled rows of images: rows = [(label, (N, C, H, W) in [0, 1])], one image grid per row (one axis)."""
    plt = pyplot()
    grids = [make_grid(x, n_col=n_col or x.shape[0], pad=pad) for _, x in rows]
    width = max(g.shape[1] for g in grids)
    pad = lambda g: np.pad(g, [(0, 0), (0, width - g.shape[1])] + [(0, 0)] * (g.ndim - 2), constant_values=1.0)
    big = np.concatenate([pad(g) for g in grids], axis=0)
    heights = [g.shape[0] for g in grids]
    centres = np.cumsum(heights) - np.asarray(heights) / 2
    scale = 9.0 / width
    fig, ax = plt.subplots(figsize=(9 + 1.5, max(1.5, big.shape[0] * scale + 0.6)))
    show_grid(ax, big)
    ax.set_yticks(centres - 0.5)
    ax.set_yticklabels([label for label, _ in rows])
    ax.set_xticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title)
    save_png(fig, path)
