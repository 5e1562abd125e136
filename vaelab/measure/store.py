"""The arrays of a run folder: ``RUN/arrays/<name>.npz``, what the report's figures are drawn from.

``<name>`` is a model of the run (``ae``, ``vae``, ..., the 2-D pair ``ae-2d`` / ``vae-2d``) or
``data`` (the test images shown). An ``.npz`` is numpy's zip of ``.npy`` files: numbers and fixed-width
strings only, written atomically and read with ``allow_pickle=False`` (never unpickled).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from vaelab.errors import ConfigError
from vaelab.io import atomic_path

ARRAYS_DIR = "arrays"
DATA_NAME = "data"


def arrays_path(run: str | Path, name: str) -> Path:
    """Where ``name``'s arrays live in run folder ``run``."""
    return Path(run) / ARRAYS_DIR / f"{name}.npz"


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (name -> numeric or string ndarray) to ``path`` (.npz, compressed, atomic)."""
    bad = [k for k, v in arrays.items() if np.asarray(v).dtype == object]
    if bad:
        raise ValueError(f"arrays {bad} hold Python objects; only numbers and strings are saved (no pickle)")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read an .npz written by ``save_arrays`` (``allow_pickle=False``); a clear ConfigError if it is unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: the run folder's arrays/ were deleted or never written. "
                          "Re-run `vaelab compare` to write them.") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"{path} is not a readable arrays file ({e}); it was truncated or edited. "
                          "Re-run `vaelab compare` to rewrite it.") from None


def load_run_arrays(run: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Every arrays file of ``run``: name -> arrays ({} when the run has no arrays/ folder)."""
    folder = Path(run) / ARRAYS_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: load_arrays(p) for p in sorted(folder.glob("*.npz"))}
