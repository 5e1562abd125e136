"""Ex-post densities: math against known answers, reproducibility, JSON round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaelab.density import (
    SAMPLERS,
    GaussianMixtureDensity,
    StandardNormalPrior,
    density_from_dict,
    make_density,
)
from vaelab.errors import ConfigError


@pytest.fixture
def two_clusters() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(size=(300, 2)) + [-10.0, 0.0], 0.5 * rng.normal(size=(300, 2)) + [10.0, 5.0]])


def test_gmm_log_prob_integrates_to_one_in_1d():
    z = np.random.default_rng(0).normal(size=(400, 1)) * [[2.0]]
    gmm = GaussianMixtureDensity(n_components=3).fit(z)
    grid = torch.linspace(-30, 30, 20001, dtype=torch.float64)[:, None]
    p = gmm.log_prob(grid).exp()
    assert float(torch.trapezoid(p, grid[:, 0])) == pytest.approx(1.0, abs=1e-4)


def test_gmm_fit_recovers_two_cluster_means(two_clusters):
    gmm = GaussianMixtureDensity(n_components=2).fit(two_clusters)
    means = gmm.means_[np.argsort(gmm.means_[:, 0])]
    assert np.allclose(means, [[-10.0, 0.0], [10.0, 5.0]], atol=0.2)
    assert np.allclose(gmm.weights_, 0.5, atol=1e-6)
    assert gmm.covariances_.shape == (2, 2, 2)


def test_gmm_sample_moments_match_fit(two_clusters):
    gmm = GaussianMixtureDensity(n_components=2).fit(two_clusters)
    s = gmm.sample(20000, seed=1)
    assert s.shape == (20000, 2) and s.dtype == torch.float32
    w, m, c = gmm.weights_, gmm.means_, gmm.covariances_
    mean = w @ m
    cov = np.einsum("k,kij->ij", w, c) + np.einsum("k,ki,kj->ij", w, m - mean, m - mean)
    assert np.allclose(s.mean(0).numpy(), mean, atol=0.15)
    assert np.allclose(np.cov(s.numpy(), rowvar=False), cov, rtol=0.05, atol=0.1)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_gmm_covariance_types_give_full_matrices_and_agree_with_sklearn(two_clusters, covariance_type):
    gmm = GaussianMixtureDensity(n_components=2, covariance_type=covariance_type).fit(two_clusters)
    assert gmm.covariances_.shape == (2, 2, 2)
    from sklearn.mixture import GaussianMixture

    ref = GaussianMixture(2, covariance_type=covariance_type, reg_covar=1e-6, random_state=0).fit(two_clusters)
    assert np.allclose(gmm.log_prob(two_clusters).numpy(), ref.score_samples(two_clusters))


def test_seeded_sampling_is_reproducible(two_clusters):
    a = GaussianMixtureDensity(n_components=2, seed=3).fit(two_clusters)
    b = GaussianMixtureDensity(n_components=2, seed=3).fit(two_clusters)
    assert torch.equal(a.sample(50, seed=7), b.sample(50, seed=7))
    assert torch.equal(a.sample(50), b.sample(50))  # own generator, same sequence
    assert not torch.equal(a.sample(50), a.sample(50))
    prior = StandardNormalPrior(4, seed=2)
    assert torch.equal(prior.sample(10, seed=5), StandardNormalPrior(4).sample(10, seed=5))


def test_to_dict_from_dict_round_trip(two_clusters):
    gmm = GaussianMixtureDensity(n_components=2, seed=1).fit(two_clusters)
    back = density_from_dict(json.loads(json.dumps(gmm.to_dict())))
    assert isinstance(back, GaussianMixtureDensity)
    z = torch.randn(100, 2)
    assert torch.equal(gmm.log_prob(z), back.log_prob(z))
    assert torch.equal(gmm.sample(20, seed=0), back.sample(20, seed=0))
    prior = density_from_dict(json.loads(json.dumps(StandardNormalPrior(3).to_dict())))
    assert isinstance(prior, StandardNormalPrior) and prior.n_latent == 3


def test_prior_log_prob_matches_torch_normal():
    z = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    prior = StandardNormalPrior(5)
    assert prior.fit(z) is prior
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(prior.log_prob(z), ref, atol=1e-6)
    assert prior.sample(7).shape == (7, 5)


def test_fewer_codes_than_components_warns_and_reduces():
    z = np.random.default_rng(0).normal(size=(4, 2))
    with pytest.warns(UserWarning, match="4 components"):
        gmm = GaussianMixtureDensity(n_components=10).fit(z)
    assert gmm.means_.shape == (4, 2)


def test_make_density_and_errors():
    from vaelab.config import SAMPLERS as CLI_SAMPLERS

    assert set(SAMPLERS) == set(CLI_SAMPLERS) == {"prior", "gmm", "gaussian-fit", "uniform-cdf", "uniform-box"}
    assert isinstance(make_density("prior", 8, seed=1), StandardNormalPrior)
    assert isinstance(make_density("gmm", 8, seed=1), GaussianMixtureDensity)
    with pytest.raises(ConfigError, match="prior, gmm"):
        make_density("flow", 8, seed=0)
    with pytest.raises(Exception, match="fit"):
        GaussianMixtureDensity().sample(3)
