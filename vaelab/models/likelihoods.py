"""p(x|z) as an object: ``nll(params, x)`` per example and ``mean(params)``.

The decoder returns the likelihood's parameters (logits for the Bernoulli family and for tokens,
means for the Gaussian); the likelihood turns them into -log p(x|z) and into what a person looks
at. The arithmetic of each term lives in vaelab.losses (formula + citation there).

    Bernoulli              params (..., C, H, W) logits        mean: sigmoid
    ContinuousBernoulli    params (..., C, H, W) logits        mean: E[x] of the CB (Loaiza-Ganem & Cunningham 2019)
    Gaussian               params (..., C, H, W) means         fixed sigma, or a learned per-pixel log-sigma
    Categorical            params (..., L-1, V) next-token logits of x[..., 1:], padding masked; mean: softmax

They are ``nn.Module``s so that a learned sigma is a parameter of the model (``likelihood.log_sigma``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaelab import losses
from vaelab.errors import ConfigError


class Bernoulli(nn.Module):
    """p(x|z) = prod_pixels Bernoulli(sigmoid(logits)): a true NLL on binary x, the cross-entropy on grey x."""

    def nll(self, logits: Tensor, x: Tensor) -> Tensor:
        """logits (..., C, H, W), x broadcastable in [0, 1] -> (...,) nats."""
        return losses.bernoulli_nll(logits, x)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class ContinuousBernoulli(nn.Module):
    """The continuous Bernoulli, a proper density on [0, 1]^D (Loaiza-Ganem & Cunningham 2019)."""

    def nll(self, logits: Tensor, x: Tensor) -> Tensor:
        return losses.continuous_bernoulli_nll(logits, x)

    def mean(self, logits: Tensor) -> Tensor:
        return losses.continuous_bernoulli_mean(logits)


class Gaussian(nn.Module):
    """N(x; mean, sigma^2 I) with a fixed sigma, or a learned per-pixel (per-feature) sigma (init ``sigma``).

    Per pixel, not shared: one sigma cannot fit both the flat background and the textured object
    (too wide on one, too narrow on the other); C*H*W parameters, independent of z. On feature vectors
    (standardised, unbounded) the mean is not clipped; on images it is clipped to [0, 1].
    """

    def __init__(self, sigma: float, input_shape: tuple[int, ...] | None = None, use_clip: bool = True):
        super().__init__()
        self.sigma = float(sigma)
        self.use_clip = bool(use_clip)
        self.log_sigma = (nn.Parameter(torch.full(tuple(input_shape), math.log(sigma)))
                          if input_shape is not None else None)

    def nll(self, mean: Tensor, x: Tensor) -> Tensor:
        return losses.gaussian_nll(mean, x, self.log_sigma.exp() if self.log_sigma is not None else self.sigma)

    def mean(self, mean: Tensor) -> Tensor:
        return mean.clamp(0.0, 1.0) if self.use_clip else mean


class Categorical(nn.Module):
    """p(x|z) = prod_t Categorical(x_t | softmax(logits_t)) over the tokens after <bos>, padding masked.

    x is (..., L) = <bos> tokens <eos> <pad>...; the decoder's params are the logits of x[..., 1:].
    A true likelihood of the token sequence (discrete data), in nats per sequence.
    """

    def __init__(self, pad_id: int):
        super().__init__()
        self.pad_id = pad_id

    def nll(self, logits: Tensor, x: Tensor) -> Tensor:
        """logits (..., L-1, V), x (..., L) int64 broadcastable to the logits' leading dims -> (...,) nats."""
        lead, (t, v) = logits.shape[:-2], logits.shape[-2:]
        target = x[..., 1:].expand(*lead, t)                      # (..., L-1)
        nll = losses.token_nll(logits.reshape(-1, t, v), target.reshape(-1, t), self.pad_id)  # (N,)
        return nll.reshape(lead)

    def mean(self, logits: Tensor) -> Tensor:
        """The expected one-hot token at each position: softmax over the vocabulary, (..., L-1, V)."""
        return torch.softmax(logits, dim=-1)


def make_likelihood(cfg) -> nn.Module:
    """The likelihood object a model config names (``cfg.likelihood``).

    Feature vectors (input shape (1, 1, D), standardised: unbounded reals) take the Gaussian only: the Bernoulli
    family is a distribution on [0, 1], so a model asking for it on vectors is refused, not silently changed.
    """
    from vaelab.data.base import is_vector_shape

    if cfg.likelihood in ("bernoulli", "continuous-bernoulli") and is_vector_shape(getattr(cfg, "input_shape", ())):
        raise ConfigError(f"the {cfg.likelihood} likelihood models values in [0, 1], but these data are standardised "
                          f"feature vectors (unbounded reals). Use --likelihood gaussian --learn-sigma.")
    if cfg.likelihood == "bernoulli":
        return Bernoulli()
    if cfg.likelihood == "continuous-bernoulli":
        return ContinuousBernoulli()
    if cfg.likelihood == "categorical":
        from vaelab.models.seq import PAD

        return Categorical(PAD)
    return Gaussian(cfg.sigma, cfg.input_shape if cfg.learn_sigma else None,
                    use_clip=not is_vector_shape(cfg.input_shape))
