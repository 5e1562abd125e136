"""One model family: every objective on images and on token sequences, the likelihood objects, the shared
evaluation path (-ELBO, IW-NLL, collapse) for sequences, and checkpoints of the old format loading."""
from __future__ import annotations

import json
import math

import pytest
import torch

from vaelab import losses
from vaelab.checkpoint import FORMAT, FORMAT_VERSION, load_model, save_tensors, weights_metadata
from vaelab.errors import ConfigError
from vaelab.metrics.collapse import collapse_diagnostics
from vaelab.metrics.likelihood import importance_weighted_curve, likelihood_kind, negative_elbo
from vaelab.models import MODELS, SeqModelConfig, build_model, model_config
from vaelab.models.likelihoods import Bernoulli, Categorical, ContinuousBernoulli, Gaussian
from vaelab.models.seq import BOS, EOS, PAD, SPECIAL_TOKENS

VOCAB = SPECIAL_TOKENS + ("[C]", "[N]", "[O]", "[=C]", "[Ring1]")


def _x() -> torch.Tensor:
    return torch.tensor([[BOS, 4, 5, 6, EOS, PAD, PAD, PAD],
                         [BOS, 7, EOS, PAD, PAD, PAD, PAD, PAD],
                         [BOS, 4, 4, 5, 6, 7, 8, EOS],
                         [BOS, 8, 8, EOS, PAD, PAD, PAD, PAD]])


def _seq(name: str, **kw) -> SeqModelConfig:
    return model_config(name, vocab=VOCAB, max_len=8, n_latent=3, embed_dim=5, hidden=7, **kw)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_objective_runs_on_token_sequences(name):
    torch.manual_seed(0)
    kw = {"n_classes": 2} if name == "cvae" else {}
    m = build_model(_seq(name, **kw))
    assert type(m) is MODELS[name] and m.is_sequence and isinstance(m.likelihood, Categorical)
    y = torch.tensor([0, 1, 0, 1]) if name == "cvae" else None
    lt = m.loss(_x(), y, kl_weight=0.5)
    assert lt.total.dim() == 0 and torch.isfinite(lt.total)
    lt.total.backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith("decoder.embed")
               and not n.startswith("encoder.embed"))
    ids = m.generate(m.encode(_x(), y).mean, y)
    assert ids.shape == (4, 8) and (ids[:, 0] == BOS).all()


def test_sequence_dae_corrupts_only_real_tokens():
    torch.manual_seed(0)
    m = build_model(_seq("dae", corruption="unk:0.5"))
    x = _x().repeat(50, 1)
    xc = m.corrupt(x)
    changed = xc != x
    assert changed.any() and (xc[changed] == 3).all()             # replaced by <unk>
    assert not changed[x <= 3].any()                              # <pad> <bos> <eos> stay
    assert abs(changed.sum().item() / (x > 3).sum().item() - 0.5) < 0.1
    with pytest.raises(ConfigError, match="unk:P"):
        _seq("dae", corruption="gaussian:0.3")


def test_the_vae_objective_is_the_same_on_images_and_sequences(digits):
    """The one VAE.loss: recon from the likelihood object + beta * analytic KL, on either domain."""
    for cfg, x in ((model_config("vae", input_shape=digits.shape, n_latent=3, hidden=(16,)), digits.x_test[:8]),
                   (_seq("vae", beta=2.0), _x())):
        torch.manual_seed(0)
        m = build_model(cfg)
        torch.manual_seed(1)
        lt = m.loss(x, kl_weight=0.5)
        q = m.encode(x)
        torch.manual_seed(1)
        z = q.loc + q.scale * torch.randn_like(q.loc)
        recon = m.likelihood.nll(m.decode(z, x=x), x)
        kl = losses.gaussian_kl(q.loc, 2 * q.scale.log())
        torch.testing.assert_close(lt.total, recon.mean() + cfg.beta * 0.5 * kl.mean(), rtol=1e-5, atol=1e-5)


def test_likelihood_objects_agree_with_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 3, 3, generator=g)
    x = (torch.rand(2, 1, 3, 3, generator=g) > 0.5).float()
    ref = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(Bernoulli().nll(logits, x), ref)
    torch.testing.assert_close(Bernoulli().mean(logits), torch.sigmoid(logits))
    xg = torch.rand(2, 1, 3, 3, generator=g)
    ref_cb = -torch.distributions.ContinuousBernoulli(logits=logits).log_prob(xg).flatten(1).sum(1)
    torch.testing.assert_close(ContinuousBernoulli().nll(logits, xg), ref_cb, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ContinuousBernoulli().mean(logits),
                               torch.distributions.ContinuousBernoulli(logits=logits).mean, rtol=1e-4, atol=1e-4)
    mean = torch.rand(2, 1, 3, 3, generator=g)
    torch.testing.assert_close(Gaussian(0.2).nll(mean, xg), -torch.distributions.Normal(mean, 0.2).log_prob(xg)
                               .flatten(1).sum(1))
    learned = Gaussian(0.2, (1, 3, 3))
    torch.testing.assert_close(learned.nll(mean, xg), Gaussian(0.2).nll(mean, xg))
    # tokens: -sum of log softmax at the targets after <bos>, padding masked
    x = _x()
    tok_logits = torch.randn(4, 7, len(VOCAB), generator=g)
    logp = torch.log_softmax(tok_logits, -1).gather(-1, x[:, 1:, None])[..., 0]
    torch.testing.assert_close(Categorical(PAD).nll(tok_logits, x), -(logp * (x[:, 1:] != PAD)).sum(1))
    assert Categorical(PAD).nll(tok_logits.expand(5, 4, 7, len(VOCAB)), x).shape == (5, 4)   # K samples
    torch.testing.assert_close(Categorical(PAD).mean(tok_logits).sum(-1), torch.ones(4, 7))


