"""Shapes and protocol of every model on every backbone."""
from __future__ import annotations

import pytest
import torch

from vaelab.errors import ConfigError
from vaelab.models import MODELS, PointMass, build_model, model_config

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 7, 9)]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("backbone", ["mlp", "conv"])
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_round_trip(name, backbone, shape):
    cfg = model_config(name, input_shape=shape, n_latent=3, backbone=backbone, hidden=(32, 16), channels=(8, 16),
                       n_classes=4 if name == "cvae" else 0)
    model = build_model(cfg)
    x = torch.rand(5, *shape)
    y = torch.arange(5) % 4 if model.is_conditional else None
    q = model.encode(x, y)
    assert q.mean.shape == (5, 3)
    assert model.decode(q.mean, y).shape == (5, *shape)
    assert model.decode(q.rsample((2,)), y).shape == (2, 5, *shape)   # (K, B, D) decodes too
    out = model(x, y)
    assert out.x_params.shape == (5, *shape) and out.z.shape == (5, 3)
    lt = model.loss(x, y)
    assert lt.total.dim() == 0 and torch.isfinite(lt.total)
    assert "recon" in lt.terms and all(v.dim() == 0 for v in lt.terms.values())
    rec = model.reconstruct(x, y)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1


def test_ae_is_deterministic_and_vae_is_not():
    x = torch.rand(4, 1, 8, 8)
    ae = build_model(model_config("ae", n_latent=2))
    q = ae.encode(x)
    assert isinstance(q, PointMass)
    assert torch.equal(q.rsample(), q.rsample()) and torch.all(q.stddev == 0)
    vae = build_model(model_config("vae", n_latent=2))
    qv = vae.encode(x)
    assert not torch.equal(qv.rsample(), qv.rsample())
    assert vae.is_stochastic and not ae.is_stochastic and vae.has_likelihood and not ae.has_likelihood


def test_cvae_needs_labels():
    with pytest.raises(ConfigError, match="labelled dataset"):
        build_model(model_config("cvae", n_classes=0))
    model = build_model(model_config("cvae", n_classes=3))
    with pytest.raises(ConfigError, match="needs labels"):
        model.encode(torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize("shape,backbone,msg", [
    ((1, 3, 3), "conv", "at least 4x4"),
    ((2, 8, 8), "mlp", "1 or 3 channels"),
    ((1, 1024, 1024), "mlp", "larger than"),
])
def test_image_sizes_the_backbone_cannot_take(shape, backbone, msg):
    with pytest.raises(ConfigError, match=msg):
        build_model(model_config("vae", input_shape=shape, backbone=backbone))


@pytest.mark.parametrize("field,value,msg", [
    ("n_latent", 0, "latent size"), ("n_latent", -3, "latent size"), ("backbone", "rnn", "unknown backbone"),
    ("likelihood", "poisson", "unknown likelihood"), ("k", 0, "importance samples"), ("beta", -1.0, "beta"),
])
def test_bad_model_options(field, value, msg):
    with pytest.raises(ConfigError, match=msg):
        model_config("vae", **{field: value})


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="unknown model 'gan'"):
        model_config("gan")


def test_model_defaults_by_name():
    assert model_config("beta-vae").beta == 4.0
    assert model_config("beta-vae", beta=2.0).beta == 2.0
    assert model_config("iwae").k == 5
    assert model_config("vae").beta == 1.0
