"""Colour and 64x64: the conv backbone down-samples to 4x4, likelihoods factorise over channels, the judge and
every figure take RGB; compare end to end on synthetic colour folders made here (labelled and flat)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.models import build_model, model_config
from vaelab.models.nets import conv_channels

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 60, 230)}


def colour_folder(root: Path, n_per_class: int = 12, size: int = 64, flat: bool = False, seed: int = 0) -> Path:
    """One class per dominant colour: a coloured disc of random radius and centre on a noisy grey background."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for c, rgb in COLOURS.items():
        folder = root if flat else root / c
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(90, 140, (size, size, 3)).astype(np.float64)
            cy, cx = rng.uniform(0.3, 0.7, 2) * size
            r = rng.uniform(0.2, 0.35) * size
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
            img[disc] = rgb
            p = folder / f"{c}{i:02d}.png"
            Image.fromarray(img.astype(np.uint8)).save(p)
            os.utime(p, (time.time() - 60, time.time() - 60))      # old enough for the decode cache
    return root


def test_conv_channels_reach_4x4():
    assert conv_channels((3, 64, 64)) == (32, 64, 128, 256)
    assert conv_channels((1, 28, 28)) == (32, 64, 128)
    assert conv_channels((1, 8, 8)) == (32,)
    cfg = model_config("vae", input_shape=(3, 64, 64), backbone="conv", channels=conv_channels((3, 64, 64)),
                       hidden=(64,), n_latent=4)
    model = build_model(cfg)
    dense = [m for m in model.encoder.net if isinstance(m, torch.nn.Linear)][0]
    assert dense.in_features == 256 * 4 * 4                               # the last feature map is 4x4
    x = torch.rand(2, 3, 64, 64)
    assert model.decode(model.encode(x).mean).shape == (2, 3, 64, 64)
    assert torch.isfinite(model.loss(x).total).all()


