"""evaluate(): structure, nulls where a metric does not apply, determinism, collapse and reference checks.

Tiny models trained on the embedded digits; one judge per module (cached under a tmp VAELAB_CACHE).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch

from vaelab.cli import main
from vaelab.config import TrainConfig
from vaelab.data import CORRUPTIONS, load_dataset
from vaelab.evaluate import evaluate, reference_rows
from vaelab.judge import load_or_train_judge
from vaelab.models import model_config
from vaelab.train import fit

N = 500          # generated samples per sampler: enough for stable orderings, fast on 2 cores
KW = dict(n_samples=N, iw_k=10, n_interp_pairs=200, progress=False)
TOP = {"model", "is_stochastic", "n_latent", "reconstruction", "likelihood", "generation", "interpolation",
       "latent", "collapse", "denoising", "timings", "notes", "holes", "novelty", "intervals"}
GEN = {"fd", "precision", "recall", "density", "coverage_nn", "realism", "confidence", "coverage", "coverage_max"}
LATENT = {"linear_probe", "knn", "kmeans_nmi", "kmeans_ari", "silhouette", "active_units", "n_latent",
          "kl_per_dim", "aggregate_kl", "mutual_information"}
COLLAPSE = {"kl_total", "units_below_0.01_nats", "shuffle_recon_increase", "decoder_ignores_z"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def judge(digits, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_or_train_judge(digits, progress=False)


def _train(name: str, data, epochs: int = 15):
    cfg = model_config(name, input_shape=data.shape, n_latent=8, hidden=(128,),
                       n_classes=data.n_classes if name == "cvae" else 0)
    return fit(cfg, data, TrainConfig(epochs=epochs, batch_size=64, seed=0), progress=False).model


@pytest.fixture(scope="module")
def ae(digits):
    return _train("ae", digits)


@pytest.fixture(scope="module")
def vae(digits):
    return _train("vae", digits)


@pytest.fixture(scope="module")
def ae_result(ae, digits, judge):
    return evaluate(ae, digits, judge=judge, **KW)


@pytest.fixture(scope="module")
def vae_result(vae, digits, judge):
    return evaluate(vae, digits, judge=judge, **KW)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_structure_and_strict_json(ae_result, vae_result):
    for r in (ae_result, vae_result):
        assert set(r) == TOP
        json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, allow_nan=False)   # strict JSON
        assert set(r["reconstruction"]["mean_z"]) == {"bce", "mse", "psnr"}
        assert set(r["generation"]) == {"prior", "gmm"}
        assert all(set(g) == GEN and all(_finite(v) for v in g.values()) for g in r["generation"].values())
        assert set(r["interpolation"]) == {"fd_midpoints", "confidence_midpoints"}
        assert set(r["latent"]) == LATENT and set(r["collapse"]) == COLLAPSE
        assert set(r["denoising"]) == set(CORRUPTIONS)
        assert all(_finite(v) and 0 < v < 100 for v in r["denoising"].values())
        assert r["n_latent"] == r["latent"]["n_latent"] == 8
        assert 0 <= r["latent"]["active_units"] <= 8
        g = r["generation"]["prior"]
        assert 0 <= g["precision"] <= 1 and 0 <= g["recall"] <= 1 and 0 <= g["coverage"] <= g["coverage_max"]
        assert g["coverage_max"] == pytest.approx(math.log(10))


def test_ae_has_no_likelihood_never_zero(ae_result):
    r = ae_result
    assert r["model"] == "ae" and r["is_stochastic"] is False
    assert r["likelihood"] is None
    assert r["reconstruction"]["sampled_z"] is None
    assert r["latent"]["kl_per_dim"] is None and r["latent"]["mutual_information"] is None
    assert r["collapse"]["kl_total"] is None and r["collapse"]["units_below_0.01_nats"] is None


def test_vae_likelihood_bounds_and_kind(vae_result):
    lik = vae_result["likelihood"]
    assert vae_result["is_stochastic"] is True
    # IWAE bound (K=10) is at least as tight as the ELBO, up to Monte-Carlo error
    assert lik["iw_nll"] <= lik["neg_elbo"] + 3 * lik["iw_nll_se"] + 0.5
    assert lik["iw_k"] == 10 and lik["bits_per_dim"] == pytest.approx(lik["iw_nll"] / (64 * math.log(2)))
    assert lik["kind"] == "training objective" and "not a normalised likelihood" in lik["note"]  # grey digits
    assert len(vae_result["latent"]["kl_per_dim"]) == 8
    assert vae_result["collapse"]["kl_total"] == pytest.approx(sum(vae_result["latent"]["kl_per_dim"]))
    assert vae_result["reconstruction"]["sampled_z"]["bce"] > 0


def test_iw_curve_in_the_same_pass_as_iw_nll(vae_result, ae_result, vae, digits):
    from vaelab import metrics as M
    from vaelab.evaluate import _likelihood, iw_curve_ks
    from vaelab.preprocess import modelled

    assert iw_curve_ks(200) == (1, 10, 100, 200) and iw_curve_ks(1000) == (1, 10, 100, 1000)
    assert iw_curve_ks(5) == (1, 5) and iw_curve_ks(1) == (1,)
    assert ae_result["likelihood"] is None                      # an AE: no likelihood, no curve
    lik = vae_result["likelihood"]
    c = lik["iw_curve"]
    json.dumps(c, allow_nan=False)
    assert c["k"] == [1, 10] and len(c["nll"]) == len(c["se"]) == 2
    assert c["nll"][-1] == lik["iw_nll"] and c["se"][-1] == lik["iw_nll_se"]      # last point is iw_nll
    # the same samples as the stand-alone K = iw_k estimate: same seed, same iw_nll as before the curve existed
    x = modelled(digits.x_test, vae.cfg, "test")
    alone = M.importance_weighted_nll(vae, x, None, k=10, seed=0)
    assert lik["iw_nll"] == pytest.approx(alone["nll"], rel=1e-9, abs=1e-9)
    # the bound tightens with K: non-increasing within Monte-Carlo noise, and K=1 is an unbiased -ELBO
    big = _likelihood(vae, digits, 200, 0, False)
    k, nll, se = big["iw_curve"]["k"], big["iw_curve"]["nll"], big["iw_curve"]["se"]
    assert k == [1, 10, 100, 200] and nll[-1] == big["iw_nll"]
    assert all(b <= a + 3 * (sa + sb) for a, b, sa, sb in zip(nll, nll[1:], se, se[1:]))
    assert nll[-1] < nll[0]                                     # on average the bound is strictly tighter
    assert nll[0] == pytest.approx(big["neg_elbo"], abs=5 * se[0] + 0.5)


def test_bernoulli_on_binary_data_is_a_true_nll(vae, digits):
    binary = dataclasses.replace(digits, x_test=(digits.x_test > 0.5).float())
    r = evaluate(vae, binary, judge=None, samplers=(), **KW)
    assert r["likelihood"]["kind"] == "nll"


def test_same_seed_same_numbers(vae, digits, judge, vae_result):
    again = evaluate(vae, digits, judge=judge, **KW)
    strip = lambda r: {k: v for k, v in r.items() if k != "timings"}   # noqa: E731
    assert strip(again) == strip(vae_result)
    other = evaluate(vae, digits, judge=judge, **{**KW, "seed": 1})
    assert other["generation"]["prior"]["fd"] != vae_result["generation"]["prior"]["fd"]


def test_collapse_flags_a_decoder_that_ignores_z(ae, digits, ae_result):
    assert ae_result["collapse"]["decoder_ignores_z"] is False
    assert ae_result["collapse"]["shuffle_recon_increase"] > 1.0         # nats per image
    blind = copy.deepcopy(ae)
    with torch.no_grad():
        blind.decoder.net[0].weight.zero_()                              # first decoder layer sees z: cut it
    r = evaluate(blind, digits, judge=None, samplers=(), **KW)
    assert r["collapse"]["decoder_ignores_z"] is True
    assert abs(r["collapse"]["shuffle_recon_increase"]) < 1e-6


def test_trained_models_beat_noise(ae_result, vae_result, digits, judge):
    ref = reference_rows(digits, judge, n_samples=N)
    assert set(ref) == {"train_vs_test", "mean_image", "uniform_noise"}
    fd = {k: v["fd"] for k, v in ref.items()}
    assert fd["train_vs_test"] < fd["mean_image"] and fd["train_vs_test"] < fd["uniform_noise"]
    # a trained model's GMM samples sit between the floor and the ceilings
    for r in (ae_result, vae_result):
        assert fd["train_vs_test"] < r["generation"]["gmm"]["fd"] < min(fd["mean_image"], fd["uniform_noise"])
        assert r["latent"]["linear_probe"] > 0.5 and r["reconstruction"]["mean_z"]["psnr"] > 12
    json.dumps(ref, allow_nan=False)


def test_without_judge_or_labels(vae, digits):
    unlabelled = dataclasses.replace(digits, y_train=None, y_val=None, y_test=None, n_classes=0, class_names=())
    r = evaluate(vae, unlabelled, judge=None, **KW)
    assert all(v is None for g in r["generation"].values() for v in g.values())
    assert r["interpolation"] == {"fd_midpoints": None, "confidence_midpoints": None}
    assert r["latent"]["linear_probe"] is None and r["latent"]["silhouette"] is None
    assert any("judge" in n for n in r["notes"]) and any("labels" in n for n in r["notes"])
    assert reference_rows(unlabelled, None)["uniform_noise"]["fd"] is None


def test_dead_latent_unit_gives_null_aggregate_kl(ae, digits):
    dead = copy.deepcopy(ae)
    with torch.no_grad():                    # code dimension 0 constant: singular covariance, KL = inf
        dead.head.weight[0].zero_()
        dead.head.bias[0] = 0.0
    r = evaluate(dead, digits, judge=None, samplers=(), **KW)
    assert r["latent"]["aggregate_kl"] is None and any("aggregate_kl" in n for n in r["notes"])
    assert r["latent"]["active_units"] <= 7


def test_cvae_and_bad_options(digits, judge):
    cvae = _train("cvae", digits, epochs=3)
    r = evaluate(cvae, digits, judge=judge, samplers=("prior",), **KW)
    assert set(r["generation"]) == {"prior"} and r["likelihood"] is not None
    from vaelab.errors import ConfigError
    with pytest.raises(ConfigError, match="sampler"):
        evaluate(cvae, digits, judge=None, samplers=("flow",), **KW)
    with pytest.raises(ConfigError, match="samples"):
        evaluate(cvae, digits, judge=None, **{**KW, "n_samples": 2})


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "vae"
    assert main(["train", "vae", "--epochs", "2", "--hidden", "32", "--latent-dim", "4", "--quiet",
                 "--out", str(model)]) == 0
    out = tmp_path / "metrics.json"
    args = ["evaluate", str(model), "--out", str(out), "--n-samples", "100", "--iw-samples", "5", "--quiet"]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert set(doc["metrics"]) == {k for k in TOP if not k.startswith("_")} and doc["metrics"]["model"] == "vae"
    assert doc["judge"]["test_accuracy"] >= 0.9 and doc["settings"]["n_samples"] == 100
    assert set(doc["reference"]) == {"train_vs_test", "mean_image", "uniform_noise"}
    assert "FD" in capsys.readouterr().out
    # refuses to overwrite; bad options are one clear message, no traceback
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--samplers", "prior,flow"]) == 2
    assert "sampler" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope"), "--out", str(tmp_path / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_saving_the_figure_arrays_changes_no_metric(vae, digits, judge, vae_result, tmp_path):
    """The arrays have their own seeded draws: evaluating with arrays_path gives the very same numbers."""
    import numpy as np

    from vaelab.measure.store import load_arrays

    # both evaluations here, back to back: the module's vae_result may come from another torch thread count
    # (float sums then differ in the last bits, which is not what this test is about)
    without = evaluate(vae, digits, judge=judge, **KW)
    with_arrays = evaluate(vae, digits, judge=judge, **KW, arrays_path=tmp_path / "vae.npz",
                           replicates_path=tmp_path / "reps.npz", novelty_path=tmp_path / "novelty.npz")
    strip = lambda r: {k: v for k, v in r.items() if k != "timings"}  # noqa: E731
    assert strip(with_arrays) == strip(without)
    assert strip(with_arrays).keys() == strip(vae_result).keys()
    reps = load_arrays(tmp_path / "reps.npz")       # one (B,) replicate vector per interval, for paired differences
    assert set(reps) == set(with_arrays["intervals"]) and all(v.ndim == 1 for v in reps.values())
    assert load_arrays(tmp_path / "novelty.npz")
    a = load_arrays(tmp_path / "vae.npz")
    c, h, w = digits.shape
    assert a["recon"].shape == (10, c, h, w) and a["stochastic"].shape == (8, c, h, w)
    assert a["samples__prior"].shape == a["samples__gmm"].shape == (36, c, h, w)
    assert a["interpolations"].shape == (2, 10, c, h, w) and a["scatter"].shape == (len(digits.x_test), 2)
    assert all(0.0 <= float(v.min()) and float(v.max()) <= 1.0 for k, v in a.items() if v.ndim == 4 or v.ndim == 5)
    assert np.std(a["stochastic"], axis=0).max() > 0         # a VAE's decodes of z ~ q(z|x) vary
