"""The priors of vaelab.models.priors against known answers: KL vs Monte Carlo, normalisation on grids, moments,
the uniform posterior's boundaries, the VampPrior's definition, IW-NLL(K=1) == ELBO, checkpoints, bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Kumaraswamy, Laplace, Normal, kl_divergence

from vaelab.checkpoint import load_model, save_model
from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models import build_model, model_config
from vaelab.models.priors import GaussianPrior, LaplacePrior, MixturePrior, UniformPrior

PRIORS = ("gaussian", "uniform", "laplace", "mog", "vamp")


def _params(seed: int = 0, b: int = 4, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64)


def _vae(prior: str, n_latent: int = 3, **kw):
    torch.manual_seed(0)
    return build_model(model_config("vae", n_latent=n_latent, hidden=(16,), prior=prior, prior_components=3, **kw))


@pytest.mark.parametrize("prior", [GaussianPrior(3), UniformPrior(3), LaplacePrior(3)], ids=lambda p: p.name)
def test_closed_form_kl_matches_monte_carlo(prior):
    a, b = prior.params(*_params())
    eps = torch.randn(200_000, *a.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = prior.rsample(a, b, eps)                                  # (S, B, D)
    mc = (prior.log_q(z, a, b) - prior.log_prob(z)).mean(0)       # (B,)
    torch.testing.assert_close(prior.kl(a, b, z[0]), mc, atol=0.03, rtol=0.01)
    torch.testing.assert_close(prior.kl_per_dim(a, b).sum(-1), prior.kl(a, b, z[0]))


def test_closed_form_kls_equal_torch_references():
    mu, lv = _params()
    torch.testing.assert_close(GaussianPrior(3).kl(mu, lv, mu), kl_divergence(Normal(mu, (0.5 * lv).exp()),
                                                                               Normal(0.0, 1.0)).sum(-1))
    torch.testing.assert_close(LaplacePrior(3).kl(mu, lv, mu), kl_divergence(Laplace(mu, lv.exp()),
                                                                              Laplace(0.0, 1.0)).sum(-1))
    # KL(q || U(0, 1)) = -H[q]
    torch.testing.assert_close(UniformPrior(3).kl(mu, lv, mu), -Kumaraswamy(mu.exp(), lv.exp()).entropy().sum(-1))


def test_posterior_samples_follow_the_posterior():
    a, b = _params(2, b=2, d=2)
    eps = torch.randn(400_000, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for prior, ref in ((UniformPrior(2), Kumaraswamy(a.exp(), b.exp())), (LaplacePrior(2), Laplace(a, b.exp()))):
        z = prior.rsample(a, b, eps)
        torch.testing.assert_close(z.mean(0), ref.mean, atol=0.01, rtol=0.01)
        torch.testing.assert_close(z.var(0), ref.variance, atol=0.01, rtol=0.02)
        # log_q is the posterior's density
        torch.testing.assert_close(prior.log_q(z[:5], a, b), ref.log_prob(z[:5]).sum(-1))


def test_mog_log_prob_is_the_mixture_density():
    torch.manual_seed(0)
    p = MixturePrior(2, 3)
    with torch.no_grad():
        p.log_scales.normal_(0, 0.3)
        p.logits.normal_()
    z = torch.randn(7, 2)
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=p.logits),
        torch.distributions.Independent(Normal(p.means, p.log_scales.exp()), 1))
    torch.testing.assert_close(p.log_prob(z), ref.log_prob(z))


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("d", [1, 2])
def test_log_prob_integrates_to_one(prior, d):
    m = _vae(prior, n_latent=d, input_shape=(1, 4, 4))
    lo, hi, n = (0.0, 1.0, 2001 if d == 1 else 401) if prior == "uniform" else (-9.0, 9.0, 4001 if d == 1 else 601)
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    if prior == "uniform":
        t = t[1:-1]                                               # the open interval (0, 1)
    grid = t[:, None] if d == 1 else torch.cartesian_prod(t, t)   # (G, d)
    with torch.no_grad():
        dens = m.double().prior.log_prob(grid).exp()
    cell = ((hi - lo) / (n - 1)) ** d
    assert float(dens.sum() * cell) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("prior", PRIORS)
def test_prior_samples_match_its_moments(prior):
    m = _vae(prior, n_latent=2)
    with torch.no_grad():
        z = m.prior.sample(200_000, generator=torch.Generator().manual_seed(0)).double()
    if prior in ("gaussian", "uniform", "laplace"):
        mean, var = {"gaussian": (0.0, 1.0), "uniform": (0.5, 1 / 12), "laplace": (0.0, 2.0)}[prior]
        torch.testing.assert_close(z.mean(0), torch.full((2,), mean, dtype=torch.float64), atol=0.01, rtol=0)
        torch.testing.assert_close(z.var(0), torch.full((2,), var, dtype=torch.float64), atol=0.02, rtol=0.02)
    else:                                                         # a mixture: E[z] = sum_k pi_k m_k
        with torch.no_grad():
            means, logvars, log_pi = m.prior._components()
        w = log_pi.exp().double()[:, None]
        torch.testing.assert_close(z.mean(0), (w * means.double()).sum(0), atol=0.02, rtol=0)
        second = (w * (logvars.double().exp() + means.double() ** 2)).sum(0)
        torch.testing.assert_close((z ** 2).mean(0), second, atol=0.03, rtol=0.02)
    if prior == "uniform":
        assert ((z > 0) & (z < 1)).all()


def test_uniform_posterior_stays_inside_and_has_finite_gradients_at_the_boundaries():
    p = UniformPrior(3)
    raw_a = torch.tensor([[-50.0, 0.0, 50.0]] * 3, requires_grad=True)   # past the clamps on both sides
    raw_b = torch.tensor([[50.0, 0.0, -50.0]] * 3, requires_grad=True)
    eps = torch.tensor([[-40.0, 0.0, 40.0], [-8.0, 8.0, 1e-3], [0.0, -40.0, 40.0]])   # u = Phi(eps) at 0 and 1
    a, b = p.params(raw_a, raw_b)
    z = p.rsample(a, b, eps)
    assert ((z > 0) & (z < 1)).all()
    loss = (p.log_q(z, a, b) - p.log_prob(z)).sum() + p.kl(a, b, z).sum() + z.sum()
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(raw_a.grad).all() and torch.isfinite(raw_b.grad).all()
    # inside the clamps the sample has a gradient in both parameters
    a2 = torch.zeros(1, 3, requires_grad=True)
    p.rsample(a2, a2, torch.randn(1, 3)).sum().backward()
    assert (a2.grad != 0).all()


def test_vamp_prior_with_one_pseudo_input_at_a_data_point_is_that_points_posterior(digits):
    torch.manual_seed(0)
    m = build_model(model_config("vae", input_shape=digits.shape, n_latent=3, hidden=(16,), prior="vamp",
                                 prior_components=1))
    x = digits.x_test[:1].clamp(0.001, 0.999)                      # inside hardtanh's identity range
    with torch.no_grad():
        m.prior.pseudo_inputs.copy_(x)
        z = torch.randn(10, 3)
        q = m.encode(x)
        torch.testing.assert_close(m.prior.log_prob(z), q.log_prob(z).sum(-1))


@pytest.mark.parametrize("prior", PRIORS)
def test_iw_nll_with_k1_equals_the_elbo(prior, digits):
    """A K = 1 importance weight is a one-sample ELBO; over many samples its mean is the ELBO with the prior's KL."""
    torch.manual_seed(0)
    m = build_model(model_config("vae", input_shape=digits.shape, n_latent=3, hidden=(16,), prior=prior,
                                 prior_components=3))
    x = digits.x_test[:8]
    with torch.no_grad():
        a, b = m.posterior(x)
        eps = torch.randn(3000, *a.shape, generator=torch.Generator().manual_seed(1))
        lw = m.log_weights(x, k=3000, eps=eps)                    # (K, B)
        z = m.prior.rsample(a, b, eps)
        recon = m.recon_nll(m.decode(z), x)                       # (K, B)
        # exact per sample: log w = -(recon + log q - log p)
        torch.testing.assert_close(lw, -(recon + m.prior.log_q(z, a, b) - m.prior.log_prob(z)), rtol=1e-5, atol=1e-4)
        if m.prior.kl_per_dim(a, b) is not None:                  # closed form: the mean is recon + analytic KL
            torch.testing.assert_close(lw.mean(0), -(recon.mean(0) + m.prior.kl(a, b, z[0])), atol=0.05, rtol=0.003)


