from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # helper modules in tests/ (bad_inputs.py)

# Two xdist workers on two cores: one intra-op thread each, or OpenMP spin-waiting makes small
# ops many times slower (measured: 20x for the judge's MLP on a loaded machine).
if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("VAELAB_TEST_THREADS") == "1":
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path_factory):
    """Keep every test's caches out of the user's home, and torch deterministic-seeded."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("vaelab-cache")))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits():
    from vaelab.data import load_dataset

    return load_dataset("digits")
