"""Shared fixtures: one small `vaelab compare` run on the embedded digits (judge cached in a tmp VAELAB_CACHE)."""
from __future__ import annotations

import pytest

from vaelab.cli import main

FAST = ["--epochs", "3", "--n-samples", "100", "--iw-k", "5", "--quiet"]


@pytest.fixture(scope="session")
def judge_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def compare_run(judge_cache, tmp_path_factory):
    """A run folder of `vaelab compare --models ae,vae,cvae` (3 epochs, 100 samples, K=5)."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["compare", "--models", "ae,vae,cvae", "--out", str(out), *FAST]) == 0
    return out
