"""The one batched pass of a model over a split: encode, decode or score it in fixed-size batches.

``over_batches(fn, *tensors)`` cuts aligned tensors (None passes through as None) into batches of
``batch_size`` rows, moves each batch to the model's device, calls ``fn`` and concatenates the
results on the CPU. Everything in vaelab that runs a model over many inputs goes through it, so the
batch size (and with it the exact floating-point result) is the same everywhere.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

BATCH_SIZE = 2048


def batches(n: int, batch_size: int = BATCH_SIZE) -> Iterator[slice]:
    """Consecutive slices of ``range(n)``, each at most ``batch_size`` long."""
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def over_batches(fn: Callable[..., Tensor | Sequence[Tensor | None]], *tensors: Tensor | None,
                 device: torch.device | str = "cpu", batch_size: int = BATCH_SIZE
                 ) -> Tensor | tuple[Tensor | None, ...]:
    """``fn`` applied to aligned batches of ``tensors`` (each (N, ...), or None), concatenated on the CPU.

    ``fn`` returns a tensor (B, ...) or a tuple of them (an entry may be None: it stays None). With N = 0
    the result is what ``fn`` returns for empty inputs (it is called once on the empty tensors).
    """
    n = next(t.shape[0] for t in tensors if t is not None)
    outs: list = []
    for s in batches(n, batch_size) if n else [slice(0, 0)]:
        outs.append(fn(*(t[s].to(device) if t is not None else None for t in tensors)))
    if isinstance(outs[0], Tensor):
        return torch.cat([o.cpu() for o in outs])
    return tuple(None if parts[0] is None else torch.cat([p.cpu() for p in parts]) for parts in zip(*outs))


def encode(model: torch.nn.Module, x: Tensor, y: Tensor | None = None, batch_size: int = BATCH_SIZE
           ) -> tuple[Tensor, Tensor | None]:
    """Posterior means (N, D) float32 and log-variances (N, D) (None for deterministic models), on the CPU.

    Args: x (N, C, H, W) (or (N, T) token ids); y (N,) labels, used only by a label-conditioned model.
    """
    y = y if model.is_conditional else None

    def step(xb: Tensor, yb: Tensor | None) -> tuple[Tensor, Tensor | None]:
        q = model.encode(xb, yb)
        if not model.is_stochastic:
            return q.mean.float(), None
        # the log-variance of q(z|x) (for a non-Gaussian posterior, --prior uniform|laplace: of its moment-matched Gaussian)
        logvar = 2 * q.scale.log() if isinstance(q, torch.distributions.Normal) else q.variance.log()
        return q.mean.float(), logvar.float()

    return over_batches(step, x, y, device=device_of(model), batch_size=batch_size)


def encode_means(model: torch.nn.Module, x: Tensor, y: Tensor | None = None, batch_size: int = BATCH_SIZE
                 ) -> Tensor:
    """Posterior means (the AE's codes): x (N, ...) -> (N, D) float32 on the CPU (puts the model in eval mode)."""
    model.eval()
    return encode(model, x, y, batch_size)[0]


def decode_mean(model: torch.nn.Module, z: Tensor, y: Tensor | None = None, batch_size: int = BATCH_SIZE) -> Tensor:
    """z (N, D) -> the likelihood's mean images (N, C, H, W) in [0, 1], float32 on the CPU."""
    y = y if model.is_conditional else None
    return over_batches(lambda zb, yb: model.x_mean(model.decode(zb, yb)).float(), z, y,
                        device=device_of(model), batch_size=batch_size)


def reconstruct(model: torch.nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
    """x (N, C, H, W) -> its reconstruction through the posterior mean, (N, C, H, W) in [0, 1] on the CPU."""
    return decode_mean(model, encode(model, x, y)[0], y)


def recon_nll(model: torch.nn.Module, z: Tensor, x: Tensor, y: Tensor | None = None,
              batch_size: int = BATCH_SIZE) -> Tensor:
    """-log p(x | z) per input, (N,) float64 on the CPU. Args: z (N, D), x (N, C, H, W), y (N,) or None."""
    y = y if model.is_conditional else None
    return over_batches(lambda zb, xb, yb: model.recon_nll(model.decode(zb, yb, xb), xb).double(), z, x, y,
                        device=device_of(model), batch_size=batch_size)


def split_features(judge: torch.nn.Module, data: object, split: str) -> Tensor:
    """Judge features of ``data.x_<split>`` ("test": the reference of every sample metric; "train": the novelty
    reference), memoised on the judge: a comparison evaluates many models against the same split."""
    x = getattr(data, f"x_{split}")
    memo = judge.__dict__.setdefault(f"_vaelab_{split}_features", {})
    key = (data.fingerprint, int(x.shape[0]))
    if key not in memo:
        memo[key] = judge.features(x)
    return memo[key]
