from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # helper modules in tests/ (bad_inputs.py)


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path_factory):
    """Keep every test's caches out of the user's home, and torch deterministic-seeded."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("vaelab-cache")))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits():
    from vaelab.data import load_dataset

    return load_dataset("digits")
