"""`vaelab compare` end to end on the embedded digits (few epochs, small sample counts), the run folder
contract, refusal/resume/overwrite, failures that do not stop the others, seeds, and the samplers."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.compare import CompareConfig, aggregate
from vaelab.config import TrainConfig
from vaelab.errors import ConfigError

FAST = ["--epochs", "3", "--n-samples", "100", "--iw-k", "5", "--quiet"]


def _strict_load(path: Path) -> dict:
    def bad(c: str) -> None:
        raise AssertionError(f"non-strict JSON constant {c} in {path}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=bad)


@pytest.fixture
def cache(judge_cache):
    yield


@pytest.fixture
def run(compare_run):
    return compare_run


def test_run_folder_contract(run):
    doc = _strict_load(run / "metrics.json")
    assert doc["schema_version"] == 1
    assert doc["dataset"]["name"] == "digits" and doc["dataset"]["n_classes"] == 10
    assert set(doc["models"]) == {"ae", "vae", "cvae"}
    for name, m in doc["models"].items():
        assert m["status"] == "ok", m.get("error")
        assert (run / "models" / name / "weights.safetensors").is_file()
        assert (run / "models" / name / "config.json").is_file()
        assert m["train"]["epochs_done"] == 3
    assert doc["models"]["ae"]["likelihood"] is None            # an AE has no likelihood: null, never 0
    assert doc["models"]["vae"]["likelihood"]["iw_k"] == 5
    for p in ("ae-2d", "vae-2d"):
        assert (run / "models" / p / "weights.safetensors").is_file()
        g = doc["pairs_2d"][p]["grid_prior"]
        assert 0.0 <= g["frac_confident"] <= 1.0 and len(g["confidence"]) == g["n"]
    assert doc["judge"]["test_accuracy"] > 0.8
    assert {"train_vs_test", "mean_image", "uniform_noise"} <= set(doc["reference"])
    files = {f["file"] for f in doc["figures"]}
    assert {"reconstructions.png", "stochastic_reconstructions.png", "samples_prior.png", "samples_gmm.png",
            "cvae_labels.png", "interpolations.png", "latent_scatter.png", "manifold_2d.png", "holes_map.png",
            "training_curves.png", "denoising.png"} <= files
    for f in files:
        assert (run / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (run / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == len(files)
    assert doc["answer"]["short"] in html.replace("&#39;", "'")
    assert not list(run.rglob(".*.tmp"))                       # no leftovers of atomic writes


def test_timings_cover_every_phase(run):
    doc = _strict_load(run / "metrics.json")
    t, u = doc["timings"], doc["unit_timings"]
    assert {"data", "judge", "units", "figures", "report", "total"} <= set(t)
    # the reference rows are a unit: they run beside the models (--workers > 1), not before them
    assert {f"{p}:{m}" for p in ("train", "evaluate") for m in ("ae", "vae", "cvae")} | {"pairs_2d", "reference"} <= set(u)
    assert u["reference"] > 0
    assert all(v >= 0 for v in [*t.values(), *u.values()])
    assert u["train:vae"] > 0 and t["report"] > 0
    # one worker: the units ran one after the other, so their times add up to the units phase
    assert sum(u.values()) <= t["units"] * 1.001
    parts = sum(v for k, v in t.items() if k != "total")
    assert parts <= t["total"] * 1.001 and parts >= 0.8 * t["total"]    # the phases account for the run


def test_likelihood_figures_from_metrics(run):
    doc = _strict_load(run / "metrics.json")
    figs = {f["file"]: f for f in doc["figures"]}
    html = (run / "report.html").read_text(encoding="utf-8")
    for name in ("likelihood_curve", "kl_schedule", "kl_per_dim"):
        f = figs[f"{name}.png"]
        assert f["caption"] and (run / "figures" / f["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'id="fig-{name}"><h3>' in html and "is missing from figures/" not in html
    # the curve's inputs: the VAE family only (no AE), K = 1 .. iw_k, last point = iw_nll
    for name in ("vae", "cvae"):
        lik = doc["models"][name]["likelihood"]
        assert lik["iw_curve"]["k"] == [1, 5] and lik["iw_curve"]["nll"][-1] == lik["iw_nll"]
    assert doc["models"]["ae"]["likelihood"] is None
    sched = doc["kl_schedule"]
    assert sched["model"] == "vae" and sched["train"]["kl_schedule"] == "constant"
    assert [r["kl_weight"] for r in sched["history"]] == [1.0, 1.0, 1.0]
    assert sched["n_steps"] == sched["history"][-1]["step"] > 0


def test_likelihood_curve_axis_says_training_objective(tmp_path):
    """Grey digits under a Bernoulli are not an NLL: the curve's axis must say so (read from the PNG's text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaelab.report import likelihood_figures as LF

    doc = {"models": {"vae": {"status": "ok", "likelihood": {
        "kind": "training objective", "neg_elbo": 30.0,
        "iw_curve": {"k": [1, 10], "nll": [30.1, 29.0], "se": [0.5, None]}}, "latent": {"kl_per_dim": [1.0, 0.0]}},
        "ae": {"status": "ok", "likelihood": None, "latent": {"kl_per_dim": None}}}}
    plan = LF.metrics_plan(doc)
    assert set(plan) == {"likelihood_curve", "kl_per_dim"}          # no kl_schedule block: no schedule figure
    labels = []
    orig = plt.Axes.set_ylabel

    def spy(self, text, *a, **k):
        labels.append(text)
        return orig(self, text, *a, **k)

    plt.Axes.set_ylabel = spy
    try:
        plan["likelihood_curve"](tmp_path / "c.png")
        doc["models"]["vae"]["likelihood"]["kind"] = "nll"
        LF.metrics_plan(doc)["likelihood_curve"](tmp_path / "d.png")
    finally:
        plt.Axes.set_ylabel = orig
    assert "training objective" in labels[0] and "training objective" not in labels[1]


