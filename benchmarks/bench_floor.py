"""What the FLOP limit leaves room for: one vaelab training step split into its floors, in CPU time.

    /work/venv/bin/python benchmarks/bench_floor.py --threads 1
    /work/venv/bin/python benchmarks/bench_floor.py --batch 512 --threads 1
    /work/venv/bin/python benchmarks/bench_floor.py --side 8 --batch 64 --hidden 256,128 --latent 8 --threads 1
    /work/venv/bin/python benchmarks/bench_floor.py --iw --threads 1 [--hidden 512,256 --latent 16]

The "x limit" of bench_train.py divides a step's time by (counted FLOPs / the rate of a 1024 x 1024
float32 matmul). This script asks how close *any* fp32 trainer of the same model can get, by timing,
interleaved in one process and in CPU seconds (``time.process_time``), subnormal numbers flushed as vaelab does:

* ``gemm floor``: the matrix multiplies of one real vaelab step (MLP VAE 784-512-256-16, Bernoulli),
  recorded with a dispatch mode (op, shapes, strides: the forward ``addmm`` and the backward ``mm``
  exactly as autograd issues them) and replayed alone on fresh tensors. No elementwise op, no
  autograd, no allocation between them: a trainer cannot spend less on its matmuls.
* ``adamw floor``: one fused AdamW step on the model's parameters, alone: the kernel as vaelab's hand-derived
  path calls it (``vaelab.train.AdamWKernel``, without the optimiser's Python wrapper).
* ``vaelab step``: the whole step as ``vaelab.train.fit`` runs it by default (batch gather, the hand-derived
  objective and backward of vaelab.models.fused, gradient-norm guard, AdamWKernel); ``vaelab step, autograd``: the
  same step through ``model.loss`` and autograd (``--backward autograd``, and every model the fused step does
  not cover).

Each is printed in ms and in units of the limit. ``gemm + adamw`` is a floor no fp32 Adam-trained
step of this model can beat on this machine; the rest of a ``vaelab step`` is elementwise work and
per-op dispatch. ``--side 8 --batch 64 --hidden 256,128 --latent 8`` times the default digits compare's model.

``--iw`` does the same for one block of the IW-NLL (32 images x 128 importance samples, the library's CPU
block): the block's matmuls replayed alone; the Bernoulli likelihood's least elementwise work (one softplus
pass over the logits and a dot product with x: a transcendental per pixel that the FLOP count ignores);
and vaelab's block (``log_weights`` + the float64 logsumexp, as ``importance_weighted_curve`` runs it).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import matmul_gflops  # noqa: E402
from vaelab.io import atomic_write_json  # noqa: E402

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_", "aten::linear")   # linear: under inference_mode


def record_gemms(fn) -> list[tuple]:
    """(op overload, [(shape, stride) or scalar per arg], kwargs) of every matmul ``fn`` dispatches."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Rec(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func._schema.name in GEMM_OPS:
                calls.append((func, [(tuple(a.shape), tuple(a.stride())) if isinstance(a, torch.Tensor) else a
                                     for a in args], dict(kwargs)))
            return func(*args, **kwargs)

    with Rec():
        fn()
    return calls


def gemm_flops(calls) -> float:
    total = 0.0
    for func, args, _ in calls:
        shapes = [a[0] for a in args if isinstance(a, tuple) and isinstance(a[0], tuple)]
        if func._schema.name == "aten::linear":           # (input (..., in), weight (out, in), bias)
            total += 2 * math.prod(shapes[0][:-1]) * shapes[1][1] * shapes[1][0]
            continue
        a, b = shapes[-2], shapes[-1]
        batch = math.prod(a[:-2]) if len(a) > 2 else 1
        total += 2 * batch * a[-2] * a[-1] * b[-1]
    return total


def replay(calls):
    """Fresh tensors with the recorded shapes and strides; a closure that runs the matmuls alone."""
    import torch

    prepared = []
    for func, args, kwargs in calls:
        real = []
        for a in args:
            if isinstance(a, tuple) and isinstance(a[0], tuple):
                shape, stride = a
                t = torch.empty_strided(shape, stride)
                t.copy_(torch.randn(shape))
                real.append(t)
            else:
                real.append(a)
        prepared.append((func, real, kwargs))

    def run():
        for func, real, kwargs in prepared:
            func(*real, **kwargs)
    return run


