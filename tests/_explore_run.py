"""A tiny run folder for the explorer tests: digits, small MLPs, a few epochs (seconds to train)."""
from __future__ import annotations

from pathlib import Path

SPECS = {"ae-2d": ("ae", 2), "vae-2d": ("vae", 2), "vae-5": ("vae", 5), "cvae-3": ("cvae", 3)}


def make_run(root: Path, names: tuple[str, ...] = tuple(SPECS)) -> Path:
    from vaelab.explore.demo import make_demo_run

    return make_demo_run(root, names=names, epochs=3, hidden=(32,), specs=SPECS)
