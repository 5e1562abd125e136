"""The arithmetic of every loss term, as pure functions reduced per example.

Reductions are fixed everywhere in vaelab: **sum over pixels and latent dimensions, mean over the
batch** (the batch mean happens in the model's `loss`, never here). So a "recon" of 60 means
60 nats per image, whatever the image size or batch size, and beta is a plain named weight on the
KL with no hidden dataset-size factor.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per example, summed over latent dimensions.

    Kingma & Welling 2014, App. B: -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).

    Args:
        mu, logvar: (..., D)
    Returns:
        (...,) nats
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def gaussian_kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """The same KL, not summed: (..., D). Used for free bits and the per-unit collapse check."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def free_bits_kl(mu: Tensor, logvar: Tensor, free_bits_nats: float) -> Tensor:
    """KL with a per-dimension floor (Kingma et al. 2016, "Improved VI with IAF", eq. 15).

    Each dimension's KL, averaged over the batch, counts at least ``free_bits`` nats, so the
    optimiser gains nothing by pushing a unit below it (one guard against posterior collapse).
    Returns a (B,) tensor whose batch mean equals sum_d max(free_bits, mean_B KL_d); gradients
    flow only through dimensions above the floor.

    Args:
        mu, logvar: (B, D)
    """
    return free_bits(gaussian_kl_per_dim(mu, logvar), free_bits_nats)


def free_bits(kl_d: Tensor, free_bits_nats: float) -> Tensor:
    """The free-bits floor of :func:`free_bits_kl` on any per-dimension KL: kl_d (B, D) -> (B,)."""
    mean_d = kl_d.mean(0, keepdim=True)                       # (1, D)
    # per example: its own KL where the dimension is above the floor, else the floor
    return torch.where(mean_d > free_bits_nats, kl_d, torch.full_like(kl_d, free_bits_nats)).sum(-1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x|z) for p = Bernoulli(sigmoid(logits)), summed over pixels, per example.

    On binary x this is a true negative log-likelihood. On grey-level x in [0, 1] it is the
    cross-entropy training objective, *not* a normalised likelihood (see continuous Bernoulli,
    Loaiza-Ganem & Cunningham 2019): vaelab labels it so in reports.

    Args:
        logits: (B, C, H, W) or (..., C, H, W); x: broadcastable to logits, in [0, 1]
    Returns:
        (B,) or (...,) nats
    """
    if torch.is_grad_enabled() and logits.requires_grad:     # training: autograd's fused BCE backward
        nll = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return nll.flatten(-3).sum(-1)
    # evaluation: the same function, softplus(l) - x l, in two passes instead of BCE's log-sigmoid, fills and
    # in-place updates: an IW-NLL block of the 784-200-200-50 VAE in 66 instead of 93 CPU ms (bench_floor --iw)
    return F.softplus(logits).flatten(-3).sum(-1) - (logits * x).flatten(-3).sum(-1)


def continuous_bernoulli_log_norm(logits: Tensor) -> Tensor:
    """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits), elementwise.

    Loaiza-Ganem & Cunningham 2019, eq. 7: C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), C(1/2) = 2.
    In logits l, 1 - 2 lambda = -tanh(l / 2) and 2 artanh(1 - 2 lambda) = -l, so C = l / tanh(l / 2):
    no division of two vanishing numbers except at l = 0, where the Taylor expansion
    l / tanh(l / 2) = 2 (1 + l^2/12 - l^4/720 + O(l^6)) is used for |l| < 1e-2 (error < 1e-15).
    For large |l|, log|tanh(l/2)| = log1p(-e^-|l|) - log1p(e^-|l|) keeps full precision.
    """
    a = logits.abs()
    small = a < 1e-2
    a_safe = torch.where(small, torch.ones_like(a), a)                # keeps the unused branch finite
    e = torch.exp(-a_safe)
    far = torch.log(a_safe) - (torch.log1p(-e) - torch.log1p(e))
    l2 = logits.pow(2)
    near = math.log(2.0) + torch.log1p(l2 / 12 - l2.pow(2) / 720)
    return torch.where(small, near, far)


def continuous_bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x|z) for the continuous Bernoulli (a proper density on [0, 1]), summed over pixels.

    log p(x | lambda) = x log lambda + (1 - x) log(1 - lambda) + log C(lambda)
    (Loaiza-Ganem & Cunningham 2019): the cross-entropy plus the normaliser that makes it a density.

    Args:
        logits: (..., C, H, W); x: broadcastable, in [0, 1]
    Returns:
        (...,) nats
    """
    bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return (bce - continuous_bernoulli_log_norm(logits)).flatten(-3).sum(-1)


