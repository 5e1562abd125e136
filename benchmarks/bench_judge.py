"""The judge's training time: the Fashion-MNIST judge (a small CNN) from an empty cache, wall and CPU time.

    .venv/bin/python benchmarks/bench_judge.py                  # Fashion-MNIST, torch's default threads
    .venv/bin/python benchmarks/bench_judge.py --threads 1      # one thread
    .venv/bin/python benchmarks/bench_judge.py --dataset digits # the MLP judge of the default compare

Trains ``vaelab.judge.load_or_train_judge(..., retrain=True)`` into a temporary cache (the user's
cache is untouched), prints the epochs, wall seconds, CPU seconds, validation and test accuracy,
and writes them to benchmarks/results/judge-<dataset>.json. Target: <= 3 minutes at >= 0.91 test
accuracy on Fashion-MNIST (DESIGN.md). The machine may be shared: CPU time is the comparable number.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    from vaelab.data import load_dataset
    from vaelab.io import atomic_write_json
    from vaelab.judge import load_or_train_judge

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, seed=0)
    with tempfile.TemporaryDirectory() as cache:
        t0, c0 = time.perf_counter(), time.process_time()
        judge = load_or_train_judge(data, cache_dir=cache, seed=args.seed, progress=False, retrain=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        info = json.loads(next(Path(cache).glob("judge/*/config.json")).read_text())["training"]
    row = {"dataset": data.name, "arch": judge.arch, "n_train": len(data.x_train), "threads": torch.get_num_threads(),
           "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"], "wall_s": round(wall, 1),
           "cpu_s": round(cpu, 1), "val_accuracy": info["val_accuracy"], "test_accuracy": judge.test_accuracy,
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(row, indent=1))
    atomic_write_json(ROOT / "benchmarks" / "results" / f"judge-{data.name}.json", row)


if __name__ == "__main__":
    main()
