"""From a spec string to a split Dataset: ``load_dataset``, and what ``vaelab datasets`` lists."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

import numpy as np
import torch

from vaelab import budget
from vaelab.data.base import Dataset, RawData, column_order, is_vector_shape
from vaelab.data.csv import csv_raw
from vaelab.data.digits import digits_raw
from vaelab.data.folder import folder_raw
from vaelab.data.catalog import list_datasets  # noqa: F401 (re-exported)
from vaelab.data.idx import fashion_raw, idx_raw
from vaelab.data.npz import npz_raw
from vaelab.data.splits import TEST_FRACTION, check_classes, n_hold, split_indices, to_x
from vaelab.errors import ConfigError, DataError

SPEC_FORMS = ("digits", "fashion-mnist", "idx:FOLDER", "npz:FILE", "folder:PATH", "csv:FILE")


def _raw_for_spec(spec: str, data_dir: str | None, images: dict | None = None,
                  label_column: str | None = None, columns: Sequence[str] | None = None) -> RawData:
    text = spec.strip()
    low = text.lower()
    if label_column is not None and not low.startswith("csv:"):
        raise ConfigError(f"--label-column applies to tables (--dataset csv:FILE) only, not to {spec!r}. Drop the "
                          "option (an npz file gives its labels as y).")
    images = {k: v for k, v in (images or {}).items() if v not in (None, False)}
    if images and not low.startswith("folder:"):
        flags = ", ".join("--" + k.replace("_", "-").replace("channels", "image-channels") for k in images)
        raise ConfigError(f"{flags} appl{'y' if len(images) > 1 else 'ies'} to image folders (--dataset folder:PATH) "
                          f"only, not to {spec!r}. Drop the option, or convert the data to a folder of images.")
    forms = ("valid forms: " + ", ".join(SPEC_FORMS) +
             " (e.g. --dataset idx:~/mnist or --dataset npz:images.npz); run `vaelab datasets` to see what is available.")
    if low == "digits":
        return digits_raw()
    if low in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return fashion_raw(data_dir)
    for prefix in ("idx:", "npz:", "folder:", "csv:"):
        if low.startswith(prefix):
            path = text[len(prefix):].strip()
            if not path:
                raise DataError(f"dataset spec {spec!r} has no path after {prefix!r}; {forms}")
            path = os.path.abspath(os.path.expanduser(path))
            if prefix == "npz:":
                return npz_raw(path)
            if prefix == "csv:":
                return csv_raw(path, label_column, columns)
            if prefix == "folder:":
                return folder_raw(path, **images)
            hint = ("Give a folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                    "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz).")
            return idx_raw(path, f"idx:{path}", path, hint, None)
    hint = " MNIST is not bundled: download its IDX files and use idx:FOLDER." if low == "mnist" else ""
    raise DataError(f"unknown dataset {spec!r}.{hint} {forms[0].upper()}{forms[1:]}")



def load_dataset(spec: str, *, data_dir: str | None = None, seed: int = 0, val_fraction: float = 0.1,
                 classes: Sequence[int] | None = None, max_train: int | None = None, image_size: int | None = None,
                 image_channels: int | None = None, skip_unreadable: bool = False,
                 label_column: str | None = None, standardization: dict | None = None,
                 feature_names: Sequence[str] | None = None) -> Dataset:
    """Load a dataset and split it deterministically.

    Args:
        spec: "digits", "fashion-mnist", "idx:FOLDER", "npz:FILE", "folder:PATH" or "csv:FILE".
        data_dir: folder with the Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist).
        seed: seeds every split; the same seed gives identical tensors.
        val_fraction: fraction of the training images held out for validation, in [0, 1).
        classes: keep only these labels, relabelled 0..k-1 in the given order.
        max_train: keep a seeded (stratified) subset of at most this many training images.
        image_size, image_channels, skip_unreadable: folder:PATH only (vaelab.data.folder): resize to S x S
            (centre crop), 1 (grey) or 3 (RGB) channels, skip damaged files instead of refusing them.
        label_column: csv:FILE only: the column of the classes.
        standardization, feature_names: tables only, new data for a trained model (``load_new_data``): its
            saved statistics instead of this training split's, and its feature columns (matched by name).

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
    raw = _raw_for_spec(spec, data_dir, {"image_size": image_size, "channels": image_channels,
                                         "skip_unreadable": skip_unreadable}, label_column, feature_names)
    if standardization is not None and not is_vector_shape(raw.x.shape[1:]):
        raise ConfigError(f"{raw.name} holds images of shape {tuple(raw.x.shape[1:])}, but the model was trained on a "
                          "table (standardised feature vectors): give a table with the training columns (csv:FILE or a "
                          "2-D npz), or use a model trained on images.")
    if feature_names is not None and is_vector_shape(raw.x.shape[1:]):      # npz: match its names too
        order = column_order(raw.feature_names, feature_names, raw.name)
        if order != list(range(len(order))):
            raw = dataclasses.replace(raw, x=raw.x[..., order], feature_names=tuple(feature_names),
                                      x_test=None if raw.x_test is None else raw.x_test[..., order])
    if is_vector_shape(raw.x.shape[1:]) and not raw.feature_names:
        raise DataError(f"{raw.name}: images of {raw.x.shape[2]}x{raw.x.shape[3]} pixels; images must be at least 2x2 "
                        "(a 1-pixel-high grey image reads as a feature vector). For tabular data save a 2-D x (N, D) "
                        "or use csv:FILE.")
    n_images = len(raw.x) + (0 if raw.x_test is None else len(raw.x_test))
    # the splits as float32 tensors, plus one split-sized copy while converting
    budget.check(budget.array_bytes((n_images, *raw.x.shape[1:])) * 2, f"loading {raw.name}",
                 f"{n_images} images of shape {tuple(raw.x.shape[1:])} as float32",
                 "Free memory or raise --max-memory; or use a smaller dataset (fewer or smaller images).")
    rng = np.random.default_rng(int(seed))

    # test, then val, then max_train: each draw only depends on the ones before it.
    if raw.x_test is None:
        train_idx, test_idx = split_indices(len(raw.x), raw.y, n_hold(len(raw.x), TEST_FRACTION), rng)
        x_pool, y_pool = raw.x, raw.y
        x_test = raw.x[test_idx]
        y_test = None if raw.y is None else raw.y[test_idx]
    else:
        train_idx = np.arange(len(raw.x))
        x_pool, y_pool, x_test, y_test = raw.x, raw.y, raw.x_test, raw.y_test
    y_rest = None if y_pool is None else y_pool[train_idx]
    keep, hold = split_indices(len(train_idx), y_rest, n_hold(len(train_idx), val_fraction), rng)
    idx = {"train": train_idx[keep], "val": train_idx[hold]}
    xs = {"train": x_pool[idx["train"]], "val": x_pool[idx["val"]], "test": x_test}
    ys = {"train": None if y_pool is None else y_pool[idx["train"]],
          "val": None if y_pool is None else y_pool[idx["val"]], "test": y_test}

    n_classes, names = raw.n_classes, raw.class_names
    if classes is not None:
        kept = check_classes(classes, raw, ys["train"])
        relabel = np.full(max(raw.n_classes, max(kept) + 1), -1, dtype=np.int64)
        relabel[kept] = np.arange(len(kept))
        for split in xs:
            mask = np.isin(ys[split], kept)
            xs[split], ys[split] = xs[split][mask], relabel[ys[split][mask]]
        n_classes, names = len(kept), tuple(raw.class_names[c] for c in kept)
    if max_train is not None and max_train < len(xs["train"]):
        _, sub = split_indices(len(xs["train"]), ys["train"], int(max_train), rng)
        xs["train"] = xs["train"][sub]
        ys["train"] = None if ys["train"] is None else ys["train"][sub]
    for split in ("train", "test"):
        if len(xs[split]) == 0:
            raise DataError(f"dataset {raw.name}: the {split} split is empty after splitting/filtering "
                            f"(classes={list(classes) if classes is not None else None}). Use more images or other classes.")

    stats = None
    if is_vector_shape(raw.x.shape[1:]):          # standardise every split with the training split's statistics
        stats = standardization or fit_standardization(xs["train"], raw.feature_names, raw.name)
        xs = {k: standardize(v, stats) for k, v in xs.items()}
    options = json.dumps({"seed": int(seed), "val_fraction": float(val_fraction),
                          "classes": None if classes is None else [int(c) for c in classes],
                          "max_train": None if max_train is None else int(max_train)}, sort_keys=True)
    fingerprint = hashlib.sha256(f"{raw.digest};{options}".encode()).hexdigest()[:16]
    to_y = (lambda a: None) if raw.y is None else (lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)))
    return Dataset(name=raw.name,
                   x_train=to_x(xs["train"]), y_train=to_y(ys["train"]),
                   x_val=to_x(xs["val"]), y_val=to_y(ys["val"]),
                   x_test=to_x(xs["test"]), y_test=to_y(ys["test"]),
                   n_classes=n_classes if raw.y is not None else 0,
                   class_names=names if raw.y is not None else (),
                   source=raw.source, fingerprint=fingerprint, feature_names=raw.feature_names,
                   standardization=stats, label_column=label_column)