def test_likelihoods_factorise_over_channels():
    """-log p(x|z) of an RGB image is the sum of its three channels' terms (independent per channel and pixel)."""
    g = torch.Generator().manual_seed(0)
    x, logits = torch.rand(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    for lik in ("bernoulli", "continuous-bernoulli", "gaussian"):
        cfg = model_config("vae", input_shape=(3, 8, 8), likelihood=lik, learn_sigma=lik == "gaussian")
        L = build_model(cfg).likelihood
        if lik == "gaussian":
            assert tuple(L.log_sigma.shape) == (3, 8, 8)                  # a learned sigma per channel and pixel
            with torch.no_grad():
                L.log_sigma.copy_(torch.randn(3, 8, 8, generator=g) * 0.3)
        total = L.nll(logits, x)
        if lik == "gaussian":
            per_channel = sum(_gauss(logits[:, c:c + 1], x[:, c:c + 1], L.log_sigma[c:c + 1]) for c in range(3))
        else:
            one = build_model(model_config("vae", input_shape=(1, 8, 8), likelihood=lik)).likelihood
            per_channel = sum(one.nll(logits[:, c:c + 1], x[:, c:c + 1]) for c in range(3))
        assert torch.allclose(total, per_channel, rtol=1e-5, atol=1e-4), lik


def _gauss(mean: torch.Tensor, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Independent Gaussians: sum over pixels of 0.5 log(2 pi) + log sigma + (x - mean)^2 / (2 sigma^2)."""
    s = log_sigma.exp()
    return (0.5 * np.log(2 * np.pi) + log_sigma + (x - mean) ** 2 / (2 * s ** 2)).flatten(1).sum(1)


def _is_colour_png(path: Path) -> bool:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return bool((np.abs(a[..., 0] - a[..., 1]) > 30).mean() > 0.001)


@pytest.mark.slow
@pytest.mark.parametrize("flat", [False, True])
def test_compare_on_a_colour_folder(tmp_path, monkeypatch, flat):
    """64x64 RGB images through compare with the 4x4 conv backbone: colour judge, colour figures, report."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    from vaelab.config import CompareConfig, DataSpec, EvalConfig, ModelConfig, TrainConfig
    from vaelab.compare import compare

    torch.set_num_threads(1)
    root = colour_folder(tmp_path / "imgs", n_per_class=8, flat=flat)
    cfg = CompareConfig(data=DataSpec(dataset=f"folder:{root}"), models=("ae", "vae"),
                        model=ModelConfig(backbone="conv", channels=conv_channels((3, 64, 64)), hidden=(64,), n_latent=4),
                        train=TrainConfig(epochs=2), eval=EvalConfig(n_samples=40, iw_k=2, n_interp_pairs=10),
                        use_pair_2d=False)
    doc = compare(cfg, tmp_path / "run", progress=False)
    assert doc["dataset"]["shape"] == [3, 64, 64] and "RGB 64x64" in doc["dataset"]["source"]
    assert all(m["status"] == "ok" for m in doc["models"].values()), doc["models"]
    figs = tmp_path / "run" / "figures"
    if flat:
        assert doc["judge"] is None and doc["dataset"]["n_classes"] == 0
    else:
        assert doc["judge"]["arch"] == "cnn" and doc["dataset"]["class_names"] == ["blue", "green", "red"]
        assert doc["models"]["vae"]["generation"]["prior"]["fd"] is not None
    for name in ("reconstructions", "denoising"):             # they show the RGB test images beside the decodes
        assert _is_colour_png(figs / f"{name}.png"), name
    with np.load(tmp_path / "run" / "arrays" / "vae.npz") as a:     # what the sample figures are drawn from
        assert a["samples__prior"].shape == (36, 3, 64, 64) and a["recon"].shape[1:] == (3, 64, 64)
    model = doc["models"]["vae"]
    assert model["likelihood"]["bits_per_dim"] == pytest.approx(model["likelihood"]["iw_nll"] / (3 * 64 * 64 * np.log(2)))


PICTURE_FIGURES = ("reconstructions", "stochastic_reconstructions", "samples_prior", "samples_gmm", "interpolations",
                   "manifold_2d", "denoising", "novelty", "test_time_sure")


def _colour_fraction(path: Path) -> float:
    """The fraction of a PNG's pixels whose channels differ by more than 10 (a grey drawing has none)."""
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float((a.max(-1) - a.min(-1) > 10).mean())


@pytest.mark.slow
def test_every_picture_figure_of_a_colour_run_is_in_colour(tmp_path, monkeypatch):
    """Each figure that shows examples (reconstructions, samples, interpolations, the 2-D manifold, denoising,
    memorisation pairs, most/least sure) draws the RGB decodes in colour, not one channel in grey."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    from vaelab.compare import compare
    from vaelab.config import CompareConfig, DataSpec, EvalConfig, ModelConfig, TrainConfig

    torch.set_num_threads(1)
    root = colour_folder(tmp_path / "imgs", n_per_class=10, size=16)
    cfg = CompareConfig(data=DataSpec(dataset=f"folder:{root}"), models=("ae", "vae"),
                        model=ModelConfig(hidden=(32,), n_latent=4), train=TrainConfig(epochs=2),
                        eval=EvalConfig(n_samples=40, iw_k=2, n_interp_pairs=10), inliers=(0, 1))   # 2-D pair, test time
    doc = compare(cfg, tmp_path / "run", progress=False)
    drawn = {f["file"][:-4] for f in doc["figures"]}
    assert set(PICTURE_FIGURES) <= drawn, set(PICTURE_FIGURES) - drawn
    for name in PICTURE_FIGURES:
        assert _colour_fraction(tmp_path / "run" / "figures" / f"{name}.png") > 0.05, name
    assert _colour_fraction(tmp_path / "run" / "figures" / "latent_scatter.png") < 0.05   # the scale: a plot, few dots
