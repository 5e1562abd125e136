"""The hand-derived training step (vaelab.models.fused) against autograd: the same terms, the same gradients."""
from __future__ import annotations

import pytest
import torch

from vaelab import TrainConfig, fit
from vaelab.data import load_dataset
from vaelab.models import build_model, model_config
from vaelab.models.fused import fused_step, why_not

CASES = [
    ("ae", {}), ("dae", {}), ("dae", {"corruption": "masking:0.5"}), ("rae", {"rae_lambda": 0.01}),
    ("vae", {}), ("vae", {"beta": 2.0}), ("beta-vae", {}), ("vae", {"hidden": (32,)}), ("ae", {"hidden": (20,)}),
    ("vae", {"hidden": (48, 40, 24)}), ("iwae", {}), ("iwae", {"k": 1}), ("iwae", {"k": 7, "hidden": (30,)}),
]


def _pair(name: str, kw: dict, seed: int = 0):
    cfg = model_config(name, input_shape=(1, 8, 8), n_latent=4, hidden=kw.pop("hidden", (40, 24)), **kw)
    torch.manual_seed(seed)
    a = build_model(cfg)
    b = build_model(cfg)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_gradients_and_terms_equal_autograds(name, kw):
    a, b = _pair(name, dict(kw))
    assert why_not(b) is None
    step = fused_step(b)
    x = torch.rand(37, 1, 8, 8)
    x[:5] = (x[:5] > 0.5).float()           # binary and grey pixels
    for kl_weight, scale in ((1.0, 1.0), (0.3, 0.75)):
        torch.manual_seed(11)
        lt = a.loss(x, kl_weight=kl_weight)
        a.zero_grad()
        (lt.total * scale).backward()
        torch.manual_seed(11)
        ft = step(x, kl_weight, scale)
        assert list(ft.terms) == list(lt.terms)
        torch.testing.assert_close(ft.total, lt.total.detach(), rtol=1e-5, atol=1e-5)
        for k in lt.terms:
            torch.testing.assert_close(ft.terms[k], lt.terms[k], rtol=1e-5, atol=1e-5)
        for (pn, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name} {pn}: {m}")


@pytest.mark.parametrize("name,kw", [("vae", {"free_bits": 0.4}), ("iwae", {})])
def test_free_bits_and_the_logvar_clamp_pass_no_gradient_where_autograd_passes_none(name, kw):
    """Log-variances pushed past the clamp, both ways; both steps in float64. (In float32 autograd's IWAE gradient
    is noise there: log q's terms in (z - mu) / var, ~1e6 at the lower clamp, cancel only after rounding, while
    the fused step uses their exact sum, 0 in mu.)"""
    a, b = _pair(name, dict(kw))
    with torch.no_grad():
        a.head.bias[4:6] = torch.tensor([40.0, -45.0])
        b.head.load_state_dict(a.head.state_dict())
    a.double(), b.double()
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    torch.manual_seed(3)
    lt = a.loss(x)
    lt.total.backward()
    torch.manual_seed(3)
    ft = fused_step(b)(x)
    torch.testing.assert_close(ft.total, lt.total.detach(), rtol=1e-10, atol=0)
    assert any(bool((p.grad == 0).any()) for p in b.head.parameters())     # the clamped rows pass nothing
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name,kw,reason", [
    ("cvae", {"n_classes": 3}, "own objective"),
    ("vae", {"prior": "laplace"}, "prior"), ("vae", {"likelihood": "gaussian"}, "Bernoulli"),
    ("vae", {"backbone": "conv", "channels": (4,)}, "mlp"),
])
def test_other_models_are_left_to_autograd(name, kw, reason):
    cfg = model_config(name, input_shape=(1, 8, 8), n_latent=4, hidden=(16,), **kw)
    model = build_model(cfg)
    assert reason in why_not(model)
    assert fused_step(model) is None


def test_fit_with_the_fused_step_matches_autograd_and_says_which_it_used(tmp_path):
    data = load_dataset("digits", seed=0)
    runs = {}
    for backward in ("auto", "autograd"):
        cfg = TrainConfig(epochs=2, batch_size=64, seed=3, backward=backward)
        runs[backward] = fit(model_config("vae", input_shape=(1, 8, 8), n_latent=4, hidden=(64, 32)), data, cfg,
                             tmp_path / backward, progress=False)
    import json
    used = {k: json.loads((tmp_path / k / "config.json").read_text())["training"]["backward"] for k in runs}
    assert used == {"auto": "fused", "autograd": "autograd"}
    fa, au = runs["auto"].history[-1], runs["autograd"].history[-1]
    for k in ("recon", "kl", "neg_elbo"):   # two epochs of float rounding apart, not an objective apart
        assert fa["train"][k] == pytest.approx(au["train"][k], rel=1e-3)
        assert fa["val"][k] == pytest.approx(au["val"][k], rel=1e-3)
    # the same seed, the same numbers: the fused run is reproducible bit for bit
    again = fit(model_config("vae", input_shape=(1, 8, 8), n_latent=4, hidden=(64, 32)), data,
                TrainConfig(epochs=2, batch_size=64, seed=3), progress=False)
    assert again.history[-1]["train"] == fa["train"]


def test_a_model_with_hooks_is_left_to_autograd():
    model = build_model(model_config("vae", input_shape=(1, 8, 8), n_latent=4, hidden=(16,)))
    assert why_not(model) is None
    model.head.weight.register_hook(lambda g: g * 2)       # what a user's gradient hook expects to see applied
    assert "hooks" in why_not(model)
    other = build_model(model_config("ae", input_shape=(1, 8, 8), n_latent=4, hidden=(16,)))
    other.decoder.register_forward_hook(lambda m, i, o: o)
    assert "hooks" in why_not(other)


def test_the_direct_adamw_kernel_steps_as_torchs_adamw_bit_for_bit():
    """AdamWKernel skips the optimiser's wrapper, not its arithmetic: the same parameters and state as opt.step()
    after every step, through a change of lr, and it falls back to opt.step() when a hook is registered."""
    from vaelab.train import AdamWKernel

    def make():
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(s)) for s in ((32, 16), (32,), (8, 32))]
        for p in ps:
            p.grad = torch.empty_like(p)
        return ps, torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True)

    (pa, oa), (pb, ob) = make(), make()
    kernel = AdamWKernel(ob)
    assert kernel.usable
    seen = []
    for step in range(8):
        g = torch.Generator().manual_seed(step)
        for a, b in zip(pa, pb):
            a.grad.copy_(torch.randn(a.shape, generator=g))
            b.grad.copy_(a.grad)
        if step == 4:
            for o in (oa, ob):
                o.param_groups[0]["lr"] = 3e-3
        if step == 6:
            ob.register_step_post_hook(lambda *_: seen.append(step))    # a hook: the wrapper must run it
        oa.step()
        kernel()
        assert all(torch.equal(a, b) for a, b in zip(pa, pb))
        for a, b in zip(pa, pb):
            assert all(torch.equal(oa.state[a][k], ob.state[b][k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert kernel.lists is not None and seen == [6, 7]
    assert not AdamWKernel(torch.optim.AdamW(pa, lr=1e-2, fused=True, amsgrad=True)).usable
    assert not AdamWKernel(torch.optim.AdamW(pa, lr=1e-2, foreach=True)).usable
