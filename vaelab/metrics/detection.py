"""Anomaly-detection metrics of a score: AUROC, AUPRC, FPR at 95 % TPR, each with a bootstrap interval.

Convention: a score is *higher for more anomalous* inputs; anomalies are the positive class.

    AUROC   = P(s_out > s_in) + 0.5 P(s_out = s_in)          (Mann-Whitney U / (n_in n_out); Hanley & McNeil 1982)
    AUPRC   = sum_t (R_t - R_{t-1}) P_t over the distinct thresholds t, descending (average precision,
              as sklearn.metrics.average_precision_score)
    FPR@95  = the false-positive rate at the highest threshold whose true-positive rate is >= 0.95
              (Hendrycks & Gimpel 2017; Liang et al. 2018)

All three are computed from one sort of the pooled scores into distinct values and two weight
vectors (how often each inlier / anomaly value occurs). A bootstrap replicate only redraws those
weights (``np.bincount`` of resampled indices), so 1,000 replicates of 20,000 scores cost a fraction
of a second. The bootstrap is *stratified*: inliers and anomalies are resampled separately, each with
its own size, as the two samples of a two-sample statistic should be; the resampled indices and the
percentile interval are those of ``vaelab.metrics.intervals`` (one bootstrap in vaelab). It is *paired*
across scores: ``detection_table`` evaluates every score on the same resampled images, so the difference between two
scores has its own interval (and is called only when that interval excludes 0).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from vaelab.metrics._arrays import ArrayLike, as_numpy
from vaelab.metrics.intervals import bootstrap_indices, percentile_interval

N_BOOT = 1000
LEVEL = 0.95
TPR_TARGET = 0.95
METRICS = ("auroc", "auprc", "fpr_at_95_tpr")


def _scores(s: ArrayLike, name: str) -> np.ndarray:
    s = as_numpy(s).reshape(-1)
    if len(s) == 0:
        raise ValueError(f"{name} is empty: need at least one score")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} holds NaN/inf scores")
    return s


class _Pooled:
    """The pooled scores of inliers and anomalies as distinct values (descending) plus group indices."""

    def __init__(self, s_in: np.ndarray, s_out: np.ndarray) -> None:
        values, inverse = np.unique(np.concatenate([s_in, s_out]), return_inverse=True)   # ascending
        u = len(values)
        inverse = (u - 1) - inverse          # group 0 = the highest value: thresholds descend
        self.n_groups = u
        self.g_in, self.g_out = inverse[:len(s_in)], inverse[len(s_in):]

    def weights(self, i_in: np.ndarray | None = None, i_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        g_in = self.g_in if i_in is None else self.g_in[i_in]
        g_out = self.g_out if i_out is None else self.g_out[i_out]
        return (np.bincount(g_in, minlength=self.n_groups).astype(np.float64),
                np.bincount(g_out, minlength=self.n_groups).astype(np.float64))


def _from_weights(w_in: np.ndarray, w_out: np.ndarray) -> tuple[float, float, float]:
    """(AUROC, AUPRC, FPR@95) from per-distinct-value counts, ordered by descending score."""
    n_in, n_out = w_in.sum(), w_out.sum()
    fp = np.cumsum(w_in)                 # inliers at or above each threshold
    tp = np.cumsum(w_out)
    # AUROC: every anomaly beats the inliers strictly below it, and ties count one half
    below_in = n_in - fp                 # inliers strictly below this value
    auroc = float((w_out * (below_in + 0.5 * w_in)).sum() / (n_in * n_out))
    precision = tp / np.maximum(tp + fp, 1.0)
    auprc = float((w_out / n_out * precision).sum())      # recall steps by w_out / n_out at each value
    tpr = tp / n_out
    first = int(np.searchsorted(tpr, TPR_TARGET - 1e-12))   # tpr is non-decreasing
    fpr95 = float(fp[min(first, len(fp) - 1)] / n_in)
    return auroc, auprc, fpr95


def auroc(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """Area under the ROC curve of a score separating anomalies (positive) from inliers.

    AUROC = P(s_out > s_in) + 0.5 P(s_out = s_in) (Mann-Whitney). 1 = perfect, 0.5 = chance.

    Args:
        s_in: (N,) scores of inliers; s_out: (M,) scores of anomalies; higher = more anomalous.
    Returns:
        a float in [0, 1].
    """
    p = _Pooled(_scores(s_in, "s_in"), _scores(s_out, "s_out"))
    return _from_weights(*p.weights())[0]


def auprc(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """Area under the precision-recall curve (average precision), anomalies positive.

    Chance level is the anomaly fraction M / (N + M). Args as ``auroc``.
    """
    p = _Pooled(_scores(s_in, "s_in"), _scores(s_out, "s_out"))
    return _from_weights(*p.weights())[1]


def fpr_at_tpr(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """False-positive rate at the highest threshold that flags >= 95 % of the anomalies. Lower is better.

    Args as ``auroc``. Returns a float in [0, 1] (0 = perfect, about 0.95 for a random score).
    """
    p = _Pooled(_scores(s_in, "s_in"), _scores(s_out, "s_out"))
    return _from_weights(*p.weights())[2]


def _interval(values: np.ndarray, level: float) -> list[float]:
    """[low, high] of the percentile interval of bootstrap replicates (``vaelab.metrics.intervals``)."""
    iv = percentile_interval(0.0, values, level)
    return [iv.low, iv.high]


def detection_table(scores: Mapping[str, tuple[ArrayLike, ArrayLike]], *, n_boot: int = N_BOOT,
                    level: float = LEVEL, seed: int = 0) -> dict[str, dict[str, dict[str, float | list[float]]]]:
    """AUROC, AUPRC and FPR@95 of several scores of the same images, with paired bootstrap intervals.

    Every score must score the same inliers and the same anomalies (in the same order), e.g. the
    scores of several models on one test split: each bootstrap replicate resamples the inliers
    and the anomalies once (stratified) and evaluates every score on that resample, so
    ``paired_difference`` can give the difference between two scores its own interval.

    Args:
        scores: name -> (s_in (N,), s_out (M,)); higher = more anomalous.
        n_boot: bootstrap replicates; level: interval coverage (percentile interval); seed: fixes the resamples.
    Returns:
        {name: {metric: {"value", "ci": [lo, hi], "boot": (n_boot,) numpy replicates}}} for metric in
        METRICS. "boot" is kept for paired differences; ``strip_boot`` removes it before writing JSON.
    """
    if not scores:
        return {}
    pooled = {}
    n_in = n_out = None
    for name, (s_in, s_out) in scores.items():
        a, b = _scores(s_in, f"{name} inlier scores"), _scores(s_out, f"{name} anomaly scores")
        if n_in is None:
            n_in, n_out = len(a), len(b)
        elif (len(a), len(b)) != (n_in, n_out):
            raise ValueError(f"score {name!r} scores {len(a)} inliers and {len(b)} anomalies, the first score "
                             f"{n_in} and {n_out}: paired scores must score the same images")
        pooled[name] = _Pooled(a, b)
    i_in = bootstrap_indices(n_in, n_boot, seed)             # (B, N)
    i_out = bootstrap_indices(n_out, n_boot, seed + 1)       # (B, M)
    out: dict[str, dict[str, dict]] = {}
    for name, p in pooled.items():
        point = _from_weights(*p.weights())
        boot = np.array([_from_weights(*p.weights(i_in[b], i_out[b])) for b in range(n_boot)])   # (B, 3)
        out[name] = {m: {"value": point[j], "ci": _interval(boot[:, j], level), "boot": boot[:, j]}
                     for j, m in enumerate(METRICS)}
    return out


def image_bootstrap_auroc(scores: Mapping[str, tuple[ArrayLike, ArrayLike]], *, n_boot: int = N_BOOT,
                          level: float = LEVEL, seed: int = 0) -> dict[str, dict[str, dict]]:
    """AUROC of several scores, each for its own positives, paired by resampling the *images*.

    For predicting per-image events that differ between models (e.g. "the linear probe on this model's
    codes misclassifies the image"): every replicate resamples the N images once (not stratified: the
    number of positives varies, as it would on a new test set) and evaluates each score on that
    resample with its own labels, so two models' AUROCs get a paired difference (``paired_difference``).

    Args:
        scores: name -> (score (N,), is_positive (N,) bool); every entry over the same N images.
    Returns:
        {name: {"auroc": {"value", "ci", "boot"}, "n_positive": int}}; the value is None (and no
        interval) when a name has no positive or no negative image.
    """
    out: dict[str, dict] = {}
    n = None
    for name, (s, pos) in scores.items():
        s, pos = _scores(s, name), np.asarray(pos, dtype=bool).reshape(-1)
        if n is None:
            n = len(s)
        if len(s) != n or len(pos) != n:
            raise ValueError(f"score {name!r} covers {len(s)} images and {len(pos)} labels, expected {n}")
    if n is None:
        return {}
    idx = bootstrap_indices(n, n_boot, seed)                      # (B, N): the same images for every name
    for name, (s, pos) in scores.items():
        s, pos = _scores(s, name), np.asarray(pos, dtype=bool).reshape(-1)
        n_pos = int(pos.sum())
        if n_pos in (0, n):
            out[name] = {"auroc": {"value": None, "ci": [None, None], "boot": np.full(n_boot, np.nan)},
                         "n_positive": n_pos}
            continue
        p = _Pooled(s[~pos], s[pos])
        group = np.empty(n, dtype=np.int64)
        group[~pos], group[pos] = p.g_in, p.g_out
        boot = np.full(n_boot, np.nan)
        for b in range(n_boot):
            gb, pb = group[idx[b]], pos[idx[b]]
            w_in = np.bincount(gb[~pb], minlength=p.n_groups).astype(np.float64)
            w_out = np.bincount(gb[pb], minlength=p.n_groups).astype(np.float64)
            if w_in.sum() > 0 and w_out.sum() > 0:
                boot[b] = _from_weights(w_in, w_out)[0]
        ok = boot[np.isfinite(boot)]
        out[name] = {"auroc": {"value": _from_weights(*p.weights())[0], "ci": _interval(ok, level), "boot": boot},
                     "n_positive": n_pos}
    return out


def paired_difference(table: Mapping[str, Mapping[str, Mapping]], a: str, b: str, metric: str = "auroc",
                      level: float = LEVEL) -> dict[str, float | list[float] | bool]:
    """metric(a) - metric(b) with the percentile interval of the paired bootstrap replicates.

    Returns {"value", "ci": [lo, hi], "excludes_zero": bool}: a difference is called only when True.
    """
    d = np.asarray(table[a][metric]["boot"]) - np.asarray(table[b][metric]["boot"])
    d = d[np.isfinite(d)]
    ci = _interval(d, level)
    value = float(table[a][metric]["value"] - table[b][metric]["value"])
    return {"value": value, "ci": ci, "excludes_zero": bool(ci[0] > 0 or ci[1] < 0)}


def strip_boot(table: Mapping[str, Mapping[str, Mapping]]) -> dict:
    """``detection_table``'s result without the replicate arrays (JSON-able)."""
    return {name: {m: ({k: v for k, v in row.items() if k != "boot"} if isinstance(row, Mapping) else row)
                   for m, row in rows.items()} for name, rows in table.items()}


