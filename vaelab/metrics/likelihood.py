"""Likelihood bounds of a trained VAE-family model, in bounded memory.

negative ELBO  = E_q[-log p(x|z)] + KL(q(z|x) || p(z))
IW-NLL (K)     = -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)      (Burda et al. 2016)

-ELBO >= IW-NLL(K) >= -log p(x), and IW-NLL(K) decreases towards -log p(x) as K grows. The K
importance samples of each image are drawn in chunks and combined with a running logsumexp, so
memory is bounded by (batch_size x chunk) decodes whatever K is.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

import torch
from torch import Tensor


K_CURVE = (1, 10, 100, 1000, 5000)   # the report's ELBO <= IWAE-K <= log p(x) curve


def _offset(model: torch.nn.Module) -> float:
    """Nats per image that turn -log p(y) of dequantised y into the NLL of the discrete pixels (D log L)."""
    from vaelab.preprocess import nll_offset

    cfg = getattr(model, "cfg", None)
    return nll_offset(cfg) if cfg is not None else 0.0


def decode_block_rows(device: torch.device) -> int:
    """Decodes per block for importance sampling: small on a CPU (cache-resident), large on a GPU."""
    return 131072 if torch.device(device).type == "cuda" else 4096


@torch.inference_mode()
def importance_weighted_curve(model: torch.nn.Module, x: Tensor, y: Tensor | None = None,
                              ks: tuple[int, ...] = K_CURVE, batch_size: int = 32, chunk: int | None = None,
                              seed: int = 0, progress: bool = False, return_per_image: bool = False) -> dict[str, Any]:
    """IW-NLL(K) for several K from one pass: the first K of max(ks) nested samples give IW-NLL(K).

    Each image's samples are drawn in chunks of at most ``chunk`` and combined with a running
    logsumexp (float64), so memory is O(batch_size x chunk) decodes whatever max(ks) is; the running
    sum is read off whenever the sample count reaches one of ``ks``. The estimates for different K
    share samples (so the curve is smooth), and each is the usual unbiased estimate of its bound.

    Args:
        model: a model with ``log_weights(x, y, k) -> (K, B)`` (the VAE family)
        x: (N, C, H, W) the data as modelled (``vaelab.preprocess.modelled(x, cfg, "test")``); y: (N,) or None
        batch_size: images per batch. It fixes which noise each image gets (one (batch, D) draw per
            sample), so it is part of the seed: the same batch size and seed give the same numbers.
        chunk: importance samples decoded at once per image; None: ``decode_block_rows(device) //
            batch_size`` (4096 decodes per block on a CPU, where the (rows x pixels) temporaries then
            stay in cache: 1.8x faster than 32k-row blocks, benchmarks/README.md; 128k on a GPU).
            Any chunk gives the same value.
    Returns:
        {"k": [K...], "nll": [nats per image], "se": [standard error of each mean], "bits_per_dim": [...],
         "n": N, "offset_nats": D log L added for dequantised data (else 0), "seconds": wall time,
         "samples_per_s": importance samples per second}; with ``return_per_image`` also
        "per_image_nll": (N,) float64 numpy array of IW-NLL(max K) per image (for paired comparisons)
    """
    if not hasattr(model, "log_weights"):
        raise TypeError(f"{type(model).__name__} has no likelihood (deterministic models have none).")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"importance sample counts must be >= 1, got {ks}")
    k_max = ks[-1]
    model.eval()
    device = next(model.parameters()).device
    n_latent = model.cfg.n_latent
    if chunk is None:
        chunk = max(1, decode_block_rows(device) // batch_size)
    from vaelab import budget   # one block of decodes: (batch x chunk) rows of pixels, with ~4 temporaries each

    n_pixels = math.prod(x.shape[1:])
    budget.check(budget.array_bytes((batch_size * min(chunk, k_max), n_pixels)) * 4, f"IW-NLL with K={k_max}",
                 f"blocks of {batch_size} images x {min(chunk, k_max)} samples x {n_pixels} pixels",
                 "Raise --max-memory if the memory is there (the block size is fixed by the device).")
    # One (B, D) noise draw per importance sample, in sample order: any chunk size consumes the
    # generator identically, so chunked and one-batch evaluation see the very same z_k.
    gen = torch.Generator().manual_seed(seed)
    per_k: dict[int, list[Tensor]] = {k: [] for k in ks}
    n = x.shape[0]
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n * k_max, desc=f"IW-NLL K={k_max}", unit="sample", unit_scale=True, mininterval=0.5,
                   file=sys.stderr)
    try:
        for i in range(0, n, batch_size):
            xb = x[i:i + batch_size].to(device)
            yb = y[i:i + batch_size].to(device) if y is not None else None
            acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=device)
            done = 0
            for k in ks:
                while done < k:
                    m = min(chunk, k - done)
                    eps = torch.stack([torch.randn(xb.shape[0], n_latent, generator=gen) for _ in range(m)])
                    lw = model.log_weights(xb, yb, m, eps=eps.to(device)).double()   # (m, B)
                    acc = torch.logaddexp(acc, torch.logsumexp(lw, dim=0))
                    done += m
                    if bar is not None:
                        bar.update(m * xb.shape[0])
                per_k[k].append(-(acc - math.log(k)).cpu())
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    offset = _offset(model)
    n_pix = math.prod(x.shape[1:])
    out: dict[str, Any] = {"k": list(ks), "nll": [], "se": [], "bits_per_dim": [], "n": n, "offset_nats": offset,
                           "seconds": seconds, "samples_per_s": n * k_max / seconds if seconds > 0 else float("nan")}
    for k in ks:
        nll = torch.cat(per_k[k]) + offset
        mean = float(nll.mean())
        out["nll"].append(mean)
        out["se"].append(float(nll.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"))
        out["bits_per_dim"].append(mean / (n_pix * math.log(2)))
    if return_per_image:
        out["per_image_nll"] = (torch.cat(per_k[k_max]) + offset).numpy()
    return out


def importance_weighted_nll(model: torch.nn.Module, x: Tensor, y: Tensor | None = None, k: int = 1000,
                            batch_size: int = 32, chunk: int | None = None, seed: int = 0,
                            progress: bool = False) -> dict[str, float]:
    """Importance-weighted estimate of -log p(x) per image (nats), with its standard error.

    Args:
        model: a model with ``log_weights(x, y, k) -> (K, B)`` (the VAE family)
        x: (N, C, H, W) the data as modelled (binarised / dequantised: ``vaelab.preprocess.modelled``);
            y: (N,) labels for conditional models
        k: importance samples per image; chunk: samples decoded at once per image
    Returns:
        {"nll", "se", "bits_per_dim", "k", "n", "seconds"}: mean over images, standard error of that mean,
        nll / (pixels * ln 2). For dequantised data nll includes D log L (NLL of the discrete pixels).
    """
    c = importance_weighted_curve(model, x, y, ks=(k,), batch_size=batch_size, chunk=chunk, seed=seed,
                                  progress=progress)
    return {"nll": c["nll"][0], "se": c["se"][0], "bits_per_dim": c["bits_per_dim"][0], "k": k, "n": c["n"],
            "seconds": c["seconds"]}


def likelihood_kind(model_cfg: Any, data_meta: dict[str, Any] | None = None) -> tuple[str, str]:
    """Whether a model's likelihood numbers are an NLL of the data as modelled, and why.

    The one rule vaelab uses to label likelihood numbers. Returns (kind, note) with kind:
      "nll"                  a proper likelihood: Bernoulli on binarised pixels, or a density (gaussian,
                             continuous-bernoulli) on dequantised pixels, reported for the discrete data
      "training objective"   anything else: the number is what training minimised, not -log p(x)
      "n/a"                  deterministic models (no p(x) at all)
    beta, free bits and KL schedules do not change the kind: the IW estimate bounds log p(x) of the
    model's generative p(z) p(x|z) whatever objective trained it.

    Args:
        model_cfg: a ModelConfig (or its dict); data_meta: the "data" block of config.json, optional;
            ``{"is_binary": True}`` marks data that is already binary (then no --binarize is needed)
    """
    from vaelab.models import ALL_MODELS, config_from_dict

    cfg = config_from_dict(dict(model_cfg)) if isinstance(model_cfg, dict) else model_cfg
    if not ALL_MODELS[cfg.model].has_likelihood:
        return "n/a", f"{cfg.model} is deterministic: it defines no p(x), so there is no likelihood."
    if cfg.likelihood == "categorical":
        return "nll", ("categorical likelihood of the token sequence (discrete data): a true NLL in nats per "
                       "sequence, <eos> included, padding excluded.")
    if cfg.likelihood == "bernoulli":
        if cfg.binarize != "none":
            return "nll", (f"Bernoulli likelihood of binarised pixels ({cfg.binarize} binarisation in training; the "
                           "test set is one fixed seeded draw, the same for every model): a true NLL in nats per image, "
                           "bits/dim over the pixels.")
        if (data_meta or {}).get("is_binary"):
            return "nll", "Bernoulli likelihood of data that is already binary: a true NLL."
        return "training objective", ("Bernoulli cross-entropy of grey pixels: the Bernoulli is a distribution on "
                                      "{0, 1}, so on grey images it is not a normalised likelihood (not an NLL). For an NLL "
                                      "train with --binarize dynamic, or --likelihood continuous-bernoulli "
                                      "--dequantize 256.")
    from vaelab.data.base import is_vector_shape

    if is_vector_shape(getattr(cfg, "input_shape", ())):
        if cfg.likelihood == "gaussian":
            return "nll", ("Gaussian density of the standardised continuous features"
                           + (" (learned per-feature sigma)" if cfg.learn_sigma else f" (sigma {cfg.sigma:g})")
                           + ": a true NLL in nats per example of the standardised data (in the file's units add "
                             "sum_d log std_d).")
        return "training objective", (f"the {cfg.likelihood} likelihood models values in [0, 1]; standardised features "
                                      "are unbounded, so this is not a likelihood of them. Use --likelihood gaussian.")
    name = "Gaussian" + (" (learned per-pixel sigma)" if cfg.learn_sigma else f" (sigma {cfg.sigma:g})") \
        if cfg.likelihood == "gaussian" else "continuous Bernoulli"
    if cfg.dequantize:
        return "nll", (f"{name} density of dequantised pixels y = (v + u) / {cfg.dequantize}, reported as the NLL of "
                       f"the discrete {cfg.dequantize}-level pixels: -log p(y) + D log {cfg.dequantize} nats per "
                       f"image; bits/dim on the 0..{cfg.dequantize - 1} scale.")
    return "training objective", (f"{name} density evaluated on discrete pixels: not a likelihood of them (a density "
                                  "can grow without bound on a grid). For an NLL, train with --dequantize 256.")


@torch.inference_mode()
def negative_elbo(model: torch.nn.Module, x: Tensor, y: Tensor | None = None, batch_size: int = 1024,
                  seed: int = 0, return_per_image: bool = False) -> dict[str, Any]:
    """Mean over images of -ELBO = E_q[-log p(x|z)] + KL (one-sample reconstruction, analytic KL), nats.

    x is the data as modelled; for dequantised data "recon" includes D log L (discrete pixels).
    With ``return_per_image`` also "per_image": (N,) float64 numpy array of -ELBO per image.
    """
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
            recon.append(model.recon_nll(model.decode(z, yb, xb), xb).double().cpu())
            kl.append(model.kl(q, z).double().cpu())          # the prior's KL: closed form, or MC at z
    finally:
        torch.set_rng_state(gen_state)
    r, k_ = torch.cat(recon) + _offset(model), torch.cat(kl)
    n = r.shape[0]
    se = float((r + k_).std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    out: dict[str, Any] = {"neg_elbo": float((r + k_).mean()), "se": se, "recon": float(r.mean()),
                           "kl": float(k_.mean())}
    if return_per_image:
        out["per_image"] = (r + k_).numpy()
    return out
