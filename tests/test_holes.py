"""Known-answer tests of the holes measures (vaelab.metrics.holes)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vaelab.metrics import holes as H
from vaelab.metrics.latent import mutual_information


def _codes(rng, n=2000, d=2, s2=0.5, shift=0.0):
    # posteriors N(mu_n, s2 I) with mu_n ~ N(shift, (1 - s2) I): the aggregate posterior tends to N(shift, I)
    mu = shift + rng.normal(0, math.sqrt(1 - s2), size=(n, d))
    return mu, np.full((n, d), math.log(s2))


def test_marginal_kl_is_zero_when_the_aggregate_posterior_is_the_prior():
    mu, lv = _codes(np.random.default_rng(0))
    s = H.elbo_surgery(mu, lv, n_draws=2)
    assert abs(s["marginal_kl"]) < 0.05
    assert s["kl_mean"] == pytest.approx(s["mutual_information"] + s["marginal_kl"], abs=1e-9)   # the identity
    # analytic E KL(q(z|x)||p) = 0.5 sum_d (mu^2 + s2 - 1 - log s2), and the MI it leaves
    kl = float(np.mean(0.5 * (mu ** 2 + 0.5 - 1 - math.log(0.5)).sum(1)))
    assert s["kl_mean"] == pytest.approx(kl, abs=0.05)
    assert s["mutual_information"] == pytest.approx(mutual_information(mu, lv, n_samples=2), abs=1e-9)
    assert H.prior_hole_mass(mu, lv)["mass"] < 0.02


def test_marginal_kl_of_shifted_codes_matches_the_gaussian_closed_form():
    mu, lv = _codes(np.random.default_rng(1), shift=np.array([1.5, 0.0]))
    s = H.elbo_surgery(mu, lv)
    assert s["marginal_kl"] == pytest.approx(1.5 ** 2 / 2, abs=0.08)   # KL(N(m, I) || N(0, I)) = |m|^2 / 2
    assert H.prior_hole_mass(mu, lv)["mass"] > 0.1


def test_tiny_posteriors_carry_log_n_of_information():
    # N(0, I) draws with tiny posteriors: I(x; z) reaches its ceiling log N, and the marginal KL is the rest
    # of the KL term (a mixture of N spikes is far from the prior, however well the spikes are spread)
    rng = np.random.default_rng(2)
    mu, lv = rng.normal(size=(1000, 2)), np.full((1000, 2), math.log(1e-6))
    s = H.elbo_surgery(mu, lv)
    assert s["mutual_information"] == pytest.approx(math.log(1000), abs=0.01)
    assert s["marginal_kl"] == pytest.approx(s["kl_mean"] - math.log(1000), abs=0.01)
    assert H.prior_hole_mass(mu, lv)["mass"] > 0.99                  # between the spikes q(z) ~ 0


def test_codes_in_a_corner_leave_most_of_the_prior_uncovered():
    rng = np.random.default_rng(3)
    mu = rng.normal(3.0, 0.3, size=(1000, 2))
    h = H.prior_hole_mass(mu, None)                                  # a deterministic AE: KDE of its codes
    assert h["mass"] > 0.9
    s = H.elbo_surgery(mu, None)
    assert s["mutual_information"] is None and s["marginal_kl"] > 3 and "KDE" in s["q"]
    mu_p = rng.normal(size=(1000, 2))
    assert H.prior_hole_mass(mu_p, None)["mass"] < 0.05


def test_uniform_noise_fails_the_realism_measure():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(1500, 8))
    assert H.fraction_realistic(real, rng.normal(size=(500, 8))) > 0.3
    assert H.fraction_realistic(real, rng.uniform(0, 1, size=(500, 8)) * 8 - 4) < 0.02
