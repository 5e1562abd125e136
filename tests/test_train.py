"""The trainer: every model learns, seeds reproduce bit for bit, resume equals an uninterrupted run."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vaelab.checkpoint import load_model, load_tensors
from vaelab.config import TrainConfig
from vaelab.errors import ConfigError, DivergenceError, OutputError
from vaelab.models import MODELS, VAE, build_model, model_config
from vaelab.train import fit

SMALL = dict(n_latent=4, hidden=(64, 32))


def _cfg(name, digits, **kw):
    return model_config(name, input_shape=digits.shape, n_classes=digits.n_classes if name == "cvae" else 0,
                        **{**SMALL, **kw})


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_learns_on_digits(name, digits):
    run = fit(_cfg(name, digits), digits, TrainConfig(epochs=6, batch_size=64), progress=False)
    val = [h["val"]["recon"] for h in run.history]
    assert val[-1] < val[0] * 0.95, val
    assert run.test and all(torch.isfinite(torch.tensor(v)) for v in run.test.values())


def test_cvae_decodes_labels_differently(digits):
    run = fit(_cfg("cvae", digits), digits, TrainConfig(epochs=15, batch_size=64), progress=False)
    z = torch.zeros(10, 4)
    with torch.no_grad():
        imgs = run.model.x_mean(run.model.decode(z, torch.arange(10)))
    # the same z decodes to a different image for every label
    dist = torch.cdist(imgs.flatten(1), imgs.flatten(1))
    assert dist[~torch.eye(10, dtype=torch.bool)].min() > 0.5


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_weights_and_another_seed_does_not(digits):
    runs = [fit(_cfg("vae", digits), digits, TrainConfig(epochs=2, batch_size=64, seed=s), progress=False)
            for s in (7, 7, 8)]
    w = [_weights(r.model) for r in runs]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(torch.equal(w[0][k], w[2][k]) for k in w[0])


@pytest.mark.parametrize("name", ["vae", "dae"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(name, digits, tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=64, seed=3)
    full = fit(_cfg(name, digits), digits, cfg, tmp_path / "full", progress=False)
    fit(_cfg(name, digits), digits, dataclasses.replace(cfg, epochs=2), tmp_path / "part", progress=False)
    resumed = fit(_cfg(name, digits), digits, cfg, tmp_path / "part", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    a, _ = load_tensors(tmp_path / "full" / "last.safetensors")
    b, _ = load_tensors(tmp_path / "part" / "last.safetensors")
    for k in a:
        if k.startswith(("model.", "optim.")):
            assert torch.equal(a[k], b[k]), k
    assert full.history[-1]["val"] == resumed.history[-1]["val"]


def test_existing_model_folder_is_not_overwritten(digits, tmp_path):
    fit(_cfg("ae", digits), digits, TrainConfig(epochs=1, batch_size=64), tmp_path, progress=False)
    before = (tmp_path / "weights.safetensors").read_bytes()
    with pytest.raises(OutputError, match="--resume.*--overwrite"):
        fit(_cfg("ae", digits), digits, TrainConfig(epochs=1, batch_size=64), tmp_path, progress=False)
    assert (tmp_path / "weights.safetensors").read_bytes() == before
    fit(_cfg("ae", digits), digits, TrainConfig(epochs=1, batch_size=64, seed=1), tmp_path, overwrite=True,
        progress=False)
    assert (tmp_path / "weights.safetensors").read_bytes() != before


class _DivergesAtEpoch3(VAE):
    """A VAE whose KL term turns NaN after a number of steps: a real fault injected into a real run."""

    calls = 0

    def loss(self, x, y=None, kl_weight=1.0):
        lt = super().loss(x, y, kl_weight)
        if self.training:
            type(self).calls += 1
            if type(self).calls > 2 * 21:       # digits: 21 steps per epoch at batch 64
                lt.terms["kl"] = lt.terms["kl"] * float("nan")
                return type(lt)(lt.total * float("nan"), lt.terms)
        return lt


def test_nan_guard_names_the_term_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    model = _DivergesAtEpoch3(_cfg("vae", digits))
    with pytest.raises(DivergenceError, match=r"'kl' term became NaN/inf at epoch 3.*epoch 2\) is kept"):
        fit(model, digits, TrainConfig(epochs=5, batch_size=64), tmp_path, progress=False)
    ck = load_model(tmp_path)                       # the last good weights still load
    assert isinstance(ck.model, VAE)
    _, meta = load_tensors(tmp_path / "last.safetensors")
    assert '"epoch": 2' in meta["state"]


def test_early_stopping(digits):
    # lr so small that float32 weights cannot move: validation never improves after epoch 1
    run = fit(_cfg("ae", digits), digits, TrainConfig(epochs=10, batch_size=64, lr=1e-30, patience=2), progress=False)
    assert run.status == "early-stopped" and len(run.history) == 3 and run.best_epoch == 1


def test_batch_larger_than_data_is_capped_and_shape_mismatch(digits, tmp_path):
    run = fit(_cfg("ae", digits), digits, TrainConfig(epochs=1, batch_size=100_000), tmp_path / "m", progress=False)
    assert run.history[0]["step"] == 1                       # one batch of the whole training split
    conf = json.loads((tmp_path / "m" / "config.json").read_text())
    assert conf["train"]["batch_size"] == digits.x_train.shape[0]
    assert "batch size 100000 is larger than the 1294 training images" in conf["training"]["notes"][0]
    with pytest.raises(ConfigError, match="built for images of shape"):
        fit(model_config("ae", input_shape=(1, 28, 28)), digits, TrainConfig(epochs=1), progress=False)


def test_linear_kl_warmup_is_logged(digits):
    run = fit(_cfg("vae", digits), digits, TrainConfig(epochs=2, batch_size=64, kl_schedule="linear",
                                                      kl_warmup_steps=84), progress=False)
    assert run.history[0]["kl_weight"] == pytest.approx(21 / 84)
    assert run.history[1]["kl_weight"] == pytest.approx(42 / 84)
