"""k-NN manifold metrics of a generative model: precision, recall, density, coverage, realism.

Each point's manifold ball has radius r = distance to its k-th nearest neighbour in its own set.
Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative Models":
    precision = fraction of fake samples inside at least one real ball,
    recall    = fraction of real samples inside at least one fake ball,
    realism(f) = max_i r_i / ||f - x_i|| over real x_i (>= 1: f lies inside the real manifold);
Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models":
    density  = (1 / (k M)) sum_j sum_i 1[f_j in B(x_i, r_i)]   (M fakes; ~1 when fake ~ real),
    coverage = (1 / N) sum_i 1[exists j: f_j in B(x_i, r_i)]    (N reals; 1 - (1/2)^k when fake ~ real).

``knn_set_metrics`` computes the four at once and keeps the ball memberships (pairs of indices), so
``knn_set_bootstrap`` can resample without recomputing distances. Choices of that bootstrap:
  * the radii stay at their full-set values: a resample holds duplicate points, and a duplicate's k-NN
    radius would shrink towards 0 (the bootstrap of a k-NN radius is biased);
  * density is a sum over (fake, real ball) pairs: both sets are resampled (counts as weights);
  * precision, recall and coverage ask "inside *any* ball of the other set": resampling that other set
    drops about 1/e of its balls and biases them downwards (by 10-20 points at n = 2000), so only the set
    they average over is resampled (fakes for precision, reals for recall and coverage), the other set
    entering through its balls as measured. Their intervals therefore miss the other set's sampling noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaelab.metrics._arrays import ArrayLike, ArrayMemo, as_matrix

# Bytes one (rows, N) distance block may take; bounds memory independently of N.
_BLOCK_BYTES = 64 * 2**20
# Ball memberships kept for the bootstrap: beyond this many pairs (a degenerate set, e.g. 10k copies of one
# image inside every ball) the set bootstrap is refused rather than taking gigabytes.
MAX_PAIRS = 20_000_000
_REFERENCE_RADII = ArrayMemo()   # the real set's radii: every model and sampler of a run shares the reference


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


def _reference_radii(r: torch.Tensor, k: int) -> torch.Tensor:
    """``_knn_radii`` of the real (reference) set, computed once per reference (shared: not to be modified)."""
    return _REFERENCE_RADII([r.numpy()], (k,), lambda: _knn_radii(r, k))


def _prepare(real: ArrayLike, fake: ArrayLike, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.from_numpy(as_matrix(real, "real"))
    f = torch.from_numpy(as_matrix(fake, "fake"))
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature sizes differ: {r.shape[1]} vs {f.shape[1]}")
    if k < 1 or len(r) <= k or len(f) <= k:
        raise ValueError(f"need k >= 1 and more than k={k} samples per set, got {len(r)} real, {len(f)} fake")
    # Centre on the real mean: cdist's matmul path loses less to cancellation near the origin.
    centre = r.mean(0, keepdim=True)
    return r - centre, f - centre


@dataclass(frozen=True)
class Memberships:
    """Which fake lies in which real ball and vice versa (index pairs), from one pass over the distances.

    fake_in_real: (fake j, real i) pairs with ||f_j - x_i|| <= r_real_i, two (P,) int64 arrays;
    real_in_fake: (real i, fake j) pairs with ||x_i - f_j|| <= r_fake_j; n_real, n_fake, k.
    """

    fake_in_real: tuple[np.ndarray, np.ndarray]
    real_in_fake: tuple[np.ndarray, np.ndarray]
    n_real: int
    n_fake: int
    k: int

    def scores(self, w_real: np.ndarray | None = None, w_fake: np.ndarray | None = None) -> dict[str, float]:
        """The four metrics with each point counted w times (bootstrap counts; None = every point once)."""
        w_r = np.ones(self.n_real) if w_real is None else np.asarray(w_real, np.float64)
        w_f = np.ones(self.n_fake) if w_fake is None else np.asarray(w_fake, np.float64)
        fj, ri = self.fake_in_real
        rr, fj2 = self.real_in_fake
        balls_per_fake = np.bincount(fj, weights=w_r[ri], minlength=self.n_fake)   # (M,) real balls holding f_j
        fakes_per_real = np.bincount(ri, weights=w_f[fj], minlength=self.n_real)   # (N,) fakes in x_i's ball
        fake_balls_per_real = np.bincount(rr, weights=w_f[fj2], minlength=self.n_real)
        sf, sr = w_f.sum(), w_r.sum()
        return {"precision": float(w_f @ (balls_per_fake > 0) / sf),
                "recall": float(w_r @ (fake_balls_per_real > 0) / sr),
                "density": float(w_f @ balls_per_fake / (self.k * sf) * (self.n_real / sr)),
                "coverage": float(w_r @ (fakes_per_real > 0) / sr)}


def memberships(real: ArrayLike, fake: ArrayLike, k: int = 3) -> Memberships:
    """All ball memberships of ``fake`` (M, D) against ``real`` (N, D) and back, k-th-neighbour radii.

    Distances in float64 with ``torch.cdist`` in row blocks of at most 64 MiB.
    """
    r, f = _prepare(real, fake, k)
    r_real, r_fake = _reference_radii(r, k), _knn_radii(f, k)
    a_f, a_r, b_r, b_f = [], [], [], []
    n_pairs = 0
    step = _chunk_rows(len(r))
    for i in range(0, len(f), step):
        d = torch.cdist(f[i:i + step], r)  # (c, N)
        jf, ir = torch.nonzero(d <= r_real[None, :], as_tuple=True)
        jf2, ir2 = torch.nonzero(d <= r_fake[i:i + step, None], as_tuple=True)
        a_f.append((jf + i).numpy()), a_r.append(ir.numpy())
        b_r.append(ir2.numpy()), b_f.append((jf2 + i).numpy())
        n_pairs += len(jf) + len(jf2)
        if n_pairs > MAX_PAIRS:
            raise ValueError(f"more than {MAX_PAIRS} ball memberships (a degenerate sample set); "
                             "use precision_recall for the point values")
    cat = np.concatenate
    return Memberships((cat(a_f), cat(a_r)), (cat(b_r), cat(b_f)), len(r), len(f), k)


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
    r, f = _prepare(real, fake, k)
    r_real, r_fake = _reference_radii(r, k), _knn_radii(f, k)
    fake_in_real = torch.zeros(len(f), dtype=torch.bool)
    real_in_fake = torch.zeros(len(r), dtype=torch.bool)
    step = _chunk_rows(len(r))
    for i in range(0, len(f), step):
        d = torch.cdist(f[i:i + step], r)  # (c, Nr)
        fake_in_real[i:i + step] = (d <= r_real[None, :]).any(dim=1)
        real_in_fake |= (d <= r_fake[i:i + step, None]).any(dim=0)
    return float(fake_in_real.double().mean()), float(real_in_fake.double().mean())


def knn_set_metrics(real: ArrayLike, fake: ArrayLike, k: int = 3) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020), one pass.

    Args:
        real: (N, D) real features; fake: (M, D) generated features; N, M > k.
    Returns:
        {"precision", "recall", "density", "coverage"}; density is unbounded above (1 ~ matched).
    """
    return memberships(real, fake, k).scores()