def test_the_answer_names_this_runs_numbers(run):
    doc = _strict_load(run / "metrics.json")
    fd_vae = doc["models"]["vae"]["generation"]["prior"]["fd"]
    assert f"{fd_vae:.2f}" in doc["answer"]["short"]


def test_existing_run_folder_is_refused(run, capsys):
    before = (run / "metrics.json").stat().st_mtime_ns
    rc = main(["compare", "--models", "ae,vae,cvae", "--out", str(run), *FAST])
    err = capsys.readouterr().err
    assert rc != 0
    assert "--overwrite" in err and "--resume" in err and "Traceback" not in err
    assert (run / "metrics.json").stat().st_mtime_ns == before


def test_resume_reuses_finished_models(run, capsys):
    w = {n: (run / "models" / n / "weights.safetensors").stat().st_mtime_ns for n in ("ae", "vae", "cvae")}
    assert main(["compare", "--models", "ae,vae,cvae", "--out", str(run), "--resume", *FAST]) == 0
    doc = _strict_load(run / "metrics.json")
    assert all(doc["models"][n]["train"]["reused"] for n in w)
    assert {n: (run / "models" / n / "weights.safetensors").stat().st_mtime_ns for n in w} == w
    # other options than the run was started with: refused, with what differs
    rc = main(["compare", "--models", "ae,vae,cvae", "--out", str(run), "--resume", *FAST[:-1], "--latent-dim", "3"])
    assert rc != 0 and "n_latent" in capsys.readouterr().err


def test_a_diverging_model_is_reported_and_the_others_finish(cache, tmp_path, capsys):
    out = tmp_path / "run"
    # beta-vae's KL weight overflows float32 at the first step: a real DivergenceError, only for beta-vae
    rc = main(["compare", "--models", "ae,beta-vae", "--beta", "1e39", "--no-pair", "--out", str(out), *FAST])
    assert rc == 0
    doc = _strict_load(out / "metrics.json")
    assert doc["models"]["ae"]["status"] == "ok"
    assert doc["models"]["beta-vae"]["status"] == "failed"
    assert "NaN/inf" in doc["models"]["beta-vae"]["error"]
    assert "beta-vae failed" in capsys.readouterr().out
    assert "failed" in (out / "report.html").read_text(encoding="utf-8")


def test_seeds_give_mean_and_sd(cache, tmp_path):
    out = tmp_path / "seeds"
    assert main(["compare", "--models", "ae,vae", "--seeds", "2", "--no-pair", "--out", str(out), *FAST]) == 0
    doc = _strict_load(out / "metrics.json")
    vae = doc["models"]["vae"]
    assert doc["config"]["seeds"] == [0, 1]
    assert len(vae["per_seed"]) == 2
    vals = [r["reconstruction"]["mean_z"]["psnr"] for r in vae["per_seed"]]
    assert vals[0] != vals[1]
    assert vae["reconstruction"]["mean_z"]["psnr"] == pytest.approx(np.mean(vals))
    assert vae["sd"]["reconstruction"]["mean_z"]["psnr"] == pytest.approx(np.std(vals, ddof=1))
    assert (out / "models" / "vae" / "seed-1" / "weights.safetensors").is_file()
    assert " ± " in (out / "report.html").read_text(encoding="utf-8")


