"""``npz:FILE``: an ``.npz`` with ``x`` (and optional ``y``, ``x_test``, ``y_test``, ``class_names``).

Read with ``allow_pickle=False``; a pickle or an object array is refused, never loaded. ``x`` of rank 3 or 4
holds images; a 2-D ``x`` (N, D) holds feature vectors (tabular data, like ``csv:FILE``: any finite real
values, standardised later with the training split's statistics; optional ``feature_names``).
"""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from vaelab import budget
from vaelab.data.base import check_count, check_label_range, arrays_digest, RawData
from vaelab.errors import DataError

_CHUNK = 1 << 20          # bytes per read of a member


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
    check_count(a, f"{path}: {key}")
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


def _npz_vectors(a: np.ndarray, key: str, path: str) -> np.ndarray:
    """Check a 2-D npz feature array (N, D) and return it as (N, 1, 1, D) float64 (a vector domain)."""
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{path}: {key} has dtype {a.dtype}; feature vectors must be numbers (int or float).")
    if a.shape[1] == 0:
        raise DataError(f"{path}: {key} has shape {a.shape}, vectors with no features. Save real features.")
    check_count(a, f"{path}: {key}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        r, j = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"{path}: {key} has a NaN/inf value in column {j} at row {r + 1} ({int(bad.sum())} in all). "
                        "Fill or drop those rows.")
    return a[:, None, None, :]


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


def _read_member(zf: zipfile.ZipFile, name: str, path: str) -> np.ndarray:
    """One .npy member of an .npz, bounded: its header is validated before anything is allocated.

    The header's shape x item size must equal the member's declared uncompressed size (zipfile stops
    inflating there), the memory budget must allow it, and object dtypes (pickles) are refused.
    """
    info = zf.getinfo(name)
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise DataError(f"{path}: member {name} has .npy format version {version}, which vaelab does not read. "
                            "Save it again with np.savez.")
        if dtype.hasobject:
            raise DataError(f"{path} contains a pickled object array ({name}, dtype {dtype}), which vaelab refuses "
                            "to load: unpickling can run arbitrary code. Save plain numeric arrays "
                            "(x.astype(np.uint8) or np.float32).")
        header_len = f.tell()
        n_bytes = budget.array_bytes(shape, dtype.itemsize)
        if info.file_size - header_len != n_bytes:
            raise DataError(f"{path}: member {name} declares an array of shape {tuple(shape)} and dtype {dtype} "
                            f"({n_bytes} bytes), but the member holds {info.file_size - header_len} data bytes; "
                            "the archive is corrupt. Save it again with np.savez.")
        budget.check(n_bytes, f"reading {path}",
                     f"its member {name} declares an array of shape {tuple(shape)}, dtype {dtype}",
                     "Free memory or raise --max-memory, or save a smaller array.")
        flat = np.empty(n_bytes // max(dtype.itemsize, 1) if dtype.itemsize else 0, dtype=dtype)
        buf, got = memoryview(flat).cast("B") if n_bytes else memoryview(b""), 0
        while got < n_bytes:
            k = f.readinto(buf[got:got + min(_CHUNK, n_bytes - got)])
            if not k:
                raise DataError(f"{path}: member {name} ends after {got} of its {n_bytes} data bytes; the archive "
                                "is truncated. Save it again with np.savez.")
            got += k
        f.read(1)                                      # reaches the member's end: zipfile checks its CRC there
    if fortran_order:
        return flat.reshape(shape[::-1]).transpose()
    return flat.reshape(shape)


def npz_raw(path: str) -> RawData:
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
    if head == b"\x93NUMPY":
        raise DataError(f"{path} is a single .npy array, not an .npz archive. "
                        "Save it with np.savez(path, x=images, y=labels).")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
            if "x" not in members:
                raise DataError(f"{path} has no array named 'x' (it has: {', '.join(sorted(members)) or 'none'}). "
                                "Save the images under x: np.savez(path, x=images, y=labels).")
            for key in ("x", "y", "x_test", "y_test", "class_names", "feature_names"):
                if key in members:
                    arrays[key] = _read_member(zf, members[key], path)
    except DataError:
        raise
    except ValueError as e:
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
    is_vectors = arrays["x"].ndim == 2
    x = _npz_vectors(arrays["x"], "x", path) if is_vectors else _npz_images(arrays["x"], "x", path)
    y = _npz_labels(arrays["y"], "y", len(x), path) if "y" in arrays else None
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = (_npz_vectors if is_vectors else _npz_images)(arrays["x_test"], "x_test", path)
        if x_test.shape[1:] != x.shape[1:]:
            what = (f"{x_test.shape[-1]} features but x has {x.shape[-1]}" if is_vectors else
                    f"images are {x_test.shape[1:]} but x images are {x.shape[1:]}")
            raise DataError(f"{path}: x_test {what}; they must have the same shape.")
        if y is not None:
            y_test = _npz_labels(arrays["y_test"], "y_test", len(x_test), path)
    n_images = len(x) + (0 if x_test is None else len(x_test))
    check_label_range({"y": y, "y_test": y_test}, n_images, path)
    n_classes = 0 if y is None else int(max(y.max(), y_test.max() if y_test is not None else 0)) + 1
    names: tuple[str, ...] = tuple(str(i) for i in range(n_classes))
    if "class_names" in arrays and y is not None:
        cn = arrays["class_names"]
        if cn.ndim != 1 or cn.dtype.kind not in "US" or len(cn) < n_classes:
            raise DataError(f"{path}: class_names must be a 1-D string array with at least {n_classes} names "
                            f"(got dtype {cn.dtype}, shape {cn.shape}).")
        if len(cn) > n_images:
            raise DataError(f"{path}: class_names holds {len(cn)} names for {n_images} images; give one name per "
                            "class (at most one class per image).")
        names = tuple(str(s) for s in cn)
        n_classes = len(names)
    features: tuple[str, ...] = ()
    if is_vectors:
        d = x.shape[-1]
        fn = arrays.get("feature_names")
        if fn is not None and (fn.ndim != 1 or fn.dtype.kind not in "US" or len(fn) != d):
            raise DataError(f"{path}: feature_names must be a 1-D string array with one name per feature ({d}), "
                            f"got dtype {fn.dtype}, shape {fn.shape}.")
        features = tuple(str(s) for s in fn) if fn is not None else tuple(f"x{j}" for j in range(d))
    return RawData(f"npz:{path}", path, x, y, x_test, y_test, n_classes, names, arrays_digest(x, y, x_test, y_test),
                feature_names=features)

