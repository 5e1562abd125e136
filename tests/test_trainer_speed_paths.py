"""The trainer's fast paths keep their semantics: NaN guard on a stride, per-rank batch slices and loss scaling."""
from __future__ import annotations

import math

import pytest
import torch

from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.distributed import DistContext, rank_slice
from vaelab.errors import DivergenceError
from vaelab.models import build_model, model_config
from vaelab.train import _diverged_term, fit


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_rank_slices_partition_every_batch() -> None:
    for world in (1, 2, 3, 4):
        for lo, hi in [(0, 128), (128, 203), (0, 5)]:
            parts = [rank_slice(lo, hi, DistContext(world, r)) for r in range(world)]
            assert parts[0][0] == lo and parts[-1][1] == hi
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))            # contiguous, no overlap
            sizes = [b - a for a, b in parts]
            assert max(sizes) - min(sizes) <= 1


def test_scaled_rank_gradients_average_to_the_global_batch_gradient() -> None:
    """What DDP computes (mean over ranks of grad(scale_r * loss_r)) equals grad of the global-batch mean."""
    torch.manual_seed(0)
    model = build_model(model_config("ae", input_shape=(1, 8, 8)))
    x = torch.rand(7, 1, 8, 8)                     # 7 images over 2 ranks: 3 + 4, the uneven last batch
    full = torch.autograd.grad(model.loss(x).total, list(model.parameters()))
    world, grads = 2, []
    for r in range(world):
        a, b = rank_slice(0, 7, DistContext(world, r))
        scale = (b - a) * world / 7
        grads.append(torch.autograd.grad(model.loss(x[a:b]).total * scale, list(model.parameters())))
    for g_full, *g_ranks in zip(full, *grads):
        torch.testing.assert_close(sum(g_ranks) / world, g_full, rtol=1e-5, atol=1e-6)


def test_diverged_term_prefers_the_named_term() -> None:
    nan = math.nan
    assert _diverged_term(["loss", "recon", "kl"], [True, False, True, False]) == "kl"
    assert _diverged_term(["loss", "recon"], [True, False, False]) == "loss"
    assert _diverged_term(["loss", "recon"], [False, False, True]) == "gradient"


def test_nan_guard_on_a_stride_names_the_term_and_rolls_back(digits, tmp_path) -> None:
    mcfg = model_config("vae", input_shape=digits.shape, likelihood="gaussian", sigma=1e-30)
    model = build_model(mcfg)
    with pytest.raises(DivergenceError, match="'recon' term became NaN/inf at epoch 1, step 1;"):
        fit(model, digits, TrainConfig(epochs=2, lr=10.0, device="cpu", log_every=5), tmp_path / "m", progress=False)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())      # the epoch-start weights are back
    assert not (tmp_path / "m" / "last.safetensors").exists()                  # nothing written after the NaN


def test_log_stride_does_not_change_training(digits) -> None:
    """Reading the running sums every step or every 1000 steps gives the same weights and history."""
    mcfg = model_config("vae", input_shape=digits.shape, hidden=(32,), n_latent=4)
    runs = [fit(mcfg, digits, TrainConfig(epochs=2, batch_size=64, device="cpu", log_every=e), progress=False)
            for e in (1, 1000)]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)
    assert runs[0].history[-1]["train"] == runs[1].history[-1]["train"]
