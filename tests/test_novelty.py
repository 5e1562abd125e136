"""Known-answer tests of the memorisation metrics (vaelab.metrics.novelty)."""
from __future__ import annotations

import numpy as np
import pytest

from vaelab.metrics import novelty as N


def _mixture(rng: np.random.Generator, n: int, d: int = 6) -> np.ndarray:
    centres = np.random.default_rng(123).normal(0, 4, size=(5, d))
    return centres[rng.integers(0, 5, n)] + rng.normal(size=(n, d))


@pytest.fixture
def sets():
    rng = np.random.default_rng(0)
    return _mixture(rng, 1500), _mixture(rng, 600), rng


def test_nearest_neighbours_matches_brute_force(sets):
    train, test, _ = sets
    d, j = N.nearest_neighbours(test[:50], train)
    full = np.linalg.norm(test[:50, None] - train[None], axis=2)
    assert np.array_equal(j, full.argmin(1))
    assert np.allclose(d, full.min(1))


def test_nearest_neighbours_are_exact_on_ties_and_near_ties():
    """The float32 ranking keeps the true neighbour: exact duplicates go to the lowest index, and a
    reference whose rows are equally far to float32 precision (a sphere around the query) is decided in
    float64."""
    rng = np.random.default_rng(2)
    train = rng.normal(size=(400, 12))
    train[7], train[30:40] = train[250], train[3]           # duplicates: row 7 == 250, rows 3 == 30..39
    u = rng.normal(size=(60, 12))
    sphere = 5.0 + u / np.linalg.norm(u, axis=1, keepdims=True) * (1 + 1e-11 * rng.normal(size=(60, 1)))
    train = np.concatenate([train, sphere])
    query = np.concatenate([train[[3, 35, 250, 7]], rng.normal(size=(20, 12)), np.full((1, 12), 5.0)])
    d, j = N.nearest_neighbours(query, train)
    full = np.linalg.norm(query[:, None] - train[None], axis=2)
    assert j[:4].tolist() == [3, 3, 7, 7]
    assert np.array_equal(j, full.argmin(1))
    assert np.allclose(d, full.min(1), rtol=0, atol=1e-12)


def test_copies_of_training_images_are_detected(sets):
    train, test, rng = sets
    copies = train[rng.integers(0, len(train), 1000)] + rng.normal(0, 0.01, size=(1000, train.shape[1]))
    r = N.novelty(train, test, copies, seed=0)
    assert r["copy_fraction"] > 0.9                 # fresh draws would score ~0.01
    assert r["ct"] < -5                              # far below 0: data copying
    assert r["median_nn_samples"] < 0.1 * r["median_nn_test"]
    assert r["closest_dist"] == sorted(r["closest_dist"]) and len(r["closest"]) == 8


def test_fresh_draws_are_not_copies(sets):
    train, test, rng = sets
    fresh = _mixture(rng, 1000)
    r = N.novelty(train, test, fresh, seed=0)
    assert r["copy_fraction"] < 0.04                 # ~ the 1 % a fresh draw scores by construction
    assert abs(r["ct"]) < 3                          # a Z-score average: ~N(0, 1) under no copying
    assert r["ct_cells_used"] >= 5


def test_mann_whitney_z_matches_scipy():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40), rng.normal(0.5, 1, size=60)
    u = mannwhitneyu(a, b).statistic
    assert N.mann_whitney_z(a, b) == pytest.approx((u - 40 * 60 / 2) / np.sqrt(40 * 60 * 101 / 12))


def test_copy_fraction_threshold_is_the_test_percentile():
    r = N.copy_fraction(np.array([0.5, 2.0, 3.0, 10.0]), np.arange(1.0, 101.0))
    assert r["threshold"] == pytest.approx(np.percentile(np.arange(1.0, 101.0), 1))
    assert r["fraction"] == 0.25 and r["expected"] == 0.01
