"""Metric functions against known answers (tiny inputs, fixed seeds, CPU)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.metrics import (
    PSNR_CAP_DB,
    active_units,
    aggregate_posterior_kl,
    bce_sum_per_image,
    class_coverage,
    frechet_distance,
    gaussian_frechet_distance,
    judge_confidence,
    kl_per_dimension,
    kmeans_scores,
    knn_accuracy,
    linear_probe_accuracy,
    mse_per_image,
    mutual_information,
    precision_recall,
    psnr,
    silhouette,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def blobs(rng: np.random.Generator, n_per: int = 50, n_classes: int = 3, d: int = 4, sep: float = 20.0):
    centres = sep * np.eye(n_classes, d)
    y = np.repeat(np.arange(n_classes), n_per)
    z = centres[y] + rng.normal(size=(len(y), d))
    return z, y


# -- Fréchet distance --------------------------------------------------------------------------
def test_fd_of_a_set_with_itself_is_zero(rng):
    a = rng.normal(size=(200, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(torch.from_numpy(a).float(), a) == pytest.approx(0.0, abs=1e-4)


def test_fd_1d_closed_form():
    # (m1 - m2)^2 + (s1 - s2)^2 for 1-D Gaussians
    fd = gaussian_frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]])
    assert fd == pytest.approx((1 + 2) ** 2 + (2 - 3) ** 2)


def test_fd_diagonal_covariances_sum_over_dims():
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    s1, s2 = np.array([1.0, 0.25, 4.0]), np.array([4.0, 1.0, 0.0])  # std devs; one degenerate
    expected = np.sum((m1 - m2) ** 2 + (s1 - s2) ** 2)
    assert gaussian_frechet_distance(m1, np.diag(s1**2), m2, np.diag(s2**2)) == pytest.approx(expected)


def test_fd_full_covariance_matches_scipy_sqrtm(rng):
    from scipy.linalg import sqrtm

    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T, b @ b.T
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert gaussian_frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)


def test_fd_invariant_to_shuffle(rng):
    a, b = rng.normal(size=(300, 6)), rng.normal(size=(250, 6)) + 0.5
    fd = frechet_distance(a, b)
    assert frechet_distance(a[rng.permutation(300)], b[rng.permutation(250)]) == pytest.approx(fd, rel=1e-10)
    assert fd > 1.0


# -- precision / recall ------------------------------------------------------------------------
def test_precision_recall_identical_sets(rng):
    a = rng.normal(size=(300, 5))
    assert precision_recall(a, a.copy(), k=3) == (1.0, 1.0)


def test_precision_recall_far_apart_sets(rng):
    a = rng.normal(size=(300, 5))
    p, r = precision_recall(a, a + 100.0)
    assert p == pytest.approx(0.0, abs=0.01) and r == pytest.approx(0.0, abs=0.01)


def test_precision_high_recall_low_when_fake_covers_one_mode(rng):
    real = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 50.0])
    fake = rng.normal(size=(300, 2))  # only the first mode
    p, r = precision_recall(real, fake)
    assert p > 0.9
    assert 0.3 < r < 0.55


def test_precision_recall_chunked_matches_one_block(rng, monkeypatch):
    import vaelab.metrics.prd as prd

    real, fake = rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) + 0.5
    whole = precision_recall(real, fake)
    monkeypatch.setattr(prd, "_BLOCK_BYTES", 8 * 200 * 7)  # 7-row blocks
    assert precision_recall(real, fake) == whole


# -- latent structure --------------------------------------------------------------------------
def test_linear_probe_and_knn_perfect_on_separable_codes(rng):
    z, y = blobs(rng)
    zt, yt = blobs(rng)
    assert linear_probe_accuracy(z, y, zt, yt) == 1.0
    assert knn_accuracy(z, y, zt, yt, k=5) == 1.0


def test_linear_probe_and_knn_chance_on_random_labels(rng):
    z, zt = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    y, yt = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    assert 0.4 < linear_probe_accuracy(z, y, zt, yt) < 0.6
    assert 0.4 < knn_accuracy(z, y, zt, yt) < 0.6


def test_kmeans_scores_perfect_on_separated_clusters(rng):
    z, y = blobs(rng)
    s = kmeans_scores(z, y, n_clusters=3)
    assert s["nmi"] == pytest.approx(1.0) and s["ari"] == pytest.approx(1.0)


def test_silhouette_near_one_and_near_zero(rng):
    z, y = blobs(rng, sep=1000.0)
    assert silhouette(z, y) > 0.99
    assert abs(silhouette(rng.normal(size=(300, 3)), rng.integers(0, 3, 300))) < 0.05


def test_silhouette_subsamples_large_inputs(rng):
    z, y = blobs(rng, n_per=400)
    assert silhouette(z, y, max_n=200, seed=1) == silhouette(z, y, max_n=200, seed=1)
    assert silhouette(z, y, max_n=200) == pytest.approx(silhouette(z, y), abs=0.02)


def test_active_units_counts_nonconstant_dimensions(rng):
    mu = np.zeros((100, 6))
    mu[:, [0, 2, 5]] = rng.normal(size=(100, 3))  # var ~1: active
    mu[:, 1] = 0.01 * rng.normal(size=100)  # var ~1e-4: inactive
    out = active_units(mu)
    assert out["n_active"] == 3 and out["variances"].shape == (6,)
    # (S, N, D): draws averaged per x first; noise across S that cancels leaves dim 3 inactive
    stacked = np.stack([mu, mu])
    stacked[0, :, 3], stacked[1, :, 3] = 5.0, -5.0
    assert active_units(torch.from_numpy(stacked))["n_active"] == 3


def test_kl_per_dimension_zero_at_prior_and_closed_form(rng):
    assert np.allclose(kl_per_dimension(np.zeros((10, 3)), np.zeros((10, 3))), 0.0)
    mu, logvar = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    q = torch.distributions.Normal(torch.from_numpy(mu), torch.from_numpy(np.exp(0.5 * logvar)))
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).mean(0).numpy()
    assert np.allclose(kl_per_dimension(mu, logvar), ref)


def test_aggregate_posterior_kl(rng):
    assert aggregate_posterior_kl(rng.normal(size=(20000, 4))) < 2e-3
    # N(m, diag(s^2)): 0.5 * sum(s^2 + m^2 - 1 - log s^2)
    m, s = np.array([1.0, -2.0, 0.0]), np.array([0.5, 2.0, 1.0])
    z = m + s * rng.normal(size=(40000, 3))
    expected = 0.5 * np.sum(s**2 + m**2 - 1 - np.log(s**2))
    assert aggregate_posterior_kl(z) == pytest.approx(expected, rel=0.01)
    z[:, 0] = 3.0  # a dead dimension: the fitted Gaussian is degenerate
    assert aggregate_posterior_kl(z) == math.inf


def test_mutual_information_zero_when_posteriors_equal_prior():
    n = 500
    assert abs(mutual_information(np.zeros((n, 4)), np.zeros((n, 4)))) < 1e-9


def test_mutual_information_near_log_n_for_tiny_far_apart_posteriors(rng):
    n = 200
    mu = 100.0 * rng.normal(size=(n, 3))
    mi = mutual_information(mu, np.full((n, 3), -10.0), n_samples=2)
    assert 0 < mi <= math.log(n)
    assert mi == pytest.approx(math.log(n), abs=1e-6)


def test_mutual_information_matches_gaussian_closed_form(rng):
    # x ~ N(0, 1) in 1-D, q(z|x) = N(x, s^2): I(x; z) = 0.5 * log(1 + 1/s^2) as N grows
    # up to Monte-Carlo error and the estimator's small finite-N bias.
    n, s = 2000, 0.5
    mi = mutual_information(rng.normal(size=(n, 1)), np.full((n, 1), 2 * math.log(s)), n_samples=2)
    assert mi == pytest.approx(0.5 * math.log(1 + 1 / s**2), rel=0.05)


def test_mutual_information_chunking_and_seed(rng):
    mu, logvar = rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) - 1
    a = mutual_information(mu, logvar, seed=3, chunk_size=7)
    assert a == pytest.approx(mutual_information(mu, logvar, seed=3), abs=1e-12)
    assert 0 < a < math.log(100)


# -- image -------------------------------------------------------------------------------------
def test_psnr_of_constant_offset_and_exact():
    x = np.full((4, 1, 8, 8), 0.5)
    delta = 0.1
    assert psnr(x + delta, x) == pytest.approx(10 * math.log10(1 / delta**2))
    assert np.allclose(mse_per_image(x + delta, x), delta**2)
    assert psnr(torch.from_numpy(x), x) == PSNR_CAP_DB


def test_bce_sum_per_image():
    x = np.array([[[1.0, 0.0]], [[1.0, 1.0]]])  # (2, 1, 2)
    q = np.array([[[0.5, 0.5]], [[1.0, 0.25]]])
    bce = bce_sum_per_image(q, x)
    assert bce.shape == (2,)
    assert bce[0] == pytest.approx(2 * math.log(2))
    assert bce[1] == pytest.approx(-math.log(1 - 1e-7) + math.log(4))  # p=1 clamped


# -- judge-based -------------------------------------------------------------------------------
def test_judge_confidence_and_class_coverage():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    assert judge_confidence(probs) == pytest.approx((0.9 + 0.7 + 0.4) / 3)
    cov = class_coverage(probs)  # one of each class
    assert cov["max_entropy"] == pytest.approx(math.log(3))
    assert cov["normalized"] == pytest.approx(1.0)
    collapsed = class_coverage(np.tile([0.1, 0.8, 0.1], (5, 1)))
    assert collapsed["entropy"] == 0.0 and collapsed["normalized"] == 0.0
    half = class_coverage(np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    assert half["normalized"] == pytest.approx(0.5)


def test_class_metrics_reject_logits():
    with pytest.raises(ValueError, match="logits"):
        judge_confidence(np.array([[2.0, -1.0], [0.5, 0.3]]))


def test_array_memo_computes_once_per_input():
    from vaelab.metrics._arrays import ArrayMemo

    calls: list[int] = []
    memo = ArrayMemo(size=1)
    a = np.arange(6.0).reshape(2, 3)

    def f() -> int:
        calls.append(1)
        return len(calls)

    assert memo([a], (), f) == 1 and memo([a.copy()], (), f) == 1     # the same bytes: not computed again
    assert memo([a + 1], (), f) == 2                                  # other values
    assert memo([a], (3,), f) == 3                                    # other settings
    assert memo([a], (), f) == 4                                      # size 1: the oldest was dropped
