"""Judge-based sample metrics: how confident the judge is, and how many classes the samples cover."""
from __future__ import annotations

import math

import numpy as np

from vaelab.metrics._arrays import ArrayLike, as_matrix


def _probs(probs: ArrayLike) -> np.ndarray:
    p = as_matrix(probs, "probs")
    if p.shape[1] < 2 or len(p) == 0:
        raise ValueError(f"probs must be (N, C) with N >= 1 and C >= 2, got {p.shape}")
    if p.min() < 0 or p.max() > 1 or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise ValueError("probs must be softmax probabilities (rows in [0, 1] summing to 1), not logits")
    return p


def judge_confidence(probs: ArrayLike) -> float:
    """Mean over samples of the judge's max softmax probability.

    High confidence alone is misleading (noise can score high); read it with ``class_coverage``.

    Args:
        probs: (N, C) judge softmax outputs.
    Returns:
        a float in [1/C, 1].
    """
    return float(_probs(probs).max(1).mean())


def class_coverage(probs: ArrayLike) -> dict[str, float]:
    """Entropy of the histogram of the judge's predicted labels over the samples.

    H = -sum_c p_c log p_c (nats, 0 log 0 = 0), p_c = fraction of samples predicted as class c.
    log C is perfect (every class equally often); 0 means one class only (mode collapse).

    Args:
        probs: (N, C) judge softmax outputs.
    Returns:
        {"entropy": H, "max_entropy": log C, "normalized": H / log C in [0, 1]}.
    """
    p = _probs(probs)
    n_classes = p.shape[1]
    freq = np.bincount(p.argmax(1), minlength=n_classes) / len(p)
    nz = freq[freq > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    max_entropy = math.log(n_classes)
    return {"entropy": entropy, "max_entropy": max_entropy, "normalized": entropy / max_entropy}
