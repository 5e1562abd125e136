"""Datasets as tensors in [0, 1] with fixed, seeded splits, and the corruptions used for denoising.

A :class:`Dataset` holds float32 images ``x`` of shape (N, C, H, W) in [0, 1], optional int64
labels ``y`` of shape (N,), fixed train/val/test splits, its provenance and a fingerprint.
:func:`load_dataset` builds one from a spec:

- ``digits``: scikit-learn ``load_digits`` (embedded, the default; 1797 images 1x8x8).
- ``fashion-mnist``: the four IDX files of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``) or of ``data_dir``. Nothing is downloaded.
- ``idx:FOLDER``: any MNIST-format IDX folder (``train-images-idx3-ubyte[.gz]`` and friends).
- ``npz:FILE``: an ``.npz`` with ``x`` (and optional ``y``, ``x_test``, ``y_test``, ``class_names``),
  read with ``allow_pickle=False``; a 2-D ``x`` (N, D) holds feature vectors.
- ``folder:PATH``: a folder of image files (one sub-folder per class gives labels).
- ``csv:FILE``: a table of numeric features (``label_column`` names the classes' column).

Vectors (csv, 2-D npz) are (N, 1, 1, D) float32 tensors standardised with the training split's mean and
std (``Dataset.standardization``, recorded in checkpoints; ``standardize`` applies it to new data).

Every problem with the data is a :class:`~vaelab.errors.DataError` whose message says what is
wrong and how to fix it; a bad option value (val_fraction, seed, a corruption level) is a
:class:`~vaelab.errors.ConfigError`.

Splits: datasets with an official test split keep it; the others get a seeded split with 20 % test.
Validation is a seeded ``val_fraction`` of the remaining training images. Splits are stratified by
label when there are labels, and drawn in a fixed order (test, then val, then ``max_train``), so
the same seed gives identical tensors and ``classes``/``max_train`` only ever take subsets of the
splits one gets without them.

Layout: ``base`` (Dataset, the unsplit ``RawData`` arrays), one module per source (``digits``, ``idx``,
``npz``, ``folder``, ``csv``), ``splits`` (seeded splits, class filtering, tensors), ``sources`` (spec -> Dataset,
``list_datasets``) and ``corruptions``. Import the public names from ``vaelab.data``.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module that holds it, imported on first use: `vaelab datasets` (vaelab.data.catalog) and
# `vaelab --help` need no numpy or torch
_HOMES = {"Dataset": "base", "is_vector_shape": "base",
          "CORRUPTIONS": "corruptions", "VECTOR_CORRUPTIONS": "corruptions", "corrupt": "corruptions",
          "corruptions_for": "corruptions", "parse_corruption": "corruptions",
          "FASHION_MNIST_CLASSES": "idx", "FASHION_MNIST_DIR": "catalog", "list_datasets": "catalog",
          "SPEC_FORMS": "sources", "fit_standardization": "sources", "load_dataset": "sources",
          "load_new_data": "sources",
          "standardize": "sources", "TEST_FRACTION": "splits"}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"vaelab.data.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'vaelab.data' has no attribute {name!r}")
