"""Molecular properties, the joint property head on z, per-epoch reconstruction records, and latent-space design."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit", reason="molecule support needs RDKit: pip install vaelab[molecules]")
pytest.importorskip("selfies", reason="SELFIES tokens need selfies: pip install vaelab[molecules]")

from vaelab import losses  # noqa: E402
from vaelab.config import TrainConfig  # noqa: E402
from vaelab.errors import ConfigError, DataError  # noqa: E402
from vaelab.models import build_model, model_config  # noqa: E402
from vaelab.models.nets import PropertyHead  # noqa: E402
from vaelab.molecules import design as Dz  # noqa: E402
from vaelab.molecules import properties as P  # noqa: E402
from vaelab.train import fit  # noqa: E402

ETHANOL, BENZENE, ASPIRIN = "CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O"
SMILES = ["CCO", "CCN", "CCC", "CCCO", "CCCN", "CC(C)O", "CC(=O)O", "c1ccccc1", "c1ccccc1O", "c1ccccc1N", "CCOC",
          "CC(C)N", "OCCO", "NCCN", "CC=O", "CCCC", "C1CCCCC1", "c1ccncc1", "CC(=O)N", "CCCCO", "CCCCCO", "COC",
          "c1ccc(C)cc1", "c1ccc(O)cc1O", "CC(C)(C)O", "CCS", "CCCl", "CCF", "C1CCOC1", "C1CCNC1"]


# ----------------------------------------------------------------------------- RDKit properties: known answers
def test_properties_of_known_molecules():
    """Crippen logP (Wildman & Crippen 1999), QED (Bickerton et al. 2012) and MW as RDKit publishes them:
    ethanol logP -0.0014, QED 0.407, MW 46.069; benzene 1.6866, 0.443, 78.114; aspirin 1.3101, 0.550, 180.159."""
    mols = [ETHANOL, BENZENE, ASPIRIN]
    np.testing.assert_allclose(P.property_values(mols, "logp"), [-0.0014, 1.6866, 1.3101], atol=1e-4)
    np.testing.assert_allclose(P.property_values(mols, "qed"), [0.4068, 0.4426, 0.5501], atol=1e-4)
    np.testing.assert_allclose(P.property_values(mols, "mw"), [46.069, 78.114, 180.159], atol=1e-3)
    assert P.property_values([BENZENE], "sa")[0] == pytest.approx(1.0)        # the easiest possible, SA's floor
    assert 1.0 < P.property_values([ASPIRIN], "sa")[0] < 2.0


def test_penalized_logp_is_the_jtvae_standardisation():
    """(logP - 2.4571)/1.4343 + (-SA + 3.0526)/0.8335 + (-cycle + 0.0486)/0.2860 (Jin et al. 2018, bo/gen_latent.py)."""
    for s, cycle in ((ASPIRIN, 0), ("C1CCCCCCC1", 2)):                       # cyclooctane: ring of 8 -> penalty 2
        logp, sa = P.property_values([s], "logp")[0], P.property_values([s], "sa")[0]
        want = (logp - 2.4570953396190123) / 1.434324401111988 + (-sa + 3.0525811293166134) / 0.8335207024513095 \
            + (-cycle + 0.0485696876403053) / 0.2860212110245455
        assert P.property_values([s], "penalized-logp")[0] == pytest.approx(want, abs=1e-9)
    assert P.cycle_penalty(P.get_mol(BENZENE)) == 0


def test_invalid_smiles_and_unknown_property():
    assert np.isnan(P.property_values(["C1CC", ""], "qed")).all()              # invalid -> NaN, never a crash
    with pytest.raises(ConfigError, match="unknown property 'potency'; choose one of qed, logp"):
        P.check_property("potency")


# ----------------------------------------------------------------------------- the joint property head
VOCAB = ("<pad>", "<bos>", "<eos>", "<unk>", "[C]", "[N]", "[O]")


def _cfg(name="ae", **kw):
    return model_config(name, vocab=VOCAB, max_len=8, n_latent=4, embed_dim=5, hidden=7, **kw)


def test_property_head_recovers_a_linear_function_of_z():
    torch.manual_seed(0)
    cfg = _cfg(properties=("qed",), property_mean=(0.0,), property_std=(1.0,), property_hidden=16)
    head = PropertyHead(cfg)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0])
    z = torch.randn(512, 4)
    y = (z @ w + 0.3)[:, None]                                            # (N, 1) a linear property of z
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    for _ in range(300):
        opt.zero_grad()
        losses.property_sq_error(head(z), y).mean().backward()
        opt.step()
    z_test = torch.randn(256, 4)
    y_test = z_test @ w + 0.3
    pred = head(z_test)[:, 0].detach()
    r2 = 1 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()
    assert r2 > 0.98


def test_property_term_joins_the_ae_and_vae_objectives_and_is_refused_elsewhere():
    x = torch.tensor([[1, 4, 5, 2, 0, 0, 0, 0], [1, 6, 2, 0, 0, 0, 0, 0]])
    y = torch.tensor([[0.5], [-0.5]])
    for name in ("ae", "vae"):
        m = build_model(_cfg(name, properties=("qed",), property_mean=(0.5,), property_std=(0.2,)))
        plain = build_model(_cfg(name))
        lt = m.loss(x, y)
        assert "property" in lt.terms and lt.terms["property"] >= 0
        # the head is registered last: the rest of the model is initialised exactly as without it
        torch.manual_seed(0)
        a = build_model(_cfg(name, properties=("qed",), property_mean=(0.5,), property_std=(0.2,)))
        torch.manual_seed(0)
        b = build_model(_cfg(name))
        assert all(torch.equal(p, q) for p, q in zip(b.parameters(), a.parameters()))
        assert len(list(a.parameters())) > len(list(plain.parameters()))
        with pytest.raises(ConfigError, match="property targets"):
            m.loss(x, None)
    for name in ("rae", "iwae", "dae"):
        with pytest.raises(ConfigError, match="does not support it"):
            build_model(_cfg(name, properties=("qed",), property_mean=(0.5,), property_std=(0.2,)))
    with pytest.raises(ConfigError, match="a mean and a std per property"):
        _cfg(properties=("qed",))


@pytest.fixture(scope="module")
def tiny():
    """A tiny AE with a qed/logp/sa head, trained a few epochs on 30 small molecules (seconds)."""
    from vaelab.molecules.dataset import load_molecules
    from vaelab.molecules.latent import MoleculeModel
    from vaelab.molecules.training import ReconstructionRecorder
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    path = folder / "mols.smi"
    path.write_text("\n".join(SMILES * 2) + "\n")
    data = load_molecules(f"smiles:{path}", subset=None, seed=0, test_fraction=0.2)
    data, mean, std = P.with_properties(data, ("qed", "logp", "sa"))
    cfg = model_config("ae", tokenizer="selfies", vocab=tuple(data.tokenizer.vocab.itos), max_len=data.shape[0],
                       n_latent=8, embed_dim=16, hidden=32, properties=("qed", "logp", "sa"), property_mean=mean,
                       property_std=std)
    run = fit(cfg, data, TrainConfig(epochs=3, batch_size=16, lr=3e-3), None, progress=False,
              on_epoch=ReconstructionRecorder(data, n=20))
    return MoleculeModel(run.model, data.tokenizer, cfg.to_dict()), data, run


def test_with_properties_standardises_on_train_and_history_records_reconstruction(tiny):
    mm, data, run = tiny
    assert data.y_train.shape == (len(data.smiles_train), 3)
    np.testing.assert_allclose(data.y_train.mean(0).numpy(), 0, atol=1e-5)
    assert all(0 <= r["token_accuracy"] <= 1 and 0 <= r["recon_exact"] <= 1 for r in run.history)
    assert "property" in run.history[-1]["train"]
    r2 = P.head_r2(mm.model, mm.model.encode(data.x_test).mean.detach(), data.smiles_test)
    assert set(r2) == {"qed", "logp", "sa"} and all(np.isfinite(v) for v in r2.values())


def test_gradient_ascent_increases_the_head_prediction_monotonically(tiny):
    mm, data, _ = tiny
    z0 = mm.model.encode(data.x_test[:1]).mean.detach()[0]
    zs, preds = Dz.gradient_path(mm.model, z0, "qed", steps=15, step_size=0.5)
    assert zs.shape == (16, 8)
    assert all(b >= a for a, b in zip(preds, preds[1:]))
    assert preds[-1] > preds[0]


@pytest.mark.parametrize("method", ["gradient", "bo"])
def test_design_is_deterministic_under_a_seed_and_scores_by_rdkit(tiny, method):
    mm, data, _ = tiny
    a = Dz.design(mm, "qed", data.smiles_test[0], steps=4, method=method, seed=3, train=set(data.smiles_train))
    b = Dz.design(mm, "qed", data.smiles_test[0], steps=4, method=method, seed=3, train=set(data.smiles_train))
    assert a["path"] == b["path"]
    for p in a["path"]:     # every candidate's value is RDKit's qed of its decode
        want = P.property_values([p["smiles"]], "qed")[0]
        assert (p["value"] is None and np.isnan(want)) or p["value"] == pytest.approx(want)
    assert a["path"][0]["similarity"] == pytest.approx(1.0) or a["path"][0]["smiles"] != a["start_smiles"]
    assert 0 <= a["validity"] <= 1 and a["improvement"] == pytest.approx(a["best"] - a["start_value"])
    assert a["top10"] <= a["best"]


def test_penalized_logp_design_uses_the_logp_and_sa_head(tiny):
    mm, data, _ = tiny
    res = Dz.design(mm, "penalized-logp", data.smiles_test[0], steps=2)
    assert res["property"] == "penalized-logp" and len(res["path"]) == 3


def test_design_bad_inputs_get_one_clear_message(tiny):
    mm, data, _ = tiny
    with pytest.raises(DataError, match="invalid"):
        Dz.design(mm, "qed", "C1CC(", steps=2)
    with pytest.raises(ConfigError, match="unknown property 'potency'"):
        Dz.design(mm, "potency", "CCO", steps=2)
    with pytest.raises(ConfigError, match="unknown design method"):
        Dz.design(mm, "qed", "CCO", steps=2, method="annealing")
    with pytest.raises(ConfigError, match="needs a property head that predicts it"):
        Dz.design(mm, "mw", "CCO", steps=2, method="gradient")
    with pytest.raises(DataError, match="--from-test takes 1.."):
        Dz.start_molecules(data.smiles_test, 0)


def test_expected_improvement_by_hand():
    from scipy.stats import norm

    ei = Dz.expected_improvement(np.array([1.0, 0.0]), np.array([1.0, 0.0]), best=0.5, xi=0.0)
    assert ei[0] == pytest.approx(0.5 * norm.cdf(0.5) + norm.pdf(0.5))
    assert ei[1] == 0.0


def test_design_table_means_with_intervals_and_records_what_a_model_cannot_do(tiny, tmp_path):
    from vaelab.molecules.latent import MoleculeModel

    mm, data, _ = tiny
    cfg = model_config("ae", tokenizer="selfies", vocab=mm.model.cfg.vocab, max_len=mm.model.cfg.max_len,
                       n_latent=8, embed_dim=16, hidden=32)
    headless = MoleculeModel(build_model(cfg), mm.tokenizer, cfg.to_dict())
    table = Dz.design_table({"ae": mm, "plain": headless}, data.smiles_test[:2], "qed", steps=2,
                            train=set(data.smiles_train))
    s = table["models"]["ae"]["gradient"]["summary"]["improvement"]
    runs = table["models"]["ae"]["gradient"]["runs"]
    assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean([r["improvement"] for r in runs]))
    assert s["lo"] <= s["mean"] <= s["hi"]
    assert "needs a property head" in table["models"]["plain"]["gradient"]["error"]
    assert table["models"]["plain"]["bo"]["summary"]["validity"]["n"] == 2       # BO needs no head
    __import__("vaelab.molecules.report", fromlist=["x"]).path_grid_png(tmp_path / "path.png", runs[0])
    assert (tmp_path / "path.png").stat().st_size > 0


@pytest.fixture(scope="module")
def run_folder(tiny, tmp_path_factory):
    """A molecule run folder as compare writes it: metrics.json (kind molecules) and models/ae."""
    import json

    mm, data, _ = tiny
    run = tmp_path_factory.mktemp("run")
    cfg = mm.model.cfg
    fit(cfg, data, TrainConfig(epochs=1, batch_size=16), run / "models" / "ae", progress=False)
    (run / "metrics.json").write_text(json.dumps({"kind": "molecules", "models": {"ae": {"status": "ok"}},
                                                  "config": {"dataset": "smiles:x", "seed": 0}}))
    return run


def _design_args(run, *argv):
    import argparse

    from vaelab.molecules.design_cmd import design_args

    p = argparse.ArgumentParser()
    design_args(p)
    return p.parse_args([str(run), *argv])


def test_design_command_prints_the_table_and_writes_json(run_folder, tmp_path, capsys):
    import json

    from vaelab.molecules.design_cmd import design_cmd

    out = tmp_path / "design.json"
    assert design_cmd(_design_args(run_folder, "--property", "qed", "--from", "CCO", "--steps", "2", "--json",
                                   str(out), "--png-dir", str(tmp_path / "png"))) == 0
    text = capsys.readouterr().out
    assert "| ae | gradient |" in text and "| ae | bo |" in text
    assert json.loads(out.read_text())["models"]["ae"]["gradient"]["runs"][0]["start_smiles"] == "CCO"
    assert (tmp_path / "png" / "ae-bo-0.png").exists()


def test_design_command_bad_inputs(run_folder, tmp_path, capsys):
    import json

    from vaelab.molecules.design_cmd import design_cmd

    with pytest.raises(DataError, match="invalid"):
        design_cmd(_design_args(run_folder, "--property", "qed", "--from", "C1CC("))
    for prop in ("potency", "mw"):      # design raises qed, logp or penalized-logp: argparse refuses the rest
        with pytest.raises(SystemExit) as e:
            _design_args(run_folder, "--property", prop, "--from", "CCO")
        assert e.value.code == 2 and f"invalid choice: '{prop}'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--from and --from-test exclude each other"):
        design_cmd(_design_args(run_folder, "--from", "CCO", "--from-test", "2"))
    images = tmp_path / "images"
    images.mkdir()
    (images / "metrics.json").write_text(json.dumps({"kind": "images", "models": {}}))
    with pytest.raises(ConfigError, match="is not a molecule run"):
        design_cmd(_design_args(images, "--property", "qed", "--from", "CCO"))
    with pytest.raises(ConfigError, match="is not a run folder"):
        design_cmd(_design_args(tmp_path / "nowhere", "--property", "qed", "--from", "CCO"))


def test_design_answer_calls_a_difference_only_when_its_interval_excludes_zero():
    def table(a, b):
        runs = lambda xs: {"runs": [{"improvement": x} for x in xs]}
        return {"models": {"ae": {"gradient": runs(a)}, "vae": {"gradient": runs(b)}}}

    assert "VAE's latent served design better" in Dz.design_answer(table([0.0, 0.1, 0.0], [0.3, 0.4, 0.35]))
    assert "no difference called" in Dz.design_answer(table([0.0, 0.3, 0.1], [0.3, 0.0, 0.1]))
    assert "too few" in Dz.design_answer(table([0.0], [0.3]))
    assert Dz.design_answer({"models": {"ae": {}}}) == ""


def test_the_config_lists_the_properties_the_property_module_knows():
    from vaelab.config import MOLECULE_PROPERTIES

    assert MOLECULE_PROPERTIES == P.PROPERTIES
