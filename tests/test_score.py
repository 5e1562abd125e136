"""Per-image anomaly scores and `vaelab score`: known answers on synthetic data, then the command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaelab.config import ModelConfig, TrainConfig
from vaelab.data import Dataset
from vaelab.metrics.detection import auroc, threshold_at_fpr
from vaelab.score import SCORES, applicable_scores, image_scores, png_bits, uncertainty


def _gaussian_images(n: int, mean: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, 4, 4) images: pixels N(mean, 0.08^2) with a shared random offset per image, clipped to [0, 1]."""
    x = mean + 0.08 * torch.randn(n, 1, 4, 4, generator=gen) + 0.05 * torch.randn(n, 1, 1, 1, generator=gen)
    return x.clamp(0.0, 1.0)


@pytest.fixture(scope="module")
def synthetic():
    gen = torch.Generator().manual_seed(0)
    data = Dataset(name="synthetic", x_train=_gaussian_images(800, 0.3, gen), y_train=None,
                   x_val=_gaussian_images(400, 0.3, gen), y_val=None, x_test=_gaussian_images(400, 0.3, gen),
                   y_test=None, n_classes=0, class_names=(), source="test", fingerprint="synthetic")
    outliers = _gaussian_images(400, 0.6, gen)       # the inlier distribution shifted away
    return data, outliers


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    from vaelab.train import fit

    data, _ = synthetic
    models = {}
    for name in ("vae", "ae"):
        mcfg = ModelConfig(model=name, input_shape=(1, 4, 4), n_latent=2, hidden=(32,), likelihood="gaussian",
                           sigma=0.1)
        run = fit(mcfg, data, TrainConfig(epochs=10, batch_size=64, seed=0, device="cpu"),
                  tmp_path_factory.mktemp(name), progress=False)
        models[name] = run.model
    return models


def test_trained_vae_neg_elbo_separates_shifted_outliers(synthetic, trained):
    data, outliers = synthetic
    vae = trained["vae"]
    s_in = image_scores(vae, data.x_test, seed=0)
    s_out = image_scores(vae, outliers, seed=0)
    assert set(s_in) == set(SCORES) - {"gmm_nll"}           # no density given
    assert auroc(s_in["neg_elbo"], s_out["neg_elbo"]) > 0.95
    assert auroc(s_in["iw_nll"], s_out["iw_nll"]) > 0.95
    # -ELBO >= IW bound per image (Jensen), and the same seed gives the same numbers
    assert np.all(s_in["neg_elbo"] >= s_in["iw_nll"] - 1e-9)
    again = image_scores(vae, data.x_test, seed=0)
    np.testing.assert_array_equal(again["iw_nll"], s_in["iw_nll"])


def test_threshold_at_5_percent_fpr_flags_about_5_percent_of_held_out_inliers(synthetic, trained):
    from vaelab.sampling import fit_density

    from threadpoolctl import threadpool_limits

    data, outliers = synthetic
    for model in trained.values():
        with threadpool_limits(1):       # BLAS threads only spin on a tiny GMM fit
            density = fit_density("gmm", model, data, 0)
        s_val = image_scores(model, data.x_val, density=density, split="val")
        s_test = image_scores(model, data.x_test, density=density)
        for name in s_val:
            t = threshold_at_fpr(s_val[name], 0.05)
            assert 0.015 <= np.mean(s_test[name] > t) <= 0.10, name


def test_ae_scores_and_no_scores_for_label_conditioned_models(trained):
    from vaelab.models import build_model

    assert applicable_scores(trained["ae"]) == ("recon_error", "gmm_nll")
    cvae = build_model(ModelConfig(model="cvae", input_shape=(1, 4, 4), n_latent=2, hidden=(8,), n_classes=2))
    assert applicable_scores(cvae) == ()
    with pytest.raises(ValueError, match="no posterior spread"):
        uncertainty(trained["ae"], torch.rand(3, 1, 4, 4))


def test_wrong_image_size_is_one_clear_message(trained):
    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"shape \(1, 8, 8\).*takes \(1, 4, 4\)"):
        image_scores(trained["vae"], torch.rand(3, 1, 8, 8))


def test_uncertainty_is_larger_where_the_posterior_is_wider(synthetic, trained):
    data, outliers = synthetic
    u = uncertainty(trained["vae"], data.x_test[:50])
    assert u["posterior_variance"].shape == (50,) and np.all(u["posterior_variance"] > 0)
    assert np.all(u["recon_spread"] >= 0)


def test_png_bits_grow_with_image_complexity():
    flat = torch.full((4, 1, 16, 16), 0.5)
    noise = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert np.all(png_bits(noise) > png_bits(flat) + 500)
    assert png_bits(flat)[0] == png_bits(flat)[1]


def test_score_a_folder_of_images_with_a_digits_model(tmp_path):
    """`vaelab score` on a user's folder of PNGs (folder:PATH, 8x8 grey like the model's digits): one row per file."""
    from PIL import Image

    from vaelab.cli import main
    from vaelab.data import load_dataset
    from vaelab.train import fit

    digits = load_dataset("digits")
    run = fit(ModelConfig(model="vae", input_shape=(1, 8, 8), n_latent=4, hidden=(64,)), digits,
              TrainConfig(epochs=3, batch_size=64, seed=0, device="cpu"), tmp_path / "vae", progress=False,
              data_meta={"spec": "digits", "split_seed": 0, "val_fraction": 0.1})
    assert run.status == "completed"
    folder = tmp_path / "mine"
    for c in ("a", "b"):                         # two class folders of 8x8 grey PNGs
        (folder / c).mkdir(parents=True)
        for i in range(6):
            img = (digits.x_test[i + (6 if c == "b" else 0), 0].numpy() * 255).astype(np.uint8)
            Image.fromarray(img, mode="L").save(folder / c / f"{i}.png")
    out = tmp_path / "scores.csv"
    assert main(["score", str(tmp_path / "vae"), "--dataset", f"folder:{folder}", "--out", str(out), "--quiet",
                 "--k", "4"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 12 and "vae:recon_error" in lines[0] and "vae:anomaly" in lines[0]
    info = json.loads((tmp_path / "scores.csv.json").read_text())
    assert info["models"]["vae"]["threshold"] > 0
