"""vaelab.measure: the one batched pass, the arrays store, the holes-map grid (shared by report and explorer)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.errors import ConfigError
from vaelab.measure.batched import batches, over_batches
from vaelab.measure.grid import CONFIDENT, grid_confidence, latent_grid
from vaelab.measure.store import load_arrays, save_arrays


def test_batches_cover_the_range_once():
    assert [(s.start, s.stop) for s in batches(5, 2)] == [(0, 2), (2, 4), (4, 5)]
    assert list(batches(0, 3)) == []


def test_over_batches_equals_one_pass_and_passes_none_through():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(11, 3, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    seen = []

    def fn(xb, yb):
        seen.append((xb.shape[0], yb))
        return xb @ w

    out = over_batches(fn, x, None, batch_size=4)
    assert torch.allclose(out, x @ w, rtol=0, atol=1e-12) and [n for n, _ in seen] == [4, 4, 3]
    assert all(y is None for _, y in seen)
    a, b, none = over_batches(lambda xb: (xb.sum(1), 2 * xb, None), x, batch_size=5)
    assert torch.equal(a, x.sum(1)) and torch.equal(b, 2 * x) and none is None


def test_arrays_round_trip_without_pickle(tmp_path):
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "kinds": np.array(["a", "bc"]),
              "flag": np.array(True)}
    p = save_arrays(tmp_path / "arrays" / "m.npz", arrays)
    back = load_arrays(p)
    assert set(back) == set(arrays) and all(np.array_equal(back[k], v) for k, v in arrays.items())
    with pytest.raises(ValueError, match="no pickle"):
        save_arrays(tmp_path / "bad.npz", {"o": np.array([{"a": 1}], dtype=object)})
    assert not (tmp_path / "bad.npz").exists()


def test_unreadable_or_missing_arrays_are_one_clear_message(tmp_path):
    (tmp_path / "t.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match="not a readable arrays file"):
        load_arrays(tmp_path / "t.npz")
    with pytest.raises(ConfigError, match="is missing"):
        load_arrays(tmp_path / "none.npz")


class _FixedJudge:
    """A classifier whose class probabilities are the images' first two pixels (p, 1 - p)."""

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        p = images.reshape(images.shape[0], -1)[:, 0]
        return torch.stack([p, 1 - p], 1)


def test_grid_confidence_is_the_max_softmax_per_cell_in_row_major_order():
    p = torch.tensor([0.5, 0.95, 0.2, 0.6, 0.99, 0.05])               # 2 rows x 3 columns
    images = p[:, None, None, None].expand(6, 1, 2, 2).contiguous()
    g = grid_confidence(_FixedJudge(), images, 2, 3)
    conf = np.maximum(p.numpy(), 1 - p.numpy()).reshape(2, 3)
    assert np.allclose(g["confidence"], conf, atol=1e-4)
    assert g["predicted"] == [[0, 0, 1], [0, 0, 1]] and g["n_classes"] == 2
    assert g["frac_confident"] == pytest.approx(np.mean(conf >= CONFIDENT)) and g["threshold"] == CONFIDENT
    assert g["mean_confidence"] == pytest.approx(conf.mean(), rel=1e-6)


def test_codes_grid_spans_the_codes_percentile_box():
    codes = np.random.default_rng(0).normal(size=(1000, 2)) * [1.0, 3.0]
    z = latent_grid("codes", n=5, codes=codes).numpy()
    assert z.shape == (25, 2)
    assert np.allclose(z.min(0), np.percentile(codes, 1, axis=0), atol=1e-5)
    assert np.allclose(z.max(0), np.percentile(codes, 99, axis=0), atol=1e-5)
    with pytest.raises(ValueError, match="training codes"):
        latent_grid("codes", n=5)
