"""Sample novelty: are generated images new, or near-copies of training images?

Three views of one question, each computed in a feature space (judge features, or flattened pixels):

* ``nearest_neighbours(x, ref)``: each row's Euclidean distance to its nearest row of ``ref`` (the
  training split), in bounded-memory blocks.
* ``copy_fraction``: the fraction of generated samples closer to a training image than the 1st
  percentile of the held-out test images' own nearest-training distances. A generator that draws fresh
  images from the data distribution scores about 1 % (the test images are such draws); a memorising one
  scores far more.
* ``ct_statistic``: the C_T data-copying test of Meehan, Chaudhuri & Dasgupta 2020 ("A non-parametric
  test to detect data-copying in generative models", AISTATS): partition the space into cells by k-means
  on the training set; in each cell pi compare the nearest-training distances of the test images L_pi(T)
  and of the samples L_pi(Q) with the Mann-Whitney U statistic, Z-scored:
      Z_U(pi) = (U - m n / 2) / sqrt(m n (m + n + 1) / 12),
  U = #{(q, t): L(q) > L(t)} (+ 1/2 per tie), m = #test, n = #samples in the cell. Then
      C_T = sum_{pi in Pi_tau} T(pi) Z_U(pi) / sum_{pi in Pi_tau} T(pi),
  T(pi) the test fraction in the cell, Pi_tau the cells holding at least ``min_cell`` samples and test
  images (the paper's tau: cells the model rarely visits say nothing about copying). C_T << 0 (e.g. < -3):
  the samples sit closer to the training set than fresh data do (copying); C_T >> 0: further (under-fit);
  ~ 0 for a generator that matches the data.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from vaelab.metrics._arrays import ArrayLike, ArrayMemo, as_matrix

_BLOCK_BYTES = 64 * 2**20   # one (rows, N_ref) distance block
COPY_PERCENTILE = 1.0       # the test images' percentile below which a sample counts as a near-copy
CT_MIN_CELL = 20            # samples and test images a cell needs to enter C_T (Meehan et al.'s tau)
_CELLS = ArrayMemo()        # the k-means cells of the last training set (one at a time)
_TEST_NN = ArrayMemo(2)     # the test images' nearest-training distances, in judge features and in pixels


def nearest_neighbours(x: ArrayLike, ref: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Distance (float64) and index of each row of ``x`` (N, D)'s nearest row of ``ref`` (M, D).

    Float64 ``torch.cdist`` in row blocks of at most 64 MiB (memory independent of N).
    Returns:
        (dist (N,), index (N,) int64 into ref).
    """
    a, r = torch.from_numpy(as_matrix(x, "x")), torch.from_numpy(as_matrix(ref, "ref"))
    if a.shape[1] != r.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {r.shape[1]}")
    if len(r) == 0:
        raise ValueError("the reference set is empty")
    centre = r.mean(0, keepdim=True)   # cdist's matmul path loses less to cancellation near the origin
    a, r = a - centre, r - centre
    step = max(1, _BLOCK_BYTES // (8 * len(r)))
    dist, idx = np.empty(len(a)), np.empty(len(a), dtype=np.int64)
    for i in range(0, len(a), step):
        d, j = torch.cdist(a[i:i + step], r).min(dim=1)
        dist[i:i + step], idx[i:i + step] = d.numpy(), j.numpy()
    return dist, idx


def copy_fraction(d_samples: ArrayLike, d_test: ArrayLike, percentile: float = COPY_PERCENTILE) -> dict:
    """Fraction of samples whose nearest-training distance is below the test images' ``percentile``.

    Args:
        d_samples: (N,) nearest-training distances of generated samples; d_test: (M,) the same for test images.
    Returns:
        {"fraction": float, "threshold": the test percentile (distance), "percentile": percentile,
         "expected": percentile / 100 (what fresh draws from the data distribution score)}.
    """
    ds, dt = np.asarray(d_samples, np.float64).reshape(-1), np.asarray(d_test, np.float64).reshape(-1)
    if len(ds) == 0 or len(dt) == 0:
        raise ValueError("need at least one sample and one test distance")
    thr = float(np.percentile(dt, percentile))
    return {"fraction": float(np.mean(ds < thr)), "threshold": thr, "percentile": float(percentile),
            "expected": percentile / 100.0}


def mann_whitney_z(a: np.ndarray, b: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of ``a`` against ``b``: U = #{(i, j): a_i > b_j} + #ties / 2.

    Z = (U - n_a n_b / 2) / sqrt(n_a n_b (n_a + n_b + 1) / 12) (no tie correction, as Meehan et al.).
    Negative when a tends to be smaller than b.
    """
    from scipy.stats import rankdata

    na, nb = len(a), len(b)
    ranks = rankdata(np.concatenate([a, b]))            # average ranks for ties
    u = float(ranks[:na].sum() - na * (na + 1) / 2)     # = #{a > b} + ties / 2
    return (u - na * nb / 2) / math.sqrt(na * nb * (na + nb + 1) / 12)


def ct_statistic(train: ArrayLike, test: ArrayLike, samples: ArrayLike, n_cells: int = 10, seed: int = 0,
                 min_cell: int = CT_MIN_CELL) -> dict:
    """The C_T data-copying statistic of Meehan et al. 2020 (module docstring).

    Nearest-training distances are taken to the training points of the same cell, as in the paper
    (the cell's local copy test). k-means: sklearn, ``n_init=3``, seeded.

    Args:
        train: (N, D) training features; test: (M, D) held-out features; samples: (K, D) generated features.
        n_cells: k-means cells (capped at M // min_cell so that cells can hold enough test images).
    Returns:
        {"ct": float (None when no cell qualifies), "n_cells": cells used by k-means, "n_cells_used": cells in
         Pi_tau, "fraction_samples_used": samples in those cells, "z_cells": [Z_U per used cell]}.
    """
    tr, te, q = as_matrix(train, "train"), as_matrix(test, "test"), as_matrix(samples, "samples")
    from sklearn.cluster import KMeans

    k = int(max(1, min(n_cells, len(te) // min_cell, len(tr))))
    # compare scores many models against one training set: fit its cells once
    km = _CELLS([tr], (k, seed), lambda: KMeans(n_clusters=k, n_init=3, random_state=seed).fit(tr))
    c_tr, c_te, c_q = km.labels_, km.predict(te), km.predict(q)
    z, w, used = [], [], 0
    for c in range(k):
        m_te, m_q = c_te == c, c_q == c
        if m_te.sum() < min_cell or m_q.sum() < min_cell:
            continue
        ref = tr[c_tr == c]
        d_te, _ = nearest_neighbours(te[m_te], ref)
        d_q, _ = nearest_neighbours(q[m_q], ref)
        z.append(mann_whitney_z(d_q, d_te))
        w.append(m_te.mean())
        used += int(m_q.sum())
    ct = float(np.dot(w, z) / np.sum(w)) if z else None
    return {"ct": ct, "n_cells": k, "n_cells_used": len(z), "fraction_samples_used": used / max(len(q), 1),
            "z_cells": [float(v) for v in z]}


def novelty(train: ArrayLike, test: ArrayLike, samples: ArrayLike, *, n_cells: int = 10, seed: int = 0,
            n_closest: int = 8, use_ct: bool = True) -> dict:
    """All novelty numbers of one sample set in one feature space, and what the figure draws.

    Args:
        train: (N, D) training features; test: (M, D) held-out features; samples: (K, D) generated features.
        use_ct: also the C_T statistic (None otherwise).
    Returns:
        {"copy_fraction", "copy_threshold", "copy_expected", "median_nn_samples", "median_nn_test",
         "ct", "ct_cells_used", "closest": [n_closest sample indices, closest first],
         "closest_train": [their nearest training indices], "closest_dist": [their distances]}.
    """
    d_q, j_q = nearest_neighbours(samples, train)
    te, tr = as_matrix(test, "test"), as_matrix(train, "train")
    d_t = _TEST_NN([te, tr], (), lambda: nearest_neighbours(te, tr)[0])   # the same for every model and sampler
    cf = copy_fraction(d_q, d_t)
    ct = (ct_statistic(train, test, samples, n_cells=n_cells, seed=seed) if use_ct
          else {"ct": None, "n_cells_used": None})
    order = np.argsort(d_q, kind="stable")[:n_closest]
    return {"copy_fraction": cf["fraction"], "copy_threshold": cf["threshold"], "copy_expected": cf["expected"],
            "median_nn_samples": float(np.median(d_q)), "median_nn_test": float(np.median(d_t)),
            "ct": ct["ct"], "ct_cells_used": ct["n_cells_used"],
            "closest": order.tolist(), "closest_train": j_q[order].tolist(), "closest_dist": d_q[order].tolist()}