def knn_set_bootstrap(real: ArrayLike, fake: ArrayLike, k: int = 3, *, n_boot: int = 200, seed: int = 0,
                      level: float = 0.95) -> dict[str, dict]:
    """The four k-NN metrics with percentile-bootstrap intervals over both sets (module docstring).

    The same ``seed`` draws the same real (reference) resamples for every model, so two models' replicates
    pair on the shared reference. Returns {name: Interval.to_dict() + {"replicates": (B,) list}}.
    """
    from vaelab.metrics.intervals import percentile_interval

    m = memberships(real, fake, k)
    rng_r, rng_f = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    reps: dict[str, list[float]] = {n: [] for n in ("precision", "recall", "density", "coverage")}
    fj, ri = m.fake_in_real
    rr, _ = m.real_in_fake
    # with the other set as measured, these indicators are fixed: a replicate only reweights them
    in_real = np.bincount(fj, minlength=m.n_fake) > 0           # (M,) fake inside some real ball (precision)
    covered = np.bincount(ri, minlength=m.n_real) > 0           # (N,) real ball holding some fake (coverage)
    in_fake = np.bincount(rr, minlength=m.n_real) > 0           # (N,) real inside some fake ball (recall)
    for _ in range(n_boot):
        w_r = np.bincount(rng_r.integers(0, m.n_real, m.n_real), minlength=m.n_real).astype(np.float64)
        w_f = np.bincount(rng_f.integers(0, m.n_fake, m.n_fake), minlength=m.n_fake).astype(np.float64)
        sf, sr = w_f.sum(), w_r.sum()
        reps["precision"].append(float(w_f @ in_real / sf))
        reps["recall"].append(float(w_r @ in_fake / sr))
        reps["coverage"].append(float(w_r @ covered / sr))
        reps["density"].append(float(w_f[fj] @ w_r[ri] / (m.k * sf) * (m.n_real / sr)))   # both resampled
    full = m.scores()
    base = f"k-NN radii fixed at their full-set values, B={n_boot}, seed {seed}"
    what = {"density": f"{m.n_fake} samples and {m.n_real} reference images (both resampled)",
            "precision": f"{m.n_fake} samples (the reference balls as measured)",
            "recall": f"{m.n_real} reference images (the sample balls as measured)",
            "coverage": f"{m.n_real} reference images (the samples as measured)"}
    return {n: {**percentile_interval(full[n], reps[n], level, f"percentile bootstrap over {what[n]}; {base}",
                                      m.n_fake + m.n_real).to_dict(), "replicates": reps[n]} for n in reps}


def realism_scores(real: ArrayLike, fake: ArrayLike, k: int = 3, prune: float = 0.5) -> np.ndarray:
    """Realism score of each fake sample (Kynkäänniemi et al. 2019, Sec. 5): R(f) = max_i r_i / ||f - x_i||.

    R >= 1 means f lies inside at least one real ball (the same test as precision); the paper drops the
    real points with the largest radii (outliers whose huge balls would accept anything): ``prune`` = 0.5
    keeps the half of the real points with the smallest radii, as in the paper.

    Args:
        real: (N, D) real features; fake: (M, D) features to score.
    Returns:
        (M,) float64 realism scores (>= 1: realistic).
    """
    r, f = _prepare(real, fake, k)
    radii = _reference_radii(r, k)
    keep = radii <= torch.quantile(radii, prune)
    r, radii = r[keep], radii[keep]
    out = np.empty(len(f))
    step = _chunk_rows(len(r))
    for i in range(0, len(f), step):
        d = torch.cdist(f[i:i + step], r).clamp_min(1e-12)  # (c, N')
        out[i:i + step] = (radii[None, :] / d).max(dim=1).values.numpy()
    return out
