"""Improved precision and recall of a generative model (k-NN manifolds).

Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative Models":
each sample's manifold ball has radius = distance to its k-th nearest neighbour in its own set;
    precision = fraction of fake samples inside at least one real ball,
    recall    = fraction of real samples inside at least one fake ball.
"""
from __future__ import annotations

import torch

from vaelab.metrics._arrays import ArrayLike, as_matrix

# Bytes one (rows, N) distance block may take; bounds memory independently of N.
_BLOCK_BYTES = 64 * 2**20


def _chunk_rows(n_cols: int) -> int:
    return max(1, _BLOCK_BYTES // (8 * max(n_cols, 1)))


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of ``x`` (N, D) to its k-th nearest other row. Returns (N,)."""
    n = x.shape[0]
    step = _chunk_rows(n)
    radii = torch.empty(n, dtype=x.dtype)
    for i in range(0, n, step):
        d = torch.cdist(x[i:i + step], x)  # (c, N); the point itself is at distance 0
        # k+1 smallest including self (the reference implementation's convention)
        radii[i:i + step] = d.topk(k + 1, dim=1, largest=False).values[:, -1]
    return radii


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall of ``fake`` against ``real`` (Kynkäänniemi et al. 2019).

    A point p is inside the ball of q if ||p - q|| <= r_q, r_q = distance from q to its k-th
    nearest neighbour in q's own set. Distances are computed in float64 with ``torch.cdist`` in
    row blocks of at most 64 MiB, so 10k x 10k sets of any feature size fit in bounded memory;
    one pass over the fake-vs-real blocks gives both precision and recall.

    Args:
        real: (Nr, D) real features, Nr > k.
        fake: (Nf, D) generated features, Nf > k.
        k: neighbourhood size (paper and DESIGN: 3).
    Returns:
        (precision, recall), floats in [0, 1].
    """
    r = torch.from_numpy(as_matrix(real, "real"))
    f = torch.from_numpy(as_matrix(fake, "fake"))
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature sizes differ: {r.shape[1]} vs {f.shape[1]}")
    if k < 1 or len(r) <= k or len(f) <= k:
        raise ValueError(f"need k >= 1 and more than k={k} samples per set, got {len(r)} real, {len(f)} fake")
    # Centre on the real mean: cdist's matmul path loses less to cancellation near the origin.
    centre = r.mean(0, keepdim=True)
    r, f = r - centre, f - centre
    r_real, r_fake = _knn_radii(r, k), _knn_radii(f, k)
    fake_in_real = torch.zeros(len(f), dtype=torch.bool)
    real_in_fake = torch.zeros(len(r), dtype=torch.bool)
    step = _chunk_rows(len(r))
    for i in range(0, len(f), step):
        d = torch.cdist(f[i:i + step], r)  # (c, Nr)
        fake_in_real[i:i + step] = (d <= r_real[None, :]).any(dim=1)
        real_in_fake |= (d <= r_fake[i:i + step, None]).any(dim=0)
    return float(fake_in_real.double().mean()), float(real_in_fake.double().mean())
