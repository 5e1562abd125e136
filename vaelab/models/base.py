"""The one protocol every model in the family follows.

    encode(x, y=None) -> posterior      Normal(mu, std) for VAEs, PointMass(z) for AEs
    decode(z, y=None) -> x_params       (..., C, H, W): logits (Bernoulli) or means (Gaussian)
    loss(x, y=None)   -> LossTerms      the weighted total the optimiser minimises + raw named terms
    forward(x, y)     -> Output         x_params, z, mu, logvar

Backbones (vaelab.models.nets) and the likelihood are shared; a model only adds its head and its
objective, a few lines composing vaelab.losses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaelab import losses
from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.nets import make_backbone


@dataclass(frozen=True)
class LossTerms:
    """What one step optimises (``total``) and every term raw (batch means, nats per image)."""

    total: Tensor                 # scalar
    terms: dict[str, Tensor]      # name -> scalar, unweighted


@dataclass(frozen=True)
class Output:
    x_params: Tensor              # (B, C, H, W) logits or means
    z: Tensor                     # (B, D) the code that was decoded (a sample for VAEs)
    mu: Tensor                    # (B, D) posterior mean (== z for AEs)
    logvar: Tensor | None         # (B, D) for VAEs, None for AEs


class PointMass:
    """The 'posterior' of a deterministic encoder: all mass on one code.

    Mirrors the parts of torch.distributions.Normal that vaelab uses, so metrics can treat every
    model alike: ``mean``, ``stddev``, ``variance``, ``rsample``/``sample``.
    """

    def __init__(self, z: Tensor):
        self.mean = z

    @property
    def stddev(self) -> Tensor:
        return torch.zeros_like(self.mean)

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.mean)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return self.mean.expand(*sample_shape, *self.mean.shape)

    sample = rsample


class Autoencoder(nn.Module):
    """Deterministic autoencoder: z = g(x), x_hat = f(z), trained on -log p(x|z) alone."""

    is_stochastic: ClassVar[bool] = False     # encoder outputs a distribution
    is_conditional: ClassVar[bool] = False    # encoder and decoder see the label
    has_likelihood: ClassVar[bool] = False    # a bound on log p(x) exists (VAE family)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if self.is_conditional and cfg.n_classes < 2:
            raise ConfigError(f"{cfg.model} is label-conditioned and needs a labelled dataset with at least 2 classes "
                              f"(n_classes={cfg.n_classes}). Use a dataset with labels, e.g. digits or fashion-mnist.")
        self.cfg = cfg
        self.n_cond = cfg.n_classes if self.is_conditional else 0
        self.encoder, self.decoder = make_backbone(cfg, cfg.n_latent + self.n_cond)
        n_head = cfg.n_latent * (2 if self.is_stochastic else 1)
        self.head = nn.Linear(self.encoder.n_features + self.n_cond, n_head)
        if cfg.learn_sigma:
            # per-pixel, not shared: one sigma cannot fit both the flat background and the textured object
            # (too wide on one, too narrow on the other); C*H*W parameters, independent of z.
            self.log_sigma = nn.Parameter(torch.full(cfg.input_shape, math.log(cfg.sigma)))

    # -- the protocol -------------------------------------------------------------------------
    def _onehot(self, y: Tensor | None, n: int) -> Tensor | None:
        if not self.is_conditional:
            return None
        if y is None:
            raise ConfigError(f"{self.cfg.model} needs labels y for every input (it is label-conditioned).")
        if y.dim() != 1 or y.shape[0] != n:
            raise ConfigError(f"labels must have shape ({n},), got {tuple(y.shape)}.")
        return F.one_hot(y.long(), self.cfg.n_classes).to(self.head.weight.dtype)

    def _head(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.encoder(x)                                       # (B, F)
        onehot = self._onehot(y, x.shape[0])
        if onehot is not None:
            h = torch.cat([h, onehot], dim=1)                     # (B, F + n_classes)
        return self.head(h)

    def encode(self, x: Tensor, y: Tensor | None = None) -> PointMass | torch.distributions.Normal:
        """q(z|x). Args: x (B, C, H, W) in [0, 1]; y (B,) int64 labels for conditional models."""
        return PointMass(self._head(x, y))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Likelihood parameters of p(x|z): z (..., D) -> (..., C, H, W) logits or means."""
        lead = z.shape[:-1]
        z2 = z.reshape(-1, z.shape[-1])                           # (N, D)
        if self.is_conditional:
            if y is None:
                raise ConfigError(f"{self.cfg.model} needs a label y to decode.")
            y2 = y.expand(*lead) if y.dim() < len(lead) else y
            z2 = torch.cat([z2, self._onehot(y2.reshape(-1), z2.shape[0])], dim=1)
        return self.decoder(z2).reshape(*lead, *self.cfg.input_shape)

    def x_mean(self, x_params: Tensor) -> Tensor:
        """The likelihood's mean image in [0, 1] (what a person looks at)."""
        if self.cfg.likelihood == "bernoulli":
            return torch.sigmoid(x_params)
        if self.cfg.likelihood == "continuous-bernoulli":
            return losses.continuous_bernoulli_mean(x_params)
        return x_params.clamp(0.0, 1.0)

    def recon_nll(self, x_params: Tensor, x: Tensor) -> Tensor:
        """-log p(x|z) per example (summed over pixels): (...,)."""
        if self.cfg.likelihood == "bernoulli":
            return losses.bernoulli_nll(x_params, x)
        if self.cfg.likelihood == "continuous-bernoulli":
            return losses.continuous_bernoulli_nll(x_params, x)
        return losses.gaussian_nll(x_params, x, self.log_sigma.exp() if self.cfg.learn_sigma else self.cfg.sigma)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Output:
        q = self.encode(x, y)
        z = q.rsample()
        return Output(self.decode(z, y), z, q.mean, _logvar(q))

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        """Deterministic AE objective: mean over the batch of -log p(x|g(x))."""
        out = self(x, y)
        recon = self.recon_nll(out.x_params, x).mean()
        return LossTerms(recon, {"recon": recon.detach()})

    def reconstruct(self, x: Tensor, y: Tensor | None = None, use_mean: bool = True) -> Tensor:
        """x (B, C, H, W) -> reconstruction in [0, 1], through the posterior mean (or a sample)."""
        q = self.encode(x, y)
        z = q.mean if use_mean else q.rsample()
        return self.x_mean(self.decode(z, y))


def _logvar(q: PointMass | torch.distributions.Normal) -> Tensor | None:
    return None if isinstance(q, PointMass) else 2 * q.scale.log()
