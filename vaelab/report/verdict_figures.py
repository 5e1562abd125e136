"""The novelty and holes figures, drawn only from a run folder's arrays/ (no model needed).

- ``novelty.png``: for each model and sampler, the 8 samples closest to a training image (judge features)
  beside that training image (arrays/novelty-<model>.npz, written by compare from evaluate's novelty block).
- ``holes_q_vs_p.png``: for the 2-D pair, log q(z) - log p(z) over the prior-quantile grid (the aggregate
  posterior against the prior; the contour marks q = 0.1 p, inside it a hole), with the grid points whose
  decodes are realistic (realism score >= 1 in judge features) overlaid (arrays/holes-<pair>.npz).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.config import Words, words
from vaelab.report.png import rows_figure
from vaelab.report.words import caption

FIGURES = {
    "novelty": ("Memorisation: the closest samples and their nearest training images",
                "For each model and sampler, the 8 generated samples closest to a training image (judge features), "
                "each beside that training image. Identical pairs are near-copies; the table's near-copy rows say "
                "how many samples are closer to the training set than 99 % of test images are."),
    "holes_q_vs_p": ("Holes: the aggregate posterior q(z) against the prior p(z) (2-D pair)",
                     "Colour: log q(z)/p(z) on a grid through the prior's quantiles (q = the mixture of the test "
                     "{images}' posteriors; a Gaussian KDE of the codes for the AE). Inside the white contour "
                     "q(z) < 0.1 p(z): prior mass the codes leave empty. Black dots: grid points whose decodes are "
                     "realistic (realism score >= 1, Kynkäänniemi et al. 2019)."),
}


def _save(fig: Any, path: Path) -> None:
    """PNG through vaelab.io.atomic_path (no half-written figure), without a timestamp: reproducible bytes."""
    import matplotlib.pyplot as plt

    from vaelab.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _image(ax: Any, x: np.ndarray) -> None:
    img = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])


def fig_novelty(path: Path, arrays: dict[str, dict[str, np.ndarray]]) -> bool:
    """Rows: (model, sampler); columns: 8 (sample, nearest training image) pairs. False when nothing to draw.

    Each row is one tiled image on one axis (``vaelab.report.png.rows_figure``): the first version gave
    every image its own axis (224 for the default compare) and took a quarter of the whole report's drawing.
    """
    from vaelab.data import is_vector_shape

    rows = [(m, s, a[f"novelty_{s}_samples"], a[f"novelty_{s}_train"]) for m, a in arrays.items()
            for s in ("prior", "gmm") if f"novelty_{s}_samples" in a]
    if not rows or is_vector_shape(rows[0][2].shape[1:]):     # pictures of examples: images only, not tables
        return False
    n = max(len(r[2]) for r in rows)
    tiles = []
    for m, s, smp, tr in rows:
        gap = np.ones((*smp.shape[:-1], 1), dtype=np.float32)                  # (n, C, H, 1): a white column
        pairs = np.concatenate([smp, gap, tr], axis=-1)                        # (n, C, H, 2W + 1): sample | train
        blank = np.ones((n - len(pairs), *pairs.shape[1:]), dtype=np.float32)  # a row with fewer pairs
        tiles.append((f"{m} {s}", np.concatenate([pairs, blank])))
    rows_figure(tiles, path, "sample | nearest training image", n_col=n, pad=4)
    return True


def fig_holes_q_vs_p(path: Path, arrays: dict[str, dict[str, np.ndarray]]) -> bool:
    """One panel per 2-D model: log q/p on the grid, the q = 0.1 p contour, realistic decodes as dots."""
    import matplotlib.pyplot as plt

    if not arrays:
        return False
    fig, axes = plt.subplots(1, len(arrays), figsize=(4.2 * len(arrays), 3.8), squeeze=False)
    for ax, (name, a) in zip(axes[0], arrays.items()):
        z, r = a["z_grid"], np.clip(a["log_ratio"], -6, 3)
        n = int(round(math.sqrt(len(z))))
        z1, z2 = z[:, 0].reshape(n, n), z[:, 1].reshape(n, n)      # the grid's own (non-uniform) coordinates
        im = ax.pcolormesh(z1, z2, r.reshape(n, n), cmap="RdBu", vmin=-6, vmax=3, shading="nearest")
        ax.contour(z1, z2, a["log_ratio"].reshape(n, n), levels=[math.log(0.1)], colors="white", linewidths=1.2)
        ok = a["realism"] >= 1.0
        ax.scatter(z[ok, 0], z[ok, 1], s=4, c="black")
        ax.set_title(f"{name}: holes {100 * np.mean(a['log_ratio'] < math.log(0.1)):.0f} % of grid, "
                     f"realistic {100 * ok.mean():.0f} %", fontsize=8)
        ax.set_xlabel("z1 (prior quantiles)"), ax.set_ylabel("z2")
        fig.colorbar(im, ax=ax, label="log q(z) / p(z)")
    _save(fig, path)
    return True


def draw_from_arrays(run: str | Path, fig_dir: str | Path, w: Words = words(None),
                     names: tuple[str, ...] = tuple(FIGURES)) -> list[dict[str, str]]:
    """Draw the novelty and holes figures (those in ``names``) from ``run``/arrays into ``fig_dir``; return the
    report's entries (``w``: what the captions call the examples)."""

    import matplotlib

    matplotlib.use("Agg")
    folder, fig_dir = Path(run) / "arrays", Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        return []
    out = []
    for name, draw, prefix in (("novelty", fig_novelty, "novelty-"), ("holes_q_vs_p", fig_holes_q_vs_p, "holes-")):
        if name not in names:
            continue
        arrays = {p.stem[len(prefix):]: _load(p) for p in sorted(folder.glob(f"{prefix}*.npz"))}
        if draw(fig_dir / f"{name}.png", arrays):
            title, text = FIGURES[name]
            out.append({"file": f"{name}.png", "title": title, "caption": caption(text, w)})
    return out