def test_bad_options_are_one_clear_message(cache, tmp_path, capsys):
    for argv, needle in ((["--models", "ae,gan"], "unknown model"), (["--seeds", "0"], "--seeds"),
                         (["--classes", "3"], "at least two"), (["--device", "tpu"], "device")):
        rc = main(["compare", "--out", str(tmp_path / "x"), *argv, *FAST])
        err = capsys.readouterr().err
        assert rc != 0 and needle in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


# -- pure pieces --------------------------------------------------------------------------------
def test_aggregate_keeps_shape_and_gives_sample_sd():
    runs = [{"a": 1.0, "b": {"c": 2, "d": None, "e": [1.0, 3.0]}, "s": "x", "f": True},
            {"a": 3.0, "b": {"c": 4, "d": None, "e": [3.0, 5.0]}, "s": "x", "f": False}]
    mean, sd = aggregate(runs)
    assert mean == {"a": 2.0, "b": {"c": 3.0, "d": None, "e": [2.0, 4.0]}, "s": "x", "f": 0.5}
    assert sd["a"] == pytest.approx(math.sqrt(2)) and sd["b"]["e"] == pytest.approx([math.sqrt(2)] * 2)
    one_mean, one_sd = aggregate(runs[:1])
    assert one_mean == runs[0] and one_sd["a"] is None


def test_size_defaults_and_overrides():
    small = CompareConfig().resolved((1, 8, 8))
    large = CompareConfig().resolved((1, 28, 28))
    assert small.train.epochs == 60 and small.model.n_latent == 8 and small.eval.n_samples == 2000
    assert large.train.epochs == 20 and large.model.n_latent == 16 and large.eval.n_samples == 10_000
    assert CompareConfig(train=TrainConfig(epochs=5)).resolved((1, 8, 8)).train.epochs == 5
    assert CompareConfig.from_dict(small.to_dict()) == small
    with pytest.raises(ConfigError, match="--threads"):
        CompareConfig(n_threads=-1)


# -- samplers: the latent grids and the run's models through `vaelab sample` -----------------------
def test_prior_grid_goes_through_the_quantiles():
    from scipy.stats import norm

    from vaelab.measure.grid import latent_grid

    z = latent_grid("prior", n=10)
    assert z.shape == (100, 2)
    axis = np.sort(np.unique(z[:, 0].numpy()))
    assert np.allclose(norm.cdf(axis), (np.arange(10) + 0.5) / 10, atol=1e-6)
    assert z[0, 1] > z[-1, 1] and z[0, 0] < z[9, 0]             # read like an image: z2 decreases down the rows


def test_code_range_grid_covers_the_models_codes(run):
    from vaelab.checkpoint import load_model
    from vaelab.measure.batched import encode_means
    from vaelab.measure.grid import latent_grid
    from vaelab.sampling import reload_dataset

    ck = load_model(run / "models" / "ae-2d")
    data = reload_dataset(ck.config)
    codes = encode_means(ck.model, data.x_train).numpy()
    z = latent_grid("codes", n=8, codes=codes)
    inside = ((codes >= z.numpy().min(0)) & (codes <= z.numpy().max(0))).all(1).mean()
    assert 0.9 <= inside <= 1.0                                 # the 1st..99th percentile box on each axis


@pytest.mark.parametrize("sampler", ["prior", "gmm"])
def test_run_models_sample_reproducibly(run, sampler):
    from vaelab.sampling import sample_images

    a = sample_images(run / "models" / "ae", 16, sampler=sampler, seed=3)
    b = sample_images(run / "models" / "ae", 16, sampler=sampler, seed=3)
    c = sample_images(run / "models" / "ae", 16, sampler=sampler, seed=4)
    assert a.shape == (16, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_gmm_codes_are_closer_to_the_ae_codes_than_prior_codes(run):
    from vaelab.checkpoint import load_model
    from vaelab.density import make_density
    from vaelab.measure.batched import encode_means
    from vaelab.sampling import fit_density, reload_dataset

    ck = load_model(run / "models" / "ae")
    data = reload_dataset(ck.config)
    gmm = fit_density("gmm", ck.model, data, seed=0)
    codes = encode_means(ck.model, data.x_test)
    prior = make_density("prior", ck.model.cfg.n_latent)
    # the fitted mixture explains the AE's held-out codes far better than N(0, I) does: the "holes"
    assert float(gmm.log_prob(codes).mean()) > float(prior.log_prob(codes).mean()) + 1.0