def continuous_bernoulli_mean(logits: Tensor) -> Tensor:
    """E[x] under the continuous Bernoulli: lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)).

    In logits: sigmoid(l) / tanh(l / 2) - 1 / l, and 1/2 + l/12 - l^3/720 for |l| < 1e-2. Not sigmoid(l):
    the mean is pulled towards 1/2 (what the model's images look like on average).
    """
    small = logits.abs() < 1e-2
    l_safe = torch.where(small, torch.ones_like(logits), logits)
    far = torch.sigmoid(l_safe) / torch.tanh(l_safe / 2) - 1 / l_safe
    near = 0.5 + logits / 12 - logits.pow(3) / 720
    return torch.where(small, near, far)


def gaussian_nll(mean: Tensor, x: Tensor, sigma: float | Tensor) -> Tensor:
    """-log N(x; mean, sigma^2) summed over pixels, per example.

    sum_pixels 0.5 * (x - mean)^2 / sigma^2 + log sigma + 0.5 * log 2 pi.

    Args:
        mean: (..., C, H, W); x broadcastable; sigma: a fixed std (float) or a per-pixel (C, H, W) tensor
            (the learned case; gradients flow into it), pixel units
    """
    if isinstance(sigma, Tensor):
        nll = 0.5 * ((x - mean) / sigma).pow(2) + sigma.log() + 0.5 * LOG_2PI
        return nll.flatten(-3).sum(-1)
    d = mean.shape[-3:].numel()                               # pixels per image
    sq = (x - mean).pow(2).flatten(-3).sum(-1)
    return 0.5 * sq / sigma**2 + d * (math.log(sigma) + 0.5 * LOG_2PI)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def elbo(log_px_z: Tensor, kl: Tensor, beta: float = 1.0) -> Tensor:
    """Evidence lower bound per example: E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)).

    beta = 1 is the ELBO of Kingma & Welling 2014; beta != 1 is the beta-VAE objective
    (Higgins et al. 2017), no longer a bound on log p(x) for beta < 1.
    """
    return log_px_z - beta * kl


def iwae_bound(log_px_z: Tensor, log_pz: Tensor, log_qz: Tensor) -> Tensor:
    """Importance-weighted bound (Burda et al. 2016, eq. 8) per example.

    log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), computed with logsumexp over k.
    K = 1 gives a single-sample ELBO estimate; the bound is non-decreasing in K in expectation.

    Args:
        log_px_z, log_pz, log_qz: (K, B)
    Returns:
        (B,)
    """
    log_w = log_px_z + log_pz - log_qz                        # (K, B)
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def rae_z_penalty(z: Tensor) -> Tensor:
    """0.5 * ||z||^2 per example (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders", eq. 11)."""
    return 0.5 * z.pow(2).sum(-1)


def l2_norm_squared(params: list[Tensor]) -> Tensor:
    """sum of squared entries of the given parameters (RAE's decoder regulariser L_REG, the L2 variant)."""
    return torch.stack([p.pow(2).sum() for p in params]).sum()


def token_nll(logits: Tensor, target: Tensor, pad_id: int = 0) -> Tensor:
    """-log p(x|z) of an autoregressive categorical decoder, summed over positions, per sequence.

    -sum_t [x_t != pad] log softmax(logits_t)[x_t]: the token cross-entropy, with padding masked
    (it is not part of the molecule). The <eos> target counts: the decoder must learn to stop.

    Args:
        logits: (B, T, V) next-token logits; target: (B, T) int64 ids
    Returns:
        (B,) nats
    """
    nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=pad_id, reduction="none")  # (B, T)
    return nll.sum(-1)


def property_sq_error(pred: Tensor, target: Tensor) -> Tensor:
    """Squared error of a property head on the code, summed over properties, per example.

    sum_p (f_p(z) - y_p)^2 with y standardised (zero mean, unit variance on the training split): the
    property-prediction term that Gomez-Bombarelli et al. 2018 ("Automatic chemical design...", ACS
    Cent. Sci. 4:268) train jointly with the autoencoder, so that the latent space is organised by it.

    Args:
        pred, target: (B, P)
    Returns:
        (B,)
    """
    return (pred - target).pow(2).sum(-1)
