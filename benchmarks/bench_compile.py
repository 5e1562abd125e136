"""Does torch.compile pay for the training step? Compile time, then eager vs compiled ms/step, interleaved.

    /work/venv/bin/python benchmarks/bench_compile.py --threads 1

The objective (``vaelab.train._Objective``: the model's loss as a module) is compiled as
``fit(..., TrainConfig(compile=True))`` does; AdamW stays fused and eager.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backbone", default="mlp")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "compile.json"))
    args = p.parse_args()
    import torch

    from vaelab.config import TrainConfig
    from vaelab.models import build_model, model_config
    from vaelab.train import _Objective, make_optimizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(model_config("vae", input_shape=(1, 28, 28), backbone=args.backbone))
    opt = make_optimizer(model, TrainConfig())
    eager = _Objective(model)
    compiled = torch.compile(_Objective(model))
    x = torch.rand(128, 1, 28, 28)

    def step(obj) -> None:
        lt = obj(x, None, 1.0)
        opt.zero_grad(set_to_none=True)
        lt.total.backward()
        opt.step()

    t = time.perf_counter()
    step(compiled)
    step(compiled)
    compile_s = time.perf_counter() - t
    times = {"eager": [], "compiled": []}
    for _ in range(args.repeats):
        for name, obj in (("eager", eager), ("compiled", compiled)):
            step(obj)
            t = time.perf_counter()
            for _ in range(args.steps):
                step(obj)
            times[name].append((time.perf_counter() - t) / args.steps * 1e3)
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    saved = (e - c) / 1e3
    print(f"{args.backbone}: compile {compile_s:.1f} s; eager {e:.2f} ms/step, compiled {c:.2f} ms/step "
          f"({e / c:.2f}x); pays after {compile_s / saved:.0f} steps" if saved > 0 else
          f"{args.backbone}: compile {compile_s:.1f} s; eager {e:.2f} ms/step, compiled {c:.2f} ms/step: never pays")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"backbone": args.backbone, "threads": args.threads, "compile_seconds": compile_s,
                                          "eager_ms": e, "compiled_ms": c, "all": times}, indent=1))


if __name__ == "__main__":
    main()
