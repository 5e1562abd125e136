"""Variational autoencoders: VAE (beta is a loss weight, not a class), CVAE, IWAE; images and token sequences alike.

The prior is an object (vaelab.models.priors: gaussian, uniform, laplace, mog, vamp) that also fixes the
posterior family; the objectives below are written once against it.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaelab import losses
from vaelab.errors import ConfigError
from vaelab.models.base import Autoencoder, LossTerms
from vaelab.models.priors import make_prior


class VAE(Autoencoder):
    """Kingma & Welling 2014. q(z|x) = N(mu, diag sigma^2), p(z) = N(0, I) by default (cfg.prior).

    Objective (per example, batch mean): -log p(x|z) + beta * KL(q(z|x) || p(z)) with one
    reparameterised sample z = mu + sigma * eps. beta = 1 is the negative ELBO; ``beta-vae``
    is this class with beta = 4 by default (Higgins et al. 2017). On token sequences (the gru
    backbone) it is the sequence VAE of Bowman et al. 2016 / Gomez-Bombarelli et al. 2018.
    """

    is_stochastic = True
    has_likelihood = True

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.prior in ("mog", "vamp") and cfg.free_bits > 0:
            raise ConfigError(f"free bits floor the KL of each latent dimension; the {cfg.prior} prior's KL does not "
                              "split into dimensions. Use --free-bits 0 with it.")
        self.prior = make_prior(cfg, lambda u: self.posterior(u))

    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The posterior's parameters (a, b), each (B, D): (mu, logvar) for the Gaussian families (no log(exp(.))
        round trip), (m, log s) for laplace, (log a, log b) of the Kumaraswamy for uniform."""
        a, b = self._head(x, y).chunk(2, dim=-1)                 # (B, D) each
        return self.prior.params(a, b)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        return self.prior.distribution(*self.posterior(x, y))

    def kl(self, q: Distribution, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) per example of a posterior from ``encode``: closed form, or Monte Carlo at z (..., B, D)."""
        return self.prior.kl(*self.prior.params_of(q), z)

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        a, b = self.posterior(x, y)                               # (B, D) each
        z = self.prior.rsample(a, b, torch.randn_like(a))         # (B, D) reparameterisation trick
        recon = self.recon_nll(self.decode(z, y, x), x)           # (B,)
        kl = self.prior.kl(a, b, z)                               # (B,)
        kl_opt = losses.free_bits(self.prior.kl_per_dim(a, b), self.cfg.free_bits) if self.cfg.free_bits > 0 else kl
        total = recon.mean() + self.cfg.beta * kl_weight * kl_opt.mean()
        terms = {"recon": recon.mean().detach(), "kl": kl.mean().detach(),
                 "neg_elbo": (recon + kl).mean().detach()}
        return self.with_property_term(LossTerms(total, terms), z, y)

    def log_weights(self, x: Tensor, y: Tensor | None = None, k: int = 1, eps: Tensor | None = None) -> Tensor:
        """log p(x|z_k) + log p(z_k) - log q(z_k|x) for k samples z_k ~ q(z|x): (K, B).

        The importance weights of the IWAE bound; with K = 1 their mean is a one-sample ELBO.
        eps: optional (K, B, D) standard-normal noise that the posterior is reparameterised from (the caller
        controls the random stream, e.g. so that chunked evaluation draws exactly the samples of one big batch).
        """
        a, b = self.posterior(x, y)
        eps = torch.randn((k, *a.shape), dtype=a.dtype, device=a.device) if eps is None else eps.to(a)
        z = self.prior.rsample(a, b, eps)                         # (K, B, D)
        log_px_z = -self.recon_nll(self.decode(z, y, x), x)       # (K, B)
        return log_px_z + self.prior.log_prob(z) - self.prior.log_q(z, a, b)


class ConditionalVAE(VAE):
    """Sohn et al. 2015: q(z|x, y) and p(x|z, y), prior p(z) (N(0, I) by default). Labels are one-hot inputs."""

    is_conditional = True
    has_property_loss = False


class IWAE(VAE):
    """Burda et al. 2016: maximise the K-sample importance-weighted bound (cfg.k samples)."""

    has_property_loss = False

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        a, b = self.posterior(x, y)
        z = self.prior.rsample(a, b, torch.randn((self.cfg.k, *a.shape), dtype=a.dtype, device=a.device))
        recon = self.recon_nll(self.decode(z, y, x), x)           # (K, B)
        bound = losses.iwae_bound(-recon, self.prior.log_prob(z), self.prior.log_q(z, a, b))  # (B,)
        total = -bound.mean()
        kl = self.prior.kl(a, b, z[0])
        terms = {"neg_iwae": total.detach(), "recon": recon.mean().detach(), "kl": kl.mean().detach(),
                 "neg_elbo": (recon.mean(0) + kl).mean().detach()}
        return LossTerms(total, terms)
