"""Wall time of `vaelab compare`, end to end and split by phase, on the default and on Fashion-MNIST.

    /work/venv/bin/python benchmarks/bench_compare.py                 # default (digits) and fashion-mnist
    /work/venv/bin/python benchmarks/bench_compare.py --only default
    /work/venv/bin/python benchmarks/bench_compare.py --only default-inliers       # the test-time section's share
    /work/venv/bin/python benchmarks/bench_compare.py --from-run runs/fm-compare   # a run made before
    /work/venv/bin/python benchmarks/bench_compare.py --only default --against ../before --rounds 2
        # this checkout against another one (e.g. `git worktree add --detach ../before d0f07d7`), interleaved


Runs ``python -m vaelab compare`` in a subprocess (with ``/usr/bin/time``-style CPU seconds from
``resource.getrusage`` of the child) and prints the phases compare records in ``metrics.json``:
``timings`` (data, judge, reference rows, train:<model>, evaluate:<model>, pairs_2d, figures,
report, total) and, inside each evaluate phase, the metric families
(``models.<name>.timings``: encode, reconstruction, likelihood, generation:prior / gmm,
interpolation, latent, collapse, denoising). A run written before compare recorded ``data``,
``train:*`` and ``report`` shows each model's training time from its epochs (``train.seconds``)
and the unaccounted rest as ``other``. Target (DESIGN.md): the default under 2 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
CASES = {"default": [], "fashion-mnist": ["--dataset", "fashion-mnist"],
         # the test-time section (issue 17): at most 20 % of the wall time of the compare it is part of
         "default-inliers": ["--inliers", "0,1,2,3,4"]}


def breakdown(metrics: dict) -> list[tuple[str, float]]:
    """(phase, seconds) rows in run order; metric families indented under their model's evaluate phase."""
    t = {**metrics.get("timings", {}), **metrics.get("unit_timings", {})}    # unit_timings: per (model, seed) unit
    t.pop("units", None)
    models = metrics.get("models", {})
    rows: list[tuple[str, float]] = []
    for key in ("data", "judge", "reference"):
        if key in t:
            rows.append((key, t.pop(key)))
    for name, m in models.items():
        train = t.pop(f"train:{name}", None)
        if train is None:                                  # an older run: the epochs' own time
            train = (m.get("train") or {}).get("seconds")
        if train is not None:
            rows.append((f"train {name}", float(train)))
        ev = t.pop(f"evaluate:{name}", None)
        if ev is None:
            ev = m.get("eval_seconds")
        if ev is not None:
            rows.append((f"evaluate {name}", float(ev)))
        fam = m.get("timings") or {}
        for k, v in sorted(fam.items(), key=lambda kv: -kv[1]):
            if v >= 0.05:
                rows.append((f"    {k}", float(v)))
    for key in [k for k in t if k != "total"]:
        rows.append((key, t.pop(key)))
    total = float(metrics.get("timings", {}).get("total", 0.0))
    accounted = sum(v for k, v in rows if not k.startswith("    "))
    if total and total - accounted > 0.5:
        rows.append(("other (unrecorded: set-up, checkpoints, ...)", total - accounted))
    rows.append(("total (as compare measured it)", total))
    return rows


def print_breakdown(title: str, metrics: dict) -> None:
    print(f"\n{title}")
    total = float(metrics.get("timings", {}).get("total", 0.0)) or 1.0
    for phase, sec in breakdown(metrics):
        share = "" if phase.startswith("    ") or phase.startswith("total") else f"{100 * sec / total:6.1f} %"
        print(f"  {phase:46s} {sec:8.1f} s {share}")
    tt = (metrics.get("timings") or {}).get("test_time")
    if tt is not None:
        print(f"  the test-time section: {tt:.1f} s = {100 * tt / total:.1f} % of the compare (target <= 20 %)")


def run_case(extra: list[str], cwd: Path) -> tuple[float, float, float, dict]:
    """One `vaelab compare --quiet` in checkout ``cwd`` (it imports vaelab from there): wall, user and sys CPU
    seconds of the child process tree (``resource.getrusage``), and its metrics.json."""
    out = Path(tempfile.mkdtemp(prefix="bench-compare-")) / "run"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    pr = subprocess.run([sys.executable, "-m", "vaelab", "compare", "--out", str(out), "--quiet", *extra],
                        cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if pr.returncode:
        raise SystemExit(f"compare in {cwd} failed:\n{pr.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, metrics


def against(extra: list[str], other: Path, rounds: int) -> dict:
    """This checkout and ``other``, interleaved round by round (alternating which goes first): medians."""
    import statistics

    runs: dict[str, list[tuple[float, float, float, float]]] = {"this": [], "other": []}
    for r in range(rounds):
        for who in (("other", "this") if r % 2 == 0 else ("this", "other")):
            load = os.getloadavg()[0]
            wall, user, sys_s, _ = run_case(extra, ROOT if who == "this" else other)
            runs[who].append((wall, user, sys_s, load))
            print(f"  round {r + 1} {who:5s}: {wall:7.1f} s wall, {user:6.1f} user + {sys_s:4.1f} sys CPU-s, "
                  f"load {load:.1f}", flush=True)
    med = {who: {k: statistics.median(v[i] for v in rs) for i, k in enumerate(("wall", "user", "sys", "load"))}
           for who, rs in runs.items()}
    cpu = {who: m["user"] + m["sys"] for who, m in med.items()}
    print(f"\nmedians over {rounds} rounds: {other} {cpu['other']:.1f} CPU-s ({med['other']['wall']:.1f} s wall), "
          f"this checkout {cpu['this']:.1f} CPU-s ({med['this']['wall']:.1f} s wall): "
          f"{100 * (cpu['this'] / cpu['other'] - 1):+.1f} % CPU, {100 * (med['this']['wall'] / med['other']['wall'] - 1):+.1f} % wall")
    return {"other": str(other), "rounds": rounds, "runs": runs, "medians": med}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=tuple(CASES), default=None, help="run one case only")
    p.add_argument("--from-run", default=None, help="print the breakdown of an existing compare run folder and exit")
    p.add_argument("--against", default=None, help="another checkout of vaelab (e.g. the commit before a change): "
                   "run each case there and here, interleaved, and print CPU and wall medians")
    p.add_argument("--rounds", type=int, default=2, help="rounds of --against (each runs both checkouts once)")
    p.add_argument("--out", default=str(HERE / "results" / "compare.json"), help="JSON file to write")
    args = p.parse_args()
    if args.from_run:
        metrics = json.loads((Path(args.from_run) / "metrics.json").read_text())
        print_breakdown(f"{args.from_run}: `{metrics.get('command')}`", metrics)
        return
    results = {"load_1min": os.getloadavg()[0], "cases": {}}
    for name, extra in CASES.items():
        if args.only and name != args.only:
            continue
        if args.against:
            print(f"`vaelab compare {' '.join(extra)}`: {ROOT} against {args.against}")
            results["cases"][name] = against(extra, Path(args.against).resolve(), args.rounds)
            continue
        wall, user, sys_s, metrics = run_case(extra, ROOT)
        cpu = user + sys_s
        results["cases"][name] = {"wall_seconds": wall, "cpu_seconds": cpu, "timings": metrics.get("timings", {}),
                                  "breakdown": breakdown(metrics)}
        print_breakdown(f"`vaelab compare {' '.join(extra)}`: {wall:.1f} s wall, {cpu:.1f} CPU-s, "
                        f"load {os.getloadavg()[0]:.1f} (target for the default: < 120 s)", metrics)
    from vaelab.io import atomic_write_json

    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
