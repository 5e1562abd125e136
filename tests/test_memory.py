"""Bounded memory: every bad input is refused under 1 GB of resident memory, and large requests stream.

The peaks are measured in a real child process (VmHWM of /proc/self/status, reset before each case by
tests/_peak_rss.py); the sampling child reports its own VmHWM.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bad_inputs as B

LIMIT = 1 << 30          # 1 GiB: what refusing any input may cost, at most
HERE = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(B.ROOT), "OMP_NUM_THREADS": "1"}


def _peaks(ids: list[str]) -> list[dict]:
    r = subprocess.run([sys.executable, str(HERE / "_peak_rss.py"), *ids], env=_env(), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


MEMORY_CASES = ["gz-inflates-past-header", "gz-header-beyond-deflate", "npy-header-huge", "npz-label-huge",
                "npz-over-budget", "hidden-over-budget", "latent-over-budget", "sample-png-over-budget"]


def test_memory_cases_are_refused_under_1_gb() -> None:
    """The inputs that used to cost 8.4 GB (a .gz bomb), 22.9 GB (a label of 1e9) or a torch allocator traceback."""
    rows = _peaks(MEMORY_CASES)
    assert [r["id"] for r in rows] == MEMORY_CASES
    for r in rows:
        assert r["code"] == 2 and not r["traceback"], r
        assert r["peak_bytes"] < LIMIT, f"{r['id']}: peak {r['peak_bytes'] / 1e6:.0f} MB"


@pytest.mark.slow
def test_every_bad_input_is_refused_under_1_gb() -> None:
    """The whole matrix of tests/bad_inputs.py (but the tmpfs cases), each case's own peak."""
    rows = _peaks([])
    assert len(rows) >= len(B.CASES) - 4
    over = {r["id"]: round(r["peak_bytes"] / 1e6) for r in rows if r["peak_bytes"] >= LIMIT}
    assert not over, f"cases over 1 GB (MB): {over}"


@pytest.mark.slow
def test_sample_large_n_streams_to_npy_in_bounded_memory(tmp_path: Path) -> None:
    """4,000,000 samples of 8x8 (a 1 GB .npy) decoded with a peak far below the array's size."""
    ckpt = B.checkpoint(tmp_path)
    n = 4_000_000
    # The child reports its own high-water mark (VmHWM): RUSAGE_CHILDREN would be the max over every child
    # this pytest worker ever waited for, including earlier tests' training runs.
    wrapper = ("import sys; from vaelab.cli import main; rc = main(sys.argv[1:]); "
               "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')); "
               "print('VMHWM_KB', hwm.split()[1], file=sys.stderr); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", wrapper, "sample", str(ckpt), "--n", str(n), "--out",
                        str(tmp_path / "s.npy")], env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    peak = int(r.stderr.rsplit("VMHWM_KB", 1)[1].split()[0]) * 1024            # KiB -> bytes
    a = np.load(tmp_path / "s.npy", mmap_mode="r")
    assert a.shape == (n, 1, 8, 8) and a.dtype == np.float32
    assert 0 <= float(a[-1000:].min()) and float(a[-1000:].max()) <= 1
    assert not np.array_equal(a[:100], a[65536:65636]), "blocks must draw different codes"
    assert peak < LIMIT, f"peak {peak / 1e6:.0f} MB for a {a.nbytes / 1e6:.0f} MB array"
