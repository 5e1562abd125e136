"""Posterior-collapse diagnostics: is the VAE using its latent code?

Four views of one question, computed on (a subset of) a held-out split:
  * KL per dimension, mean over x, and its sum (nats): a unit with KL ~ 0 carries nothing;
  * active units (Burda et al. 2016): Cov_x E_q[z_u] > 0.01;
  * I(x; z) under the aggregate posterior (Hoffman & Johnson 2016; estimator of He et al. 2019);
  * the z-shuffle test: decode each x from *another* image's code. If the reconstruction NLL
    barely changes, the decoder ignores z (a strong autoregressive/flexible decoder does this).

A loud warning (``warnings.warn`` with ``PosteriorCollapseWarning``) fires when the KL falls under
``KL_MIN_NATS`` or the shuffle gap under ``SHUFFLE_MIN_FRACTION`` of the reconstruction NLL.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from vaelab.config import Words, shape_words, words
from vaelab.metrics.latent import active_units, mutual_information

KL_MIN_NATS = 0.5             # total KL per image below this: the code carries < 1 bit about x
SHUFFLE_MIN_FRACTION = 0.01   # shuffled-z recon NLL within 1 % of own-z recon NLL: decoder ignores z
N_SUBSET = 1000               # validation images used per epoch (cost: a few encode/decode passes)


class PosteriorCollapseWarning(UserWarning):
    """The VAE's posterior has collapsed onto the prior, or its decoder ignores z."""


@torch.inference_mode()
def collapse_diagnostics(model: torch.nn.Module, x: Tensor, y: Tensor | None = None, seed: int = 0,
                         batch_size: int = 1000) -> dict[str, Any]:
    """KL per dimension, active units, I(x; z), and the z-shuffle gap of a VAE-family model.

    Args:
        model: a stochastic model (encode -> Normal); x: (N, C, H, W) as modelled (e.g. binarised); y: (N,) or None
    Returns:
        {"kl": nats, "kl_per_dim": [D floats], "active_units": int, "n_latent": D, "mutual_info": nats,
         "mi_max": log N (the estimator's ceiling), "recon": mean -log p(x|z_own) (posterior mean z),
         "recon_shuffled": mean -log p(x|z of another x), "shuffle_gap": the difference, nats}
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    mus, params_a, params_b, recon, recon_sh, kls = [], [], [], [], [], []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device)
        yb = y[i:i + batch_size].to(device) if y is not None else None
        q = model.encode(xb, yb)
        a, b = model.prior.params_of(q)                            # (B, D): (mu, logvar) for Gaussian posteriors
        mu = q.mean                                               # (B, D) E_q[z]
        p = torch.randperm(xb.shape[0], generator=gen)
        perm = p[(p.argsort() + 1) % xb.shape[0]].to(device)       # a random derangement: nobody keeps its own code
        recon.append(model.recon_nll(model.decode(mu, yb, xb), xb).double().cpu())
        recon_sh.append(model.recon_nll(model.decode(mu[perm], yb, xb), xb).double().cpu())
        if model.prior.kl_per_dim(a, b) is None:                   # a mixture prior: the KL by Monte Carlo at a sample
            z = model.prior.rsample(a, b, torch.randn(a.shape, generator=gen).to(a))
            kls.append(model.prior.kl(a, b, z).double().cpu())
        mus.append(mu.double().cpu())
        params_a.append(a.double().cpu())
        params_b.append(b.double().cpu())
    model.train(was_training)
    mu, a, b = torch.cat(mus), torch.cat(params_a), torch.cat(params_b)  # (N, D)
    kl_d = model.prior.kl_per_dim(a, b)
    kl_d = kl_d.mean(0) if kl_d is not None else None             # (D,)
    kl = float(kl_d.sum()) if kl_d is not None else float(torch.cat(kls).mean())
    r, r_sh = float(torch.cat(recon).mean()), float(torch.cat(recon_sh).mean())
    is_gaussian_q = isinstance(q, torch.distributions.Normal)     # the MI estimator's q(z|x) is Gaussian
    return {"kl": kl, "kl_per_dim": [float(v) for v in kl_d] if kl_d is not None else None,
            "active_units": active_units(mu.numpy())["n_active"], "n_latent": int(mu.shape[1]),
            "mutual_info": mutual_information(a.numpy(), b.numpy(), seed=seed) if is_gaussian_q else None,
            "mi_max": float(torch.log(torch.tensor(float(mu.shape[0])))),
            "recon": r, "recon_shuffled": r_sh, "shuffle_gap": r_sh - r}


def collapse_warnings(diag: dict[str, Any], w: Words = words(None)) -> list[str]:
    """Plain-language warnings for one diagnostics dict (empty when the code is in use); ``w``: images or rows."""
    out = []
    if diag["kl"] < KL_MIN_NATS:
        out.append(f"POSTERIOR COLLAPSE: KL(q(z|x) || p(z)) is {diag['kl']:.3f} nats per {w.one} (< {KL_MIN_NATS}); "
                   f"{diag['active_units']}/{diag['n_latent']} units active. The code says almost nothing about x. "
                   "Try a KL warm-up (--kl-schedule linear --kl-warmup-steps N), --free-bits 0.1, or a smaller beta.")
    if diag["shuffle_gap"] < SHUFFLE_MIN_FRACTION * abs(diag["recon"]):
        out.append(f"DECODER IGNORES z: decoding each {w.one} from another {w.one}'s code changes its reconstruction "
                   f"NLL by only {diag['shuffle_gap']:.3f} nats ({diag['recon']:.1f} -> {diag['recon_shuffled']:.1f}). "
                   "The samples and reconstructions come from the decoder alone.")
    return out


def epoch_diagnostics(model: torch.nn.Module, x_val: Tensor, y_val: Tensor | None, epoch: int,
                      n: int = N_SUBSET) -> dict[str, Any]:
    """The trainer's per-epoch check on the first ``n`` validation images (recorded in the history)."""
    diag = collapse_diagnostics(model, x_val[:n], y_val[:n] if y_val is not None else None)
    diag["warnings"] = collapse_warnings(diag, shape_words(x_val.shape[1:]))
    return diag


def warn_collapse(name: str, diag: dict[str, Any], epoch: int) -> None:
    """Raise each of ``diag["warnings"]`` as a PosteriorCollapseWarning (the trainer calls it once, at the end:
    low KL early in training, e.g. during a KL warm-up, is expected and stays in the history only)."""
    for w in diag.get("warnings", []):
        warnings.warn(f"{name}, epoch {epoch}: {w}", PosteriorCollapseWarning, stacklevel=3)


def record_epoch(model: torch.nn.Module, x_val: Tensor, y_val: Tensor | None, record: dict[str, Any]) -> None:
    """``vaelab.train.fit``'s ``on_epoch`` hook: this epoch's diagnostics under ``record["diagnostics"]``.

    Only for stochastic models with at least 2 validation images (what `vaelab train`, `compare`
    and `sweep` record per epoch). Args: x_val: (N, ...) as modelled; y_val: (N,) or None.
    """
    if getattr(model, "is_stochastic", False) and x_val.shape[0] >= 2:
        record["diagnostics"] = epoch_diagnostics(model, x_val, y_val, epoch=record["epoch"])


def warn_history(name: str, history: list[dict[str, Any]]) -> None:
    """Warn once, about the model as trained: the warnings of the last epoch's diagnostics (if recorded)."""
    if history and history[-1].get("diagnostics"):
        warn_collapse(name, history[-1]["diagnostics"], history[-1]["epoch"])
