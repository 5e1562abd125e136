"""Densities over the latent space to sample codes from: the prior, or one fitted ex post.

Ghosh et al. 2020 ("From variational to deterministic autoencoders") sample an AE/RAE by fitting
a Gaussian mixture to the training codes after training ("ex-post density estimation"); the
same applies to a VAE whose aggregate posterior misses the prior. Both classes share one
sklearn-like interface: ``fit(z) -> self``, ``sample(n, seed=None)``, ``log_prob(z)``,
``to_dict()`` / ``from_dict(d)`` (JSON-able, saved beside a checkpoint; no pickle).

Randomness: ``sample(n, seed=s)`` draws from a fresh generator seeded with s, so the same s gives
the same codes. ``sample(n)`` draws from the density's own generator, seeded with its ``seed`` at
construction (and again after ``fit``/``from_dict``): a fixed sequence of calls is reproducible.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture
from torch import Tensor

from vaelab.errors import ConfigError
from vaelab.metrics._arrays import ArrayLike, as_matrix

_LOG2PI = math.log(2 * math.pi)


def _generator(seed: int | None, own: torch.Generator) -> torch.Generator:
    return own if seed is None else torch.Generator().manual_seed(int(seed))


def _out_dtype(z: ArrayLike) -> torch.dtype:
    """log_prob returns float64 for float64 input, float32 otherwise."""
    is_f64 = (z.dtype == torch.float64) if isinstance(z, Tensor) else (np.asarray(z).dtype == np.float64)
    return torch.float64 if is_f64 else torch.float32


class StandardNormalPrior:
    """The prior p(z) = N(0, I) in ``n_latent`` dimensions; ``fit`` is a no-op."""

    name = "prior"

    def __init__(self, n_latent: int, seed: int = 0) -> None:
        self.n_latent = int(n_latent)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def fit(self, z: ArrayLike | None = None) -> StandardNormalPrior:
        """No-op (the prior has no parameters); checks the codes' size if given. Returns self."""
        if z is not None and as_matrix(z, "z").shape[1] != self.n_latent:
            raise ValueError(f"codes have {as_matrix(z, 'z').shape[1]} dimensions, the prior {self.n_latent}")
        return self

    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """Draw n codes. Returns (n, n_latent) float32."""
        return torch.randn(n, self.n_latent, generator=_generator(seed, self._gen)).float()

    def log_prob(self, z: ArrayLike) -> Tensor:
        """log N(z; 0, I) = -0.5 * sum_d (z_d^2 + log 2 pi). z: (n, n_latent) -> (n,)."""
        z64 = torch.from_numpy(as_matrix(z, "z"))
        return (-0.5 * (z64**2 + _LOG2PI).sum(1)).to(_out_dtype(z))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n_latent": self.n_latent, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StandardNormalPrior:
        return cls(n_latent=d["n_latent"], seed=d.get("seed", 0))