@pytest.mark.parametrize("prior", PRIORS)
def test_every_prior_trains_and_its_checkpoint_records_it(prior, digits, tmp_path):
    m = _vae(prior, input_shape=digits.shape)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(3):
        lt = m.loss(digits.x_train[:64])
        opt.zero_grad()
        lt.total.backward()
        opt.step()
        assert torch.isfinite(lt.total)
    save_model(tmp_path / prior, m)
    ck = load_model(tmp_path / prior)
    assert ck.model.cfg.prior == prior
    z = m.prior.sample(5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ck.model.prior.log_prob(z), m.eval().prior.log_prob(z))


def test_bad_prior_options_get_one_clear_message_each():
    with pytest.raises(ConfigError, match="unknown prior 'cauchy'; choose one of gaussian, uniform"):
        ModelConfig(prior="cauchy")
    with pytest.raises(ConfigError, match="deterministic"):
        build_model(model_config("ae", prior="uniform"))
    with pytest.raises(ConfigError, match="deterministic"):
        build_model(model_config("rae", prior="mog"))
    for prior in ("mog", "vamp"):
        with pytest.raises(ConfigError, match=f"the {prior} prior needs at least one component"):
            ModelConfig(prior=prior, prior_components=0)
    with pytest.raises(ConfigError, match="free bits"):
        build_model(model_config("vae", prior="mog", free_bits=0.1))
    with pytest.raises(ConfigError, match="discrete"):
        build_model(model_config("vae", vocab=("<pad>", "<bos>", "<eos>", "<unk>", "C"), prior="vamp"))
    with pytest.raises(ConfigError, match="cvae"):
        build_model(model_config("cvae", n_classes=3, prior="vamp"))
    assert math.isfinite(float(_vae("uniform").loss(torch.rand(4, 1, 8, 8)).total.detach()))


