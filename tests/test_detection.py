"""Anomaly-detection metrics against known answers and against sklearn.metrics."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from vaelab.metrics.detection import (
    auprc,
    auroc,
    detection_table,
    fpr_at_tpr,
    paired_difference,
    rank_correlation,
    strip_boot,
    threshold_at_fpr,
)


def _sk(s_in, s_out):
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    fpr, tpr, _ = roc_curve(y, s)
    return roc_auc_score(y, s), average_precision_score(y, s), fpr[np.searchsorted(tpr, 0.95)]


def test_perfect_separation():
    s_in, s_out = np.arange(50.0), 100 + np.arange(30.0)
    assert auroc(s_in, s_out) == 1.0
    assert auprc(s_in, s_out) == 1.0
    assert fpr_at_tpr(s_in, s_out) == 0.0
    # the score reversed is perfectly wrong
    assert auroc(-s_in, -s_out) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    s_in = np.round(rng.normal(size=300), 1)          # rounding: many ties
    s_out = np.round(rng.normal(0.7, 1.2, size=170), 1)
    a, p, f = _sk(s_in, s_out)
    assert auroc(s_in, s_out) == pytest.approx(a, abs=1e-12)
    assert auprc(s_in, s_out) == pytest.approx(p, abs=1e-12)
    assert fpr_at_tpr(s_in, s_out) == pytest.approx(f, abs=1e-12)


def test_random_score_is_chance_within_its_interval():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(size=400), rng.normal(size=200)
    t = detection_table({"random": (s_in, s_out)}, n_boot=500, seed=0)["random"]
    lo, hi = t["auroc"]["ci"]
    assert lo < 0.5 < hi and hi - lo < 0.15
    assert t["auroc"]["value"] == pytest.approx(auroc(s_in, s_out))
    # chance AUPRC is the anomaly fraction, chance FPR@95 is about 0.95
    assert t["auprc"]["ci"][0] < 200 / 600 < t["auprc"]["ci"][1]
    assert t["fpr_at_95_tpr"]["ci"][0] < 0.95 < t["fpr_at_95_tpr"]["ci"][1]


def test_bootstrap_interval_covers_the_true_auroc():
    # Two unit Gaussians dmu apart: AUROC = Phi(dmu / sqrt 2) exactly; the 95 % interval should cover it
    from scipy.stats import norm

    true = norm.cdf(1.0 / np.sqrt(2))
    hits = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        t = detection_table({"s": (rng.normal(size=150), rng.normal(1.0, size=100))}, n_boot=300, seed=seed)
        lo, hi = t["s"]["auroc"]["ci"]
        hits += lo <= true <= hi
    assert hits >= 34          # nominal 38 of 40; binomial slack


def test_paired_difference_calls_only_real_differences():
    rng = np.random.default_rng(0)
    x_in, x_out = rng.normal(size=300), rng.normal(1.5, size=300)
    noise_in, noise_out = rng.normal(size=300), rng.normal(size=300)
    table = detection_table({"good": (x_in, x_out), "noisy": (x_in + 2 * noise_in, x_out + 2 * noise_out),
                             "same": (x_in + 1e-9, x_out + 1e-9)}, n_boot=300, seed=0)
    assert paired_difference(table, "good", "noisy")["excludes_zero"]
    d = paired_difference(table, "good", "same")
    assert not d["excludes_zero"] and d["value"] == pytest.approx(0.0)
    assert "boot" not in strip_boot(table)["good"]["auroc"]


def test_paired_scores_must_score_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        detection_table({"a": (np.zeros(3), np.ones(2)), "b": (np.zeros(4), np.ones(2))})
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.0, np.nan], [1.0])


def test_threshold_at_fpr_flags_that_fraction_of_new_inliers():
    rng = np.random.default_rng(0)
    t = threshold_at_fpr(rng.normal(size=2000), 0.05)
    assert np.mean(rng.normal(size=20000) > t) == pytest.approx(0.05, abs=0.012)
    ref = np.arange(100.0)
    assert np.sum(ref > threshold_at_fpr(ref, 0.05)) == 5
    assert np.sum(ref > threshold_at_fpr(ref, 0.0)) == 0


def test_rank_correlation_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    assert rank_correlation(a, np.exp(a))["value"] == pytest.approx(1.0)      # monotone map: rho = 1
    assert rank_correlation(a, -a**3)["value"] == pytest.approx(-1.0)
    r = rank_correlation(a, rng.normal(size=300), n_boot=300)
    assert r["ci"][0] < 0.0 < r["ci"][1]
    from scipy.stats import spearmanr

    b = a + rng.normal(size=300)
    assert rank_correlation(a, b)["value"] == pytest.approx(spearmanr(a, b).statistic)


def test_image_bootstrap_auroc_pairs_models_over_images():
    from vaelab.metrics.detection import image_bootstrap_auroc

    rng = np.random.default_rng(0)
    err_a, err_b = rng.random(400) < 0.2, rng.random(400) < 0.3
    s_a = err_a + 0.3 * rng.normal(size=400)               # tracks its errors well
    s_b = err_b + 3.0 * rng.normal(size=400)               # barely
    t = image_bootstrap_auroc({"a": (s_a, err_a), "b": (s_b, err_b)}, n_boot=300)
    assert t["a"]["auroc"]["value"] == pytest.approx(auroc(s_a[~err_a], s_a[err_a]))
    assert t["a"]["auroc"]["ci"][0] > 0.9 and t["b"]["auroc"]["ci"][0] < 0.65
    assert paired_difference(t, "a", "b")["excludes_zero"]
    none = image_bootstrap_auroc({"c": (s_a, np.zeros(400, bool))}, n_boot=10)
    assert none["c"]["auroc"]["value"] is None and none["c"]["n_positive"] == 0


def test_nearest_centroid_distance_known_answer():
    from vaelab.metrics.latent import nearest_centroid_distance

    z = np.array([[-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    y = np.array([0, 1, 0, 1])
    # standardised: x -> x / 1, y-dim constant (std 0 -> kept unscaled); centroids (-1, 0), (1, 0)
    d = nearest_centroid_distance(z, y, np.array([[-1.0, 0.0], [0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(d, [0.0, 1.0, np.hypot(2.0, 4.0)])
