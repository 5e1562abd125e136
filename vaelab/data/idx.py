"""MNIST-format IDX folders: ``idx:FOLDER`` and ``fashion-mnist`` (the Debian package's four files)."""
from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import time
import zlib
from typing import BinaryIO

import numpy as np

from vaelab import budget
from vaelab.data.catalog import FASHION_MNIST_DIR, find_idx_files  # noqa: F401 (re-exported)
from vaelab.data.base import check_count, check_label_range, arrays_digest, RawData
from vaelab.errors import DataError

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_IDX_IMAGES_MAGIC = 0x00000803   # unsigned bytes, 3 dims (N, H, W)
_IDX_LABELS_MAGIC = 0x00000801   # unsigned bytes, 1 dim (N,)
_RACY_SECONDS = 2.0              # files modified more recently than this are never cached
_CHUNK = 1 << 20                 # bytes per read: bounds what one read inflates
_DEFLATE_MAX_RATIO = 1032        # deflate's largest expansion (RFC 1951: 258 bytes per 2-bit code, ~1032:1)


def _read_exact(f: BinaryIO, n: int, out: memoryview | None = None) -> bytes | int:
    """Read exactly ``n`` bytes (fewer only at EOF) in 1 MiB pieces: into ``out`` (returns the count) or as bytes."""
    if out is None:
        parts, got = [], 0
        while got < n:
            piece = f.read(min(_CHUNK, n - got))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)
    got = 0
    while got < n:
        k = f.readinto(out[got:got + min(_CHUNK, n - got)])
        if not k:
            break
        got += k
    return got


def _parse_idx_stream(f: BinaryIO, path: str, is_labels: bool, is_gz: bool, file_size: int) -> np.ndarray:
    """Read one IDX file from a (possibly gunzipping) stream, bounded by its header: (N, H, W) or (N,) uint8.

    The header is read first; the data are read into an array of exactly the declared size (after the
    memory budget allowed it), and then at most one more byte is read to detect trailing data. So a
    small .gz that inflates to gigabytes costs no more than its declared size.
    """
    expected = _IDX_LABELS_MAGIC if is_labels else _IDX_IMAGES_MAGIC
    what = "labels (unsigned bytes, 1 dim)" if is_labels else "images (unsigned bytes, 3 dims)"
    inflated = " after gunzip" if is_gz else ""
    head = _read_exact(f, 4)
    if len(head) < 4:
        raise DataError(f"{path} is too short ({len(head)} bytes{inflated}) to be an IDX file; it is truncated. "
                        "Download or install it again.")
    magic = int.from_bytes(head, "big")
    if magic != expected:
        hint = ""
        if magic in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
            hint = " It looks like an IDX file of the other kind: are the images and labels files swapped?"
        elif path.endswith(".gz") and not is_gz:
            hint = " (The file does not start with the gzip magic either.)"
        raise DataError(f"{path}: wrong IDX magic number 0x{magic:08x} ({magic}), expected 0x{expected:08x} "
                        f"({expected}) for MNIST-format {what}.{hint} Check that it is the right file.")
    n_dims = 1 if is_labels else 3
    header = 4 + 4 * n_dims
    rest = _read_exact(f, header - 4)
    if len(rest) < header - 4:
        raise DataError(f"{path}: IDX header is truncated ({4 + len(rest)} bytes{inflated}, need {header}). "
                        "Download or install the file again.")
    dims = [int.from_bytes(rest[4 * i: 4 + 4 * i], "big") for i in range(n_dims)]
    dims_text = "x".join(map(str, dims))
    n_expected = math.prod(dims)
    if dims[0] == 0 or n_expected == 0:
        raise DataError(f"{path}: IDX header says {dims_text}: the file holds no data. "
                        "Use a file with at least 2 images.")
    if not is_gz and file_size - header != n_expected:   # a plain file: its size is known before reading
        state = "it is truncated or corrupt" if file_size - header < n_expected else \
            "it is longer than its header declares (corrupt, or not an IDX file of these dims)"
        raise DataError(f"{path}: header dims {dims_text} need {n_expected} data bytes but the file has "
                        f"{file_size - header}; {state}. Download or install it again.")
    if is_gz and n_expected > _DEFLATE_MAX_RATIO * file_size:
        raise DataError(f"{path} is a truncated or corrupt gzip file: its IDX header declares {dims_text} = "
                        f"{n_expected} data bytes, more than a {file_size}-byte gzip file can inflate to (deflate "
                        f"expands at most {_DEFLATE_MAX_RATIO}:1). Download or install it again.")
    budget.check(n_expected, f"reading {path}", f"its IDX header declares {dims_text} bytes",
                 "If the file is genuine, free memory or raise --max-memory; otherwise the header is corrupt: "
                 "download or install the file again.")
    arr = np.empty(n_expected, dtype=np.uint8)          # untouched pages cost nothing until they are read
    got = _read_exact(f, n_expected, memoryview(arr))
    if got < n_expected:
        raise DataError(f"{path}: header dims {dims_text} need {n_expected} data bytes but the file has "
                        f"{got}{inflated}; it is truncated or corrupt. Download or install it again.")
    if f.read(1):                                       # bounded: one byte beyond the declared size
        raise DataError(f"{path}: the file holds more than the {n_expected} data bytes its header declares "
                        f"({dims_text}){inflated}; it is too long: corrupt, or not an IDX file of these dims. "
                        "Download or install it again.")
    return arr.reshape(dims)


