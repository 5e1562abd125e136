"""Atomic file writes (temporary file in the same folder, fsync, rename) and the one strict-JSON writer.

A reader (or a `kill -9`) never sees a half-written file: it sees the old file or the new one.
A temporary left behind by a kill is named ``.NAME.*.tmp`` (the trainer removes its own on restart).
Every JSON file vaelab writes goes through ``strict_json`` (``atomic_write_json`` applies it), so
metrics.json, config.json and the rest are strict JSON (RFC 8259: no NaN, no Infinity).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from vaelab.errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The caller writes the whole file to the yielded path. On any exception the temporary file is
    removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise OutputError(f"cannot write to {path.parent}: {e.strerror or e}. "
                          "Choose a writable output folder (--out).") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())     # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)                   # the rename itself survives a power loss
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"could not write {path}: {e.strerror or e}. "
                          "Check that the disk has space and the folder is writable.") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass                                      # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(obj: Any) -> Any:
    """``obj`` with only JSON types, ready for ``json.dumps(..., allow_nan=False)``.

    dict keys -> str; tuples, lists and numpy arrays -> lists; numpy scalars -> Python numbers;
    NaN and +-inf -> None (JSON null: "not measurable here"); -0.0 -> 0.0 (so no "-0.0" is written:
    two runs that differ only in the sign of a zero give the same file); Paths -> str. Other
    objects are returned as they are (``json.dumps`` then refuses what it cannot write).
    """
    import numpy as np    # here, not at import time: `vaelab --help` must not pay for numpy

    def clean(o: Any) -> Any:
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
        if isinstance(o, (bool, np.bool_)):
            return bool(o)
        if isinstance(o, (int, np.integer)):
            return int(o)
        if isinstance(o, (float, np.floating)):
            return float(o) + 0.0 if math.isfinite(o) else None   # + 0.0 turns -0.0 into 0.0
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        return o

    return clean(obj)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``strict_json(obj)`` to ``path`` atomically (indent 2, key order kept, trailing newline)."""
    atomic_write_text(path, json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it to disk (a log: a torn last line is tolerated by readers)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines log, skipping a torn (half-written) last line."""
    out: list[dict] = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
