"""2-D latent grids and the judge's confidence over their decodes (the "holes map").

The report's holes map (``compare``'s 2-D pair, drawn by ``vaelab.report.figures``) and the latent
explorer's (``vaelab.explore``) both score a grid with ``grid_confidence``: decode every grid code,
ask the judge classifier for its class probabilities, keep the max softmax per cell.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

GRID_N = 20            # holes-map grid size (GRID_N x GRID_N codes)
MANIFOLD_N = 15        # manifold-grid size
CONFIDENT = 0.9        # a grid decode "looks like a class" when the judge's max softmax is at least this


def latent_grid(kind: str, n: int = GRID_N, codes: Tensor | np.ndarray | None = None) -> Tensor:
    """A 2-D grid of codes, (n * n, 2) float32, row-major with z2 decreasing down the rows (as an image is read).

    kind "prior": both axes through the prior's quantiles, norm.ppf((i + 0.5) / n);
    kind "codes": the 1st..99th percentile range of ``codes`` (N, 2) (the model's training codes) on each axis.
    """
    if kind == "prior":
        from scipy.stats import norm

        axis1 = axis2 = norm.ppf((np.arange(n) + 0.5) / n)
    elif kind == "codes":
        if codes is None:
            raise ValueError("a 'codes' grid needs the training codes")
        z = codes.numpy() if isinstance(codes, Tensor) else np.asarray(codes)
        lo, hi = np.percentile(z, 1, axis=0), np.percentile(z, 99, axis=0)
        axis1, axis2 = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    else:
        raise ValueError(f"unknown grid kind {kind!r}")
    z1, z2 = np.meshgrid(axis1, axis2[::-1])
    return torch.from_numpy(np.stack([z1.ravel(), z2.ravel()], axis=1)).float()


def grid_confidence(judge: Any, images: Tensor, n_rows: int, n_cols: int | None = None) -> dict[str, Any]:
    """Judge confidence (max softmax) and predicted class of grid decodes, as (n_rows, n_cols) maps.

    Args:
        judge: has ``predict_proba(images) -> (N, n_classes)``.
        images: (n_rows * n_cols, C, H, W) in [0, 1], the decodes of the grid's codes in row-major order.
    Returns:
        {"confidence" (rows x cols, 4 decimals), "predicted" (rows x cols class ids), "n_classes",
         "mean_confidence", "frac_confident" (share of cells with confidence >= CONFIDENT), "threshold"}.
    """
    n_cols = n_cols or n_rows
    p = torch.as_tensor(judge.predict_proba(images)).float()                # (rows * cols, n_classes)
    conf, pred = p.max(1)
    conf_np = conf.numpy().reshape(n_rows, n_cols)
    return {"confidence": np.round(conf_np, 4).tolist(), "predicted": pred.reshape(n_rows, n_cols).tolist(),
            "n_classes": int(p.shape[1]), "mean_confidence": float(conf_np.mean()),
            "frac_confident": float((conf_np >= CONFIDENT).mean()), "threshold": CONFIDENT}


def pair_grid_measure(model: torch.nn.Module, judge: Any, z: Tensor) -> dict[str, Any]:
    """metrics.json's grid block of a 2-D model: ``grid_confidence`` of the decodes of a square grid ``z``.

    Returns {"n", "z_range" [[z1 lo, hi], [z2 lo, hi]], "mean_confidence", "frac_confident", "threshold",
    "confidence" (n x n, rows top to bottom)}.
    """
    from vaelab.measure.batched import decode_mean

    n = int(round(math.sqrt(z.shape[0])))
    g = grid_confidence(judge, decode_mean(model, z), n)
    return {"n": n, "z_range": [[float(z[:, 0].min()), float(z[:, 0].max())],
                                [float(z[:, 1].min()), float(z[:, 1].max())]],
            "mean_confidence": g["mean_confidence"], "frac_confident": g["frac_confident"],
            "threshold": CONFIDENT, "confidence": g["confidence"]}
