"""Array conversion shared by the metric functions: numpy arrays or torch tensors in, numpy out."""
from __future__ import annotations

from typing import Union

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