def threshold_at_fpr(s_ref: ArrayLike, fpr: float) -> float:
    """The threshold t above which at most a fraction ``fpr`` of reference inliers score (flag: s > t).

    t is the (k+1)-th largest reference score, k = floor(fpr * N), so exactly k reference inliers lie
    strictly above it when there are no ties (fewer with ties): the empirical false-positive rate on
    the reference set is <= fpr, and about fpr on new inliers from the same distribution.

    Args:
        s_ref: (N,) scores of inliers held out from training (the validation split); fpr in [0, 1).
    Returns:
        the threshold, a float.
    """
    s = np.sort(_scores(s_ref, "s_ref"))[::-1]
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    k = int(math.floor(fpr * len(s) + 1e-9))
    return float(s[min(k, len(s) - 1)])


def rank_correlation(a: ArrayLike, b: ArrayLike, *, n_boot: int = N_BOOT, level: float = LEVEL,
                     seed: int = 0) -> dict[str, float | list[float]]:
    """Spearman's rank correlation rho of two per-image quantities, with a bootstrap interval over images.

    rho = Pearson correlation of the ranks (average ranks for ties; Spearman 1904), recomputed on
    each bootstrap resample of the images.

    Args:
        a, b: (N,) paired per-image values, N >= 3.
    Returns:
        {"value": rho in [-1, 1], "ci": [lo, hi]} (value None when a or b is constant).
    """
    from scipy.stats import rankdata

    a, b = _scores(a, "a"), _scores(b, "b")
    if len(a) != len(b) or len(a) < 3:
        raise ValueError(f"need two equally long arrays of >= 3 values, got {len(a)} and {len(b)}")

    def rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:      # rows of (B, N) -> (B,)
        rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
        rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
        den = np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (rx * ry).sum(-1) / den

    value = float(rho(a[None], b[None])[0])
    if not math.isfinite(value):
        return {"value": None, "ci": [None, None]}
    idx = bootstrap_indices(len(a), n_boot, seed)
    boot = np.concatenate([rho(a[idx[i:i + 100]], b[idx[i:i + 100]]) for i in range(0, n_boot, 100)])
    boot = boot[np.isfinite(boot)]
    return {"value": value, "ci": _interval(boot, level) if len(boot) else [None, None]}
