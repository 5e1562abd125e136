from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path_factory):
    """Keep every test's caches out of the user's home, and torch deterministic-seeded."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("vaelab-cache")))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits():
    from vaelab.data import load_dataset

    return load_dataset("digits")
