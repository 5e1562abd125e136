"""folder: decoding speed: N PNGs of SxS RGB in class sub-folders, decoded by vaelab.data.folder (first run),
then read back from the cache (second run). Prints a table and writes benchmarks/results/folder.json.

    python benchmarks/bench_folder.py                 # 10,000 PNGs of 64x64, 10 classes
    python benchmarks/bench_folder.py --n 2000 --size 32

Peak memory: VmHWM of this process (reset before each phase via /proc/self/clear_refs). The machine's load
average and CPU count are recorded beside the times: on a shared machine the decode time scales with it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _hwm() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="vaelab-bench-folder-") as tmp:
        root, cache = Path(tmp) / "imgs", Path(tmp) / "cache"
        os.environ["VAELAB_CACHE"] = str(cache)
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        yy, xx = np.mgrid[:args.size, :args.size]
        old = time.time() - 60
        for i in range(args.n):                   # smooth random blobs: PNG-compressible like real photos
            c = i % args.classes
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
            cx, cy, r = rng.uniform(0, args.size, 3)
            img = np.stack([np.clip(255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (r + 4) ** 2)) * k, 0, 255)
                            for k in rng.uniform(0.3, 1, 3)], -1).astype(np.uint8)
            p = root / f"c{c}" / f"{i:05d}.png"
            Image.fromarray(img).save(p)
            os.utime(p, (old, old))
        t_write = time.perf_counter() - t
        size_mb = sum(p.stat().st_size for p in root.rglob("*.png")) / 1e6

        from vaelab.data import load_dataset

        load_before = os.getloadavg()
        rows = {}
        for phase in ("decode", "cache"):
            _reset_hwm()
            t, cpu = time.perf_counter(), time.process_time()          # process CPU: every decoding thread
            d = load_dataset(f"folder:{root}")
            rows[phase] = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu,
                           "peak_rss_mb": _hwm() / 1e6}
        load_after = os.getloadavg()
    doc = {"n_images": args.n, "size": args.size, "classes": args.classes, "png_mb": size_mb,
           "write_seconds": t_write, "dataset": d.summary(), **rows, "cpu_count": os.cpu_count(),
           "loadavg_1min_before": load_before[0], "loadavg_1min_after": load_after[0]}
    print(f"{args.n} PNGs of {args.size}x{args.size} RGB ({size_mb:.1f} MB) on {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'phase':<8} {'seconds':>8} {'CPU s':>8} {'peak RSS (MB)':>14}")
    for phase, r in rows.items():
        print(f"{phase:<8} {r['seconds']:>8.2f} {r['cpu_seconds']:>8.2f} {r['peak_rss_mb']:>14.0f}")
    out = ROOT / "benchmarks" / "results" / "folder.json"
    from vaelab.io import atomic_write_json

    atomic_write_json(out, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
