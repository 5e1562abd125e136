"""Image grids: tile (N, C, H, W) images in [0, 1] into one array, and save it as a PNG atomically."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch import Tensor

from vaelab.io import atomic_path


def make_grid(x: Tensor | np.ndarray, n_col: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one (H', W') grey or (H', W', 3) RGB array in [0, 1].

    Args:
        x: (N, C, H, W) in [0, 1], C in {1, 3}
        n_col: images per row (default: a near-square grid)
    """
    x = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    n_col = n_col or max(1, math.ceil(math.sqrt(n)))
    n_row = max(1, math.ceil(n / n_col))
    grid = np.full((c, n_row * (h + pad) + pad, n_col * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, n_col)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = x[i]
    grid = np.clip(grid, 0.0, 1.0)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_grid_png(x: Tensor | np.ndarray, path: str | Path, n_col: int | None = None, scale: int = 4) -> None:
    """Save images as one PNG grid (nearest-neighbour upscaled by ``scale`` so 8x8 digits are visible)."""
    import matplotlib.image

    grid = make_grid(x, n_col)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_path(path) as tmp:
        matplotlib.image.imsave(tmp, grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, format="png")


def save_npy(x: Tensor, path: str | Path) -> None:
    """Save images as float32 (N, C, H, W) in [0, 1] (.npy, no pickle)."""
    arr = x.detach().cpu().float().clamp(0, 1).numpy().astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
