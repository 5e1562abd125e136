"""Which hot-loop changes pay: one training step of the MLP VAE (batch 128), variants interleaved in one process.

    /work/venv/bin/python benchmarks/bench_step_ablation.py --threads 1

Each variant changes one thing against vaelab's step (index_select into a preallocated buffer, fused
AdamW, no clipping when off, no host sync per step). Prints median ms/step over interleaved repeats.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "step_ablation.json"))
    args = p.parse_args()
    import torch

    from vaelab.config import TrainConfig
    from vaelab.models import build_model, model_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(20000, 1, 28, 28)
    model = build_model(model_config("vae", input_shape=(1, 28, 28)))
    params = list(model.parameters())
    opts = {"fused": torch.optim.AdamW(params, lr=1e-4, fused=True),
            "foreach": torch.optim.AdamW(params, lr=1e-4, foreach=True)}
    buf = torch.empty(128, 1, 28, 28)
    perm = torch.randperm(x.shape[0])

    def step(i: int, *, opt="fused", index="buffer", clip=False, sync=False) -> None:
        idx = perm[(i * 128) % 19000:(i * 128) % 19000 + 128]
        xb = torch.index_select(x, 0, idx, out=buf) if index == "buffer" else x[idx]
        lt = model.loss(xb)
        opts[opt].zero_grad(set_to_none=True)
        lt.total.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, math.inf)
        if sync:
            bool(torch.isfinite(lt.total)) and all(bool(torch.isfinite(v)) for v in lt.terms.values())
        opts[opt].step()

    import math

    variants = {"vaelab step": {}, "x[idx] copy": {"index": "copy"}, "foreach AdamW": {"opt": "foreach"},
                "clip_grad_norm_(inf)": {"clip": True}, "per-step NaN sync": {"sync": True},
                "all four (old loop)": {"index": "copy", "clip": True, "sync": True}}
    times = {k: [] for k in variants}
    for r in range(args.repeats):
        for k, kw in variants.items():
            for i in range(3):
                step(i, **kw)
            t = time.perf_counter()
            for i in range(args.steps):
                step(i, **kw)
            times[k].append((time.perf_counter() - t) / args.steps * 1e3)
    base = statistics.median(times["vaelab step"])
    print(f"{'variant':24s} {'ms/step':>8s} {'vs vaelab':>9s}   ({args.threads} threads)")
    res = {}
    for k, v in times.items():
        m = statistics.median(v)
        res[k] = {"ms_per_step": m, "ratio": m / base, "all": v}
        print(f"{k:24s} {m:8.2f} {m / base:9.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": args.threads, "variants": res}, indent=1))


if __name__ == "__main__":
    main()
