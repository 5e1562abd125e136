"""95 % bootstrap intervals for every reported number, paired across models, and the verdict they allow.

Definitions (DESIGN.md, "Uncertainty"):

* **Per-image metrics** (reconstruction error, -ELBO, IW-NLL, denoising PSNR, probe / k-NN accuracy,
  judge confidence): a nonparametric bootstrap over the test images (Efron & Tibshirani 1993, ch. 13,
  percentile interval). ``bootstrap_indices(n, n_boot, seed)`` draws the (B, n) resampled test-image
  indices once; every model is scored on the *same* indices, so the difference of two models has its own
  interval (``paired_difference``): the replicate differences d*_b = T_b(b) - T_b(a).
* **Set metrics** (FD, precision, recall, density, coverage): both the generated samples and the reference
  are resampled with replacement (``set_bootstrap``). For the k-NN metrics the ball radii are kept at their
  full-set values (a resampled set holds duplicates, whose k-NN radius would collapse to 0), see
  ``vaelab.metrics.prd``.
* **Seeds** (``--seeds N``): the seed-to-seed spread is a t interval of the per-seed values,
  mean +- t_{0.975, N-1} sd / sqrt(N). ``combine_seeds`` reports both sources and their combination,
  half-width sqrt(h_boot^2 + h_seed^2) (the test-set resampling and the training seed are independent
  sources of variation; the seeds share one test set, so their spread alone misses the first).

An ``Interval`` stores the point estimate on the full data, the bounds, the level and the method, so
``metrics.json`` can say how each interval was obtained. ``verdict`` calls "better"/"worse" only when the
interval of the difference excludes 0; otherwise "no measurable difference on N test images".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from vaelab.metrics._arrays import ArrayLike, as_numpy

LEVEL = 0.95
N_BOOT = 1000        # per-image metrics: a replicate is one gather + mean, 1000 cost milliseconds
N_BOOT_SET = 200     # set metrics: a replicate refits a covariance / re-counts k-NN balls


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval ``[low, high]``.

    value: the statistic on the full data (not the bootstrap mean); level: e.g. 0.95;
    method: how it was obtained (e.g. "percentile bootstrap over 359 test images, B=1000, seed 0");
    n: the number of units resampled (test images, or samples + reference for set metrics).
    """

    value: float
    low: float
    high: float
    level: float
    method: str
    n: int

    @property
    def half_width(self) -> float:
        """(high - low) / 2: what the table prints after the ±."""
        return 0.5 * (self.high - self.low)

    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["half_width"] = self.half_width
        return d


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """The (n_boot, n) resampled indices of a bootstrap over n units (with replacement), seeded.

    Call it once per test split and score every model on the result: that is what makes the bootstrap
    *paired* (the same resampled test images for every model).

    Returns:
        (n_boot, n) int64 array of indices in [0, n).
    """
    if n < 1 or n_boot < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(value: float, replicates: ArrayLike, level: float = LEVEL, method: str = "",
                        n: int = 0) -> Interval:
    """The percentile interval of bootstrap ``replicates`` (B,) around the full-data ``value``.

    Non-finite replicates (e.g. a PSNR of a resample with zero error) are dropped; with none left the
    bounds are NaN (the JSON writer turns them into null).
    """
    _check_level(level)
    r = as_numpy(replicates).reshape(-1)
    r = r[np.isfinite(r)]
    a = (1.0 - level) / 2.0
    lo, hi = (np.quantile(r, [a, 1.0 - a]) if len(r) else (math.nan, math.nan))
    return Interval(float(value), float(lo), float(hi), float(level), method, int(n))


def centred_interval(value: float, replicates: ArrayLike, level: float = LEVEL, method: str = "", n: int = 0,
                     lower_bound: float | None = None) -> Interval:
    """The percentile interval's spread, moved to sit about the full-data value: [v - (q_50 - q_lo), v + (q_hi - q_50)].

    For a statistic whose resamples are shifted against the full-data value, as a Fréchet distance's are (a
    resample repeats rows, so its covariance fit is noisier and its FD larger; Chong & Forsyth 2020 on FID's
    bias), the plain percentile interval sits beside the value and may exclude it. This interval keeps the
    bootstrap's spread (the estimate's sampling uncertainty) and drops the shift; the plug-in estimate's own bias
    is left as it is (it is about the same for models measured on the same number of samples, and paired
    differences cancel it). ``lower_bound`` clips the low end (0 for a distance).
    """
    r = as_numpy(replicates).reshape(-1)
    r = r[np.isfinite(r)]
    p = percentile_interval(value, r, level, method, n)
    med = float(np.median(r)) if len(r) else math.nan
    lo, hi = value - (med - p.low), value + (p.high - med)
    if lower_bound is not None and math.isfinite(lo):
        lo = max(lo, lower_bound)
    return Interval(float(value), float(lo), float(hi), float(level), method, int(n))


