"""The evaluation's verdict blocks (vaelab.verdict): paired differences, collapse flags, seeds, figures."""
from __future__ import annotations

import numpy as np
import pytest

from vaelab import verdict as V
from vaelab.metrics import intervals as I


def test_paired_differences_from_replicates_on_shared_resamples():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 3, size=400)                 # per-image difficulty shared by both models
    a, b = base + rng.normal(0, 0.1, 400), base + 0.3 + rng.normal(0, 0.1, 400)
    ivs, reps = {}, {}
    for name, v in (("ae", a), ("vae", b)):
        ivs[name], reps[name] = V.per_image_intervals({("reconstruction", "mean_z", "bce"): v}, seed=0)
    d = V.paired_differences(reps, ivs, [("ae", "vae")])["vae - ae"]["reconstruction.mean_z.bce"]
    direct = I.paired_difference(a, b, seed=0)         # the same indices: the same interval
    assert d["value"] == pytest.approx(direct.value) and d["low"] == pytest.approx(direct.low)
    assert d["high"] == pytest.approx(direct.high) and d["low"] > 0.25
    assert ivs["ae"]["reconstruction.mean_z.bce"]["half_width"] > 10 * (d["high"] - d["low"]) / 2


def test_collapse_reason_fires_on_zero_active_units_or_an_ignored_code():
    ok = {"status": "ok", "latent": {"active_units": 4, "n_latent": 8}, "collapse": {"decoder_ignores_z": False}}
    assert V.collapse_reason(ok) is None
    dead = {**ok, "latent": {"active_units": 0, "n_latent": 8}, "collapse": {"kl_total": 0.001}}
    assert "0 of 8 latent units active" in V.collapse_reason(dead)
    assert "ignores z" in V.collapse_reason({**ok, "collapse": {"decoder_ignores_z": True}})
    assert V.collapse_reason({"status": "failed"}) is None


def test_seed_intervals_span_the_seeds():
    recs = [{"intervals": {"x": I.Interval(v, v - 0.1, v + 0.1, 0.95, "boot", 100).to_dict()}} for v in (1.0, 2.0, 3.0)]
    entry: dict = {}
    V.combine_seed_intervals(entry, recs)
    c = entry["intervals"]["x"]
    assert c["value"] == 2.0 and c["bootstrap"] == pytest.approx(0.1) and c["seeds"] > 2.0
    assert c["high"] - c["low"] == pytest.approx(2 * np.hypot(0.1, c["seeds"]))


def test_novelty_and_holes_figures_are_drawn_from_arrays_alone(tmp_path):
    from vaelab.measure.store import save_arrays
    from vaelab.report.verdict_figures import draw_from_arrays

    rng = np.random.default_rng(1)
    save_arrays(tmp_path / "arrays" / "novelty-ae.npz", {"novelty_gmm_samples": rng.random((8, 1, 8, 8)),
                                                         "novelty_gmm_train": rng.random((8, 1, 8, 8))})
    g = np.stack(np.meshgrid(np.linspace(-2, 2, 5), np.linspace(2, -2, 5)), -1).reshape(-1, 2)
    save_arrays(tmp_path / "arrays" / "holes-vae-2d.npz",
                {"z_grid": g, "log_ratio": -g[:, 0] ** 2, "realism": rng.random(25) * 2, "codes": rng.normal(size=(9, 2))})
    figs = draw_from_arrays(tmp_path, tmp_path / "figures")
    assert [f["file"] for f in figs] == ["novelty.png", "holes_q_vs_p.png"]
    assert all((tmp_path / "figures" / f["file"]).stat().st_size > 1000 for f in figs)
