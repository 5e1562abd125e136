"""The math of every loss term against known answers."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelab import losses
from vaelab.models import build_model, model_config


def test_gaussian_kl_closed_form_matches_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 3, generator=g)
    logvar = torch.randn(5, 3, generator=g) * 0.5
    kl = losses.gaussian_kl(mu, logvar)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, ref)
    # Monte Carlo: E_q[log q(z) - log p(z)] with 200k samples
    q = Normal(mu.double(), (0.5 * logvar.double()).exp())
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(kl.double(), mc, atol=0.03, rtol=0.01)
    torch.testing.assert_close(losses.gaussian_kl_per_dim(mu, logvar).sum(-1), kl)


def test_kl_is_zero_at_the_prior():
    assert torch.all(losses.gaussian_kl(torch.zeros(4, 7), torch.zeros(4, 7)) == 0)


def test_bernoulli_nll_by_hand():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    p = torch.sigmoid(logits)
    by_hand = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    torch.testing.assert_close(losses.bernoulli_nll(logits, x), by_hand.reshape(1))
    torch.testing.assert_close(losses.bernoulli_nll(logits, x), -Bernoulli(logits=logits).log_prob(x).sum().reshape(1))


def test_gaussian_nll_matches_normal_log_prob():
    g = torch.Generator().manual_seed(1)
    mean, x = torch.rand(3, 1, 4, 5, generator=g), torch.rand(3, 1, 4, 5, generator=g)
    ref = -Normal(mean, 0.3).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(losses.gaussian_nll(mean, x, 0.3), ref)


def test_log_normal_matches_torch():
    g = torch.Generator().manual_seed(2)
    z, mu, logvar = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    torch.testing.assert_close(losses.log_normal(z, mu, logvar), Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1))
    torch.testing.assert_close(losses.log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_iwae_bound_with_k1_is_the_single_sample_elbo(digits):
    torch.manual_seed(0)
    model = build_model(model_config("vae", input_shape=digits.shape, n_latent=4))
    x = digits.x_test[:32]
    torch.manual_seed(5)
    lw = model.log_weights(x, k=1)                                   # (1, B)
    bound = losses.iwae_bound(lw, torch.zeros_like(lw), torch.zeros_like(lw))
    torch.testing.assert_close(bound, lw[0])
    # and its expectation is the analytic-KL ELBO
    torch.manual_seed(6)
    many = model.log_weights(x, k=4000).mean(0)                      # (B,) MC estimate of the ELBO
    q = model.encode(x)
    torch.manual_seed(7)
    recon = model.recon_nll(model.decode(q.rsample((4000,))), x).mean(0)
    elbo = losses.elbo(-recon, losses.gaussian_kl(q.loc, 2 * q.scale.log()))
    torch.testing.assert_close(many, elbo, atol=0.05, rtol=0.002)


def test_iwae_bound_does_not_decrease_with_k(digits):
    torch.manual_seed(0)
    model = build_model(model_config("vae", input_shape=digits.shape, n_latent=4))
    x = digits.x_test[:64]
    means = []
    with torch.no_grad():
        for k in (1, 5, 50):
            vals = []
            for seed in range(20):
                torch.manual_seed(seed)
                lw = model.log_weights(x, k=k)
                vals.append(losses.iwae_bound(lw, torch.zeros_like(lw), torch.zeros_like(lw)).mean())
            means.append(float(torch.stack(vals).mean()))
    assert means[0] < means[1] < means[2]


def test_beta_scales_exactly_the_kl_gradient(digits):
    """total(beta=4) - total(beta=1) = 3 * KL, so their gradients differ by exactly 3 * grad KL."""
    x = digits.x_train[:64]

    def head_grad(beta: float, only_kl: bool = False) -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model(model_config("vae", input_shape=digits.shape, n_latent=4, beta=beta))
        torch.manual_seed(1)
        if only_kl:
            q = model.encode(x)
            obj = losses.gaussian_kl(q.loc, 2 * q.scale.log()).mean()
        else:
            obj = model.loss(x).total
        obj.backward()
        return torch.cat([p.grad.flatten() for p in model.head.parameters()])

    g1, g4, g_kl = head_grad(1.0), head_grad(4.0), head_grad(1.0, only_kl=True)
    assert not torch.allclose(g1, g4)
    torch.testing.assert_close(g4 - g1, 3 * g_kl, atol=1e-5, rtol=1e-4)


def test_beta_vae_with_beta_1_equals_vae(digits):
    x = digits.x_train[:32]
    out = []
    for name, beta in (("vae", None), ("beta-vae", 1.0)):
        torch.manual_seed(0)   # free_bits=0: the beta-vae's default free bits (0.5 nats) would change the loss
        model = build_model(model_config(name, input_shape=digits.shape, n_latent=4, beta=beta, free_bits=0.0))
        torch.manual_seed(3)
        out.append(model.loss(x).total)
    assert model_config("beta-vae").beta == 4.0 and model_config("beta-vae").free_bits == 0.5
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)


def test_free_bits_floors_the_per_dimension_kl():
    mu = torch.zeros(8, 5, requires_grad=True)
    logvar = torch.zeros(8, 5, requires_grad=True)
    fb = losses.free_bits_kl(mu, logvar, 0.5)
    torch.testing.assert_close(fb.mean(), torch.tensor(2.5))      # 5 dims x 0.5 nats floor
    fb.mean().backward()
    assert torch.all(mu.grad == 0) and torch.all(logvar.grad == 0)  # below the floor: no gradient
    mu2 = torch.full((8, 5), 2.0)                                  # 2 nats per dim: above the floor
    torch.testing.assert_close(losses.free_bits_kl(mu2, torch.zeros(8, 5), 0.5), losses.gaussian_kl(mu2, torch.zeros(8, 5)))


def test_rae_penalty_and_l2():
    z = torch.tensor([[3.0, 4.0]])
    assert float(losses.rae_z_penalty(z)) == pytest.approx(12.5)
    assert float(losses.l2_norm_squared([torch.ones(2, 2), torch.full((3,), 2.0)])) == pytest.approx(16.0)
    assert math.isclose(losses.LOG_2PI, math.log(2 * math.pi))
