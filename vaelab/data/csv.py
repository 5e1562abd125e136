"""``csv:FILE``: a table of numeric features, one row per example, read as vectors.

Layout: a header row of column names, then one row per example; every column is a numeric feature
except the ``label_column`` (when given), whose values (numbers or strings) are the classes, in sorted
order. The delimiter is sniffed among ``,``, ``;``, tab and ``|``. Missing values (an empty cell, ``NA``,
``nan``), non-numbers in a feature column, infinities, a constant feature and a label column the header
lacks are each refused with one DataError naming the column (and the row, 1-based, header excluded).

Memory is bounded: a first pass counts the rows (streamed), the budget (vaelab.budget) is checked for
the (N, D) float64 array and its float32 splits, and a second pass fills the array row by row.

Vectors travel through the one pipeline as (N, 1, 1, D) arrays: the (C, H, W) contract of every
image-shaped helper holds, and ``C == H == 1`` is what marks a vector domain (images are at least
2x2, see :func:`vaelab.data.base.is_vector_shape`). They are standardised in ``load_dataset`` with the
training split's mean and standard deviation (``Dataset.standardization``), which the checkpoint records.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Sequence

import numpy as np

from vaelab import budget
from vaelab.data.base import check_count, check_label_range, arrays_digest, column_order, RawData
from vaelab.errors import ConfigError, DataError

MISSING = ("", "na", "nan", "n/a", "null", "none", "?")
DELIMITERS = ",;\t|"
MAX_COLUMNS = 100_000
csv.field_size_limit(1 << 24)        # a 16 MB cell is already absurd; the default 128 kB may cut real text


def _open(path: str):
    return open(path, newline="", encoding="utf-8-sig")


def _dialect(path: str) -> type[csv.Dialect] | str:
    with _open(path) as f:
        head = f.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(head, delimiters=DELIMITERS)
    except csv.Error:
        return "excel"                # one column, or nothing to sniff: plain commas


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_raw(path: str, label_column: str | None = None, columns: Sequence[str] | None = None) -> RawData:
    """Read ``path`` as (N, 1, 1, D) float64 features, labels from ``label_column`` (None: unlabelled).

    ``columns``: new rows for a trained model: its feature columns, matched by name and returned in that order
    (``column_order``: a missing or extra column is refused by name); the label column may then be absent.
    """
    if label_column is not None and (not isinstance(label_column, str) or not label_column.strip()):
        raise ConfigError(f"--label-column takes a column name of the CSV header, got {label_column!r}.")
    if not os.path.isfile(path):
        raise DataError(f"CSV file {path} does not exist. Check the path given as --dataset csv:FILE.")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path} is empty (0 bytes). Give a CSV with a header row and one row per example.")
    try:
        dialect = _dialect(path)
        with _open(path) as f:
            reader = csv.reader(f, dialect)
            header = next(reader, None)
            n_rows = sum(1 for row in reader if row)              # pass 1: count (streamed)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} is not a readable UTF-8 CSV file ({e}). Save it as UTF-8 text with one header "
                        "row of column names.") from None
    if not header:
        raise DataError(f"{path} has no header row. The first row must name the columns.")
    header = [h.strip() for h in header]
    if len(header) > MAX_COLUMNS:
        raise DataError(f"{path} has {len(header)} columns; vaelab reads at most {MAX_COLUMNS}. Select features first.")
    if all(_is_number(h) for h in header if h):
        raise DataError(f"{path}: the first row holds numbers ({', '.join(header[:3])}, ...), not column names. "
                        "Add a header row naming the columns.")
    dup = next((h for i, h in enumerate(header) if h in header[:i]), None)
    if dup is not None:
        raise DataError(f"{path}: the header names column {dup!r} twice; give every column its own name.")
    if label_column is not None and label_column not in header and columns is not None:
        label_column = None                                # new rows to score may come without their labels
    if label_column is not None and label_column not in header:
        raise DataError(f"{path} has no column named {label_column!r} (--label-column); its columns are "
                        f"{', '.join(header[:20])}{' ...' if len(header) > 20 else ''}. Name one of them, or drop "
                        "--label-column for unlabelled data.")
    i_label = header.index(label_column) if label_column is not None else None
    features = [i for i in range(len(header)) if i != i_label]
    if not features:
        raise DataError(f"{path} has no feature column besides the label column {label_column!r}.")
    names = [header[i] or f"column {i + 1}" for i in features]
    if columns is not None:
        order = column_order(names, columns, path)
        features, names = [features[j] for j in order], [names[j] for j in order]
    d = len(features)
    # pass 2 holds the float64 table; load_dataset then makes float32 splits of it
    budget.check(budget.array_bytes((n_rows, d), 8) + budget.array_bytes((n_rows, d)) * 2, f"reading {path}",
                 f"{n_rows} rows x {d} numeric columns as float64",
                 "Free memory or raise --max-memory, or give fewer rows or columns.")
    x = np.empty((n_rows, d), dtype=np.float64)
    labels: list[str] = []
    row_no = 0
    with _open(path) as f:
        reader = csv.reader(f, dialect)
        next(reader)
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            row_no += 1
            if row_no > n_rows:
                raise DataError(f"{path} changed while it was read (more than its {n_rows} rows). Read it again.")
            if len(row) != len(header):
                raise DataError(f"{path}: row {row_no} (line {line_no}) has {len(row)} fields but the header has "
                                f"{len(header)} columns. Fix that row (a stray delimiter or a missing cell).")
            try:
                x[row_no - 1] = [float(row[i]) for i in features]
            except ValueError:
                for j, i in enumerate(features):
                    _check_cell(row[i], names[j], row_no, line_no, path, label_column)
            if i_label is not None:
                lab = row[i_label].strip()
                if lab.lower() in MISSING:
                    raise DataError(f"{path}: the label column {label_column!r} has a missing value at row {row_no} "
                                    f"(line {line_no}). Give every row a label, or drop those rows.")
                labels.append(lab)
    if row_no != n_rows:
        raise DataError(f"{path} changed while it was read (fewer than its {n_rows} rows). Read it again.")
    for j in range(d):                                       # inf parses as a float: refuse it here
        col = x[:, j]
        if not np.isfinite(col).all():
            r = int(np.flatnonzero(~np.isfinite(col))[0])
            what = "a missing value" if math.isnan(col[r]) else f"an infinite value ({col[r]:g})"
            raise DataError(f"{path}: column {names[j]!r} has {what} at row {r + 1}. Fill or drop those rows, or drop "
                            "the column.")
    check_count(x, f"{path}: the table")
    lo, hi = x.min(0), x.max(0)
    const = np.flatnonzero(lo == hi)
    if len(const):
        j = int(const[0])
        raise DataError(f"{path}: column {names[j]!r} is constant (every value is {lo[j]:g}): it carries no "
                        f"information and cannot be standardised ({len(const)} such column(s)). Drop it.")
    y, classes = None, ()
    if i_label is not None:
        y, classes = _labels(labels)
        check_label_range({label_column: y}, len(x), path)
    x = x[:, None, None, :]                                  # (N, D) -> (N, 1, 1, D): a vector domain
    return RawData(f"csv:{path}", f"{path}: {len(x)} rows x {d} numeric columns"
                + (f"; labels from column {label_column!r} ({len(classes)} classes)" if y is not None else "; unlabelled"),
                x, y, None, None, len(classes), classes, arrays_digest(x, y), feature_names=tuple(names))


def _check_cell(text: str, column: str, row_no: int, line_no: int, path: str, label_column: str | None) -> None:
    """Refuse one cell that is not a number, with the column, the row and the fix."""
    try:
        float(text)
        return
    except ValueError:
        pass
    if text.strip().lower() in MISSING:
        raise DataError(f"{path}: column {column!r} has a missing value at row {row_no} (line {line_no}). Fill or "
                        "drop those rows, or drop the column.")
    hint = ("" if label_column is not None else
            f" If it holds the classes, pass --label-column {column}.")
    raise DataError(f"{path}: column {column!r} holds {text.strip()[:40]!r} at row {row_no} (line {line_no}), not a "
                    f"number. Every column but the label column must be numeric: fix or drop it.{hint}")


def _labels(values: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices in sorted class order (numerically when every label is a number) and the class names."""
    uniq = sorted(set(values))
    if all(_is_number(v) for v in uniq):
        uniq = sorted(uniq, key=float)
        # "1" and "1.0" are one class
        canon = {v: format(float(v), "g") for v in uniq}
        names = tuple(dict.fromkeys(canon[v] for v in uniq))
        index = {n: i for i, n in enumerate(names)}
        return np.asarray([index[canon[v]] for v in values], dtype=np.int64), names
    index = {v: i for i, v in enumerate(uniq)}
    return np.asarray([index[v] for v in values], dtype=np.int64), tuple(uniq)