def test_sequence_vae_gets_elbo_iw_nll_and_collapse_through_the_shared_code():
    torch.manual_seed(0)
    m = build_model(_seq("vae"))
    x = _x()
    curve = importance_weighted_curve(m, x, ks=(1, 10, 500), batch_size=2, chunk=7, seed=0)
    # chunking: the same value as one batch of samples
    assert curve["nll"][-1] == pytest.approx(importance_weighted_curve(m, x, ks=(500,), batch_size=2, chunk=500,
                                                                        seed=0)["nll"][0], rel=1e-6)
    elbo = negative_elbo(m, x, seed=0)
    assert curve["nll"][-1] <= elbo["neg_elbo"] + 1e-3          # -ELBO >= IW-NLL(500) (here with margin)
    # a K = 1 weight is a one-sample ELBO: its mean over many samples is the analytic-KL ELBO
    with torch.no_grad():
        torch.manual_seed(1)
        many = m.log_weights(x, k=4000).mean(0)                   # (B,)
        q = m.encode(x)
        torch.manual_seed(2)
        recon = m.recon_nll(m.decode(q.rsample((4000,)), x=x), x).mean(0)
    torch.testing.assert_close(many, -(recon + losses.gaussian_kl(q.loc, 2 * q.scale.log())), atol=0.05, rtol=0.002)
    diag = collapse_diagnostics(m, x)
    assert diag["n_latent"] == 3 and len(diag["kl_per_dim"]) == 3 and math.isfinite(diag["shuffle_gap"])
    assert likelihood_kind(m.cfg)[0] == "nll"
    assert likelihood_kind(_seq("ae").to_dict())[0] == "n/a"


# --------------------------------------------------------------------------- checkpoints of the old format


def _write_old_checkpoint(folder, model, model_dict: dict) -> None:
    """A checkpoint exactly as vaelab wrote it before this refactor: config.json's "model" is ``model_dict``
    (the old field set and name), the weights' metadata embeds the same dict."""
    folder.mkdir(parents=True)
    meta = {**weights_metadata(model.cfg), "model_config": json.dumps(model_dict, sort_keys=True)}
    save_tensors(folder / "weights.safetensors", dict(model.state_dict()), meta)
    cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model_dict,
           "train": {"epochs": 1}, "data": {"name": "tokens"}, "versions": {"vaelab": "0.1.0"}}
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))


# the fields of SeqModelConfig as config.json held them before the one-family refactor
OLD_SEQ_FIELDS = ("model", "tokenizer", "vocab", "max_len", "n_latent", "embed_dim", "hidden", "n_layers", "beta",
                  "free_bits", "rae_gamma", "rae_lambda")


@pytest.mark.parametrize("name", ["seq-ae", "seq-vae", "seq-beta-vae", "seq-rae"])
def test_old_sequence_checkpoint_loads(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(_seq(name))
    old = {"model": name, "tokenizer": "selfies", "vocab": list(VOCAB), "max_len": 8, "n_latent": 3, "embed_dim": 5,
           "hidden": 7, "n_layers": 1, "beta": 4.0 if name == "seq-beta-vae" else 1.0, "free_bits": 0.0,
           "rae_gamma": 1.0, "rae_lambda": 1e-4}
    assert tuple(old) == OLD_SEQ_FIELDS
    _write_old_checkpoint(tmp_path / name, model, old)
    ck = load_model(tmp_path / name)
    assert ck.model.cfg.model == name and isinstance(ck.model.cfg, SeqModelConfig)
    assert type(ck.model) is type(model) and ck.model.is_stochastic == (name in ("seq-vae", "seq-beta-vae"))
    z = torch.randn(6, 3)
    assert torch.equal(ck.model.generate(z), model.eval().generate(z))
    x = _x()
    torch.testing.assert_close(ck.model.recon_nll(ck.model.decode(z[:4], x=x), x), model.recon_nll(model.decode(z[:4], x=x), x))
    if ck.model.has_likelihood:                                   # the old sequence VAE now has an IW-NLL
        assert math.isfinite(importance_weighted_curve(ck.model, x, ks=(5,))["nll"][0])


def test_old_image_checkpoint_with_a_learned_sigma_loads(tmp_path, digits):
    torch.manual_seed(0)
    model = build_model(model_config("vae", input_shape=digits.shape, n_latent=3, hidden=(16,),
                                     likelihood="gaussian", learn_sigma=True))
    with torch.no_grad():
        model.likelihood.log_sigma.fill_(-1.5)
    old_state = {("log_sigma" if k == "likelihood.log_sigma" else k): v for k, v in model.state_dict().items()}
    old_dict = {k: v for k, v in model.cfg.to_dict().items() if k not in ("prior", "prior_components")}
    folder = tmp_path / "old"
    folder.mkdir()
    save_tensors(folder / "weights.safetensors", old_state,
                 {"format": "vaelab-weights", "model_config": json.dumps(old_dict, sort_keys=True)})
    (folder / "config.json").write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                    "model": old_dict}))
    ck = load_model(folder)
    assert float(ck.model.likelihood.log_sigma.detach().mean()) == -1.5
    x = digits.x_test[:4]
    z = torch.randn(4, 3)
    torch.testing.assert_close(ck.model.recon_nll(ck.model.decode(z), x), model.recon_nll(model.decode(z), x))
