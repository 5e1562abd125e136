"""Likelihoods done right: exactness against a closed form, bound ordering, chunking, schedules, free bits,
the continuous Bernoulli normaliser, binarisation/dequantisation and the likelihood-kind rule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vaelab import losses, preprocess
from vaelab.config import ModelConfig, TrainConfig
from vaelab.data import load_dataset
from vaelab.errors import ConfigError, DataError
from vaelab.metrics.likelihood import importance_weighted_curve, importance_weighted_nll, likelihood_kind, negative_elbo
from vaelab.models import VAE, build_model
from vaelab.train import kl_weight


# -- probabilistic PCA: a VAE whose log p(x) is known exactly ------------------------------------------
def _ppca_vae(x: torch.Tensor, n_latent: int, var_scale: float = 1.0, mean_shift: float = 0.0) -> tuple[VAE, torch.Tensor]:
    """Fit PPCA in closed form (Tipping & Bishop 1999) and load it into a vaelab VAE with linear nets.

    Decoder p(x|z) = N(W z + b, s2 I) with the maximum-likelihood W, b, s2; encoder = the exact
    posterior N(M^-1 W^T (x - b), s2 M^-1), M = W^T W + s2 I (diagonal for the ML W), with its
    variance multiplied by ``var_scale`` and its mean moved by ``mean_shift`` posterior stds.
    Returns the model and the exact covariance of p(x) = N(b, W W^T + s2 I).
    """
    xf = x.flatten(1).double()                                   # (N, P)
    p = xf.shape[1]
    b = xf.mean(0)
    evals, evecs = torch.linalg.eigh(torch.cov(xf.T, correction=0))
    evals, evecs = evals.flip(0), evecs.flip(1)                  # descending
    s2 = evals[n_latent:].mean()
    w = evecs[:, :n_latent] * (evals[:n_latent] - s2).sqrt()     # (P, D), orthogonal columns
    m_diag = (w * w).sum(0) + s2                                  # W^T W + s2 I is diagonal
    cfg = ModelConfig(model="vae", input_shape=tuple(x.shape[1:]), n_latent=n_latent, likelihood="gaussian",
                      sigma=float(s2.sqrt()))
    vae = VAE(cfg)
    vae.encoder = nn.Flatten()
    vae.encoder.n_features = p
    vae.head = nn.Linear(p, 2 * n_latent).double()
    vae.decoder = nn.Sequential(nn.Linear(n_latent, p), nn.Unflatten(1, cfg.input_shape)).double()
    with torch.no_grad():
        a = w.T / m_diag[:, None]                                 # (D, P) posterior-mean map
        post_var = s2 / m_diag * var_scale
        vae.head.weight.zero_()
        vae.head.weight[:n_latent] = a
        vae.head.bias[:n_latent] = -a @ b + mean_shift * post_var.sqrt()
        vae.head.bias[n_latent:] = post_var.log()
        vae.decoder[0].weight.copy_(w)
        vae.decoder[0].bias.copy_(b)
    return vae.eval(), w @ w.T + s2 * torch.eye(p, dtype=torch.float64)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _exact_nll(x: torch.Tensor, b: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """-log N(x; b, cov) per row, by Cholesky: 0.5 (r^T cov^-1 r + log det cov + P log 2 pi)."""
    chol = torch.linalg.cholesky(cov)
    r = torch.linalg.solve_triangular(chol, (x.flatten(1).double() - b).T, upper=False)   # (P, N)
    return 0.5 * (r.pow(2).sum(0) + 2 * chol.diagonal().log().sum() + cov.shape[0] * math.log(2 * math.pi))


def test_ppca_exact_posterior_makes_every_importance_weight_equal_to_log_px(digits):
    vae, cov = _ppca_vae(digits.x_train.double(), n_latent=8)
    x = digits.x_test[:64].double()
    exact = _exact_nll(x, vae.decoder[0].bias.detach(), cov)
    lw = vae.log_weights(x, k=3)                                 # (3, 64): log p(x,z)/q(z|x) = log p(x) for any z
    torch.testing.assert_close(-lw, exact.expand(3, -1), atol=1e-8, rtol=0)


def test_ppca_iwae_converges_to_exact_log_px(digits):
    """With an imperfect encoder, -ELBO > IW-NLL(1) >= ... >= IW-NLL(5000) ~= -log p(x) exactly."""
    vae, cov = _ppca_vae(digits.x_train.double(), n_latent=8, var_scale=2.5, mean_shift=0.5)
    x = digits.x_test[:40].double()
    exact = float(_exact_nll(x, vae.decoder[0].bias.detach(), cov).mean())
    c = importance_weighted_curve(vae, x, ks=(1, 10, 100, 1000, 5000), batch_size=40, chunk=1000)
    gaps = [v - exact for v in c["nll"]]
    assert gaps[0] > 1.0                                         # the loose end: a real gap to close
    assert all(g1 >= g2 - 1e-3 for g1, g2 in zip(gaps, gaps[1:]))  # tightens with K (shared samples)
    assert abs(gaps[-1]) < 0.02                                  # K = 5000: exact within 0.02 nats
    assert gaps[-1] > -0.02                                      # and never meaningfully below log p(x)
    assert negative_elbo(vae, x)["neg_elbo"] > c["nll"][0] - 3 * c["se"][0]


# -- the estimator on a real (untrained, tiny) VAE ----------------------------------------------------
def _tiny_vae(digits, **kw) -> VAE:
    torch.manual_seed(0)
    return build_model(ModelConfig(model="vae", input_shape=(1, 8, 8), n_latent=4, hidden=(32,), **kw)).eval()


def test_chunking_gives_the_same_value_as_one_big_batch(digits):
    vae = _tiny_vae(digits, binarize="dynamic")
    x = preprocess.modelled(digits.x_test[:30], vae.cfg, "test")
    one = importance_weighted_curve(vae, x, ks=(1, 7, 64), batch_size=30, chunk=64)
    chunked = importance_weighted_curve(vae, x, ks=(1, 7, 64), batch_size=30, chunk=5)
    for a, b in zip(one["nll"], chunked["nll"]):
        assert a == pytest.approx(b, abs=1e-9)
    single = importance_weighted_nll(vae, x, k=64, batch_size=30, chunk=3)
    assert single["nll"] == pytest.approx(one["nll"][-1], abs=1e-9)


def test_bound_ordering_on_a_vae(digits):
    vae = _tiny_vae(digits, binarize="static").train()
    xt = preprocess.modelled(digits.x_train, vae.cfg, "train")
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for i in range(60):                                           # a little training: the posterior leaves the prior
        loss = vae.loss(xt[(i % 10) * 128:(i % 10 + 1) * 128]).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    x = preprocess.modelled(digits.x_test[:100], vae.cfg, "test")
    c = importance_weighted_curve(vae, x, ks=(1, 10, 100))
    elbo = negative_elbo(vae, x)
    assert elbo["neg_elbo"] > c["nll"][1] > c["nll"][2]
    assert c["nll"][0] == pytest.approx(elbo["neg_elbo"], abs=4 * elbo["se"])  # K = 1 is an ELBO estimate
    assert c["bits_per_dim"][2] == pytest.approx(c["nll"][2] / (64 * math.log(2)))


def test_iw_evaluation_builds_no_autograd_graph(digits, monkeypatch):
    """Memory stays bounded by one block: no gradient graph may chain the chunks (it once did: 22 GB)."""
    vae = _tiny_vae(digits)
    seen = []
    inner = vae.log_weights

    def spy(*a, **k):
        out = inner(*a, **k)
        seen.append((torch.is_inference_mode_enabled(), out.requires_grad))
        return out
    monkeypatch.setattr(vae, "log_weights", spy)
    importance_weighted_curve(vae, preprocess.modelled(digits.x_test[:8], vae.cfg, "test"), ks=(3, 9), chunk=2)
    assert seen and all(mode and not grad for mode, grad in seen)


def test_default_decode_block_is_small_on_a_cpu():
    from vaelab.metrics.likelihood import decode_block_rows
    assert decode_block_rows(torch.device("cpu")) == 4096 and decode_block_rows(torch.device("cuda")) > 4096


def test_dequantised_nll_adds_the_change_of_variables(digits):
    vae = _tiny_vae(digits, likelihood="gaussian", dequantize=17, sigma=0.2)
    x = preprocess.modelled(digits.x_test[:20], vae.cfg, "test")
    c = importance_weighted_curve(vae, x, ks=(4,))
    assert c["offset_nats"] == pytest.approx(64 * math.log(17))
    # by hand: -log mean_k w_k + D log L
    torch.manual_seed(1)
    assert c["bits_per_dim"][0] == pytest.approx(c["nll"][0] / (64 * math.log(2)))


# -- continuous Bernoulli ------------------------------------------------------------------------------
@pytest.mark.parametrize("logit", [-30.0, -5.0, -0.3, -1e-3, 0.0, 1e-5, 0.02, 2.0, 12.0])
def test_continuous_bernoulli_is_normalised_and_its_mean_is_right(logit):
    xs = np.linspace(0, 1, 200_001)
    l = torch.full((1, 1, 1), logit, dtype=torch.float64)
    lam = 1 / (1 + math.exp(-logit))
    log_c = float(losses.continuous_bernoulli_log_norm(l))
    dens = np.exp(xs * math.log(lam) + (1 - xs) * math.log1p(-lam) + log_c) if abs(logit) < 30 else None
    if dens is not None:
        assert np.trapezoid(dens, xs) == pytest.approx(1.0, abs=1e-6)
        assert float(losses.continuous_bernoulli_mean(l)) == pytest.approx(np.trapezoid(xs * dens, xs), abs=1e-6)
    # against the paper's formula in lambda where it is well conditioned
    if 0.05 < abs(lam - 0.5) and abs(logit) < 20:   # (at l = -30 the paper form loses digits in 1 - 2 lambda)
        assert log_c == pytest.approx(math.log(2 * math.atanh(1 - 2 * lam) / (1 - 2 * lam)), rel=1e-9)
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    nll = losses.continuous_bernoulli_nll(torch.full_like(x, logit), x)
    ref = losses.bernoulli_nll(torch.full_like(x, logit), x) - 4 * log_c
    torch.testing.assert_close(nll, ref)


def test_continuous_bernoulli_normaliser_is_smooth_through_one_half():
    l = torch.linspace(-0.05, 0.05, 1001, dtype=torch.float64, requires_grad=True)
    v = losses.continuous_bernoulli_log_norm(l)
    (g,) = torch.autograd.grad(v.sum(), l)
    assert torch.isfinite(g).all()
    assert float(v.diff().abs().max()) < 1e-5                    # no jump at the |l| = 1e-2 switch
    assert float(v[500]) == pytest.approx(math.log(2))


# -- learned sigma -------------------------------------------------------------------------------------
def test_learned_sigma_is_per_pixel_and_gets_gradients(digits):
    vae = _tiny_vae(digits, likelihood="gaussian", learn_sigma=True, dequantize=17)
    assert vae.likelihood.log_sigma.shape == (1, 8, 8)
    vae.train()
    vae.loss(preprocess.modelled(digits.x_train[:32], vae.cfg, "train")).total.backward()
    assert vae.likelihood.log_sigma.grad is not None and float(vae.likelihood.log_sigma.grad.abs().sum()) > 0
    mean = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    sig = torch.full((1, 8, 8), 0.3, dtype=torch.float64)
    torch.testing.assert_close(losses.gaussian_nll(mean, x, sig), losses.gaussian_nll(mean, x, 0.3))


# -- KL schedules and free bits ------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "sigmoid", "cyclical"])
def test_schedules_start_at_zero_and_hit_one_at_the_end_of_warmup(schedule):
    cfg = TrainConfig(kl_schedule=schedule, kl_warmup_steps=100)
    assert kl_weight(cfg, 0) == 0.0
    assert kl_weight(cfg, 100) == pytest.approx(1.0, abs=1e-12)
    vals = [kl_weight(cfg, s) for s in range(101)]
    assert all(0.0 <= a <= b <= 1.0 for a, b in zip(vals, vals[1:]))   # monotone ramp
    assert kl_weight(cfg, 50) == pytest.approx(0.5, abs=1e-12)          # all three are symmetric ramps
    assert kl_weight(TrainConfig(), 0) == 1.0


def test_cyclical_schedule_restarts_every_period():
    cfg = TrainConfig(kl_schedule="cyclical", kl_warmup_steps=10)     # period 2 * 10 (Fu et al.'s R = 0.5)
    assert [kl_weight(cfg, s) for s in (0, 5, 10, 19, 20, 25, 30, 40)] == [0, 0.5, 1, 1, 0, 0.5, 1, 0]
    cfg = TrainConfig(kl_schedule="cyclical", kl_warmup_steps=10, kl_cycle_steps=50)
    assert kl_weight(cfg, 49) == 1.0 and kl_weight(cfg, 50) == 0.0 and kl_weight(cfg, 55) == 0.5
    assert cfg.to_dict()["kl_cycle_steps"] == 50                    # recorded in the checkpoint config
    with pytest.raises(ConfigError, match="kl-warmup-steps"):
        TrainConfig(kl_schedule="sigmoid")


def test_free_bits_floors_the_per_dimension_kl():
    torch.manual_seed(0)
    mu = torch.cat([torch.randn(64, 2) * 2, torch.randn(64, 3) * 0.01], 1).requires_grad_()   # 2 used, 3 collapsed
    logvar = torch.zeros(64, 5, requires_grad=True)
    fb = losses.free_bits_kl(mu, logvar, 0.5)
    kl_d = losses.gaussian_kl_per_dim(mu, logvar).mean(0)
    expected = torch.clamp(kl_d, min=0.5).sum()
    assert float(fb.mean()) == pytest.approx(float(expected))
    assert float(kl_d[2:].max()) < 0.5 < float(kl_d[:2].min())
    fb.mean().backward()
    assert float(mu.grad[:, 2:].abs().max()) == 0.0             # below the floor: no pressure to collapse further
    assert float(mu.grad[:, :2].abs().max()) > 0.0


def test_free_bits_is_in_the_vae_loss(digits):
    vae = _tiny_vae(digits, free_bits=2.0, binarize="dynamic")
    x = preprocess.modelled(digits.x_train[:64], vae.cfg, "train")
    torch.manual_seed(3)
    lt = vae.loss(x)
    assert float(lt.total) >= float(lt.terms["recon"]) + 4 * 2.0 - 1e-4   # every one of 4 units counts >= 2 nats


# -- the data as modelled ------------------------------------------------------------------------------
def test_binarisation_draws(digits):
    cfg = ModelConfig(model="vae", input_shape=(1, 8, 8), binarize="dynamic")
    x = digits.x_train[:500]
    e1, e2 = preprocess.training_view(x, cfg, 0, 1), preprocess.training_view(x, cfg, 0, 2)
    assert set(e1.unique().tolist()) <= {0.0, 1.0} and not torch.equal(e1, e2)        # fresh each epoch
    assert torch.equal(e1, preprocess.training_view(x, cfg, 0, 1))                    # but reproducible
    assert float(e1.mean()) == pytest.approx(float(x.mean()), abs=0.02)               # E[x_bin] = x
    static = ModelConfig(model="vae", input_shape=(1, 8, 8), binarize="static")
    s1, s2 = preprocess.training_view(x, static, 0, 1), preprocess.training_view(x, static, 7, 2)
    assert torch.equal(s1, s2)                                                        # one fixed draw
    t1 = preprocess.modelled(digits.x_test, cfg, "test")
    t2 = preprocess.modelled(digits.x_test, static, "test")
    assert torch.equal(t1, t2)                                    # the same test draw for every model


def test_dequantisation_checks_the_grey_levels(digits):
    cfg = ModelConfig(model="vae", input_shape=(1, 8, 8), likelihood="gaussian", dequantize=17)
    y = preprocess.modelled(digits.x_test, cfg, "test")
    assert float(y.min()) >= 0 and float(y.max()) < 1
    torch.testing.assert_close(torch.floor(y * 17) / 16, digits.x_test)   # each y lies in its pixel's cell
    with pytest.raises(DataError, match="17 for sklearn digits"):
        preprocess.modelled(digits.x_test, ModelConfig(model="vae", input_shape=(1, 8, 8), likelihood="gaussian",
                                                       dequantize=256), "test")


def test_likelihood_kind_rule():
    base = dict(model="vae", input_shape=(1, 8, 8))
    assert likelihood_kind(ModelConfig(**base, binarize="dynamic"))[0] == "nll"
    kind, note = likelihood_kind(ModelConfig(**base))
    assert kind == "training objective" and "--binarize" in note
    assert likelihood_kind(ModelConfig(**base), {"is_binary": True})[0] == "nll"
    assert likelihood_kind(ModelConfig(**base, likelihood="gaussian"))[0] == "training objective"
    assert likelihood_kind(ModelConfig(**base, likelihood="gaussian", dequantize=256))[0] == "nll"
    assert likelihood_kind(ModelConfig(**base, likelihood="continuous-bernoulli", dequantize=256))[0] == "nll"
    assert likelihood_kind(ModelConfig(**base, likelihood="continuous-bernoulli"))[0] == "training objective"
    assert likelihood_kind({**base, "model": "ae", "binarize": "dynamic"})[0] == "n/a"
    with pytest.raises(ConfigError, match="bernoulli"):
        ModelConfig(**base, likelihood="gaussian", binarize="dynamic")


# -- rate-distortion sweep, schedule in the checkpoint, collapse diagnostics ---------------------------
def test_sweep_cli_writes_points_plot_and_models(tmp_path):
    import json

    from vaelab.cli import main

    out = tmp_path / "sw"
    rc = main(["sweep", "--beta", "0.5,4", "--epochs", "1", "--binarize", "static", "--latent-dim", "4",
               "--hidden", "32", "--max-train", "300", "--kl-schedule", "sigmoid", "--kl-warmup-steps", "3",
               "--out", str(out), "--quiet"])
    assert rc == 0
    res = json.loads((out / "sweep.json").read_text())
    assert [p["beta"] for p in res["points"]] == [0.5, 4.0] and res["kind"] == "nll"
    for p in res["points"]:
        assert p["rate"] >= 0 and p["neg_elbo"] == pytest.approx(p["rate"] + p["distortion"])
    assert res["ae"]["rate"] == "inf" and (out / "rate_distortion.png").stat().st_size > 1000
    cfg = json.loads((out / "models" / "beta-4" / "config.json").read_text())
    assert cfg["model"]["beta"] == 4.0 and cfg["model"]["binarize"] == "static"
    assert cfg["train"]["kl_schedule"] == "sigmoid" and cfg["train"]["kl_warmup_steps"] == 3
    log = [json.loads(line) for line in (out / "models" / "beta-4" / "train_log.jsonl").read_text().splitlines()]
    assert {"kl", "kl_per_dim", "active_units", "mutual_info", "shuffle_gap"} <= set(log[-1]["diagnostics"])
    assert main(["sweep", "--beta", "0,1", "--out", str(out)]) != 0          # bad input: a message, no traceback


def test_collapse_warning_fires_on_a_collapsed_posterior(digits):
    from vaelab.metrics.collapse import PosteriorCollapseWarning, collapse_warnings, epoch_diagnostics, warn_collapse

    vae = _tiny_vae(digits, binarize="dynamic")
    with torch.no_grad():                                # force q(z|x) = N(0, I) = the prior, for every x
        vae.head.weight.zero_()
        vae.head.bias.zero_()
    x = preprocess.modelled(digits.x_val, vae.cfg, "val")
    diag = epoch_diagnostics(vae, x, None, epoch=1)
    with pytest.warns(PosteriorCollapseWarning, match="POSTERIOR COLLAPSE"):
        warn_collapse("vae", diag, epoch=1)
    assert diag["kl"] == pytest.approx(0.0, abs=1e-9) and diag["active_units"] == 0
    assert abs(diag["mutual_info"]) < 1e-9 and abs(diag["shuffle_gap"]) < 1e-9
    assert any("IGNORES z" in w for w in diag["warnings"])
    used = _ppca_vae(digits.x_train.double(), n_latent=8)[0]
    assert collapse_warnings(__import__("vaelab.metrics.collapse", fromlist=["x"]).collapse_diagnostics(
        used, digits.x_val.double())) == []