def _read_idx_file(path: str, is_labels: bool) -> np.ndarray:
    """Open ``path`` (gunzipped in a stream when it starts with the gzip magic) and parse it, bounded."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}. Check the path and its permissions.") from None
    with f:
        try:
            file_size = os.fstat(f.fileno()).st_size
            if file_size == 0:
                raise DataError(f"{path} is empty (0 bytes). The file is damaged: download or install it again.")
            is_gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            if not is_gz:
                return _parse_idx_stream(f, path, is_labels, False, file_size)
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                return _parse_idx_stream(g, path, is_labels, True, file_size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(f"{path} is a truncated or corrupt gzip file ({e}). Download or install it "
                            "again (for Fashion-MNIST: apt-get install --reinstall dataset-fashion-mnist), "
                            "or gunzip a good copy.") from None
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror or e}. Check the file and its permissions.") from None


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, is_labels: bool, _key: tuple) -> tuple[np.ndarray, str]:
    arr = _read_idx_file(path, is_labels)
    return arr, arrays_digest(arr)


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
        arr = _read_idx_file(path, is_labels)
        return arr, arrays_digest(arr)
    return _read_idx_cached(path, is_labels, key)


def idx_raw(folder: str, name: str, source: str, install_hint: str,
             class_names: tuple[str, ...] | None) -> RawData:
    if not os.path.isdir(folder):
        raise DataError(f"dataset {name}: folder {folder} does not exist. {install_hint}")
    paths, missing = find_idx_files(folder)
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
    check_label_range({"train labels": arrays["train_y"], "test labels": arrays["test_y"]},
                       len(arrays["train_x"]) + len(arrays["test_x"]), f"dataset {name}")
    n_labels = int(max(arrays["train_y"].max(), arrays["test_y"].max())) + 1
    if class_names is not None and n_labels > len(class_names):
        raise DataError(f"dataset {name}: labels go up to {n_labels - 1} but it has {len(class_names)} "
                        f"classes (0..{len(class_names) - 1}). The label files are corrupt or from another dataset.")
    names = class_names if class_names is not None else tuple(str(i) for i in range(n_labels))
    x, x_test = arrays["train_x"][:, None], arrays["test_x"][:, None]      # (N, 1, H, W)
    check_count(x, f"dataset {name} train split")
    digest = hashlib.sha256("".join(digests).encode()).hexdigest()
    return RawData(name, source, x, arrays["train_y"].astype(np.int64), x_test,
                arrays["test_y"].astype(np.int64), len(names), names, digest)


def fashion_raw(data_dir: str | None) -> RawData:
    folder = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else FASHION_MNIST_DIR
    source = (f"{folder} (Debian dataset-fashion-mnist)" if data_dir is None else f"{folder} (--data-dir)")
    hint = ("Install it with `sudo apt-get install dataset-fashion-mnist`, or pass --data-dir FOLDER "
            "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz (gzipped or not).")
    return idx_raw(folder, "fashion-mnist", source, hint, FASHION_MNIST_CLASSES)