def interleaved(variants: dict, repeats: int, steps: int) -> tuple[dict[str, list[float]], float]:
    """CPU ms per call of each variant (``steps`` calls a block, ``repeats`` blocks, order reversed every other
    block) and the median 1024^2 matmul rate measured between blocks (GFLOP per CPU-second)."""
    for fn in variants.values():
        fn(0)
    ms: dict[str, list[float]] = {v: [] for v in variants}
    gfl = []
    for r in range(repeats):
        gfl.append(matmul_gflops(clock=time.process_time))
        for v in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            t = time.process_time()
            for i in range(steps):
                variants[v](i)
            ms[v].append((time.process_time() - t) / steps * 1e3)
    return ms, statistics.median(gfl)


def iw_floor(args) -> None:
    """--iw: one IW-NLL block (32 images x 128 importance samples, the library's CPU block) split into its floors."""
    import torch
    import torch.nn.functional as F

    from vaelab.budget import flush_denormals
    from vaelab.models import build_model, model_config

    flush_denormals()                  # as vaelab.evaluate does
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hidden = tuple(int(h) for h in (args.hidden or "200,200").split(","))
    args.latent = args.latent or 50
    model = build_model(model_config("vae", input_shape=(1, 28, 28), n_latent=args.latent, hidden=hidden)).eval()
    b, k = 32, 128
    x = torch.rand(b, 1, 28, 28)
    eps = torch.randn(k, b, args.latent)

    def block(i: int) -> None:           # what importance_weighted_curve does per block
        with torch.inference_mode():
            lw = model.log_weights(x, None, k, eps=eps).double()
            torch.logsumexp(lw, dim=0)

    with torch.inference_mode():
        logits = model.decode(model.prior.rsample(*model.posterior(x), eps))          # (k, b, 1, 28, 28)
    flat, xf = logits.reshape(k, b, -1), x.reshape(b, -1)

    def bernoulli(i: int) -> None:       # the least a Bernoulli likelihood needs: one softplus pass + a dot product
        with torch.inference_mode():
            F.softplus(flat).sum(-1) - torch.einsum("kbp,bp->kb", flat, xf)

    from vaelab import losses

    softplus_form = losses.bernoulli_nll

    def bce_form(logits, xb):             # the library's form before 2026-12-02 (and training's): fused BCE
        return F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").flatten(-3).sum(-1)

    def block_bce(i: int) -> None:
        losses.bernoulli_nll = bce_form
        try:
            block(i)
        finally:
            losses.bernoulli_nll = softplus_form

    block(0)
    calls = record_gemms(lambda: block(1))
    flops = gemm_flops(calls)
    gemms = replay(calls)
    variants = {"gemm floor": lambda i: gemms(), "bernoulli floor": bernoulli, "vaelab block": block,
                "vaelab block, BCE form": block_bce}
    ms, rate = interleaved(variants, args.repeats, args.steps)
    limit_ms = flops / (rate * 1e9) * 1e3
    rows = {v: statistics.median(t) for v, t in ms.items()}
    rows["gemm + bernoulli"] = rows["gemm floor"] + rows["bernoulli floor"]
    print(f"IW-NLL block of MLP VAE 784-{'-'.join(map(str, hidden))}-{args.latent}: {b} images x {k} samples, {args.threads} "
          f"thread(s), {flops / (b * k) / 1e6:.3f} MFLOP per importance sample")
    print(f"1024^2 matmul: {rate:.1f} GFLOP per CPU-second -> FLOP limit {limit_ms:.2f} ms per block")
    print(f"{'':24s}{'CPU ms/block':>13s}{'x limit':>10s}")
    for v in ("gemm floor", "bernoulli floor", "gemm + bernoulli", "vaelab block", "vaelab block, BCE form"):
        print(f"{v:24s}{rows[v]:13.2f}{rows[v] / limit_ms:10.2f}")
    atomic_write_json(args.out, {"mode": "iw", "hidden": hidden, "latent": args.latent, "threads": args.threads,
                                 "flops_per_sample": flops / (b * k), "gflops_per_cpu_s": rate, "limit_ms": limit_ms,
                                 "ms": ms, "median_ms": rows, "x_limit": {v: t / limit_ms for v, t in rows.items()}})
    print(f"wrote {args.out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128, the issue's)")
    p.add_argument("--steps", type=int, default=30, help="steps per timed block (default 30)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved blocks per variant (default 7)")
    p.add_argument("--out", default=None, help="JSON to write (default results/floor.json, results/floor_iw.json)")
    p.add_argument("--iw", action="store_true", help="the IW-NLL block's floors instead of the training step's")
    p.add_argument("--hidden", default=None, help="hidden widths (default 512,256; with --iw 200,200: the likelihoods' "
                   "model)")
    p.add_argument("--latent", type=int, default=None, help="latent size (default 16; with --iw 50)")
    p.add_argument("--side", type=int, default=28, help="image side (default 28; 8 with --batch 64 --hidden 256,128 "
                   "--latent 8 is the default digits compare's model)")
    args = p.parse_args()
    args.out = args.out or str(Path(__file__).parent / "results" / ("floor_iw.json" if args.iw else "floor.json"))
    if args.iw:
        return iw_floor(args)
    import torch

    from vaelab.budget import flush_denormals
    from vaelab.models import build_model, model_config
    from vaelab.models.fused import fused_step
    from vaelab.train import AdamWKernel

    flush_denormals()                  # as vaelab's CLI and fit do, before the thread pool starts
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, side = args.batch, args.side
    hidden = tuple(int(h) for h in (args.hidden or "512,256").split(","))
    latent = args.latent or 16
    x = torch.rand(20000, 1, side, side).bernoulli_()
    model = build_model(model_config("vae", input_shape=(1, side, side), n_latent=latent, hidden=hidden))
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)           # the autograd step's
    opt_fused = torch.optim.AdamW(params, lr=1e-4, fused=True)     # the hand-derived step's, stepped as fit does
    adamw = AdamWKernel(opt_fused)
    buf = torch.empty(b, 1, side, side)
    perm = torch.randperm(x.shape[0])
    n_params = sum(q.numel() for q in params)
    fused = fused_step(model)

    def step(i: int) -> None:          # autograd: what fit runs with --backward autograd (and for other models)
        idx = perm[(i * b) % (20000 - b):(i * b) % (20000 - b) + b]
        xb = torch.index_select(x, 0, idx, out=buf)
        lt = model.loss(xb)
        opt.zero_grad(set_to_none=True)
        lt.total.backward()
        torch.linalg.vector_norm(torch.stack(torch._foreach_norm([q.grad for q in params])))  # the guard's norm
        opt.step()

    def step_fused(i: int) -> None:    # the hand-derived step: what fit runs by default (vaelab.models.fused)
        idx = perm[(i * b) % (20000 - b):(i * b) % (20000 - b) + b]
        xb = torch.index_select(x, 0, idx, out=buf)
        fused(xb)
        torch.linalg.vector_norm(torch.stack(torch._foreach_norm([q.grad for q in params])))
        adamw()

    step(0)
    step_fused(0)
    calls = record_gemms(lambda: step(1))
    flops = gemm_flops(calls)
    gemms = replay(calls)
    for q in params:                                   # gradients present for the optimiser-only variant
        q.grad = torch.randn_like(q) * 1e-3

    variants = {"gemm floor": lambda i: gemms(), "adamw floor": lambda i: adamw(), "vaelab step": step_fused,
                "vaelab step, autograd": step}
    ms, rate = interleaved(variants, args.repeats, args.steps)
    limit_ms = flops / (rate * 1e9) * 1e3
    med = {k: statistics.median(v) for k, v in ms.items()}
    arch = f"{side * side}-{'-'.join(map(str, hidden))}-{latent}"
    print(f"MLP VAE {arch}, batch {b}, {args.threads} thread(s): {len(calls)} matmuls per step, "
          f"{flops / 1e6:.0f} MFLOP per step ({flops / b / 1e6:.2f} per image), {n_params / 1e6:.2f} M parameters")
    print(f"1024^2 matmul: {rate:.1f} GFLOP per CPU-second -> FLOP limit {limit_ms:.2f} ms per step")
    print(f"{'':24s}{'CPU ms/step':>12s}{'x limit':>10s}")
    rows = dict(med)
    rows["gemm + adamw"] = med["gemm floor"] + med["adamw floor"]
    for k in ("gemm floor", "adamw floor", "gemm + adamw", "vaelab step", "vaelab step, autograd"):
        print(f"{k:24s}{rows[k]:12.2f}{rows[k] / limit_ms:10.2f}")
    for k in ("vaelab step", "vaelab step, autograd"):
        rest = med[k] - rows["gemm + adamw"]
        print(f"rest of the {k + ' (elementwise, dispatch)':44s}{rest:8.2f} ms = {rest / limit_ms:.2f}x")
    print(f"fused / autograd step: {med['vaelab step'] / med['vaelab step, autograd']:.2f}")
    gemm_rate = flops / (med["gemm floor"] / 1e3) / 1e9
    print(f"the step's own matmuls run at {gemm_rate:.1f} GFLOP per CPU-second "
          f"({gemm_rate / rate:.2f} of the 1024^2 rate)")
    atomic_write_json(args.out, {"model": arch, "batch": b, "threads": args.threads, "flops_per_step": flops,
                               "gflops_per_cpu_s": rate, "limit_ms": limit_ms, "ms": ms, "median_ms": rows,
                               "x_limit": {k: v / limit_ms for k, v in rows.items()},
                               "gemm_gflops_per_cpu_s": gemm_rate})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