class GaussianMixtureDensity:
    """A Gaussian mixture fitted to codes with ``sklearn.mixture.GaussianMixture``.

    Fitted attributes (float64 numpy): ``means_`` (K, D), ``covariances_`` (K, D, D),
    ``weights_`` (K,). Unlike sklearn, ``covariances_`` is always full (K, D, D) whatever
    ``covariance_type`` was fitted ("full", "diag", "spherical" or "tied"), so consumers need
    one code path. If there are fewer codes than components, K is reduced to the number of
    codes, with a warning.
    """

    name = "gmm"

    def __init__(self, n_components: int = 10, covariance_type: str = "full", seed: int = 0,
                 reg_covar: float = 1e-6) -> None:
        if covariance_type not in ("full", "diag", "spherical", "tied"):
            raise ConfigError(f"unknown covariance_type {covariance_type!r}; "
                              "choose one of: full, diag, spherical, tied.")
        if n_components < 1:
            raise ConfigError(f"n_components must be >= 1, got {n_components}.")
        self.n_components = int(n_components)
        self.covariance_type = covariance_type
        self.seed = int(seed)
        self.reg_covar = float(reg_covar)
        self._gen = torch.Generator().manual_seed(self.seed)

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, z: ArrayLike) -> GaussianMixtureDensity:
        """Fit the mixture to codes z: (N, D), N >= 2. Returns self."""
        z = as_matrix(z, "z")
        if len(z) < 2 or not np.isfinite(z).all():
            raise ValueError("need at least 2 finite codes to fit a Gaussian mixture")
        k = self.n_components
        if len(z) < k:
            warnings.warn(f"only {len(z)} codes for {k} mixture components; using {len(z)} components",
                          stacklevel=2)
            k = len(z)
        from threadpoolctl import threadpool_limits

        # one BLAS thread: the EM steps multiply (N x D) by (D x D) matrices, too thin for threads to pay, and on
        # a loaded machine OpenBLAS's spinning threads made a 27,000 x 16 fit 24x slower (5.7 s -> 135 s wall)
        with threadpool_limits(1, user_api="blas"):
            gm = GaussianMixture(n_components=k, covariance_type=self.covariance_type,
                                 reg_covar=self.reg_covar, random_state=self.seed).fit(z)
        d = z.shape[1]
        cov = np.asarray(gm.covariances_, dtype=np.float64)
        if self.covariance_type == "diag":  # (K, D)
            cov = np.stack([np.diag(c) for c in cov])
        elif self.covariance_type == "spherical":  # (K,)
            cov = cov[:, None, None] * np.eye(d)
        elif self.covariance_type == "tied":  # (D, D)
            cov = np.broadcast_to(cov, (k, d, d)).copy()
        self._set_params(gm.means_, cov, gm.weights_)
        return self

    def _set_params(self, means: ArrayLike, covariances: ArrayLike, weights: ArrayLike) -> None:
        self.means_ = np.asarray(means, dtype=np.float64)  # (K, D)
        self.covariances_ = np.asarray(covariances, dtype=np.float64)  # (K, D, D)
        self.weights_ = np.asarray(weights, dtype=np.float64)  # (K,)
        self._chol = torch.linalg.cholesky(torch.from_numpy(self.covariances_))  # (K, D, D) lower
        self._gen = torch.Generator().manual_seed(self.seed)

    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise NotFittedError("this GaussianMixtureDensity is not fitted yet; call fit(z) first")

    # -- using ---------------------------------------------------------------------------------
    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """Draw n codes: component c ~ Cat(weights_), z = means_[c] + L_c eps, eps ~ N(0, I).

        Returns (n, D) float32.
        """
        self._check_fitted()
        gen = _generator(seed, self._gen)
        weights = torch.from_numpy(self.weights_)
        c = torch.multinomial(weights, n, replacement=True, generator=gen)  # (n,)
        eps = torch.randn(n, self.means_.shape[1], generator=gen, dtype=torch.float64)
        z = torch.from_numpy(self.means_)[c] + torch.einsum("nij,nj->ni", self._chol[c], eps)  # (n, D)
        return z.float()

    def log_prob(self, z: ArrayLike) -> Tensor:
        """log sum_k w_k N(z; mu_k, S_k), computed in float64 via Cholesky factors and logsumexp.

        z: (n, D) -> (n,), float64 for float64 input, else float32.
        """
        self._check_fitted()
        z64 = torch.from_numpy(as_matrix(z, "z"))
        k, d = self.means_.shape
        if z64.shape[1] != d:
            raise ValueError(f"codes have {z64.shape[1]} dimensions, the mixture {d}")
        means = torch.from_numpy(self.means_)
        log_w = torch.log(torch.from_numpy(self.weights_))
        per_comp = torch.empty(len(z64), k, dtype=torch.float64)  # (n, K)
        for j in range(k):  # one (n, D) solve per component keeps memory O(n D)
            sol = torch.linalg.solve_triangular(self._chol[j], (z64 - means[j]).T, upper=False)  # (D, n)
            half_logdet = torch.log(torch.diagonal(self._chol[j])).sum()
            per_comp[:, j] = log_w[j] - 0.5 * (sol**2).sum(0) - half_logdet - 0.5 * d * _LOG2PI
        return torch.logsumexp(per_comp, dim=1).to(_out_dtype(z))

    # -- saving --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the settings and (if fitted) the parameters; floats round-trip exactly."""
        d: dict[str, Any] = {"name": self.name, "n_components": self.n_components,
                             "covariance_type": self.covariance_type, "seed": self.seed,
                             "reg_covar": self.reg_covar}
        if hasattr(self, "means_"):
            d.update(means=self.means_.tolist(), covariances=self.covariances_.tolist(),
                     weights=self.weights_.tolist())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaussianMixtureDensity:
        obj = cls(n_components=d["n_components"], covariance_type=d["covariance_type"],
                  seed=d["seed"], reg_covar=d["reg_covar"])
        if "means" in d:
            obj._set_params(d["means"], d["covariances"], d["weights"])
        return obj