def _replicates(stat: Callable[[np.ndarray], float], idx: np.ndarray) -> np.ndarray:
    return np.array([stat(i) for i in idx], dtype=np.float64)


def mean_replicates(v: np.ndarray, idx: np.ndarray, chunk: int = 100) -> np.ndarray:
    """mean(v[idx_b]) for each row b of idx, in chunks of rows (bounded memory). v: (n,) -> (B,)."""
    return np.concatenate([v[idx[i:i + chunk]].mean(1) for i in range(0, len(idx), chunk)])


def method_note(what: str, n: int, n_boot: int, seed: int | None) -> str:
    s = f"percentile bootstrap over {n} {what}, B={n_boot}"
    return s + (f", seed {seed}" if seed is not None else "")


def mean_interval(values: ArrayLike, idx: np.ndarray | None = None, *, n_boot: int = N_BOOT, seed: int = 0,
                  level: float = LEVEL) -> Interval:
    """Interval of the mean of a per-image metric, e.g. per-image BCE or -ELBO.

    Args:
        values: (n,) per-image values (NaN-free).
        idx: (B, n) indices from ``bootstrap_indices`` (pass the shared one to pair models); if None it is
            drawn from ``n_boot`` and ``seed``.
    Returns:
        Interval of mean(values).
    """
    v = as_numpy(values).reshape(-1)
    idx = bootstrap_indices(len(v), n_boot, seed) if idx is None else idx
    _check_idx(idx, len(v))
    return percentile_interval(float(v.mean()), mean_replicates(v, idx), level,
                               method_note("test images", len(v), len(idx), seed), len(v))


def statistic_interval(stat: Callable[[np.ndarray], float], n: int, idx: np.ndarray | None = None, *,
                       n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL, what: str = "test images"
                       ) -> Interval:
    """Interval of any statistic of resampled units: ``stat(indices) -> float`` (e.g. PSNR of the pooled MSE,
    an accuracy, an AUROC). ``stat(np.arange(n))`` is the point estimate."""
    idx = bootstrap_indices(n, n_boot, seed) if idx is None else idx
    _check_idx(idx, n)
    return percentile_interval(stat(np.arange(n)), _replicates(stat, idx), level,
                               method_note(what, n, len(idx), seed), n)