def load_new_data(spec: str, trained: dict, *, data_dir: str | None = None, seed: int = 0, val_fraction: float = 0.1,
                  what: str = "--dataset") -> Dataset:
    """``spec`` read as new data for models trained on ``trained`` (``Dataset.summary()`` or config.json's "data").

    Tables: columns matched by name to the training features (a missing or extra one is refused, named), every row
    standardised with the training split's statistics (never the new file's own), labels from the training label
    column when the file has it. Images for table models and tables for image models are refused (``what``: the
    option that named ``spec``, for the message).
    """
    is_table = trained.get("domain") == "vectors"
    low = spec.strip().lower()
    if not low.startswith("npz:") and low.startswith("csv:") != is_table:     # npz holds either: known once read
        raise _other_domain(spec, trained, what)
    opts: dict = {}
    if is_table:
        opts = {"standardization": trained.get("standardization"), "feature_names": trained.get("feature_names")}
        if trained.get("label_column") and low.startswith("csv:"):
            opts["label_column"] = trained["label_column"]
    data = load_dataset(spec, data_dir=data_dir, seed=seed, val_fraction=val_fraction, **opts)
    if (data.domain == "vectors") != is_table:
        raise _other_domain(spec, trained, what)
    return data


def _other_domain(spec: str, trained: dict, what: str) -> DataError:
    """A table given for models trained on images, or images for models trained on a table."""
    if trained.get("domain") == "vectors":
        return DataError(f"{what} {spec} holds images, but the model was trained on a table of "
                         f"{len(trained.get('feature_names') or ())} features; give a table with the training columns "
                         "(csv:FILE or a 2-D npz), or use a model trained on images.")
    shape = "x".join(map(str, trained.get("shape") or ())) or "images"
    return DataError(f"{what} {spec} is a table, but the model was trained on images ({shape}); give images, or use "
                     "a model trained on this table.")


