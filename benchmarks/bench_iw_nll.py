"""Importance-weighted NLL of a trained checkpoint, K up to 5000, with time, throughput and peak memory.

    python benchmarks/bench_iw_nll.py runs/lik/fm-vae --ks 1,10,100,1000,5000 [--n-test N] [--out FILE.json]

Prints the ELBO <= IWAE-K curve (nats and bits/dim, mean +- standard error over test images), the
likelihood kind (vaelab.metrics.likelihood.likelihood_kind), active units, I(x; z) and KL per dimension
on the same test images, the wall time, importance samples per second and the peak RSS; writes it all
as JSON (default <ckpt>/iw_nll.json) and the curve as <ckpt>/iw_curve.png. The test split is the
data as modelled (for --binarize: the fixed seeded binarised draw every model is scored on).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaelab import preprocess  # noqa: E402
from vaelab.checkpoint import load_model  # noqa: E402
from vaelab.config import parse_ints  # noqa: E402
from vaelab.io import atomic_path, atomic_write_text  # noqa: E402
from vaelab.metrics.collapse import collapse_diagnostics  # noqa: E402
from vaelab.metrics.likelihood import importance_weighted_curve, likelihood_kind, negative_elbo  # noqa: E402
from vaelab.report.likelihood_figures import plot_iw_curve  # noqa: E402
from vaelab.sampling import reload_dataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import matmul_gflops  # noqa: E402


def flops_per_sample(model, x, y, b: int = 8, k: int = 16) -> float:
    """FLOPs (matmuls/convs, torch.utils.flop_counter) of one importance sample: log_weights of b images x k samples."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model.log_weights(x[:b], y[:b] if y is not None else None, k)
    return fc.get_total_flops() / (b * k)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="a model folder written by `vaelab train` (a VAE-family model)")
    p.add_argument("--ks", default="1,10,100,1000,5000", help="importance sample counts (default 1,10,100,1000,5000)")
    p.add_argument("--n-test", type=int, default=0, help="use the first N test images (default 0 = all)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="test images per batch (default 32, the library's; with --seed it fixes the noise)")
    p.add_argument("--chunk", type=int, default=None,
                   help="importance samples decoded at once per image (default: 4096 decodes per block on a CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file to write (default CKPT/iw_nll.json)")
    args = p.parse_args(argv)

    ck = load_model(args.ckpt)
    model, cfg = ck.model, ck.model.cfg
    data = reload_dataset(ck.config)
    x = preprocess.modelled(data.x_test, cfg, "test")
    y = data.y_test if model.is_conditional else None
    if args.n_test:
        x, y = x[: args.n_test], (y[: args.n_test] if y is not None else None)
    kind, note = likelihood_kind(cfg, ck.config.get("data"))
    flops = flops_per_sample(model, x, y)
    rate0 = matmul_gflops(clock=time.process_time)
    t0, cpu0 = time.perf_counter(), time.process_time()
    curve = importance_weighted_curve(model, x, y, ks=parse_ints(args.ks, "--ks"), batch_size=args.batch_size,
                                      chunk=args.chunk, seed=args.seed, progress=True, return_per_image=True)
    iw_cpu = time.process_time() - cpu0
    rate = max(rate0, matmul_gflops(clock=time.process_time))
    n_samples = int(x.shape[0]) * max(curve["k"])
    limit_cpu = n_samples * flops / (rate * 1e9)
    per_image = curve.pop("per_image_nll")
    elbo = negative_elbo(model, x, y, seed=args.seed)
    diag = collapse_diagnostics(model, x, y, seed=args.seed)
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_pix = cfg.n_pixels
    result = {"ckpt": str(args.ckpt), "model": cfg.model, "k_train": cfg.k, "likelihood": cfg.likelihood,
              "binarize": cfg.binarize, "dequantize": cfg.dequantize, "kind": kind, "note": note,
              "epochs": ck.config.get("training", {}).get("epochs_done"), "n_test": int(x.shape[0]),
              "neg_elbo": elbo["neg_elbo"], "neg_elbo_se": elbo["se"],
              "neg_elbo_bits_per_dim": elbo["neg_elbo"] / (n_pix * 0.6931471805599453), "curve": curve,
              "active_units": diag["active_units"], "n_latent": diag["n_latent"], "kl": diag["kl"],
              "mutual_info": diag["mutual_info"], "kl_per_dim": diag["kl_per_dim"], "shuffle_gap": diag["shuffle_gap"],
              "iw_seconds": curve["seconds"], "samples_per_s": curve["samples_per_s"], "total_seconds": seconds,
              "peak_rss_mib": peak_mib, "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
              "iw_cpu_seconds": iw_cpu, "flops_per_sample": flops, "gflops_per_cpu_s": rate,
              "limit_cpu_seconds": limit_cpu, "x_limit_cpu": iw_cpu / limit_cpu,
              "batch_size": args.batch_size, "chunk": args.chunk}
    out = Path(args.out) if args.out else Path(args.ckpt) / "iw_nll.json"
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    with atomic_path(out.with_suffix(".per_image.npy")) as tmp:      # IW-NLL(max K) per test image, for paired diffs
        with open(tmp, "wb") as f:
            np.save(f, per_image, allow_pickle=False)
    plot_iw_curve({cfg.model: {**curve, "neg_elbo": elbo["neg_elbo"]}}, out.with_name("iw_curve.png"), kind=kind)
    label = "NLL" if kind == "nll" else "training objective"
    print(f"{args.ckpt}: {cfg.model}, {kind} ({note})")
    print(f"  -ELBO            {elbo['neg_elbo']:9.2f} +- {elbo['se']:.2f} nats")
    for k, v, se, b in zip(curve["k"], curve["nll"], curve["se"], curve["bits_per_dim"]):
        print(f"  IW {label} K={k:<5d} {v:9.2f} +- {se:.2f} nats  {b:.4f} bits/dim")
    def nats(v):   # None where a prior has no closed-form per-dimension split (uniform, mog, vamp)
        return "n/a" if v is None else f"{v:.2f}"

    print(f"  active units {diag['active_units']}/{diag['n_latent']}, KL {nats(diag['kl'])} nats, "
          f"I(x;z) {nats(diag['mutual_info'])} nats (max log N = {nats(diag['mi_max'])})")
    print(f"  {x.shape[0]} test images, {curve['seconds']:.0f} s for the IW curve "
          f"({curve['samples_per_s']:.0f} samples/s, {torch.get_num_threads()} threads), peak RSS {peak_mib:.0f} MiB")
    print(f"  {iw_cpu:.0f} CPU-s = {n_samples / iw_cpu:.0f} samples per CPU-second; FLOP limit {limit_cpu:.0f} CPU-s "
          f"({flops / 1e6:.3f} MFLOP per sample at {rate:.1f} GFLOP per CPU-second) -> {iw_cpu / limit_cpu:.2f}x the limit")
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