class GaussianFit(GaussianMixtureDensity):
    """One full-covariance Gaussian N(m, S) fitted to the codes: the aggregate posterior's first two moments.

    Against the prior N(0, I) it shows what the codes' mean, scale and correlations alone cost or buy;
    against the 10-component GMM what the aggregate posterior's shape beyond them does.
    """

    name = "gaussian-fit"

    def __init__(self, n_components: int = 1, covariance_type: str = "full", seed: int = 0,
                 reg_covar: float = 1e-6) -> None:
        if n_components != 1 or covariance_type != "full":
            raise ConfigError("gaussian-fit is one full-covariance Gaussian (n_components 1, covariance full).")
        super().__init__(1, "full", seed, reg_covar)


class UniformViaCDF(StandardNormalPrior):
    """Uniform noise u ~ U(0, 1)^d pushed through the standard normal's inverse CDF, z = Phi^-1(u).

    The codes are N(0, I) exactly (the inverse-CDF method), drawn from uniform noise: a decoder trained under the
    Gaussian prior decodes a uniform prior behind this fixed warp, so its generation metrics match the prior's
    within their intervals (the prior swap of `vaelab compare --priors`). ``log_prob`` is log N(z; 0, I).
    """

    name = "uniform-cdf"

    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """Draw n codes: u ~ U(0, 1) per dimension (kept off 0 and 1), z = ndtri(u). Returns (n, n_latent) float32."""
        u = torch.rand(n, self.n_latent, generator=_generator(seed, self._gen), dtype=torch.float64)
        return torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12)).float()


SQRT3 = math.sqrt(3.0)


class UniformBox(StandardNormalPrior):
    """U(-sqrt 3, sqrt 3)^d: the uniform with the prior's mean 0 and variance 1 per dimension, not warped.

    Decoded by a Gaussian-prior model it shows what the prior's *shape* is worth to that decoder at equal moments:
    the box's corners lie at radius sqrt(3 d), where the Gaussian has almost no mass.
    """

    name = "uniform-box"

    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """Draw n codes uniformly in the box. Returns (n, n_latent) float32."""
        u = torch.rand(n, self.n_latent, generator=_generator(seed, self._gen), dtype=torch.float64)
        return ((2 * u - 1) * SQRT3).float()

    def log_prob(self, z: ArrayLike) -> Tensor:
        """-d log(2 sqrt 3) inside the box, -inf outside. z: (n, n_latent) -> (n,)."""
        z64 = torch.from_numpy(as_matrix(z, "z"))
        inside = (z64.abs() <= SQRT3).all(1)
        lp = torch.full((len(z64),), -self.n_latent * math.log(2 * SQRT3), dtype=torch.float64)
        return lp.masked_fill(~inside, -math.inf).to(_out_dtype(z))


#: The sampler names of the CLI (`--sampler`, `--samplers`; vaelab.config.SAMPLERS) and of saved densities' "name".
SAMPLERS = {"prior": StandardNormalPrior, "gmm": GaussianMixtureDensity, "gaussian-fit": GaussianFit,
            "uniform-cdf": UniformViaCDF, "uniform-box": UniformBox}
FITTED = ("gmm", "gaussian-fit")    # fitted to the training codes; the others are fixed distributions

Density = StandardNormalPrior | GaussianMixtureDensity


def make_density(name: str, n_latent: int, seed: int = 0) -> Density:
    """Build an unfitted density by name (one of SAMPLERS, default settings).

    ``n_latent`` sizes the fixed distributions; the fitted ones (FITTED) take their size from the codes at ``fit``.
    """
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}.")
    if name in FITTED:
        return SAMPLERS[name](seed=seed)
    return SAMPLERS[name](n_latent, seed=seed)


def density_from_dict(d: dict[str, Any]) -> Density:
    """Rebuild a density saved with ``to_dict`` (dispatches on its "name")."""
    name = d.get("name")
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r} in saved density; expected one of: {', '.join(SAMPLERS)}.")
    return SAMPLERS[name].from_dict(d)
