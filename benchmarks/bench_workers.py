"""`vaelab compare --workers 2` against `--workers 1`: wall time, CPU time and peak memory, interleaved.

    python benchmarks/bench_workers.py                       # the default digits compare, 3 rounds
    python benchmarks/bench_workers.py --rounds 1 --workers 1,2 -- --dataset fashion-mnist --epochs 20
    python benchmarks/bench_workers.py --baseline /tmp/old        # + `--workers 2` of another checkout, interleaved

Each round runs every worker count once, one after the other (w1, w2, w1, w2, ...), so a machine whose
load drifts loads both alike; the table gives the median of each and the ratio of medians. CPU time is
the user + system seconds of the compare process and every descendant (sampled from /proc every 0.2 s: the
workers are children of a fork server, which ``resource.getrusage`` does not count; or getrusage's, when larger);
peak memory is the largest sum of the
resident sets of the compare process and its workers, sampled every 0.2 s from /proc. The judge is
trained once before the first round (into a fresh cache) so every timed run reads it from the cache.
``--baseline DIR`` (e.g. a ``git worktree add DIR COMMIT`` of an earlier commit) adds that checkout's
``--workers`` largest count as one more contender in every round (its vaelab first on PYTHONPATH).
Writes benchmarks/results/bench_workers.json. Target (issue 19): --workers 2 <= 0.6x the wall of --workers 1.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def _tree(pid: int) -> tuple[int, dict[int, float]]:
    """Resident bytes of ``pid`` and all its descendants, and each one's user + system CPU seconds so far."""
    kids: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
            kids.setdefault(int(stat[1]), []).append(int(p.name))
            rss[int(p.name)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
            cpu[int(p.name)] = (int(stat[11]) + int(stat[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    total, seen, todo = 0, {}, [pid]
    while todo:
        q = todo.pop()
        total += rss.get(q, 0)
        seen[q] = cpu.get(q, 0.0)
        todo += kids.get(q, [])
    return total, seen


def run_once(workers: int, extra: list[str], out: Path, env: dict[str, str]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "vaelab", "compare", "--workers", str(workers), "--quiet",
                          "--overwrite", "--out", str(out), *extra], env=env, cwd=out.parent,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    cpu_seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            rss, cpu = _tree(p.pid)
            peak[0] = max(peak[0], rss)
            cpu_seen.update(cpu)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = p.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"compare --workers {workers} failed:\n{err[-3000:]}")
    # workers forked by a fork server are not this process's children (getrusage misses them): the sampled CPU of
    # the whole tree counts them (up to 0.2 s per process is missed at its end); the larger of the two is kept
    cpu = max((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), sum(cpu_seen.values()))
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak[0] / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--baseline", type=Path, default=None, help="another vaelab checkout, timed beside this one")
    ap.add_argument("extra", nargs="*", help="more `vaelab compare` options (after --)")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    # a folder without vaelab/ would silently time this checkout (the installed one) as the baseline
    if args.baseline is not None and not (args.baseline / "vaelab" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no vaelab/ package there; give a checkout's root "
                         "(git worktree add DIR COMMIT).")
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    env = {**os.environ, "VAELAB_CACHE": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "vaelab", "compare", "--models", "ae", "--epochs", "1", "--no-pair",
                    "--quiet", "--out", str(tmp / "warm"), *args.extra], env=env, check=True,
                   stdout=subprocess.DEVNULL)                       # trains and caches the judge
    contenders: list[tuple[str, int, dict[str, str]]] = [(str(w), w, env) for w in counts]
    if args.baseline is not None:
        contenders.append((f"baseline {max(counts)}", max(counts),
                           {**env, "PYTHONPATH": str(args.baseline.resolve())}))
    runs: dict[str, list[dict[str, float]]] = {c: [] for c, _, _ in contenders}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for c, w, c_env in contenders:
            res = run_once(w, args.extra, tmp / f"w{c.replace(' ', '-')}", c_env)
            runs[c].append(res)
            load.append(os.getloadavg()[0])
            print(f"round {r + 1} --workers {c}: wall {res['wall_s']:.1f} s, cpu {res['cpu_s']:.1f} s, "
                  f"peak {res['peak_rss_mb']:.0f} MB (load {load[-1]:.1f})", flush=True)
    med = {w: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for w, rs in runs.items()}
    print(f"\n| workers | wall (s, median) | CPU (s, median) | peak RSS (MB, median) | wall / workers {counts[0]} |")
    print("|---|---|---|---|---|")
    for c in runs:
        m = med[c]
        print(f"| {c} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {m['peak_rss_mb']:.0f} | "
              f"{m['wall_s'] / med[str(counts[0])]['wall_s']:.2f}x |")
    print(f"load average during the runs: {min(load):.1f}-{max(load):.1f} (1-min), {os.cpu_count()} cores")
    from vaelab.io import atomic_write_json

    (HERE / "results").mkdir(exist_ok=True)
    atomic_write_json(HERE / "results" / "bench_workers.json",
                      {"extra": args.extra, "baseline": str(args.baseline) if args.baseline else None, "runs": runs,
                       "median": med, "load": load})


if __name__ == "__main__":
    main()
