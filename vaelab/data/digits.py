"""``digits``: scikit-learn's embedded ``load_digits`` (1797 images 1x8x8, 10 classes), the default."""
from __future__ import annotations

import functools

import numpy as np

from vaelab.data.base import arrays_digest, RawData


@functools.lru_cache(maxsize=1)
def digits_raw() -> RawData:
    from sklearn import __version__ as sk_version
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8) float64, 0..16 -> [0, 1]
    y = bunch.target.astype(np.int64)
    return RawData("digits", f"scikit-learn {sk_version} load_digits (embedded)", x, y, None, None,
                10, tuple(str(i) for i in range(10)), arrays_digest(bunch.images, y))
