"""Variational autoencoders: VAE (beta is a loss weight, not a class), CVAE, IWAE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal

from vaelab import losses
from vaelab.models.base import Autoencoder, LossTerms

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0   # keeps exp(logvar) finite in float32 without changing any sane posterior


class VAE(Autoencoder):
    """Kingma & Welling 2014. q(z|x) = N(mu, diag sigma^2), p(z) = N(0, I).

    Objective (per example, batch mean): -log p(x|z) + beta * KL(q(z|x) || p(z)) with one
    reparameterised sample z = mu + sigma * eps. beta = 1 is the negative ELBO; ``beta-vae``
    is this class with beta = 4 by default (Higgins et al. 2017).
    """

    is_stochastic = True
    has_likelihood = True

    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z|x), each (B, D): what the objectives use (no log(exp(.)) round trip)."""
        mu, logvar = self._head(x, y).chunk(2, dim=-1)           # (B, D) each
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Normal:
        mu, logvar = self.posterior(x, y)
        # validate_args=False: the check of scale > 0 is a host-device sync; exp() is positive by construction
        return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        mu, logvar = self.posterior(x, y)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, D) reparameterisation trick
        recon = self.recon_nll(self.decode(z, y), x)              # (B,)
        kl = losses.gaussian_kl(mu, logvar)                       # (B,)
        kl_opt = losses.free_bits_kl(mu, logvar, self.cfg.free_bits) if self.cfg.free_bits > 0 else kl
        total = recon.mean() + self.cfg.beta * kl_weight * kl_opt.mean()
        terms = {"recon": recon.mean().detach(), "kl": kl.mean().detach(),
                 "neg_elbo": (recon + kl).mean().detach()}
        return LossTerms(total, terms)

    def log_weights(self, x: Tensor, y: Tensor | None = None, k: int = 1, eps: Tensor | None = None) -> Tensor:
        """log p(x|z_k) + log p(z_k) - log q(z_k|x) for k samples z_k ~ q(z|x): (K, B).

        The importance weights of the IWAE bound; with K = 1 their mean is a one-sample ELBO.
        eps: optional (K, B, D) standard-normal noise, z = mu + sigma * eps (the caller controls the
        random stream, e.g. so that chunked evaluation draws exactly the samples of one big batch).
        """
        mu, logvar = self.posterior(x, y)
        eps = torch.randn((k, *mu.shape), dtype=mu.dtype, device=mu.device) if eps is None else eps.to(mu)
        z = mu + torch.exp(0.5 * logvar) * eps                    # (K, B, D)
        log_px_z = -self.recon_nll(self.decode(z, y), x)          # (K, B)
        return log_px_z + losses.log_standard_normal(z) - losses.log_normal(z, mu, logvar)


class ConditionalVAE(VAE):
    """Sohn et al. 2015: q(z|x, y) and p(x|z, y), prior p(z) = N(0, I). Labels are one-hot inputs."""

    is_conditional = True


class IWAE(VAE):
    """Burda et al. 2016: maximise the K-sample importance-weighted bound (cfg.k samples)."""

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        mu, logvar = self.posterior(x, y)
        z = mu + torch.exp(0.5 * logvar) * torch.randn((self.cfg.k, *mu.shape), dtype=mu.dtype, device=mu.device)
        recon = self.recon_nll(self.decode(z, y), x)              # (K, B)
        bound = losses.iwae_bound(-recon, losses.log_standard_normal(z), losses.log_normal(z, mu, logvar))  # (B,)
        total = -bound.mean()
        kl = losses.gaussian_kl(mu, logvar)
        terms = {"neg_iwae": total.detach(), "recon": recon.mean().detach(), "kl": kl.mean().detach(),
                 "neg_elbo": (recon.mean(0) + kl).mean().detach()}
        return LossTerms(total, terms)
