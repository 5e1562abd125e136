"""The report's figures of a run folder drawn in one process against in N local workers, interleaved.

    python benchmarks/bench_figures.py RUN                  # RUN: a `vaelab compare` run folder; 2 workers, 2 rounds
    python benchmarks/bench_figures.py RUN --workers 2 --rounds 3

Each round draws every figure of RUN (its metrics.json and arrays/) with ``vaelab.report.figures.draw_run`` (one
process, this one) and with ``vaelab.compare.draw_figures`` (one unit per figure in ``--workers`` workers forked
from the fork server that `vaelab compare` starts, started here first and given time to load). Prints wall and
this process's CPU seconds of each, then each figure's time drawn alone in this process (after the rounds, so
matplotlib is warm). The figures are redrawn into RUN/figures (the same bytes). Writes
benchmarks/results/figures.json.
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from vaelab.compare import draw_figures
    from vaelab.config import COMPARE_PRELOAD
    from vaelab.executor import start_fork_server
    from vaelab.report.figures import draw_run, draw_unit, figure_names

    doc = json.loads((args.run / "metrics.json").read_text())
    start_fork_server(COMPARE_PRELOAD, args.workers)
    time.sleep(8)                                   # the server's imports, which `vaelab compare` overlaps
    times: dict[str, list[tuple[float, float]]] = {"one process": [], f"{args.workers} workers": []}
    for r in range(args.rounds):
        for label, draw in (("one process", lambda: draw_run(args.run, doc)),
                            (f"{args.workers} workers", lambda: draw_figures(args.run, doc, args.workers))):
            t, c = time.perf_counter(), time.process_time()
            n = len(draw())
            times[label].append((time.perf_counter() - t, time.process_time() - c))
            print(f"round {r + 1}, {label}: {n} figures, wall {times[label][-1][0]:.2f} s, "
                  f"driver CPU {times[label][-1][1]:.2f} s", flush=True)
    for label, xs in times.items():
        print(f"{label}: median wall {statistics.median(x[0] for x in xs):.2f} s")
    each = {}
    for name in figure_names(args.run, doc):
        t = time.perf_counter()
        draw_unit({"run": str(args.run), "doc": doc, "name": name})
        each[name] = time.perf_counter() - t
        print(f"  {name:28s} {each[name]:.3f} s")
    from vaelab.io import atomic_write_json

    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    atomic_write_json(ROOT / "benchmarks" / "results" / "figures.json",
                      {"run": str(args.run), "workers": args.workers, "wall_and_cpu_s": times, "each_s": each})


if __name__ == "__main__":
    main()
