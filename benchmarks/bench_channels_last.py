"""Conv VAE training step, NCHW vs channels-last (NHWC), interleaved, CPU ms per step (time.process_time).

    /work/venv/bin/python benchmarks/bench_channels_last.py
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from vaelab.config import TrainConfig
    from vaelab.models import build_model, model_config
    from vaelab.train import make_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    setups = {}
    for name in ("contiguous", "channels_last"):
        m = build_model(model_config("vae", input_shape=(1, 28, 28), backbone="conv"))
        x = torch.rand(128, 1, 28, 28)
        if name == "channels_last":
            m = m.to(memory_format=torch.channels_last)
        setups[name] = (m, make_optimizer(m, TrainConfig()), x)
    res: dict[str, list[float]] = {k: [] for k in setups}
    for _ in range(5):
        for k, (m, opt, x) in setups.items():
            for i in range(12):
                if i == 2:
                    t = time.process_time()
                lt = m.loss(x)
                opt.zero_grad()
                lt.total.backward()
                opt.step()
            res[k].append((time.process_time() - t) / 10 * 1e3)
    for k, v in res.items():
        print(f"{k:14s} {statistics.median(v):7.1f} CPU ms/step  {[round(a, 1) for a in v]}")
    out = Path(__file__).parent / "results" / "channels_last.json"
    out.write_text(json.dumps({k: {"median_cpu_ms": statistics.median(v), "all": v} for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    main()
