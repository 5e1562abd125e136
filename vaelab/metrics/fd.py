"""Fréchet distance between Gaussians fitted to two feature sets (FD in judge features, not FID).

Dowson & Landau 1982; Heusel et al. 2017 (FID) use the same formula on Inception features:
    FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).
"""
from __future__ import annotations

import numpy as np

from vaelab.metrics._arrays import ArrayLike, as_matrix, as_numpy


def psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix, eigenvalues clipped at 0. (D, D) -> (D, D)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_frechet_distance(mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike,
                              sqrt_cov1: np.ndarray | None = None) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2).

    FD = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})   (Dowson & Landau 1982).

    Stability: S1 S2 is not symmetric, so instead of ``scipy.linalg.sqrtm`` (which can return
    complex parts for near-singular covariances) we use Tr((S1 S2)^{1/2}) = Tr((A S2 A)^{1/2}) with
    A = S1^{1/2}; A S2 A is symmetric PSD, so its trace root is the sum of the square roots of its
    eigenvalues, with tiny negative eigenvalues (round-off) clipped to 0. All in float64. The
    result is clipped at 0, since round-off can make an FD of identical Gaussians slightly negative.

    Args:
        mu1, mu2: (D,) means.
        cov1, cov2: (D, D) symmetric PSD covariances.
        sqrt_cov1: S1^{1/2} when already computed (a bootstrap reuses one reference's root), else None.
    Returns:
        the distance, a float >= 0 (squared units of the features).
    """
    mu1, mu2 = as_numpy(mu1).reshape(-1), as_numpy(mu2).reshape(-1)
    cov1, cov2 = as_numpy(cov1), as_numpy(cov2)
    d = mu1.shape[0]
    if mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, cov1 {cov1.shape}, mu2 {mu2.shape}, cov2 {cov2.shape}")
    a = psd_sqrt(cov1) if sqrt_cov1 is None else sqrt_cov1
    m = a @ cov2 @ a  # (D, D) symmetric PSD, same nonzero spectrum as S1 S2
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    fd = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets.

    Args:
        feats_a: (Na, D) features, Na >= 2.
        feats_b: (Nb, D) features, Nb >= 2.
    Returns:
        ``gaussian_frechet_distance`` of the two fits, a float >= 0.
    """
    a, b = as_matrix(feats_a, "feats_a"), as_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 feature vectors per set to fit a covariance")
    return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False).reshape(a.shape[1], -1),
                                     b.mean(0), np.cov(b, rowvar=False).reshape(b.shape[1], -1))