def fit_standardization(x_train: np.ndarray, feature_names: Sequence[str], name: str) -> dict:
    """The training split's per-feature mean and std (ddof 0): {"mean": [D], "std": [D]} in the data's units.

    Args:
        x_train: (N, 1, 1, D) raw features. A feature constant on the training split is refused (its std is 0).
    """
    a = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)      # (N, D)
    mean, std = a.mean(0), a.std(0)
    zero = np.flatnonzero(~(std > 0))
    if len(zero):
        j = int(zero[0])
        col = feature_names[j] if j < len(feature_names) else f"x{j}"
        raise DataError(f"{name}: feature {col!r} is constant on the training split (every value {mean[j]:g}), so it "
                        f"cannot be standardised ({len(zero)} such feature(s)). Drop it.")
    return {"mean": mean.tolist(), "std": std.tolist()}


def standardize(x: np.ndarray, stats: dict) -> np.ndarray:
    """(x - mean) / std with saved statistics (``fit_standardization``): (N, 1, 1, D) -> float32, same shape."""
    mean, std = np.asarray(stats["mean"], dtype=np.float64), np.asarray(stats["std"], dtype=np.float64)
    if x.shape[-1] != len(mean):
        raise DataError(f"the data have {x.shape[-1]} features but the saved standardisation has {len(mean)}; use data "
                        "with the same columns as the training data.")
    return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)
