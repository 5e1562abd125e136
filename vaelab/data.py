"""Datasets as tensors in [0, 1] with fixed, seeded splits, and the corruptions used for denoising.

A :class:`Dataset` holds float32 images ``x`` of shape (N, C, H, W) in [0, 1], optional int64
labels ``y`` of shape (N,), fixed train/val/test splits, its provenance and a fingerprint.
:func:`load_dataset` builds one from a spec:

- ``digits``: scikit-learn ``load_digits`` (embedded, the default; 1797 images 1x8x8).
- ``fashion-mnist``: the four IDX files of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``) or of ``data_dir``. Nothing is downloaded.
- ``idx:FOLDER``: any MNIST-format IDX folder (``train-images-idx3-ubyte[.gz]`` and friends).
- ``npz:FILE``: an ``.npz`` with ``x`` (and optional ``y``, ``x_test``, ``y_test``, ``class_names``),
  read with ``allow_pickle=False``.

Every problem with the data is a :class:`~vaelab.errors.DataError` whose message says what is
wrong and how to fix it; a bad option value (val_fraction, seed, a corruption level) is a
:class:`~vaelab.errors.ConfigError`.

Splits: datasets with an official test split keep it; the others get a seeded split with 20 % test.
Validation is a seeded ``val_fraction`` of the remaining training images. Splits are stratified by
label when there are labels, and drawn in a fixed order (test, then val, then ``max_train``), so
the same seed gives identical tensors and ``classes``/``max_train`` only ever take subsets of the
splits one gets without them.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
import time
import zipfile
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from vaelab.errors import ConfigError, DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
TEST_FRACTION = 0.2          # for datasets without an official test split
CORRUPTIONS = {"gaussian": 0.3, "salt-and-pepper": 0.2, "masking": 0.25}   # DESIGN.md default levels
SPEC_FORMS = ("digits", "fashion-mnist", "idx:FOLDER", "npz:FILE")

_IDX_IMAGES_MAGIC = 0x00000803   # unsigned bytes, 3 dims (N, H, W)
_IDX_LABELS_MAGIC = 0x00000801   # unsigned bytes, 1 dim (N,)
_IDX_NAMES = {"train_x": "train-images", "train_y": "train-labels",
              "test_x": "t10k-images", "test_y": "t10k-labels"}
_RACY_SECONDS = 2.0              # files modified more recently than this are never cached


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images in [0, 1] with fixed train/val/test splits.

    Attributes:
        name: "digits", "fashion-mnist", "idx:/path" or "npz:/path".
        x_train, x_val, x_test: (N, C, H, W) float32 in [0, 1] (x_val may hold 0 images).
        y_train, y_val, y_test: (N,) int64 in [0, n_classes), or None when unlabelled.
        n_classes: number of classes (0 when unlabelled).
        class_names: one name per class (() when unlabelled), after ``classes`` filtering.
        source: where the data was read from.
        fingerprint: 16 hex chars of sha256 over the raw arrays and the split options.
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

    def summary(self) -> dict:
        """JSON-able description: name, source, shape, split sizes, classes, fingerprint."""
        return {"name": self.name, "source": self.source, "shape": list(self.shape),
                "n_train": int(self.x_train.shape[0]), "n_val": int(self.x_val.shape[0]),
                "n_test": int(self.x_test.shape[0]), "n_classes": self.n_classes,
                "class_names": list(self.class_names), "fingerprint": self.fingerprint}

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Dataset({s['name']!r}, shape={tuple(s['shape'])}, n_train={s['n_train']}, "
                f"n_val={s['n_val']}, n_test={s['n_test']}, n_classes={s['n_classes']}, "
                f"fingerprint={s['fingerprint']!r})")


# ---------------------------------------------------------------------------------------------
# Raw arrays: one loader per source, each returning validated numpy arrays (not yet split)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Raw:
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


def _digest(*arrays: np.ndarray | None) -> str:
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


@functools.lru_cache(maxsize=1)
def _digits_raw() -> _Raw:
    from sklearn import __version__ as sk_version
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8) float64, 0..16 -> [0, 1]
    y = bunch.target.astype(np.int64)
    return _Raw("digits", f"scikit-learn {sk_version} load_digits (embedded)", x, y, None, None,
                10, tuple(str(i) for i in range(10)), _digest(bunch.images, y))


def _read_bytes(path: str) -> bytes:
    """The file's contents, gunzipped when they start with the gzip magic."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}. Check the path and its permissions.") from None
    if not data:
        raise DataError(f"{path} is empty (0 bytes). The file is damaged: download or install it again.")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path} is a truncated or corrupt gzip file ({e}). Download or install it "
                            "again (for Fashion-MNIST: apt-get install --reinstall dataset-fashion-mnist), "
                            "or gunzip a good copy.") from None
    return data


