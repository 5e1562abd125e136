"""Reconstruction error per image: MSE, PSNR and summed Bernoulli cross-entropy."""
from __future__ import annotations

import numpy as np

from vaelab.metrics._arrays import ArrayLike, as_numpy

#: PSNR of an exact reconstruction (MSE = 0) would be infinite; it is reported as this many dB.
PSNR_CAP_DB = 100.0


def _pair(x_hat: ArrayLike, x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x_hat, x = as_numpy(x_hat), as_numpy(x)
    if x_hat.shape != x.shape or x.ndim < 2:
        raise ValueError(f"x_hat {x_hat.shape} and x {x.shape} must be equal shapes (N, ...)")
    return x_hat.reshape(len(x), -1), x.reshape(len(x), -1)  # (N, P)


def mse_per_image(x_hat: ArrayLike, x: ArrayLike) -> np.ndarray:
    """Per-pixel mean squared error of each image.

    Args:
        x_hat, x: (N, C, H, W) (or any (N, ...)) reconstructions and targets.
    Returns:
        (N,) float64, mean over pixels of (x_hat - x)^2.
    """
    x_hat, x = _pair(x_hat, x)
    return ((x_hat - x) ** 2).mean(1)


def psnr(x_hat: ArrayLike, x: ArrayLike, data_range: float = 1.0) -> float:
    """Mean over images of the per-image peak signal-to-noise ratio, in dB.

    PSNR_n = 10 * log10(data_range^2 / MSE_n). Averaging per-image PSNR (not the PSNR of the
    mean MSE) is the usual convention for image batches. An exact reconstruction (MSE_n = 0)
    counts as ``PSNR_CAP_DB`` = 100 dB rather than inf, so the mean stays finite.

    Args:
        x_hat, x: (N, ...) images; data_range: max - min of the pixel scale (1.0 for [0, 1]).
    Returns:
        dB, a float.
    """
    return float(psnr_per_image(x_hat, x, data_range).mean())


def psnr_per_image(x_hat: ArrayLike, x: ArrayLike, data_range: float = 1.0) -> np.ndarray:
    """Per-image PSNR_n = 10 * log10(data_range^2 / MSE_n) in dB, capped at ``PSNR_CAP_DB``. Returns (N,)."""
    mse = mse_per_image(x_hat, x)
    with np.errstate(divide="ignore"):
        per_image = 10.0 * np.log10(data_range**2 / mse)
    return np.minimum(per_image, PSNR_CAP_DB)


def bce_sum_per_image(x_hat_prob: ArrayLike, x: ArrayLike) -> np.ndarray:
    """Bernoulli negative log-likelihood summed over pixels, per image, in nats.

    BCE_n = -sum_p [x_p log q_p + (1 - x_p) log(1 - q_p)], with q clamped to [1e-7, 1 - 1e-7]
    so that a saturated decoder gives a large finite value. ``x`` may be in [0, 1] (continuous
    Bernoulli-style targets) or binarised.

    Args:
        x_hat_prob: (N, ...) decoder probabilities (sigmoid of the logits); x: (N, ...) targets.
    Returns:
        (N,) float64.
    """
    q, x = _pair(x_hat_prob, x)
    q = np.clip(q, 1e-7, 1 - 1e-7)
    return -(x * np.log(q) + (1.0 - x) * np.log1p(-q)).sum(1)
