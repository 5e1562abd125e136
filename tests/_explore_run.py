"""A tiny run folder for the explorer tests: digits, small MLPs, a few epochs (seconds to train)."""
from __future__ import annotations

from pathlib import Path

import torch

SPECS = {"ae-2d": ("ae", 2), "vae-2d": ("vae", 2), "vae-5": ("vae", 5), "cvae-3": ("cvae", 3)}


def make_run(root: Path, names: tuple[str, ...] = tuple(SPECS)) -> Path:
    from vaelab.explore.demo import make_demo_run

    return make_demo_run(root, names=names, epochs=3, hidden=(32,), specs=SPECS)


class LogisticJudge:
    """A real (if simple) classifier of the training images: predict_proba(x) -> (N, C)."""

    def __init__(self, data):
        from sklearn.linear_model import LogisticRegression

        self.clf = LogisticRegression(max_iter=300).fit(data.x_train.flatten(1).numpy(), data.y_train.numpy())

    def predict_proba(self, x):
        return torch.from_numpy(self.clf.predict_proba(x.flatten(1).numpy()))
