"""Array conversion shared by the metric functions (numpy arrays or torch tensors in, numpy out), and their memo."""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def as_numpy(x: ArrayLike, dtype: type | None = np.float64) -> np.ndarray:
    """Return ``x`` as a numpy array (detached, on the CPU), cast to ``dtype`` unless it is None."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x if dtype is None else x.astype(dtype, copy=False)


def as_labels(y: ArrayLike) -> np.ndarray:
    """Return integer labels ``y`` as a 1-D int64 numpy array."""
    y = as_numpy(y, dtype=None).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be integers")
    return y.astype(np.int64, copy=False)


def as_matrix(x: ArrayLike, name: str, dtype: type | None = np.float64) -> np.ndarray:
    """Return ``x`` as a 2-D (N, D) numpy array; raise ValueError naming ``name`` otherwise."""
    x = as_numpy(x, dtype)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(x.shape)}")
    return x


class ArrayMemo:
    """Results computed from arrays, kept for the last ``size`` inputs.

    A comparison scores many models and samplers against one reference set (the test split's judge features,
    the training split), so what depends on the reference alone (its k-NN radii, its k-means cells, the test
    images' nearest training images) is computed once per run. The key is the arrays' shapes, dtypes and a
    hash of their bytes, plus ``extra`` (hashable settings): the same inputs give the very same result.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._items: dict[tuple, Any] = {}

    def __call__(self, arrays: Sequence[np.ndarray], extra: tuple, compute: Callable[[], Any]) -> Any:
        key = (tuple((a.shape, a.dtype.str, hash(np.ascontiguousarray(a).tobytes())) for a in arrays), extra)
        if key not in self._items:
            while len(self._items) >= self.size:        # oldest first: bounded memory
                self._items.pop(next(iter(self._items)))
            self._items[key] = compute()
        return self._items[key]