def paired_difference(values_a: ArrayLike, values_b: ArrayLike, idx: np.ndarray | None = None, *,
                      n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """Interval of mean(b) - mean(a) for per-image values of two models on the same test images.

    The difference is resampled image by image (d_i = b_i - a_i on the same indices), so the common
    per-image difficulty cancels: the paired interval is much narrower than the two separate ones.

    Args:
        values_a, values_b: (n,) per-image values of models a and b, in the same test-image order.
    """
    a, b = as_numpy(values_a).reshape(-1), as_numpy(values_b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same length, got {len(a)} and {len(b)}")
    return mean_interval(b - a, idx, n_boot=n_boot, seed=seed, level=level)


def paired_statistic_difference(stat_a: Callable[[np.ndarray], float], stat_b: Callable[[np.ndarray], float],
                                n: int, idx: np.ndarray | None = None, *, n_boot: int = N_BOOT, seed: int = 0,
                                level: float = LEVEL, what: str = "test images") -> Interval:
    """Interval of stat_b - stat_a, both evaluated on the same resampled indices of the same n units."""
    return statistic_interval(lambda i: stat_b(i) - stat_a(i), n, idx, n_boot=n_boot, seed=seed, level=level,
                              what=what)


def set_bootstrap(metric: Callable[[np.ndarray, np.ndarray], float], n_samples: int, n_reference: int, *,
                  n_boot: int = N_BOOT_SET, seed: int = 0, level: float = LEVEL) -> tuple[Interval, np.ndarray]:
    """Interval of a set metric by resampling both the samples and the reference with replacement.

    Args:
        metric: ``metric(sample_idx, reference_idx) -> float`` (indices into the two sets, with repeats).
        n_samples, n_reference: the set sizes.
    Returns:
        (Interval, replicates (B,)): the replicates let a caller pair two models that share the reference
        (same ``seed`` -> same reference indices; see ``paired_set_difference``).
    """
    rng = np.random.default_rng(seed)
    ref_idx = rng.integers(0, n_reference, size=(n_boot, n_reference))
    smp_idx = np.random.default_rng(seed + 1).integers(0, n_samples, size=(n_boot, n_samples))
    reps = np.array([metric(s, r) for s, r in zip(smp_idx, ref_idx)], dtype=np.float64)
    value = metric(np.arange(n_samples), np.arange(n_reference))
    method = (f"percentile bootstrap over {n_samples} samples and {n_reference} reference images "
              f"(both resampled), B={n_boot}, seed {seed}")
    return percentile_interval(value, reps, level, method, n_samples + n_reference), reps


def paired_set_difference(a: Interval, reps_a: np.ndarray, b: Interval, reps_b: np.ndarray,
                          level: float = LEVEL) -> Interval:
    """Interval of b - a for two set metrics bootstrapped with the same seed (the same reference resamples,
    so the shared reference's noise cancels; the two sample sets are independent draws)."""
    if len(reps_a) != len(reps_b):
        raise ValueError("pair replicates of the same number of bootstrap draws")
    return percentile_interval(b.value - a.value, np.asarray(reps_b) - np.asarray(reps_a), level,
                               "paired " + a.method, max(a.n, b.n))


def seed_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """t interval of the mean over training seeds: mean +- t_{(1+level)/2, N-1} sd / sqrt(N), N >= 2."""
    from scipy.stats import t

    _check_level(level)
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if len(v) < 2:
        raise ValueError("a seed interval needs at least 2 seeds")
    h = float(t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    m = float(v.mean())
    return Interval(m, m - h, m + h, float(level), f"t interval over {len(v)} seeds", len(v))


def combine_seeds(per_seed: Sequence[Interval], level: float = LEVEL) -> dict:
    """Both sources of uncertainty for a metric measured at several seeds.

    Args:
        per_seed: the bootstrap Interval of each seed (same test split, one per training seed).
    Returns:
        {"value": mean over seeds, "bootstrap": mean per-seed bootstrap half-width, "seeds": seed t-interval
         half-width, "low", "high", "half_width": value +- sqrt(h_boot^2 + h_seed^2), "level", "method"}.
        With one seed it is that seed's interval (the seed source is absent: "seeds": None).
    """
    if not per_seed:
        raise ValueError("no intervals to combine")
    if len(per_seed) == 1:
        d = per_seed[0].to_dict()
        d.update(bootstrap=per_seed[0].half_width, seeds=None)
        return d
    hb = float(np.nanmean([i.half_width for i in per_seed]))
    s = seed_interval([i.value for i in per_seed], level)
    h = math.sqrt(hb ** 2 + s.half_width ** 2)
    return {"value": s.value, "low": s.value - h, "high": s.value + h, "half_width": h, "level": level,
            "bootstrap": hb, "seeds": s.half_width, "n": per_seed[0].n,
            "method": f"{per_seed[0].method} per seed, combined with a {s.method}: sqrt(h_boot^2 + h_seed^2)"}


def verdict(diff: Interval | dict, better: str, n_test: int | None = None) -> str:
    """'better' / 'worse' for b relative to a from the interval of b - a; else 'no measurable difference ...'.

    Args:
        diff: the interval of (b - a) (an Interval, or its dict from metrics.json).
        better: "min" (lower is better, e.g. FD) or "max" (e.g. PSNR).
        n_test: the number of test images, for the wording.
    """
    if better not in ("min", "max"):
        raise ValueError(f"better must be 'min' or 'max', got {better!r}")
    lo, hi = (diff.low, diff.high) if isinstance(diff, Interval) else (diff.get("low"), diff.get("high"))
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0.0 <= hi:
        return "no measurable difference" + (f" on {n_test} test images" if n_test else "")
    up = lo > 0.0
    return "better" if up == (better == "max") else "worse"


def _check_idx(idx: np.ndarray, n: int) -> None:
    if idx.ndim != 2 or idx.shape[1] != n:
        raise ValueError(f"bootstrap indices must have shape (B, {n}), got {idx.shape}")
