"""`vaelab compare --executor ray` on a real local Ray cluster (a head and one worker node on loopback):
the same metrics.json numbers as the local executor, the model folders back in the driver's run folder."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_executor import numbers

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the Ray executor needs the cluster extra: pip install 'vaelab[cluster]'")
RAY = str(Path(sys.executable).parent / "ray")
ARGS = ["--models", "ae,vae", "--epochs", "3", "--n-samples", "100", "--iw-k", "5", "--quiet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(judge_cache):
    """A head node and one more worker node process, one CPU each, no dashboard; stopped afterwards."""
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}     # the nodes' workers import this vaelab (PYTHONPATH)
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(100 * 2**20),
              "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false", *common],
                       env=env, check=True, capture_output=True, timeout=180)
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common],
                       env=env, check=True, capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def test_ray_executor_gives_the_local_numbers(cluster, tmp_path):
    address, env = cluster
    local = subprocess.run([sys.executable, "-m", "vaelab", "compare", *ARGS, "--workers", "1",
                            "--out", str(tmp_path / "local")], capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "vaelab", "compare", *ARGS, "--executor", "ray", "--ray-address",
                        address, "--out", str(tmp_path / "ray")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    a = numbers(json.loads((tmp_path / "local" / "metrics.json").read_text()))
    b = numbers(json.loads((tmp_path / "ray" / "metrics.json").read_text()))
    assert len(a) > 500 and a == b
    doc = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    for name in ("ae", "vae", "ae-2d", "vae-2d"):       # the files came back from the task's temporary folder
        assert (tmp_path / "ray" / "models" / name / "weights.safetensors").is_file()
    assert doc["models"]["vae"]["train"]["folder"] == str(tmp_path / "ray" / "models" / "vae")


def test_an_unreachable_cluster_is_one_clear_message(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vaelab", "compare", *ARGS, "--no-pair", "--executor", "ray",
                        "--ray-address", f"127.0.0.1:{_free_port()}", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "Ray cluster" in r.stderr
