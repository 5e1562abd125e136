"""Latent explorer: decode round-trip latency over HTTP (target: median under 50 ms on 2 CPU cores).

Starts `vaelab explore RUN --no-browser` as its own process (the real server: uvicorn + FastAPI),
then times N sequential requests per model and endpoint from a keep-alive HTTP client, with the
models interleaved request by request so that load on a shared machine hits them alike:
  decode_map   one map point -> full code + image (what a hover/drag sends)
  decode       one code -> image (what a slider move sends)
With --browser it also times the page's own round trip in headless Chromium: fetch decode_map +
base64 + putImageData, measured with performance.now() inside the page.

    python benchmarks/bench_explore.py                      # trains a digits demo run (ae-2d, vae-2d, ae, vae)
    python benchmarks/bench_explore.py --run runs/NAME --n 500 --browser --out bench_explore.json
    taskset -c 0,1 python benchmarks/bench_explore.py ...   # pin server and client to 2 cores

Prints a table and writes JSON (--out).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaelab.explore.headless import browser_missing, free_port  # noqa: E402


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def make_run(folder: Path, epochs: int, fashion: bool) -> Path:
    from vaelab.data import list_datasets
    from vaelab.explore.demo import make_demo_run

    print(f"training the demo run in {folder} (digits, MLP 512-256; latency does not depend on training)...",
          file=sys.stderr)
    make_demo_run(folder, epochs=epochs)
    if fashion and any(d["name"] == "fashion-mnist" and d.get("available") for d in list_datasets()):
        # a 28x28 model too: the decoder's last layer is 12x wider; trained briefly on a subset
        sub = folder / "fashion"
        make_demo_run(sub, names=("vae",), dataset="fashion-mnist", epochs=1, max_train=2000)
        target = folder / "models" / "vae-fashion"
        if not target.exists():
            (sub / "models" / "vae").rename(target)
    return folder


def start_server(run: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "explore", str(run), "--no-browser", "--port", str(port),
                             "--threads", str(threads)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the explorer exited: {proc.stderr.read()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/api/models")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the explorer did not start within 120 s")


def call(conn: http.client.HTTPConnection, path: str, body: dict | None = None) -> tuple[float, dict]:
    data = json.dumps(body).encode() if body is not None else None
    t0 = time.perf_counter()
    conn.request("POST" if data else "GET", path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = json.loads(resp.read())
    dt = (time.perf_counter() - t0) * 1e3
    if resp.status != 200:
        raise SystemExit(f"{path}: {resp.status} {out}")
    return dt, out


def bench_http(port: int, models: list[dict], n: int, warmup: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    info = {}
    for m in models:
        mp = call(conn, f"/api/models/{m['name']}/map")[1]          # encodes the test split once (not timed)
        (u0, u1), (v0, v1) = mp["bounds"]["u"], mp["bounds"]["v"]
        info[m["name"]] = (u0, u1, v0, v1, m["n_latent"])
    times: dict[str, dict[str, list[float]]] = {m["name"]: {"decode_map": [], "decode": []} for m in models}
    for i in range(warmup + n):
        t = (i * 0.618034) % 1.0                                      # points along a path through the map
        for name, (u0, u1, v0, v1, d) in info.items():
            uv = [u0 + t * (u1 - u0), v0 + (1 - t) * (v1 - v0)]
            dt_map, out = call(conn, f"/api/models/{name}/decode_map", {"points": [uv], "base_index": 0})
            dt_z, _ = call(conn, f"/api/models/{name}/decode", {"z": out["z"]})
            if i >= warmup:
                times[name]["decode_map"].append(dt_map)
                times[name]["decode"].append(dt_z)
    return times


def bench_browser(url: str, models: list[dict], n: int) -> dict:
    from vaelab.explore.headless import chromium

    script = """
const [name, n, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  const canvas = document.createElement('canvas');
  const times = [];
  for (let i = 0; i < n + 10; i++) {
    const t0 = performance.now();
    const r = await fetch(`/api/models/${name}/decode_map`, {method: 'POST', headers: {'Content-Type': 'application/json'},
                          body: JSON.stringify({points: [[Math.sin(i), Math.cos(i)]], base_index: 0})});
    const j = await r.json();
    drawBytes(canvas, j.images[0], j.shape);
    if (i >= 10) times.push(performance.now() - t0);
  }
  done(times);
})();
"""
    out = {}
    with chromium() as driver:
        driver.set_script_timeout(600)
        driver.get(url + "/")
        time.sleep(1.0)
        for m in models:
            out[m["name"]] = driver.execute_async_script(script, m["name"], n)
    return out


def summarise(xs: list[float]) -> dict:
    return {"n": len(xs), "median_ms": statistics.median(xs), "p95_ms": percentile(xs, 95),
            "mean_ms": statistics.fmean(xs), "min_ms": min(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="run folder to serve (default: train a digits demo run once, cached in "
                                                "$TMPDIR/vaelab-bench-explore)")
    ap.add_argument("--n", type=int, default=200, help="timed requests per model and endpoint (default 200)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed requests first (default 20)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of the demo run's models (default 20)")
    ap.add_argument("--no-fashion", action="store_true", help="skip the 28x28 Fashion-MNIST model")
    ap.add_argument("--browser", action="store_true", help="also time the page's round trip in headless Chromium")
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads (default 1, as the CLI)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    run = Path(args.run) if args.run else make_run(Path(tempfile.gettempdir()) / "vaelab-bench-explore", args.epochs,
                                                   not args.no_fashion)
    port = free_port()
    proc = start_server(run, port, args.threads)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        models = [m for m in call(conn, "/api/models")[1]["models"] if m["ok"]]
        http_times = bench_http(port, models, args.n, args.warmup)
        browser_times = None
        if args.browser:
            why = browser_missing()
            if why:
                print(f"--browser skipped: {why}", file=sys.stderr)
            else:
                browser_times = bench_browser(f"http://127.0.0.1:{port}", models, args.n)
    finally:
        proc.terminate()
        proc.wait(10)

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    result = {"benchmark": "explore_decode_round_trip", "run": str(run), "n": args.n, "threads": args.threads,
              "machine": {"platform": platform.platform(), "cpus_usable": len(cpus) if cpus else os.cpu_count(),
                          "torch": torch.__version__, "load_avg": os.getloadavg()},
              "models": {}}
    print(f"\ndecode round trip over HTTP (keep-alive), {args.n} requests each, "
          f"server torch threads {args.threads}, {result['machine']['cpus_usable']} usable CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':<14}{'latent':>7}{'image':>10}  {'endpoint':<20}{'median ms':>10}{'p95 ms':>9}")
    for m in models:
        name = m["name"]
        row = {"n_latent": m["n_latent"], "input_shape": m["input_shape"], "model": m["model"]}
        for ep, xs in http_times[name].items():
            row[ep] = summarise(xs)
        if browser_times:
            row["browser_decode_map"] = summarise(browser_times[name])
        result["models"][name] = row
        shape = "x".join(map(str, m["input_shape"][1:]))
        for ep in ("decode_map", "decode", "browser_decode_map"):
            if ep in row:
                print(f"{name:<14}{m['n_latent']:>7}{shape:>10}  {ep:<20}{row[ep]['median_ms']:>10.2f}"
                      f"{row[ep]['p95_ms']:>9.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
