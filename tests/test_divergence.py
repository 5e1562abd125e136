"""NaN/inf guard, --on-nan retry and Ctrl-C in the trainer.

A NaN is injected into one quantity of one training step (a loss term, or a gradient through a
hook): fault injection around a real VAE, so the guard, the checkpoints and the retry are the real
code. The reference for "the last good checkpoint" is a clean run of the same seed that stops
before the injected step: training is bit-reproducible on the CPU, so the kept files must equal it.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vaelab.checkpoint import load_model, load_tensors
from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.errors import DivergenceError, Interrupted
from vaelab.models import VAE, LossTerms, model_config
from vaelab.retry import fit_with_retries
from vaelab.train import fit

STEPS_PER_EPOCH = 4            # 230 training images, batch 64


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", max_train=230)


def cfg_for(data):
    return model_config("vae", input_shape=data.shape, n_latent=2, hidden=(32,))


class Faulty(VAE):
    """A VAE whose training step number ``at`` (1-based) and, if ``every``, all later ones, go wrong:
    ``what`` is a term name (that term becomes NaN; with ``in_total`` the total too), "gradient" (NaN
    gradient through a hook, loss finite) or "interrupt" (KeyboardInterrupt, as Ctrl-C raises)."""

    def __init__(self, cfg, at: int, what: str = "kl", in_total: bool = True, every: bool = False):
        super().__init__(cfg)
        self.at, self.what, self.in_total, self.every, self.calls = at, what, in_total, every, 0
        self._nan_grad = False
        self.head.weight.register_hook(lambda g: g * float("nan") if self._nan_grad else g)

    def loss(self, x, y=None, kl_weight: float = 1.0) -> LossTerms:
        lt = super().loss(x, y, kl_weight)
        if not self.training:
            return lt
        self.calls += 1
        hit = self.calls == self.at or (self.every and self.calls > self.at)
        self._nan_grad = hit and self.what == "gradient"
        if not hit or self.what == "gradient":
            return lt
        if self.what == "interrupt":
            raise KeyboardInterrupt
        nan = torch.tensor(float("nan"))
        terms = {**lt.terms, self.what: lt.terms[self.what] + nan}
        return LossTerms(lt.total + nan if self.in_total else lt.total, terms)


def faulty(data, **kw) -> Faulty:
    torch.manual_seed(0)                   # fit seeds again; this only makes construction reproducible
    return Faulty(cfg_for(data), **kw)


def train_cfg(epochs: int = 4, lr: float = 1e-3) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=lr, device="cpu", seed=0)


def clean_run(data, out: Path, epochs: int):
    """The same model, built the same way, and seed, without the fault; through autograd, as the faulty
    subclass is (the hand-derived step of vaelab.models.fused, which a plain VAE gets, rounds differently)."""
    torch.manual_seed(0)
    return fit(VAE(cfg_for(data)), data, replace(train_cfg(epochs), backward="autograd"), out, progress=False)


def state(out: Path) -> dict:
    return json.loads(load_tensors(out / "last.safetensors")[1]["state"])


def same_tensors(a: Path, b: Path) -> bool:
    ta, tb = load_tensors(a)[0], load_tensors(b)[0]
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize("what,in_total", [("kl", True), ("recon", False), ("gradient", True)])
def test_stop_names_the_term_and_keeps_the_last_good_checkpoint(data, tmp_path: Path, what: str, in_total: bool):
    at = 2 * STEPS_PER_EPOCH + 2                      # epoch 3, step 10
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as e:
        fit_with_retries(faulty(data, at=at, what=what, in_total=in_total), data, train_cfg(), out, progress=False)
    assert (e.value.term, e.value.epoch, e.value.step) == (what, 3, at)
    assert f"the {what!r} term became NaN/inf at epoch 3, step {at}" in str(e.value)
    assert "epoch 2" in str(e.value) and str(out) in str(e.value)
    assert state(out)["epoch"] == 2
    ref = tmp_path / "ref"
    clean_run(data, ref, epochs=2)
    assert same_tensors(out / "weights.safetensors", ref / "weights.safetensors")
    assert same_tensors(out / "last.safetensors", ref / "last.safetensors")
    load_model(out)                                   # still a valid, verified checkpoint
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["status"] == "diverged" and f"{what!r} term became NaN/inf" in training["error"]


def test_retry_resumes_from_last_good_epoch_with_half_the_lr(data, tmp_path: Path):
    at = 2 * STEPS_PER_EPOCH + 2
    out = tmp_path / "run"
    run = fit_with_retries(faulty(data, at=at), data, train_cfg(), out, on_nan="retry", progress=False)
    assert run.status == "completed" and [r["epoch"] for r in run.history] == [1, 2, 3, 4]
    cfg = json.loads((out / "config.json").read_text())
    (retry,) = cfg["training"]["retries"]
    assert retry["term"] == "kl" and retry["diverged_epoch"] == 3 and retry["resumed_from_epoch"] == 2
    assert retry["lr_before"] == 1e-3 and retry["lr_after"] == 5e-4 and "new trajectory" in retry["note"]
    assert cfg["train"]["lr"] == 5e-4 and cfg["training"]["status"] == "completed"
    ref = tmp_path / "ref"
    ref_run = clean_run(data, ref, epochs=2)
    assert run.history[:2] == [{**r, "seconds": h["seconds"], "cpu_seconds": h["cpu_seconds"], "images_per_s": h["images_per_s"]}
                               for r, h in zip(ref_run.history, run.history[:2])]
    # a later --resume of this run keeps the halved learning rate and the record
    run2 = fit_with_retries(cfg_for(data), data, train_cfg(epochs=5), out, on_nan="retry", resume=True, progress=False)
    cfg2 = json.loads((out / "config.json").read_text())
    assert [r["epoch"] for r in run2.history] == [1, 2, 3, 4, 5]
    assert cfg2["train"]["lr"] == 5e-4 and len(cfg2["training"]["retries"]) == 1


def test_retry_gives_up_after_max_retries(data, tmp_path: Path):
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as e:
        fit_with_retries(faulty(data, at=STEPS_PER_EPOCH + 1, every=True), data, train_cfg(), out,
                         on_nan="retry", max_retries=2, progress=False)
    assert "Gave up after 2 retries" in str(e.value) and e.value.term == "kl"
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["status"] == "diverged"
    assert [r["lr_after"] for r in training["retries"]] == [5e-4, 2.5e-4]
    assert all(r["resumed_from_epoch"] == 1 for r in training["retries"]) and state(out)["epoch"] == 1


def test_retry_without_a_checkpoint_restarts_from_the_initial_weights(data, tmp_path: Path):
    model = faulty(data, at=2)                         # epoch 1: nothing on disk yet
    run = fit_with_retries(model, data, train_cfg(epochs=2), None, on_nan="retry", progress=False)
    assert run.status == "completed" and [r["epoch"] for r in run.history] == [1, 2]
    out = tmp_path / "run"                             # the same with an output folder
    fit_with_retries(faulty(data, at=2), data, train_cfg(epochs=2), out, on_nan="retry", progress=False)
    retry = json.loads((out / "config.json").read_text())["training"]["retries"][0]
    assert retry["resumed_from_epoch"] == 0 and retry["diverged_epoch"] == 1


def test_ctrl_c_raises_interrupted_and_keeps_the_resume_point(data, tmp_path: Path):
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as e:
        fit(faulty(data, at=2 * STEPS_PER_EPOCH + 1, what="interrupt"), data, train_cfg(), out, progress=False)
    assert e.value.exit_code == 130
    assert "after 2 of 4 epochs" in str(e.value) and "same command plus --resume" in str(e.value)
    assert state(out)["epoch"] == 2
    with pytest.raises(Interrupted, match="no epoch had completed"):
        fit(faulty(data, at=1, what="interrupt"), data, train_cfg(), tmp_path / "run2", progress=False)


def test_on_nan_and_max_retries_are_checked(data):
    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown --on-nan"):
        fit_with_retries(cfg_for(data), data, train_cfg(), on_nan="ignore")
    with pytest.raises(ConfigError, match="--max-retries"):
        fit_with_retries(cfg_for(data), data, train_cfg(), max_retries=-1)
