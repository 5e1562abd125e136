"""Known-answer tests of density, coverage, their bootstrap and the realism score (vaelab.metrics.prd)."""
from __future__ import annotations

import numpy as np
import pytest

from vaelab.metrics import prd


@pytest.mark.parametrize("k", [3, 5])
def test_density_and_coverage_of_two_draws_of_one_gaussian(k):
    # Naeem et al. 2020, Sec. 4: for fake ~ real, E[density] = 1 and E[coverage] = 1 - (1/2)^k (large N)
    rng = np.random.default_rng(k)
    real, fake = rng.normal(size=(1500, 6)), rng.normal(size=(1500, 6))
    s = prd.knn_set_metrics(real, fake, k)
    assert s["density"] == pytest.approx(1.0, abs=0.06)
    assert s["coverage"] == pytest.approx(1 - 0.5 ** k, abs=0.03)
    assert (s["precision"], s["recall"]) == prd.precision_recall(real, fake, k)


def test_density_and_coverage_of_a_shifted_and_a_collapsed_generator():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(1000, 4))
    far = prd.knn_set_metrics(real, rng.normal(5, 1, size=(1000, 4)))
    assert far["density"] < 0.05 and far["coverage"] < 0.05
    one_mode = prd.knn_set_metrics(real, rng.normal(0, 0.05, size=(1000, 4)))   # all fakes near the mode
    assert one_mode["precision"] > 0.9 and one_mode["coverage"] < 0.1            # realistic but not covering


def test_set_bootstrap_contains_the_value_and_is_seeded():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(800, 5)), rng.normal(size=(800, 5))
    b = prd.knn_set_bootstrap(real, fake, n_boot=100, seed=0)
    for name in ("precision", "recall", "density", "coverage"):
        iv = b[name]
        assert iv["low"] <= iv["value"] <= iv["high"], name
        assert 0 < iv["half_width"] < 0.1, name
        assert len(iv["replicates"]) == 100
    assert prd.knn_set_bootstrap(real, fake, n_boot=20, seed=3) == prd.knn_set_bootstrap(real, fake, n_boot=20, seed=3)


def test_realism_score_real_points_pass_noise_fails():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(1500, 8))
    r_real = prd.realism_scores(real, rng.normal(size=(500, 8)))
    r_noise = prd.realism_scores(real, rng.uniform(-4, 4, size=(500, 8)))
    assert np.mean(r_real >= 1) > 0.3
    assert np.mean(r_noise >= 1) < 0.02
