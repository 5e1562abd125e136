"""The prior p(z) of the VAE family, each with the posterior family that makes its KL well-defined.

    prior      p(z)                              q(z|x), per dimension       KL(q(z|x) || p(z))
    gaussian   N(0, I)                           N(mu, sigma^2)              closed form (Kingma & Welling 2014, App. B)
    uniform    U(0, 1)^d                         Kumaraswamy(a, b)           -H[q], closed form (Nalisnick & Smyth 2017)
    laplace    Laplace(0, 1)^d                   Laplace(m, s)               closed form
    mog        sum_c pi_c N(m_c, diag s_c^2)     N(mu, sigma^2)              Monte Carlo: log q(z|x) - log p(z) at z
    vamp       1/K sum_k q(z | u_k)              N(mu, sigma^2)              Monte Carlo (Tomczak & Welling 2018)

Why Kumaraswamy for the uniform prior (and not Beta): its inverse CDF is closed-form,
z = (1 - (1 - u)^(1/b))^(1/a), so the sample is an exact reparameterisation of u ~ U(0, 1) with plain
gradients (a Beta sample needs implicit reparameterisation through a Gamma sampler), and its
entropy is closed-form, so KL(q || U(0, 1)) = -H[q] is exact. U(0, 1) = Kumaraswamy(1, 1).

Every posterior is reparameterised from standard-normal noise eps (the one noise stream of training
and of the chunked IW-NLL): z = mu + sigma * eps for the Gaussians, and z = F^-1(Phi(eps)) for the
others (Phi(eps) ~ U(0, 1)). A posterior is a pair of (B, D) tensors (a, b) cut from the encoder's
head: (mu, logvar), (m, log s) or (log a, log b).

Each prior has ``log_prob(z)`` and ``sample(n)``, so generation, IW-NLL, the ex-post GMM and the report
use it unchanged (``PriorDensity`` gives it the interface of vaelab.density).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Kumaraswamy, Laplace, Normal

from vaelab import losses
from vaelab.errors import ConfigError

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0   # keeps exp(logvar) finite in float32 without changing any sane posterior
LOG_CONC_MIN, LOG_CONC_MAX = -2.3, 4.6  # Kumaraswamy log a, log b: a, b in [0.1, 100]: z = s^(1/a) stays representable
LOG_SCALE_MIN, LOG_SCALE_MAX = -15.0, 10.0
U_EPS = 1e-6                            # u = Phi(eps) kept in [U_EPS, 1 - U_EPS]
EULER_GAMMA = 0.5772156649015329


def _uniform_noise(eps: Tensor) -> Tensor:
    """Standard-normal noise -> U(0, 1) noise, Phi(eps), kept inside the open interval."""
    return torch.special.ndtr(eps).clamp(U_EPS, 1 - U_EPS)


def _inside(z: Tensor) -> Tensor:
    """Codes of the uniform prior kept strictly inside (0, 1) in their dtype (log z and log(1 - z^a) finite)."""
    fi = torch.finfo(z.dtype)
    return z.clamp(fi.tiny, 1 - fi.eps / 2)


class GaussianPrior(nn.Module):
    """p(z) = N(0, I); q(z|x) = N(mu, diag exp(logvar)); closed-form KL (today's default, unchanged numbers)."""

    name = "gaussian"

    def __init__(self, n_latent: int):
        super().__init__()
        self.n_latent = n_latent

    def params(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Head outputs -> (mu, logvar), each (B, D)."""
        return a, b.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def distribution(self, a: Tensor, b: Tensor) -> Distribution:
        # validate_args=False: the check of scale > 0 is a host-device sync; exp() is positive by construction
        return Normal(a, torch.exp(0.5 * b), validate_args=False)

    def params_of(self, q: Normal) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of a posterior that ``distribution`` made (what the evaluation code measures)."""
        return q.loc, 2 * q.scale.log()

    def rsample(self, a: Tensor, b: Tensor, eps: Tensor) -> Tensor:
        """z = mu + sigma * eps: eps (..., B, D) -> (..., B, D) (reparameterisation, Kingma & Welling 2014)."""
        return a + torch.exp(0.5 * b) * eps

    def log_q(self, z: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return losses.log_normal(z, a, b)

    def kl_per_dim(self, a: Tensor, b: Tensor) -> Tensor | None:
        return losses.gaussian_kl_per_dim(a, b)

    def kl(self, a: Tensor, b: Tensor, z: Tensor) -> Tensor:
        return losses.gaussian_kl(a, b)

    def log_prob(self, z: Tensor) -> Tensor:
        return losses.log_standard_normal(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.n_latent, generator=generator)


class UniformPrior(GaussianPrior):
    """p(z) = U(0, 1)^d; q(z|x) = prod_d Kumaraswamy(a_d, b_d); KL = -H[q] (closed form)."""

    name = "uniform"

    def params(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Head outputs -> (log a, log b), each (B, D)."""
        return a.clamp(LOG_CONC_MIN, LOG_CONC_MAX), b.clamp(LOG_CONC_MIN, LOG_CONC_MAX)

    def distribution(self, a: Tensor, b: Tensor) -> Distribution:
        return Kumaraswamy(a.exp(), b.exp(), validate_args=False)

    def params_of(self, q: Kumaraswamy) -> tuple[Tensor, Tensor]:
        return q.concentration1.log(), q.concentration0.log()

    def rsample(self, a: Tensor, b: Tensor, eps: Tensor) -> Tensor:
        """Inverse CDF: z = (1 - (1 - u)^(1/b))^(1/a), u = Phi(eps), in log space; kept inside (0, 1)."""
        u = _uniform_noise(eps)
        s = -torch.expm1(torch.log1p(-u) * torch.exp(-b))        # 1 - (1 - u)^(1/b), in (0, 1]
        return _inside(torch.exp(torch.log(s) * torch.exp(-a)))

    def log_q(self, z: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """log q(z) = sum_d log a + log b + (a - 1) log z + (b - 1) log(1 - z^a)  (Kumaraswamy 1980)."""
        ca, cb = a.exp(), b.exp()
        log_z = _inside(z).log()
        log_1m_za = torch.log(-torch.expm1(ca * log_z))
        return (a + b + (ca - 1) * log_z + (cb - 1) * log_1m_za).sum(-1)

    def kl_per_dim(self, a: Tensor, b: Tensor) -> Tensor:
        """KL(Kumaraswamy(a, b) || U(0, 1)) = -H = -[(1 - 1/b) + (1 - 1/a) H_b - log(ab)], H_b = psi(b + 1) + gamma."""
        ca, cb = a.exp(), b.exp()
        h_b = torch.digamma(cb + 1) + EULER_GAMMA
        return -((1 - 1 / cb) + (1 - 1 / ca) * h_b - a - b)

    def kl(self, a: Tensor, b: Tensor, z: Tensor) -> Tensor:
        return self.kl_per_dim(a, b).sum(-1)

    def log_prob(self, z: Tensor) -> Tensor:
        inside = ((z > 0) & (z < 1)).all(-1)
        return torch.where(inside, torch.zeros_like(z[..., 0]), torch.full_like(z[..., 0], -math.inf))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(n, self.n_latent, generator=generator)


class LaplacePrior(GaussianPrior):
    """p(z) = prod_d Laplace(0, 1); q(z|x) = prod_d Laplace(m_d, s_d); closed-form KL."""

    name = "laplace"

    def params(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Head outputs -> (m, log s), each (B, D)."""
        return a, b.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)

    def distribution(self, a: Tensor, b: Tensor) -> Distribution:
        return Laplace(a, b.exp(), validate_args=False)

    def params_of(self, q: Laplace) -> tuple[Tensor, Tensor]:
        return q.loc, q.scale.log()

    def rsample(self, a: Tensor, b: Tensor, eps: Tensor) -> Tensor:
        """Inverse CDF: z = m - s * sign(u - 1/2) * log(1 - 2 |u - 1/2|), u = Phi(eps)."""
        c = _uniform_noise(eps) - 0.5
        return a - b.exp() * torch.sign(c) * torch.log1p(-2 * c.abs())

    def log_q(self, z: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return (-math.log(2) - b - (z - a).abs() / b.exp()).sum(-1)

    def kl_per_dim(self, a: Tensor, b: Tensor) -> Tensor:
        """KL(Laplace(m, s) || Laplace(0, 1)) = -log s - 1 + |m| + s exp(-|m| / s)  (E_q|z| = |m| + s e^(-|m|/s))."""
        s = b.exp()
        return -b - 1 + a.abs() + s * torch.exp(-a.abs() / s)

    def kl(self, a: Tensor, b: Tensor, z: Tensor) -> Tensor:
        return self.kl_per_dim(a, b).sum(-1)

    def log_prob(self, z: Tensor) -> Tensor:
        return (-math.log(2) - z.abs()).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(n, self.n_latent, generator=generator).clamp(U_EPS, 1 - U_EPS) - 0.5
        return -torch.sign(u) * torch.log1p(-2 * u.abs())


class MixturePrior(GaussianPrior):
    """p(z) = sum_c pi_c N(z; m_c, diag s_c^2), all learned; Gaussian posterior; KL by Monte Carlo at the sample.

    Initialised with means ~ N(0, I), unit scales and equal weights (the learned analogue of N(0, I)).
    """

    name = "mog"

    def __init__(self, n_latent: int, n_components: int):
        super().__init__(n_latent)
        self.means = nn.Parameter(torch.randn(n_components, n_latent))      # (C, D)
        self.log_scales = nn.Parameter(torch.zeros(n_components, n_latent))  # (C, D)
        self.logits = nn.Parameter(torch.zeros(n_components))                # (C,)

    def kl_per_dim(self, a: Tensor, b: Tensor) -> Tensor | None:
        return None   # a mixture does not factorise over dimensions

    def kl(self, a: Tensor, b: Tensor, z: Tensor) -> Tensor:
        """One-sample Monte Carlo: log q(z|x) - log p(z) at the reparameterised z (unbiased; Tomczak & Welling 2018)."""
        return self.log_q(z, a, b) - self.log_prob(z)

    def _components(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.means, 2 * self.log_scales, torch.log_softmax(self.logits, 0)

    def log_prob(self, z: Tensor) -> Tensor:
        """log sum_c pi_c N(z; m_c, diag s_c^2): z (..., D) -> (...,)."""
        means, logvars, log_pi = self._components()              # (C, D), (C, D), (C,)
        log_nc = losses.log_normal(z[..., None, :], means, logvars)  # (..., C)
        return torch.logsumexp(log_nc + log_pi, dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        means, logvars, log_pi = (t.detach().cpu() for t in self._components())
        c = torch.multinomial(log_pi.exp(), n, replacement=True, generator=generator)   # (n,)
        eps = torch.randn(n, self.n_latent, generator=generator)
        return means[c] + torch.exp(0.5 * logvars[c]) * eps


class VampPrior(MixturePrior):
    """VampPrior (Tomczak & Welling 2018): p(z) = 1/K sum_k q(z | u_k), K learned pseudo-inputs u_k.

    The pseudo-inputs are hardtanh(0, 1) of free parameters initialised N(0.05, 0.01) (their MNIST
    set-up), so they stay valid images in [0, 1]. ``encode_params(u) -> (mu, logvar)`` is the model's
    own encoder: the prior moves with it.
    """

    name = "vamp"

    def __init__(self, n_latent: int, n_components: int, input_shape: tuple[int, ...],
                 encode_params: Callable[[Tensor], tuple[Tensor, Tensor]]):
        GaussianPrior.__init__(self, n_latent)
        self.pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(n_components, *input_shape))   # (K, C, H, W)
        self._encode_params = encode_params      # a plain attribute: the model is this module's parent

    def inputs(self) -> Tensor:
        return F.hardtanh(self.pseudo_inputs, 0.0, 1.0)

    def _components(self) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self._encode_params(self.inputs())           # (K, D) each
        k = mu.shape[0]
        return mu, logvar, torch.full((k,), -math.log(k), dtype=mu.dtype, device=mu.device)


def make_prior(cfg: Any, encode_params: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None) -> GaussianPrior:
    """The prior a model config names. ``encode_params`` (x -> (mu, logvar)) is needed by the VampPrior."""
    if cfg.prior == "gaussian":
        return GaussianPrior(cfg.n_latent)
    if cfg.prior == "uniform":
        return UniformPrior(cfg.n_latent)
    if cfg.prior == "laplace":
        return LaplacePrior(cfg.n_latent)
    if cfg.prior == "mog":
        return MixturePrior(cfg.n_latent, cfg.prior_components)
    if cfg.backbone == "gru":
        raise ConfigError("the vamp prior learns pseudo-inputs by gradient descent, which needs continuous inputs; "
                          "token sequences are discrete. Use --prior mog (a learned mixture) instead.")
    if encode_params is None or cfg.model == "cvae":
        raise ConfigError("the vamp prior is the encoder's posterior at pseudo-inputs; a label-conditioned encoder "
                          "(cvae) would need a label for each. Use --prior mog with cvae.")
    return VampPrior(cfg.n_latent, cfg.prior_components, cfg.input_shape, encode_params)


class PriorDensity:
    """A model's prior with the interface of vaelab.density (``fit(z) -> self``, ``sample(n, seed)``, ``log_prob``)."""

    def __init__(self, prior: GaussianPrior, seed: int = 0):
        self.prior, self.seed = prior, seed

    def fit(self, z: Any = None) -> PriorDensity:
        return self

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return self.prior.sample(n, generator=gen).float().cpu()

    @torch.no_grad()
    def log_prob(self, z: Any) -> Tensor:
        p = next(self.prior.parameters(), None)
        z = torch.as_tensor(z, dtype=torch.float32, device=p.device if p is not None else "cpu")
        return self.prior.log_prob(z).cpu()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": f"prior:{self.prior.name}"}
