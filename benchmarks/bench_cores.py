"""What a second core buys on this machine: one process alone against two at once, same work, interleaved.

    python benchmarks/bench_cores.py                  # 3 rounds of each workload, one thread per process
    python benchmarks/bench_cores.py --rounds 5 --workloads mlp-step

`vaelab compare --workers 2` can be at best (its serial part aside) as fast as two single-thread processes
that share the machine. On a VM the two vCPUs may be hyperthreads of one physical core or share the memory
bus and the L3, so two processes can each run slower than one alone. This script measures that floor: each
workload is a fixed amount of single-thread work run in a child process, once alone and once as two children
at the same time (order alternating round by round); per child it records wall and CPU seconds
(``time.process_time``). Reported per workload: the median wall of a child alone and in a pair, the
**slowdown** (pair / alone) and what it bounds: two workers finish two units in ``slowdown`` times one unit's
time, so ``--workers 2`` takes at least ``slowdown / 2`` of the ``--workers 1`` wall for perfectly parallel
units (0.5 on two independent cores).

Workloads (one torch thread each):
* ``matmul``: 1024 x 1024 float32 matmuls (the FLOP-limit probe of the other benchmarks);
* ``mlp-step``: vaelab's VAE training step on 784-512-256-16, batch 128 (the Fashion-MNIST units);
* ``digits-step``: the same step on the default digits compare's model (8 x 8 images, 256-128-8, batch 64).

Writes benchmarks/results/cores.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORK = {"matmul": 60, "mlp-step": 300, "digits-step": 3000}    # iterations per child: a few seconds alone


def child(workload: str) -> None:
    """Do ``WORK[workload]`` iterations after a warm-up; print {"wall": s, "cpu": s} as JSON."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if workload == "matmul":
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)

        def one(i: int) -> None:
            torch.mm(a, b)
    else:
        from vaelab.models import build_model, model_config

        # the Fashion-MNIST example's model, batch 128; the default digits compare's (as it resolves), batch 64
        shape, hidden, latent, bs = (((1, 28, 28), (512, 256), 16, 128) if workload == "mlp-step"
                                     else ((1, 8, 8), (256, 128), 8, 64))
        model = build_model(model_config("vae", input_shape=shape, n_latent=latent, hidden=hidden))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        x = torch.rand(4096, *shape).bernoulli_()

        def one(i: int) -> None:
            lo = (i * bs) % (len(x) - bs)
            lt = model.loss(x[lo:lo + bs])
            opt.zero_grad(set_to_none=True)
            lt.total.backward()
            opt.step()
    for i in range(max(3, WORK[workload] // 20)):     # warm-up: allocator, caches, first-call dispatch
        one(i)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(WORK[workload]):
        one(i)
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))


def _run(workload: str, n: int) -> list[dict]:
    """``n`` children of ``workload`` started together; their results."""
    procs = [subprocess.Popen([sys.executable, __file__, "--child", workload], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
             for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"bench_cores: a {workload} child failed")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of alone + pair (default 3)")
    p.add_argument("--workloads", default=",".join(WORK), help=f"comma list of {', '.join(WORK)} (default all)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "cores.json"), help="JSON to write")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in workloads if w not in WORK]
    if bad:
        raise SystemExit(f"bench_cores: unknown workload {bad[0]!r}; choose from {', '.join(WORK)}")
    res: dict[str, dict[str, list[float]]] = {w: {"alone": [], "pair": [], "alone_cpu": [], "pair_cpu": []}
                                              for w in workloads}
    for r in range(args.rounds):
        for w in workloads:
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                kids = _run(w, n)
                key = "alone" if n == 1 else "pair"
                res[w][key] += [k["wall"] for k in kids]
                res[w][key + "_cpu"] += [k["cpu"] for k in kids]
                print(f"round {r + 1}: {w:12s} {key:5s} wall " + ", ".join(f"{k['wall']:.2f}" for k in kids), flush=True)
    print(f"\n{'workload':12s}{'alone s':>10s}{'pair s':>10s}{'slowdown':>10s}{'CPU slowdown':>14s}"
          f"{'best w2/w1':>12s}")
    summary = {}
    for w, v in res.items():
        med = {k: statistics.median(x) for k, x in v.items()}
        slow, cslow = med["pair"] / med["alone"], med["pair_cpu"] / med["alone_cpu"]
        summary[w] = {**med, "slowdown": slow, "cpu_slowdown": cslow, "best_workers2_ratio": slow / 2}
        print(f"{w:12s}{med['alone']:10.2f}{med['pair']:10.2f}{slow:10.2f}{cslow:14.2f}{slow / 2:12.2f}")
    from vaelab.io import atomic_write_json

    atomic_write_json(args.out, {"rounds": args.rounds, "runs": res, "summary": summary})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
