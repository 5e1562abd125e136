"""Molecule data: the MOSES splits, users' own SMILES files, and cleaning of invalid SMILES.

The MOSES splits (train 1,584,663 / test 176,074 / scaffold test 176,226 SMILES, Polykovskiy et al.
2020) are read from the csv.gz files inside the installed PyPI package ``molsets`` 0.3.1. That
package pins ``pomegranate==0.12``, which does not build on recent Pythons, so it is installed with
``pip install --no-deps molsets==0.3.1``; vaelab never imports it (only its data files are read).

Invalid SMILES never crash a loader: :func:`clean_smiles` counts and skips them and logs one
summary line.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import importlib.util
import io
import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from vaelab.errors import DataError

log = logging.getLogger("vaelab.molecules")

MOSES_SPLITS = ("train", "test", "test_scaffolds")
INSTALL_HINT = ("Install the molecule extras with `pip install vaelab[molecules]` and the MOSES data "
                "with `pip install --no-deps molsets==0.3.1` (--no-deps: molsets pins pomegranate==0.12, "
                "which does not build on Python 3.11).")


def _require_rdkit():
    """Import RDKit's Chem or raise a DataError that says how to install it."""
    try:
        from rdkit import Chem
    except ImportError:
        raise DataError(f"RDKit is not installed. {INSTALL_HINT}") from None
    return Chem


@contextlib.contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's per-molecule parse errors (we count and summarise them instead)."""
    from rdkit import RDLogger
    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def get_mol(smiles: str):
    """Parse and sanitise one SMILES with RDKit; None if it is invalid (MOSES ``get_mol``)."""
    Chem = _require_rdkit()
    if not isinstance(smiles, str) or len(smiles) == 0:
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol)
    except ValueError:
        return None
    return mol


def canonical_smiles(smiles: str) -> str | None:
    """RDKit canonical SMILES (isomeric, as MOSES ``canonic_smiles``), or None if invalid."""
    mol = get_mol(smiles)
    if mol is None:
        return None
    from rdkit import Chem
    return Chem.MolToSmiles(mol)


def clean_smiles(smiles: Iterable[str], what: str = "SMILES") -> tuple[list[str], int]:
    """Canonicalise SMILES, skipping invalid ones; never raises on bad molecules.

    Args:
        smiles: N strings.
        what: a name for the data in the summary line (e.g. a file name).

    Returns:
        (valid canonical SMILES in input order, number of invalid strings skipped). When some are
        invalid, one summary line is logged at WARNING level on logger ``vaelab.molecules``.
    """
    valid: list[str] = []
    bad: list[str] = []
    with quiet_rdkit():
        for s in smiles:
            c = canonical_smiles(s)
            if c is None:
                bad.append(s)
            else:
                valid.append(c)
    if bad:
        examples = ", ".join(repr(b)[:40] for b in bad[:3])
        log.warning("%s: skipped %d invalid of %d SMILES (RDKit could not parse/sanitise them; e.g. %s)",
                    what, len(bad), len(bad) + len(valid), examples)
    return valid, len(bad)


def moses_data_dir() -> Path:
    """The folder holding the MOSES csv.gz files inside the installed ``molsets`` package."""
    spec = importlib.util.find_spec("moses")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"The MOSES data (PyPI package molsets) is not installed. {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data"
    if not folder.is_dir():
        raise DataError(f"The installed `moses` package at {folder.parent.parent} has no dataset/data "
                        f"folder: it is not molsets 0.3.1. {INSTALL_HINT}")
    return folder


def load_moses(split: str = "train", subset: int | None = None, seed: int = 0,
               max_length: int | None = None) -> list[str]:
    """Read one MOSES split as a list of SMILES (as shipped: RDKit-canonical, all valid).

    Args:
        split: "train" (1,584,663), "test" (176,074) or "test_scaffolds" (176,226).
        subset: if given, a random sample of this many molecules (without replacement).
        seed: seed of that sample.
        max_length: if given, only molecules whose shipped SMILES has at most this many characters
            (applied before the sample; e.g. 30 keeps 208,323 train and 23,128 test molecules).
    """
    if split not in MOSES_SPLITS:
        raise DataError(f"unknown MOSES split {split!r}; choose one of {', '.join(MOSES_SPLITS)}")
    path = moses_data_dir() / f"{split}.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing. {INSTALL_HINT}")
    smiles = _read_csv_column(path)
    if max_length is not None:
        if max_length < 1:
            raise DataError(f"max_length={max_length} must be >= 1 (characters of a SMILES), or None for no limit")
        smiles = [s for s in smiles if len(s) <= max_length]
        if not smiles:
            raise DataError(f"no MOSES {split} molecule has a SMILES of at most {max_length} characters")
    if subset is not None:
        if not 0 < subset <= len(smiles):
            raise DataError(f"subset={subset} must be between 1 and {len(smiles)} (size of MOSES {split})")
        idx = np.random.default_rng(seed).choice(len(smiles), size=subset, replace=False)
        smiles = [smiles[i] for i in idx]
    return smiles


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def _read_csv_column(path: Path) -> list[str]:
    """The SMILES column of a CSV (header ``SMILES``/``smiles``; else the first column)."""
    try:
        with _open_text(path) as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                raise DataError(f"{path} is empty")
            lower = [h.strip().lower() for h in header]
            col = lower.index("smiles") if "smiles" in lower else 0
            return [r[col].strip() for r in rows if len(r) > col and r[col].strip()]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"could not read {path}: {e}") from None


def read_smiles_file(path: str | Path) -> list[str]:
    """Read a user's SMILES file as raw strings (pass them to :func:`clean_smiles`).

    Formats: ``.smi``/``.txt`` (first whitespace-separated field per line; blank lines and lines
    starting with ``#`` skipped) and ``.csv`` (column ``SMILES``/``smiles``, else the first column,
    which is then taken as a header row), each optionally ``.gz``-compressed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SMILES file {path} does not exist")
    stem_suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    if stem_suffix.lower() == ".csv":
        return _read_csv_column(path)
    try:
        with _open_text(path) as f:
            smiles = [line.split()[0] for line in f if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"could not read {path}: {e}") from None
    if smiles and smiles[0].lower() == "smiles":  # a header line
        smiles = smiles[1:]
    return smiles
