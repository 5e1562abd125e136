"""Seeded (stratified) splits, class filtering, and the conversion of raw arrays to tensors."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from vaelab.data.base import RawData
from vaelab.errors import DataError

TEST_FRACTION = 0.2          # for datasets without an official test split


def split_indices(n: int, y: np.ndarray | None, n_hold: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (stratified when ``y`` is given) split of range(n) into (keep, hold) with len(hold) == n_hold.

    Stratification: every index gets the key (rank within its class + 0.5) / class size under a
    random permutation; the n_hold smallest keys are held out, so each class contributes in
    proportion to its size and the total is exact.
    """
    perm = rng.permutation(n)
    if y is not None and n_hold > 0:
        key = np.empty(n)
        yp = y[perm]
        for c in np.unique(yp):
            members = perm[yp == c]
            key[members] = (np.arange(len(members)) + 0.5) / len(members)
        perm = perm[np.argsort(key[perm], kind="stable")]
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def n_hold(n: int, fraction: float) -> int:
    """round(fraction * n), but at least 1 when fraction > 0 and at most n - 1."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(fraction * n)))


def to_x(a: np.ndarray) -> Tensor:
    """(N, C, H, W) array (checked range) -> float32 tensor in [0, 1]."""
    if a.dtype == np.bool_:
        return torch.from_numpy(a.astype(np.float32))
    if np.issubdtype(a.dtype, np.integer):
        return torch.from_numpy(np.ascontiguousarray(a).astype(np.float32)).div_(255.0)
    return torch.from_numpy(np.array(a, dtype=np.float32))   # rounding to float32 keeps [0, 1]


def check_classes(classes: Sequence[int], raw: RawData, y_train: np.ndarray) -> list[int]:
    if raw.y is None:
        raise DataError(f"dataset {raw.name} has no labels, so --classes cannot select classes. "
                        "Drop --classes, or use a labelled dataset (npz with y).")
    out = []
    for c in classes:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
            raise DataError(f"classes must be integer labels, got {c!r}. Valid labels: 0..{raw.n_classes - 1}.")
        out.append(int(c))
    if not out:
        raise DataError("classes is empty; name at least one label, e.g. --classes 3,5, or drop the option.")
    if len(set(out)) != len(out):
        raise DataError(f"classes {out} repeats a label; name each class once.")
    present = set(np.unique(y_train).tolist())
    bad = [c for c in out if c not in present]
    if bad:
        raise DataError(f"classes {bad} do not exist in dataset {raw.name}: its training labels are "
                        f"{min(present)}..{max(present)} ({', '.join(f'{i}={n}' for i, n in enumerate(raw.class_names))}). "
                        "Choose labels from that list.")
    return out

