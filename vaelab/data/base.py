"""The Dataset every loader returns, the unsplit arrays a source yields, and their digest."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from vaelab.config import is_vector_shape
from vaelab.errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images in [0, 1], or standardised feature vectors, with fixed train/val/test splits.

    Attributes:
        name: "digits", "fashion-mnist", "idx:/path", "npz:/path", "folder:/path" or "csv:/path".
        x_train, x_val, x_test: (N, C, H, W) float32 in [0, 1] (x_val may hold 0 images); vectors:
            (N, 1, 1, D) float32, standardised with the training split's statistics.
        y_train, y_val, y_test: (N,) int64 in [0, n_classes), or None when unlabelled.
        n_classes: number of classes (0 when unlabelled).
        class_names: one name per class (() when unlabelled), after ``classes`` filtering.
        source: where the data was read from.
        fingerprint: 16 hex chars of sha256 over the raw arrays and the split options.
        feature_names: vectors only: one name per feature (the CSV header); () for images.
        standardization: vectors only: {"mean": [D], "std": [D]} of the training split in the file's units,
            x = (raw - mean) / std (``vaelab.data.standardize``); None for images.
        label_column: csv:FILE only: the column the labels came from (None: unlabelled, or not a CSV).
    """

    name: str
    x_train: Tensor
    y_train: Tensor | None
    x_val: Tensor
    y_val: Tensor | None
    x_test: Tensor
    y_test: Tensor | None
    n_classes: int
    class_names: tuple[str, ...]
    source: str
    fingerprint: str
    feature_names: tuple[str, ...] = ()
    standardization: dict[str, Any] | None = field(default=None)
    label_column: str | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.x_train.shape[1:])
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4 or tuple(x.shape[1:]) != shape:
                raise DataError(f"dataset {self.name!r}: x_{split} has shape {tuple(x.shape)}, expected "
                                f"(N, {', '.join(map(str, shape))}) like x_train.")
            if (y is None) != (self.n_classes == 0) or (y is not None and y.shape != (x.shape[0],)):
                raise DataError(f"dataset {self.name!r}: y_{split} does not match x_{split} "
                                f"(need (N,) labels when n_classes > 0, None otherwise).")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def has_labels(self) -> bool:
        return self.y_train is not None

    @property
    def domain(self) -> str:
        """"vectors" for tabular features (shape (1, 1, D)), else "images"."""
        return "vectors" if is_vector_shape(self.shape) else "images"

    def summary(self) -> dict:
        """JSON-able description: name, source, shape, split sizes, classes, fingerprint."""
        return {"name": self.name, "source": self.source, "shape": list(self.shape),
                "n_train": int(self.x_train.shape[0]), "n_val": int(self.x_val.shape[0]),
                "n_test": int(self.x_test.shape[0]), "n_classes": self.n_classes,
                "class_names": list(self.class_names), "fingerprint": self.fingerprint,
                **({"domain": "vectors", "feature_names": list(self.feature_names),
                    "standardization": self.standardization} if self.domain == "vectors" else {}),
                **({"label_column": self.label_column} if self.label_column else {})}

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Dataset({s['name']!r}, shape={tuple(s['shape'])}, n_train={s['n_train']}, "
                f"n_val={s['n_val']}, n_test={s['n_test']}, n_classes={s['n_classes']}, "
                f"fingerprint={s['fingerprint']!r})")



@dataclass(frozen=True)
class RawData:
    """Validated, unsplit arrays from one source. x: (N, C, H, W) any real dtype; y: (N,) int64."""

    name: str
    source: str
    x: np.ndarray
    y: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    n_classes: int
    class_names: tuple[str, ...]
    digest: str              # sha256 over the raw arrays as read
    feature_names: tuple[str, ...] = ()   # vectors (x of shape (N, 1, 1, D)): the columns' names


def arrays_digest(*arrays: np.ndarray | None) -> str:
    """sha256 over dtype, shape and bytes of each array (None counts as a marker)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()



def check_count(x: np.ndarray, what: str) -> None:
    if x.shape[0] < 2:
        raise DataError(f"{what} has {x.shape[0]} image(s); vaelab needs at least 2 (and many more to learn "
                        "anything). Use a larger dataset.")



def check_label_range(labels: dict[str, np.ndarray | None], n_images: int, where: str) -> None:
    """Refuse a label value that would size a table wider than the data: n_classes = max label + 1 <= n_images.

    One-hot tables, the cvae's label head and per-class metrics are all sized by the largest label, so
    a single corrupt value (say 1,000,000,000) would otherwise allocate gigabytes before anything fails.
    """
    for key, y in labels.items():
        if y is None or y.size == 0:
            continue
        i = int(np.argmax(y))
        if int(y[i]) >= n_images:
            raise DataError(f"{where}: label {int(y[i])} at index {i} of {key} would mean {int(y[i]) + 1} classes for "
                            f"{n_images} images; labels must be 0..n_classes-1 with at most one class per image. "
                            "The labels are corrupt, or not 0-based class indices: map them with "
                            "np.unique(y, return_inverse=True).")



def column_order(have: Sequence[str], want: Sequence[str], where: str) -> list[int]:
    """Positions in ``have`` (a new table's feature columns) of ``want`` (the columns a model was trained on).

    Columns are matched by name, so a file may hold them in another order; a missing or an extra column is
    refused with one DataError that names them (scoring on other columns would be silently wrong).
    """
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if missing or extra:
        parts = ([f"missing {_listed(missing)}"] if missing else []) + ([f"extra {_listed(extra)}"] if extra else [])
        raise DataError(f"{where} does not have the columns the model was trained on ({'; '.join(parts)}). Give a "
                        f"table with exactly the training columns ({_listed(want)}), in any order.")
    return [list(have).index(n) for n in want]


def _listed(names: Sequence[str], n_max: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:n_max])
    return shown + (f" ... ({len(names)} in all)" if len(names) > n_max else "")