# -- the priors axis of `vaelab compare` ------------------------------------------------------------
def test_priors_axis_names_one_model_per_prior():
    from vaelab.config import CompareConfig, split_model_name

    cfg = CompareConfig(priors=("gaussian", "uniform"))
    assert cfg.model_names() == ("ae", "vae-gaussian", "vae-uniform")     # default models: the AE and the VAE
    assert CompareConfig(models=("ae", "beta-vae", "rae"), priors=("laplace",)).model_names() == \
        ("ae", "beta-vae-laplace", "rae")
    assert split_model_name("beta-vae-uniform") == ("beta-vae", "uniform")
    assert split_model_name("beta-vae") == ("beta-vae", None) and split_model_name("vae-2d") == ("vae-2d", None)
    with pytest.raises(ConfigError, match="--priors takes distinct priors"):
        CompareConfig(priors=("gaussian", "gaussian"))
    with pytest.raises(ConfigError, match="pass one"):
        CompareConfig(priors=("uniform",), model=ModelConfig(prior="laplace"))


@pytest.mark.slow
def test_compare_priors_trains_each_prior_and_answers_from_paired_intervals(tmp_path):
    from vaelab.cli import main

    out = tmp_path / "run"
    assert main(["compare", "--models", "ae,vae", "--priors", "gaussian,uniform", "--epochs", "2",
                 "--n-samples", "60", "--iw-k", "2", "--quiet", "--out", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["models"]) == ["ae", "vae-gaussian", "vae-uniform"]
    conf = json.loads((out / "models" / "vae-uniform" / "config.json").read_text())
    assert conf["model"]["model"] == "vae" and conf["model"]["prior"] == "uniform"
    assert "likelihood.iw_nll" in doc["differences"]["vae-uniform - vae-gaussian"]
    h = doc["models"]["vae-uniform"]["holes"]             # the surgery against its own prior
    assert h["marginal_kl"] == pytest.approx(h["kl_mean"] - h["mutual_information"]) and h["hole_mass"] is None
    texts = [p["text"] for p in doc["answer"]["points"] if p["topic"] == "priors"]
    assert texts and "vae-uniform against vae-gaussian" in texts[0] and "95 % interval" in texts[0]
    assert (out / "figures" / "code_norms.png").stat().st_size > 1000
    # the prior swap: vae-gaussian's decoder decoded every sampler; the others kept --samplers
    assert set(doc["models"]["vae-gaussian"]["generation"]) == {"prior", "gmm", "gaussian-fit", "uniform-cdf",
                                                                "uniform-box"}
    assert set(doc["models"]["vae-uniform"]["generation"]) == {"prior", "gmm"}
    html = (out / "report.html").read_text()
    assert 'id="prior-swap"' in html and "Prior swap on vae-gaussian" in html and "uniform-box" in html
    # the 2-D maps: the pair's VAE (N(0, I)) and one 2-D VAE per other prior, each over its own prior's box
    assert list(doc["pairs_2d"]) == ["ae-2d", "vae-2d"] and list(doc["priors_2d"]) == ["vae-uniform-2d"]
    maps = {doc["pairs_2d"]["vae-2d"]["prior_map"]["prior"]: doc["pairs_2d"]["vae-2d"]["prior_map"],
            "uniform": doc["priors_2d"]["vae-uniform-2d"]["prior_map"]}
    assert maps["gaussian"]["prior"] == "gaussian" and maps["uniform"]["extent"] == [0.0, 1.0, 0.0, 1.0]
    for m in maps.values():
        assert m["kl_low"] <= m["kl"] <= m["kl_high"] and 0 <= m["hole_mass_low"] <= m["hole_mass_high"] <= 1
    assert "prior_map" not in doc["pairs_2d"]["ae-2d"] and "grid_prior" not in doc["priors_2d"]["vae-uniform-2d"]
    assert (out / "figures" / "prior_maps.png").stat().st_size > 1000 and 'id="prior-maps"' in html
    assert "In two dimensions" in " ".join(texts)


def test_the_swap_samplers_have_their_distributions():
    from vaelab.density import GaussianFit, UniformBox, UniformViaCDF, density_from_dict, make_density

    n, d = 200_000, 3
    z = UniformViaCDF(d, seed=1).sample(n)                      # N(0, I) by the inverse-CDF method
    assert z.mean(0).abs().max() < 0.01 and (z.std(0) - 1).abs().max() < 0.01
    assert abs(float((z[:, 0] < 1.0).double().mean()) - 0.841345) < 0.003     # Phi(1)
    b = UniformBox(d, seed=1).sample(n)                         # mean 0, variance 1, bounded by sqrt 3
    assert b.abs().max() <= 3 ** 0.5 and (b.var(0) - 1).abs().max() < 0.01
    box = UniformBox(1)
    grid = torch.linspace(-2, 2, 40_001, dtype=torch.float64)[:, None]
    mass = float(torch.trapezoid(box.log_prob(grid).exp(), grid[:, 0]))
    assert mass == pytest.approx(1.0, abs=1e-3) and box.log_prob(torch.tensor([[1.9]])).item() == -math.inf
    codes = torch.randn(5000, 2, generator=torch.Generator().manual_seed(0)) @ torch.tensor([[2.0, 0.5], [0.0, 1.0]])
    g = GaussianFit(seed=0).fit(codes)                          # recovers the codes' mean and covariance
    assert np.allclose(g.covariances_[0], np.cov(codes.numpy().T, bias=True), atol=1e-3)
    assert density_from_dict(g.to_dict()).name == "gaussian-fit" and make_density("uniform-cdf", 4).n_latent == 4
    with pytest.raises(ConfigError, match="one full-covariance Gaussian"):
        GaussianFit(n_components=3)


# -- the 2-D maps: the aggregate posterior over its prior ------------------------------------------------
def _grid(lo: float, hi: float, n: int = 60) -> torch.Tensor:
    c = lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (hi - lo) / n
    gx, gy = torch.meshgrid(c, c, indexing="xy")
    return torch.stack([gx.ravel(), gy.ravel()], 1)


def test_aggregate_map_is_zero_when_the_posteriors_are_the_prior_and_large_for_one_point():
    from vaelab.metrics.holes import aggregate_map

    for prior, (lo, hi), (a, b) in ((GaussianPrior(2), (-4, 4), (torch.zeros(50, 2), torch.zeros(50, 2))),
                                    (UniformPrior(2), (0, 1), (torch.zeros(50, 2), torch.zeros(50, 2)))):
        z = _grid(lo, hi)                        # N(0, 1) posteriors; Kumaraswamy(1, 1) = U(0, 1)
        log_qn = prior.log_q(z[None], a.double()[:, None], b.double()[:, None])
        r = aggregate_map(log_qn.numpy(), prior.log_prob(z).numpy(), n_boot=20)
        assert abs(r["kl"]) < 1e-9 and r["hole_mass"] == 0 and r["kl_high"] < 1e-9, prior.name
    # every posterior a tight Gaussian at (2, 2): nearly all of N(0, I)'s mass is in holes; KL = log(box share)
    prior, z = GaussianPrior(2), _grid(-4, 4, 80)
    mu, lv = torch.full((30, 2), 2.0, dtype=torch.float64), torch.full((30, 2), math.log(0.01), dtype=torch.float64)
    r = aggregate_map(prior.log_q(z[None], mu[:, None], lv[:, None]).numpy(), prior.log_prob(z).numpy(), n_boot=20)
    assert r["hole_mass"] > 0.95 and r["kl"] > 3.0
    # two clusters of images: the bootstrap interval brackets the estimate and has width
    mu = torch.cat([torch.full((40, 2), -1.0), torch.full((60, 2), 1.0)]).double()
    lv = torch.full((100, 2), math.log(0.25), dtype=torch.float64)
    r = aggregate_map(prior.log_q(z[None], mu[:, None], lv[:, None]).numpy(), prior.log_prob(z).numpy(), seed=3)
    assert r["kl_low"] < r["kl"] < r["kl_high"] and r["n_images"] == 100 and r["n_cells"] == 6400
    with pytest.raises(ValueError, match="positive on every cell"):
        aggregate_map(np.zeros((2, 3)), np.array([0.0, -np.inf, 0.0]))


@pytest.mark.parametrize("prior", PRIORS)
def test_prior_map_view_of_every_prior(prior, digits):
    from vaelab.measure.views import PRIOR_MAP_N, prior_map_view

    model = _vae(prior, n_latent=2, input_shape=digits.shape)
    num, arrays = prior_map_view(model, digits, seed=0)
    assert num["prior"] == prior and arrays["map_log_q"].shape == (PRIOR_MAP_N, PRIOR_MAP_N)
    assert np.isfinite(arrays["map_log_q"]).all() and np.isfinite(arrays["map_log_p"]).all()
    x1, x2, y1, y2 = num["extent"]
    codes = arrays["map_codes"]
    assert len(codes) == len(arrays["map_labels"]) and (x1, x2, y1, y2) == tuple(arrays["map_extent"])
    if prior == "uniform":
        assert (x1, x2, y1, y2) == (0.0, 1.0, 0.0, 1.0)
    else:                                         # the box holds the codes
        inside = (codes[:, 0] >= x1) & (codes[:, 0] <= x2) & (codes[:, 1] >= y1) & (codes[:, 1] <= y2)
        assert inside.mean() >= 0.99
