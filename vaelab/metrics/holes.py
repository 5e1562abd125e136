"""Holes: where the prior puts mass that the aggregate posterior leaves empty, and what decodes there.

The aggregate posterior q(z) = (1/N) sum_n q(z|x_n) over the N test images (for a deterministic AE the
posteriors are point masses, so q(z) is replaced by a Gaussian kernel density of its codes, bandwidth by
Scott's rule h = N^(-1/(D+4)) per standardised dimension; the result says which).

* ELBO surgery (Hoffman & Johnson 2016, "ELBO surgery: yet another way to carve up the variational
  evidence lower bound"): the mean KL term of the ELBO splits exactly into
      E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z)),
  the mutual information under q(x, z) and the marginal KL. Estimated with ``n_draws`` z ~ q(z|x_n) per
  test image and log q(z) = logsumexp_j log q(z|x_j) - log N over all N posteriors (He et al. 2019's
  estimator, ``vaelab.metrics.latent.log_aggregate_posterior``); the same draws give all three terms, so
  the identity holds exactly for the estimates. I(x; z) <= log N is the estimator's ceiling.
* ``prior_hole_mass``: the prior mass where q(z) < tau p(z) (tau = ``HOLE_RATIO`` = 0.1: the aggregate
  posterior puts less than a tenth of the prior's density there), Monte Carlo with ``n_prior`` z ~ p(z).
  0 when q = p; near 1 when the codes fill a small part of the prior.
* ``fraction_realistic``: the fraction of decoded images whose realism score (Kynkäänniemi et al. 2019,
  ``vaelab.metrics.prd.realism_scores``) in judge features is >= 1 against the training images: in the
  real manifold or not. Uniform noise scores ~0 here, unlike judge confidence (0.85 on digits).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from vaelab.metrics._arrays import ArrayLike, as_matrix
from vaelab.metrics.latent import log_aggregate_posterior

HOLE_RATIO = 0.1     # "a hole": q(z) below a tenth of the prior density p(z)
N_PRIOR = 2000       # prior draws for the hole mass
N_DRAWS = 1          # posterior draws per test image for the surgery terms


def _log_std_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row of z (M, D). Returns (M,)."""
    return -0.5 * (z ** 2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def _posterior_params(mu: ArrayLike, logvar: ArrayLike | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(mu, logvar) of the mixture that stands for q(z): the posteriors, or the codes' Scott-rule KDE."""
    m = torch.from_numpy(as_matrix(mu, "mu"))
    if logvar is not None:
        lv = torch.from_numpy(as_matrix(logvar, "logvar"))
        if lv.shape != m.shape:
            raise ValueError(f"mu {tuple(m.shape)} and logvar {tuple(lv.shape)} differ")
        return m, lv, "mixture of the test images' posteriors"
    n, d = m.shape
    sd = m.std(0, unbiased=True).clamp_min(1e-12)          # (D,)
    h = n ** (-1.0 / (d + 4))                               # Scott's rule
    lv = (2 * torch.log(h * sd)).expand(n, d).clone()
    return m, lv, f"Gaussian KDE of the test codes (Scott's rule, h = {h:.3f} per standardised dimension)"


def elbo_surgery(mu: ArrayLike, logvar: ArrayLike | None, n_draws: int = N_DRAWS, seed: int = 0) -> dict:
    """E_x KL(q(z|x) || p) = I(x; z) + KL(q(z) || p(z)) (Hoffman & Johnson 2016), on N test images.

    Args:
        mu, logvar: (N, D) posterior means and log-variances; logvar None for a deterministic AE
            (q(z) is then the codes' KDE, and only the marginal KL is defined).
        n_draws: z draws per image; seed: seeds them.
    Returns:
        {"kl_mean" (nats, Monte Carlo), "mutual_information", "marginal_kl", "mi_max" (log N),
         "n_images", "n_draws", "q": what stands for q(z)}; for an AE kl_mean and mutual_information are None.
    """
    m, lv, what = _posterior_params(mu, logvar)
    n, d = m.shape
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(n_draws, n, d, generator=gen, dtype=torch.float64)           # (S, N, D)
    z = (m + torch.exp(0.5 * lv) * eps).reshape(-1, d)                              # (S*N, D)
    log_q_own = (-0.5 * (eps ** 2).sum(2) - 0.5 * (d * math.log(2 * math.pi) + lv.sum(1))).reshape(-1)
    log_qz = log_aggregate_posterior(z, m, lv)
    log_p = _log_std_normal(z)
    out = {"marginal_kl": float((log_qz - log_p).mean()), "mi_max": math.log(n), "n_images": n,
           "n_draws": n_draws, "q": what, "kl_mean": None, "mutual_information": None}
    if logvar is not None:
        out["kl_mean"] = float((log_q_own - log_p).mean())
        out["mutual_information"] = float((log_q_own - log_qz).mean())
    return out


def log_density_ratio(z: ArrayLike, mu: ArrayLike, logvar: ArrayLike | None) -> np.ndarray:
    """log q(z) - log p(z) at each row of z (M, D): < log(HOLE_RATIO) marks a hole. Returns (M,) float64."""
    m, lv, _ = _posterior_params(mu, logvar)
    zt = torch.from_numpy(as_matrix(z, "z"))
    return (log_aggregate_posterior(zt, m, lv) - _log_std_normal(zt)).numpy()


def prior_hole_mass(mu: ArrayLike, logvar: ArrayLike | None, n_prior: int = N_PRIOR, seed: int = 0,
                    ratio: float = HOLE_RATIO) -> dict:
    """P_{z ~ p}[q(z) < ratio * p(z)]: the prior's mass in holes of the aggregate posterior.

    Returns:
        {"mass": fraction of prior draws in holes, "ratio": the stated threshold, "n_prior",
         "se": its binomial standard error}.
    """
    d = as_matrix(mu, "mu").shape[1]
    z = np.random.default_rng(seed).standard_normal((n_prior, d))
    r = log_density_ratio(z, mu, logvar)
    mass = float(np.mean(r < math.log(ratio)))
    return {"mass": mass, "ratio": ratio, "n_prior": n_prior, "se": math.sqrt(mass * (1 - mass) / n_prior)}


def fraction_realistic(real_features: ArrayLike, features: ArrayLike, k: int = 3) -> float:
    """Fraction of ``features`` (M, F) with realism score >= 1 against ``real_features`` (N, F)."""
    from vaelab.metrics.prd import realism_scores

    return float(np.mean(realism_scores(real_features, features, k) >= 1.0))


N_MAP_BOOT = 200     # bootstrap resamples of the images for the 2-D map's numbers


def aggregate_map(log_qn: ArrayLike, log_p: ArrayLike, n_boot: int = N_MAP_BOOT, seed: int = 0,
                  ratio: float = HOLE_RATIO) -> dict:
    """A 2-D model's aggregate posterior q(z) = (1/N) sum_n q(z|x_n) over its prior p(z), on the cells of a grid.

    Works for any prior (the caller evaluates its posteriors and prior at the cell centres). Both densities
    are normalised over the grid's cells (equal areas), so the numbers are about the grid's box:
      kl: KL(q || p) = sum_g Q_g log(Q_g / P_g) in nats (0 when the codes fill the prior as it is shaped);
      hole_mass: the share of the prior's mass in cells where q < ``ratio`` * p (the densities, unnormalised);
    each with a 95 % bootstrap interval over the N images (``n_boot`` resamples, seeded), the percentile
    interval's spread centred on the value (``vaelab.metrics.intervals.centred_interval``).

    Args:
        log_qn: (N, G) log q(z_g | x_n); log_p: (G,) log p(z_g), finite on every cell.
    Returns:
        {"kl", "kl_low", "kl_high", "hole_mass", "hole_mass_low", "hole_mass_high", "n_images", "n_cells",
         "ratio", "log_q": (G,) float64 log q(z_g)}.
    """
    lq = np.asarray(log_qn, dtype=np.float64)
    lp = np.asarray(log_p, dtype=np.float64)
    if lq.ndim != 2 or lp.shape != (lq.shape[1],):
        raise ValueError(f"log_qn must be (N, G) and log_p (G,); got {lq.shape} and {lp.shape}")
    if not np.isfinite(lp).all():
        raise ValueError("the prior density must be positive on every cell of the grid")
    n = lq.shape[0]
    c = lq.max(0)                                        # (G,) per-cell shift: exp() stays finite
    e = np.exp(lq - c)                                   # (N, G)
    p_cells = np.exp(lp - lp.max())
    p_cells /= p_cells.sum()

    def numbers(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """weights (B, N), rows summing to 1 -> kl (B,), hole mass (B,), log q (B, G)."""
        with np.errstate(divide="ignore"):
            log_q = np.log(weights @ e) + c
        q_cells = np.exp(log_q - log_q.max(1, keepdims=True))
        q_cells /= q_cells.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(q_cells > 0, q_cells * (np.log(q_cells) - np.log(p_cells)), 0.0).sum(1)
        hole = ((log_q < lp + math.log(ratio)) * p_cells).sum(1)
        return kl, hole, log_q

    kl, hole, log_q = numbers(np.full((1, n), 1.0 / n))
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n
    kl_b, hole_b, _ = numbers(counts)
    # a resample repeats images, so its mixture is spikier and its KL and holes larger: the percentile interval
    # sits beside the value (on 2,000 Fashion-MNIST codes it excluded it). Its spread, centred on the value:
    from vaelab.metrics.intervals import centred_interval

    kl_iv = centred_interval(float(kl[0]), kl_b, lower_bound=0.0)
    h_iv = centred_interval(float(hole[0]), hole_b, lower_bound=0.0)
    return {"kl": float(kl[0]), "kl_low": kl_iv.low, "kl_high": kl_iv.high, "hole_mass": float(hole[0]),
            "hole_mass_low": h_iv.low, "hole_mass_high": min(h_iv.high, 1.0), "n_images": n, "n_cells": lq.shape[1],
            "ratio": ratio, "log_q": log_q[0]}
