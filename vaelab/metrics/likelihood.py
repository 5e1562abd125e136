"""Likelihood bounds of a trained VAE-family model, in bounded memory.

negative ELBO  = E_q[-log p(x|z)] + KL(q(z|x) || p(z))
IW-NLL (K)     = -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)      (Burda et al. 2016)

-ELBO >= IW-NLL(K) >= -log p(x), and IW-NLL(K) decreases towards -log p(x) as K grows. The K
importance samples of each image are drawn in chunks and combined with a running logsumexp, so
memory is bounded by (batch_size x chunk) decodes whatever K is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


@torch.inference_mode()
def importance_weighted_nll(model: torch.nn.Module, x: Tensor, y: Tensor | None = None, k: int = 1000,
                            batch_size: int = 256, chunk: int = 500, seed: int = 0,
                            progress: bool = False) -> dict[str, float]:
    """Importance-weighted estimate of -log p(x) per image (nats), with its standard error.

    Args:
        model: a model with ``log_weights(x, y, k) -> (K, B)`` (the VAE family)
        x: (N, C, H, W) in [0, 1]; y: (N,) labels for conditional models
        k: importance samples per image; chunk: samples decoded at once per image
    Returns:
        {"nll", "se", "bits_per_dim", "k", "n"}: mean over images, standard error of that mean,
        nll / (pixels * ln 2).
    """
    if not hasattr(model, "log_weights"):
        raise TypeError(f"{type(model).__name__} has no likelihood (deterministic models have none).")
    model.eval()
    device = next(model.parameters()).device
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    per_image = []
    n = x.shape[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n * k, desc=f"IW-NLL K={k}", unit="sample", unit_scale=True, mininterval=0.5)
    try:
        for i in range(0, n, batch_size):
            xb = x[i:i + batch_size].to(device)
            yb = y[i:i + batch_size].to(device) if y is not None else None
            acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=device)
            done = 0
            while done < k:
                m = min(chunk, k - done)
                lw = model.log_weights(xb, yb, m).double()           # (m, B)
                acc = torch.logaddexp(acc, torch.logsumexp(lw, dim=0))
                done += m
                if bar is not None:
                    bar.update(m * xb.shape[0])
            per_image.append(-(acc - math.log(k)).cpu())
    finally:
        torch.set_rng_state(gen_state)
        if bar is not None:
            bar.close()
    nll = torch.cat(per_image)
    n_pix = math.prod(x.shape[1:])
    mean = float(nll.mean())
    se = float(nll.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return {"nll": mean, "se": se, "bits_per_dim": mean / (n_pix * math.log(2)), "k": k, "n": n}


@torch.inference_mode()
def negative_elbo(model: torch.nn.Module, x: Tensor, y: Tensor | None = None, batch_size: int = 1024,
                  seed: int = 0) -> dict[str, float]:
    """Mean over images of -ELBO = E_q[-log p(x|z)] + KL (one-sample reconstruction, analytic KL), nats."""
    from vaelab import losses

    model.eval()
    device = next(model.parameters()).device
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    recon, kl = [], []
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(device)
            yb = y[i:i + batch_size].to(device) if y is not None else None
            q = model.encode(xb, yb)
            z = q.rsample()
            recon.append(model.recon_nll(model.decode(z, yb), xb).double().cpu())
            kl.append(losses.gaussian_kl(q.loc, 2 * q.scale.log()).double().cpu())
    finally:
        torch.set_rng_state(gen_state)
    r, k_ = torch.cat(recon), torch.cat(kl)
    return {"neg_elbo": float((r + k_).mean()), "recon": float(r.mean()), "kl": float(k_.mean())}