def _parse_idx(data: bytes, path: str, is_labels: bool) -> np.ndarray:
    """Parse MNIST-format IDX bytes: images (N, H, W) uint8 or labels (N,) uint8."""
    expected = _IDX_LABELS_MAGIC if is_labels else _IDX_IMAGES_MAGIC
    what = "labels (unsigned bytes, 1 dim)" if is_labels else "images (unsigned bytes, 3 dims)"
    if len(data) < 4:
        raise DataError(f"{path} is too short ({len(data)} bytes) to be an IDX file; it is truncated. "
                        "Download or install it again.")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected:
        hint = ""
        if magic in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
            hint = " It looks like an IDX file of the other kind: are the images and labels files swapped?"
        elif path.endswith(".gz"):
            hint = " (The file does not start with the gzip magic either.)"
        raise DataError(f"{path}: wrong IDX magic number 0x{magic:08x} ({magic}), expected 0x{expected:08x} "
                        f"({expected}) for MNIST-format {what}.{hint} Check that it is the right file.")
    n_dims = 1 if is_labels else 3
    header = 4 + 4 * n_dims
    if len(data) < header:
        raise DataError(f"{path}: IDX header is truncated ({len(data)} bytes, need {header}). "
                        "Download or install the file again.")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    n_expected = math.prod(dims)
    if len(data) - header != n_expected:
        raise DataError(f"{path}: header dims {'x'.join(map(str, dims))} need {n_expected} data bytes but the "
                        f"file has {len(data) - header}; it is truncated or corrupt. Download or install it again.")
    if dims[0] == 0 or n_expected == 0:
        raise DataError(f"{path}: IDX header says {'x'.join(map(str, dims))}: the file holds no data. "
                        "Use a file with at least 2 images.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, is_labels: bool, _key: tuple) -> tuple[np.ndarray, str]:
    arr = _parse_idx(_read_bytes(path), path, is_labels)
    return arr, _digest(arr)


def _read_idx(path: str, is_labels: bool) -> tuple[np.ndarray, str]:
    """Parsed IDX array (read-only) and its digest, cached in-process on path + stat.

    Files modified in the last couple of seconds are not cached: file timestamps are coarse, so a
    file rewritten with the same size could otherwise hit a stale entry (git's "racy" case).
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}. Check the path.") from None
    key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    if time.time() - st.st_mtime < _RACY_SECONDS:
        arr = _parse_idx(_read_bytes(path), path, is_labels)
        return arr, _digest(arr)
    return _read_idx_cached(path, is_labels, key)


def _find_idx_files(folder: str) -> tuple[dict[str, str], list[str]]:
    """Paths of the four IDX files in ``folder`` (gz or raw, "-idx" or ".idx" names) and the missing ones."""
    found, missing = {}, []
    for key, stem in _IDX_NAMES.items():
        suffix = "idx1-ubyte" if key.endswith("_y") else "idx3-ubyte"
        names = [f"{stem}-{suffix}.gz", f"{stem}-{suffix}", f"{stem}.{suffix}.gz", f"{stem}.{suffix}"]
        path = next((os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))), None)
        if path is None:
            missing.append(f"{stem}-{suffix}[.gz]")
        else:
            found[key] = path
    return found, missing


def _idx_raw(folder: str, name: str, source: str, install_hint: str,
             class_names: tuple[str, ...] | None) -> _Raw:
    if not os.path.isdir(folder):
        raise DataError(f"dataset {name}: folder {folder} does not exist. {install_hint}")
    paths, missing = _find_idx_files(folder)
    if missing:
        raise DataError(f"dataset {name}: {folder} lacks {', '.join(missing)}. {install_hint}")
    arrays, digests = {}, []
    for key in ("train_x", "train_y", "test_x", "test_y"):
        arr, d = _read_idx(paths[key], is_labels=key.endswith("_y"))
        arrays[key] = arr
        digests.append(d)
    for split in ("train", "test"):
        nx, ny = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if nx != ny:
            raise DataError(f"dataset {name}: {nx} {split} images but {ny} {split} labels "
                            f"({paths[f'{split}_x']} vs {paths[f'{split}_y']}). Use matching files.")
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        raise DataError(f"dataset {name}: train images are {arrays['train_x'].shape[1:]} but test images are "
                        f"{arrays['test_x'].shape[1:]}. Use train and test files of the same dataset.")
    n_labels = int(max(arrays["train_y"].max(), arrays["test_y"].max())) + 1
    if class_names is not None and n_labels > len(class_names):
        raise DataError(f"dataset {name}: labels go up to {n_labels - 1} but it has {len(class_names)} "
                        f"classes (0..{len(class_names) - 1}). The label files are corrupt or from another dataset.")
    names = class_names if class_names is not None else tuple(str(i) for i in range(n_labels))
    x, x_test = arrays["train_x"][:, None], arrays["test_x"][:, None]      # (N, 1, H, W)
    _check_count(x, f"dataset {name} train split")
    digest = hashlib.sha256("".join(digests).encode()).hexdigest()
    return _Raw(name, source, x, arrays["train_y"].astype(np.int64), x_test,
                arrays["test_y"].astype(np.int64), len(names), names, digest)


def _fashion_raw(data_dir: str | None) -> _Raw:
    folder = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else FASHION_MNIST_DIR
    source = (f"{folder} (Debian dataset-fashion-mnist)" if data_dir is None else f"{folder} (--data-dir)")
    hint = ("Install it with `sudo apt-get install dataset-fashion-mnist`, or pass --data-dir FOLDER "
            "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz (gzipped or not).")
    return _idx_raw(folder, "fashion-mnist", source, hint, FASHION_MNIST_CLASSES)


def _check_count(x: np.ndarray, what: str) -> None:
    if x.shape[0] < 2:
        raise DataError(f"{what} has {x.shape[0]} image(s); vaelab needs at least 2 (and many more to learn "
                        "anything). Use a larger dataset.")


def _npz_images(a: np.ndarray, key: str, path: str) -> np.ndarray:
    """Check an npz image array and return it as (N, C, H, W) in its own dtype (scaled later)."""
    if a.ndim == 3:
        a = a[:, None]                                  # (N, H, W) -> (N, 1, H, W)
    elif a.ndim == 4 and a.shape[1] not in (1, 3):
        hint = (" It looks channel-last (N, H, W, C): save np.moveaxis(x, -1, 1) instead."
                if a.shape[3] in (1, 3) else "")
        raise DataError(f"{path}: {key} has shape {a.shape}; 4-D images must be (N, C, H, W) with C 1 or 3.{hint}")
    elif a.ndim != 4:
        raise DataError(f"{path}: {key} has rank {a.ndim} (shape {a.shape}); expected images (N, H, W) or "
                        "(N, C, H, W) with C 1 or 3. Reshape it, e.g. x.reshape(-1, 28, 28).")
    if 0 in a.shape[1:]:
        raise DataError(f"{path}: {key} has shape {a.shape}, images with no pixels. Save real images.")
    _check_count(a, f"{path}: {key}")
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{path}: {key} has dtype {a.dtype}; expected uint8 0..255 or floats in [0, 1].")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        n_bad = int((~np.isfinite(a)).sum())
        raise DataError(f"{path}: {key} contains {n_bad} NaN/inf value(s). Remove or fix those images.")
    lo, hi = a.min(), a.max()
    if np.issubdtype(a.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise DataError(f"{path}: {key} is {a.dtype} with values in [{lo}, {hi}]; integer images must lie in "
                            "0..255 (scaled by 1/255). Rescale them, or save floats in [0, 1].")
    elif lo < 0 or hi > 1:
        hint = " If they are 0..255 pixels, divide by 255." if lo >= 0 and hi <= 255 else ""
        raise DataError(f"{path}: {key} holds floats in [{lo:g}, {hi:g}], outside [0, 1] (min {lo:g}, max {hi:g}). "
                        f"Scale the images into [0, 1] before saving.{hint}")
    return a


def _npz_labels(a: np.ndarray, key: str, n: int, path: str) -> np.ndarray:
    """Check npz labels and return them as (N,) int64."""
    if a.ndim != 1 or a.shape[0] != n:
        raise DataError(f"{path}: {key} has shape {a.shape} but there are {n} images; labels must be (N,) = ({n},), "
                        "one integer per image.")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise DataError(f"{path}: {key} holds non-integer values; labels must be integers 0..n_classes-1.")
    elif not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        raise DataError(f"{path}: {key} has dtype {a.dtype}; labels must be integers 0..n_classes-1.")
    if a.size and a.min() < 0:
        raise DataError(f"{path}: {key} has negative labels (min {a.min()}); labels must be integers "
                        "0..n_classes-1. Map them with np.unique(y, return_inverse=True).")
    return a.astype(np.int64)


def _npz_raw(path: str) -> _Raw:
    if not os.path.isfile(path):
        raise DataError(f"npz file {path} does not exist. Check the path given as --dataset npz:FILE.")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path} is empty (0 bytes). Save the arrays again with np.savez(path, x=..., y=...).")
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:1] == b"\x80":
        raise DataError(f"{path} is a pickle, which vaelab refuses to load: unpickling can run arbitrary code. "
                        "Save plain numeric arrays with np.savez(path, x=images, y=labels).")
    if head[:4] != b"PK\x03\x04" and head != b"\x93NUMPY":   # np.load would take anything else for a pickle
        raise DataError(f"{path} is not an .npz archive (it does not start with the zip signature). "
                        "Save the arrays with np.savez(path, x=images, y=labels).")
    arrays: dict[str, np.ndarray] = {}
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DataError(f"{path} is a single .npy array, not an .npz archive. "
                            "Save it with np.savez(path, x=images, y=labels).")
        with npz:
            keys = set(npz.files)
            if "x" not in keys:
                raise DataError(f"{path} has no array named 'x' (it has: {', '.join(sorted(keys)) or 'none'}). "
                                "Save the images under x: np.savez(path, x=images, y=labels).")
            for key in ("x", "y", "x_test", "y_test", "class_names"):
                if key in keys:
                    arrays[key] = npz[key]
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataError(f"{path} contains a pickled object array (or pickled data), which vaelab refuses to "
                            "load: unpickling can run arbitrary code. Save plain numeric arrays "
                            "(x.astype(np.uint8) or np.float32).") from None
        raise DataError(f"{path} is not a readable .npz file ({e}). Save it again with np.savez.") from None
    # zipfile raises NotImplementedError (unsupported compression, multi-disk) and RuntimeError (encrypted)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError, NotImplementedError,
            RuntimeError) as e:
        raise DataError(f"{path} is not a readable .npz file: truncated or corrupt ({e}). "
                        "Save it again with np.savez.") from None
    has_y, has_x_test, has_y_test = "y" in arrays, "x_test" in arrays, "y_test" in arrays
    if (has_y_test and not (has_y and has_x_test)) or (has_y and has_x_test and not has_y_test):
        present = ", ".join(k for k in ("y", "x_test", "y_test") if k in arrays)
        raise DataError(f"{path}: has x, {present}; labels must come for every split or none: "
                        "give y with x_test and y_test, or drop the labels.")
    x = _npz_images(arrays["x"], "x", path)
    y = _npz_labels(arrays["y"], "y", len(x), path) if "y" in arrays else None
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _npz_images(arrays["x_test"], "x_test", path)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x_test images are {x_test.shape[1:]} but x images are {x.shape[1:]}; "
                            "they must have the same (C, H, W).")
        if y is not None:
            y_test = _npz_labels(arrays["y_test"], "y_test", len(x_test), path)
    n_classes = 0 if y is None else int(max(y.max(), y_test.max() if y_test is not None else 0)) + 1
    names: tuple[str, ...] = tuple(str(i) for i in range(n_classes))
    if "class_names" in arrays and y is not None:
        cn = arrays["class_names"]
        if cn.ndim != 1 or cn.dtype.kind not in "US" or len(cn) < n_classes:
            raise DataError(f"{path}: class_names must be a 1-D string array with at least {n_classes} names "
                            f"(got dtype {cn.dtype}, shape {cn.shape}).")
        names = tuple(str(s) for s in cn)
        n_classes = len(names)
    return _Raw(f"npz:{path}", path, x, y, x_test, y_test, n_classes, names, _digest(x, y, x_test, y_test))


def _raw_for_spec(spec: str, data_dir: str | None) -> _Raw:
    text = spec.strip()
    low = text.lower()
    forms = ("valid forms: " + ", ".join(SPEC_FORMS) +
             " (e.g. --dataset idx:~/mnist or --dataset npz:images.npz); run `vaelab datasets` to see what is available.")
    if low == "digits":
        return _digits_raw()
    if low in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return _fashion_raw(data_dir)
    for prefix in ("idx:", "npz:"):
        if low.startswith(prefix):
            path = text[len(prefix):].strip()
            if not path:
                raise DataError(f"dataset spec {spec!r} has no path after {prefix!r}; {forms}")
            path = os.path.abspath(os.path.expanduser(path))
            if prefix == "npz:":
                return _npz_raw(path)
            hint = ("Give a folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                    "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz).")
            return _idx_raw(path, f"idx:{path}", path, hint, None)
    hint = " MNIST is not bundled: download its IDX files and use idx:FOLDER." if low == "mnist" else ""
    raise DataError(f"unknown dataset {spec!r}.{hint} {forms[0].upper()}{forms[1:]}")


# ---------------------------------------------------------------------------------------------
# Splitting, filtering, tensors
# ---------------------------------------------------------------------------------------------

def _split(n: int, y: np.ndarray | None, n_hold: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def _n_hold(n: int, fraction: float) -> int:
    """round(fraction * n), but at least 1 when fraction > 0 and at most n - 1."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(fraction * n)))


def _to_x(a: np.ndarray) -> Tensor:
    """(N, C, H, W) array (checked range) -> float32 tensor in [0, 1]."""
    if a.dtype == np.bool_:
        return torch.from_numpy(a.astype(np.float32))
    if np.issubdtype(a.dtype, np.integer):
        return torch.from_numpy(np.ascontiguousarray(a).astype(np.float32)).div_(255.0)
    return torch.from_numpy(np.array(a, dtype=np.float32))   # rounding to float32 keeps [0, 1]


def _check_classes(classes: Sequence[int], raw: _Raw, y_train: np.ndarray) -> list[int]:
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


def load_dataset(spec: str, *, data_dir: str | None = None, seed: int = 0, val_fraction: float = 0.1,
                 classes: Sequence[int] | None = None, max_train: int | None = None) -> Dataset:
    """Load a dataset and split it deterministically.

    Args:
        spec: "digits", "fashion-mnist", "idx:FOLDER" or "npz:FILE".
        data_dir: folder with the Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist).
        seed: seeds every split; the same seed gives identical tensors.
        val_fraction: fraction of the training images held out for validation, in [0, 1).
        classes: keep only these labels, relabelled 0..k-1 in the given order.
        max_train: keep a seeded (stratified) subset of at most this many training images.

    Returns:
        A Dataset; x tensors are (N, C, H, W) float32 in [0, 1], y tensors (N,) int64.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}; 0.1 is the default.")
    if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, (int, np.integer))
                                  or max_train < 1):
        raise ConfigError(f"max_train must be a positive integer (or None for all images), got {max_train!r}.")
    raw = _raw_for_spec(spec, data_dir)
    rng = np.random.default_rng(int(seed))

    # test, then val, then max_train: each draw only depends on the ones before it.
    if raw.x_test is None:
        train_idx, test_idx = _split(len(raw.x), raw.y, _n_hold(len(raw.x), TEST_FRACTION), rng)
        x_pool, y_pool = raw.x, raw.y
        x_test = raw.x[test_idx]
        y_test = None if raw.y is None else raw.y[test_idx]
    else:
        train_idx = np.arange(len(raw.x))
        x_pool, y_pool, x_test, y_test = raw.x, raw.y, raw.x_test, raw.y_test
    y_rest = None if y_pool is None else y_pool[train_idx]
    keep, hold = _split(len(train_idx), y_rest, _n_hold(len(train_idx), val_fraction), rng)
    idx = {"train": train_idx[keep], "val": train_idx[hold]}
    xs = {"train": x_pool[idx["train"]], "val": x_pool[idx["val"]], "test": x_test}
    ys = {"train": None if y_pool is None else y_pool[idx["train"]],
          "val": None if y_pool is None else y_pool[idx["val"]], "test": y_test}

    n_classes, names = raw.n_classes, raw.class_names
    if classes is not None:
        kept = _check_classes(classes, raw, ys["train"])
        relabel = np.full(max(raw.n_classes, max(kept) + 1), -1, dtype=np.int64)
        relabel[kept] = np.arange(len(kept))
        for split in xs:
            mask = np.isin(ys[split], kept)
            xs[split], ys[split] = xs[split][mask], relabel[ys[split][mask]]
        n_classes, names = len(kept), tuple(raw.class_names[c] for c in kept)
    if max_train is not None and max_train < len(xs["train"]):
        _, sub = _split(len(xs["train"]), ys["train"], int(max_train), rng)
        xs["train"] = xs["train"][sub]
        ys["train"] = None if ys["train"] is None else ys["train"][sub]
    for split in ("train", "test"):
        if len(xs[split]) == 0:
            raise DataError(f"dataset {raw.name}: the {split} split is empty after splitting/filtering "
                            f"(classes={list(classes) if classes is not None else None}). Use more images or other classes.")

    options = json.dumps({"seed": int(seed), "val_fraction": float(val_fraction),
                          "classes": None if classes is None else [int(c) for c in classes],
                          "max_train": None if max_train is None else int(max_train)}, sort_keys=True)
    fingerprint = hashlib.sha256(f"{raw.digest};{options}".encode()).hexdigest()[:16]
    to_y = (lambda a: None) if raw.y is None else (lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)))
    return Dataset(name=raw.name,
                   x_train=_to_x(xs["train"]), y_train=to_y(ys["train"]),
                   x_val=_to_x(xs["val"]), y_val=to_y(ys["val"]),
                   x_test=_to_x(xs["test"]), y_test=to_y(ys["test"]),
                   n_classes=n_classes if raw.y is not None else 0,
                   class_names=names if raw.y is not None else (),
                   source=raw.source, fingerprint=fingerprint)


def list_datasets(data_dir: str | None = None) -> list[dict]:
    """What `vaelab datasets` shows: one dict per dataset with name, available, source, detail."""
    out = [{"name": "digits", "available": True, "source": "scikit-learn load_digits (embedded)",
            "detail": "1797 images 1x8x8, 10 classes; seeded split 20% test, then val_fraction of the rest. Default."}]
    folder = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else FASHION_MNIST_DIR
    found, missing = _find_idx_files(folder) if os.path.isdir(folder) else ({}, ["folder"])
    if not missing:
        size = sum(os.path.getsize(p) for p in found.values())
        detail = f"60000 train + 10000 test images 1x28x28, 10 classes; files {size / 1e6:.1f} MB in {folder}"
    else:
        what = f"{folder} does not exist" if missing == ["folder"] else f"{folder} lacks {', '.join(missing)}"
        detail = (f"not available: {what}. Install with `sudo apt-get install dataset-fashion-mnist` "
                  "or pass --data-dir FOLDER with the four IDX files.")
    out.append({"name": "fashion-mnist", "available": not missing, "source": folder, "detail": detail})
    out.append({"name": "idx:FOLDER", "available": True, "source": "a folder you give",
                "detail": "any MNIST-format IDX folder (train-/t10k- images and labels, .gz or raw), "
                          "e.g. MNIST: --dataset idx:~/mnist"})
    out.append({"name": "npz:FILE", "available": True, "source": "a file you give",
                "detail": "np.savez(FILE, x=(N,H,W) or (N,C,H,W) uint8 0..255 or float [0,1], optional y, "
                          "x_test, y_test, class_names); read with allow_pickle=False"})
    return out


# ---------------------------------------------------------------------------------------------
# Corruptions (denoising AE training and the denoising metric)
# ---------------------------------------------------------------------------------------------

_LEVEL_RANGE = {"gaussian": (0.0, math.inf), "salt-and-pepper": (0.0, 1.0), "masking": (0.0, 1.0)}


def _check_corruption(kind: str, level: float) -> None:
    if kind not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)} "
                          "(optionally with a level, e.g. gaussian:0.3).")
    lo, hi = _LEVEL_RANGE[kind]
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not (lo <= level <= hi) or math.isnan(level):
        what = "sigma >= 0" if kind == "gaussian" else "a fraction in [0, 1]"
        raise ConfigError(f"corruption {kind} needs {what}, got {level!r} (default {CORRUPTIONS[kind]}).")


def corrupt(x: Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Return a corrupted copy of ``x`` (``x`` itself is not modified).

    - gaussian: add N(0, level^2) noise, clip to [0, 1].
    - salt-and-pepper: a fraction ``level`` of pixels set to 0 or 1 with equal odds.
    - masking: a fraction ``level`` of pixels set to 0.
    A "pixel" is one spatial position: all channels of a chosen pixel change together.

    Args:
        x: (B, C, H, W) float in [0, 1].
        kind: one of CORRUPTIONS.
        level: sigma for gaussian, a fraction in [0, 1] otherwise.
        generator: torch generator on x's device, for reproducible noise.
    Returns:
        (B, C, H, W), same dtype and device as x.
    """
    _check_corruption(kind, level)
    if not torch.is_floating_point(x) or x.dim() < 2:
        raise DataError(f"corrupt needs float images (B, C, H, W), got dtype {x.dtype} shape {tuple(x.shape)}.")
    kw = {"generator": generator, "device": x.device, "dtype": x.dtype}
    if kind == "gaussian":
        return (x + level * torch.randn(x.shape, **kw)).clamp_(0.0, 1.0)
    pixel_shape = (x.shape[0], 1, *x.shape[2:])                   # (B, 1, H, W), broadcast over C
    hit = torch.rand(pixel_shape, **kw) < level
    if kind == "masking":
        return x.masked_fill(hit, 0.0)
    salt = (torch.rand(pixel_shape, **kw) < 0.5).to(x.dtype)      # 1 = salt, 0 = pepper
    return torch.where(hit, salt, x)


def parse_corruption(text: str) -> tuple[str, float]:
    """Parse "kind[:level]": "gaussian:0.3" -> ("gaussian", 0.3); "masking" -> ("masking", 0.25)."""
    kind, sep, level_text = str(text).strip().lower().partition(":")
    kind = kind.strip().replace("_", "-")
    if kind not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {text!r}; choose one of {', '.join(CORRUPTIONS)}, "
                          "optionally with a level: gaussian:0.3, salt-and-pepper:0.2, masking:0.25.")
    if not sep:
        return kind, CORRUPTIONS[kind]
    try:
        level = float(level_text)
    except ValueError:
        raise ConfigError(f"corruption {text!r}: level {level_text.strip()!r} is not a number; "
                          f"write e.g. {kind}:{CORRUPTIONS[kind]}.") from None
    _check_corruption(kind, level)
    return kind, level
