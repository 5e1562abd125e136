"""Sequence AE/VAE/RAE for molecules: shapes, the masked token loss by hand, decoding, checkpoints, and a
tiny end-to-end run through fit -> checkpoint -> encode/decode/neighbours CLI."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaelab import losses
from vaelab.checkpoint import load_model
from vaelab.config import TrainConfig
from vaelab.errors import ConfigError
from vaelab.models import build_model, config_from_dict, model_config
from vaelab.models.seq import BOS, EOS, PAD, SPECIAL_TOKENS, SeqModelConfig
from vaelab.train import fit

VOCAB = SPECIAL_TOKENS + ("[C]", "[N]", "[O]", "[=C]", "[Ring1]")


def _cfg(name: str = "seq-vae", **kw) -> SeqModelConfig:
    return model_config(name, vocab=VOCAB, max_len=8, n_latent=3, embed_dim=5, hidden=7, **kw)


def _batch() -> torch.Tensor:
    # <bos> tokens <eos> <pad>...: lengths 5, 3, 8 (no padding in the last)
    return torch.tensor([[BOS, 4, 5, 6, EOS, PAD, PAD, PAD],
                         [BOS, 7, EOS, PAD, PAD, PAD, PAD, PAD],
                         [BOS, 4, 4, 5, 6, 7, 8, EOS]])


@pytest.mark.parametrize("name", ["seq-ae", "seq-vae", "seq-beta-vae", "seq-rae"])
def test_shapes_and_loss_terms(name):
    m = build_model(_cfg(name))
    x = _batch()
    q = m.encode(x)
    assert q.mean.shape == (3, 3)
    assert m.decode(q.mean, x=x).shape == (3, 7, len(VOCAB))        # teacher-forced next-token logits
    assert m.recon_nll(m.decode(q.mean, x=x), x).shape == (3,)
    assert m.recon_nll(m.decode(q.mean.expand(4, 3, 3), x=x), x).shape == (4, 3)   # K samples per sequence
    lt = m.loss(x, kl_weight=0.5)
    assert lt.total.dim() == 0 and torch.isfinite(lt.total)
    assert "recon" in lt.terms
    assert m.cfg.input_shape == (8,)
    assert (name == "seq-beta-vae") == (m.cfg.beta == 4.0)


def test_token_nll_is_the_masked_cross_entropy_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, len(VOCAB))
    target = _batch()[:, 1:]
    want = torch.zeros(3)
    for b in range(3):
        for t in range(7):
            if target[b, t] != PAD:
                want[b] -= F.log_softmax(logits[b, t], -1)[target[b, t]]
    torch.testing.assert_close(losses.token_nll(logits, target, PAD), want)
    # logits at padded targets do not matter
    logits2 = logits.clone()
    logits2[target == PAD] = 100.0
    torch.testing.assert_close(losses.token_nll(logits2, target, PAD), want)


def test_ae_loss_equals_hand_computation_and_vae_adds_kl():
    m = build_model(_cfg("seq-ae"))
    x = _batch()
    z = m.encode(x).mean
    logp = F.log_softmax(m.decode(z, x=x), -1)                    # (B, T, V)
    tgt = x[:, 1:]
    hand = -(logp.gather(-1, tgt[..., None])[..., 0] * (tgt != PAD)).sum(1).mean()
    torch.testing.assert_close(m.loss(x).total, hand)

    v = build_model(_cfg("seq-vae"))
    torch.manual_seed(1)
    lt = v.loss(x, kl_weight=0.25)
    q = v.encode(x)
    torch.manual_seed(1)
    z = q.rsample()
    recon = v.recon_nll(v.decode(z, x=x), x).mean()
    kl = losses.gaussian_kl(q.loc, 2 * q.scale.log()).mean()
    torch.testing.assert_close(lt.total, recon + 0.25 * kl)
    torch.testing.assert_close(lt.terms["neg_elbo"], recon + kl)


def test_rae_loss_composes_its_penalties():
    m = build_model(_cfg("seq-rae", rae_gamma=2.0, rae_lambda=0.5))
    x = _batch()
    z = m.encode(x).mean
    want = (m.recon_nll(m.decode(z, x=x), x).mean() + 2.0 * losses.rae_z_penalty(z).mean()
            + 0.5 * losses.l2_norm_squared(list(m.decoder.parameters())))
    torch.testing.assert_close(m.loss(x).total, want)


def test_encoder_ignores_padding():
    m = build_model(_cfg("seq-ae"))
    x = _batch()
    x_longer = torch.cat([x, torch.zeros(3, 4, dtype=torch.long)], 1)   # more padding
    torch.testing.assert_close(m.encoder(x), m.encoder(x_longer))


def test_decode_greedy_and_sampled():
    m = build_model(_cfg("seq-vae"))
    z = torch.randn(50, 3)
    ids = m.generate(z)
    assert ids.shape == (50, 8) and (ids[:, 0] == BOS).all()
    assert torch.equal(ids, m.generate(z))                        # greedy is deterministic
    assert not ((ids[:, 1:] == BOS) | (ids[:, 1:] == 3)).any()    # never <bos>/<unk> after the start
    for row in ids.tolist():                                      # after <eos>: only padding
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])
    s1 = m.generate(z, temperature=1.0, generator=torch.Generator().manual_seed(3))
    s2 = m.generate(z, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    with pytest.raises(ConfigError):
        m.generate(z, temperature=-1)
    with pytest.raises(ConfigError, match="teacher forcing"):
        m.decode(z)                                               # params of p(x|z) need the sequence


def test_config_round_trip_and_validation():
    cfg = _cfg("seq-beta-vae")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert config_from_dict(d) == cfg
    with pytest.raises(ConfigError, match="must start with"):
        SeqModelConfig(vocab=("[C]",) + SPECIAL_TOKENS)
    with pytest.raises(ConfigError, match="unknown fields"):
        config_from_dict({**d, "backbone_x": 1})


class _Tokens:
    """A minimal dataset of token ids for fit (no RDKit needed)."""

    name = "tokens"
    y_train = y_val = y_test = None

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randint(4, len(VOCAB), (64, 8), generator=g)
        x[:, 0] = BOS
        lengths = torch.randint(3, 8, (64,), generator=g)
        for i, n in enumerate(lengths.tolist()):
            x[i, n] = EOS
            x[i, n + 1:] = PAD
        self.x_train, self.x_val, self.x_test = x[:48], x[48:56], x[56:]

    def summary(self):
        return {"name": self.name, "n_train": 48}


def test_fit_checkpoint_load_gives_the_same_model(tmp_path):
    data = _Tokens()
    run = fit(_cfg("seq-vae", free_bits=0.1), data, TrainConfig(epochs=2, batch_size=16, kl_schedule="linear",
                                                               kl_warmup_steps=4), tmp_path / "m", progress=False)
    assert run.history[-1]["train"]["loss"] < run.history[0]["train"]["loss"] + 5
    ck = load_model(tmp_path / "m")
    assert ck.model.cfg == run.model.cfg
    z = torch.randn(5, 3)
    assert torch.equal(ck.model.generate(z), run.model.generate(z))
    cfg_json = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg_json["model"]["vocab"] == list(VOCAB)             # the vocabulary lives in config.json


# ----------------------------------------------------------------------------- with RDKit: data and CLI


@pytest.fixture(scope="module")
def smiles_file(tmp_path_factory):
    pytest.importorskip("rdkit", reason="molecule data needs RDKit: pip install vaelab[molecules]")
    pytest.importorskip("selfies", reason="SELFIES tokens need selfies: pip install vaelab[molecules]")
    from vaelab.errors import DataError
    from vaelab.molecules.data import load_moses

    try:
        smiles = load_moses("test", subset=300, seed=1)
    except DataError as e:
        pytest.skip(f"MOSES data not installed ({e})")
    path = tmp_path_factory.mktemp("mols") / "mols.smi"
    path.write_text("\n".join(["SMILES", *smiles[:150], "C1CC", "not-a-molecule", *smiles[150:], "c1ccccc"]) + "\n")
    return path


def test_invalid_smiles_are_counted_and_skipped(smiles_file, caplog):
    from vaelab.molecules.dataset import load_molecules

    with caplog.at_level(logging.WARNING, logger="vaelab.molecules"):
        data = load_molecules(f"smiles:{smiles_file}", subset=None, seed=0)
    assert data.skipped["invalid"] == 3
    assert "skipped 3 invalid of 303" in caplog.text
    assert len(data.smiles_train) + len(data.smiles_val) + len(data.smiles_test) + data.skipped["untokenizable"] == 300
    assert data.x_train.dtype == torch.long and data.x_train.shape[1] == data.shape[0]
    assert data.tokenizer.decode(data.x_train[:1])[0]            # decodes back to a SMILES


@pytest.fixture(scope="module")
def trained(smiles_file, tmp_path_factory):
    from vaelab.molecules.dataset import load_molecules

    data = load_molecules(f"smiles:{smiles_file}", subset=None, seed=0)
    cfg = model_config("seq-vae", tokenizer="selfies", vocab=tuple(data.tokenizer.vocab.itos), max_len=data.shape[0],
                       n_latent=8, embed_dim=16, hidden=32)
    out = tmp_path_factory.mktemp("run") / "vae"
    fit(cfg, data, TrainConfig(epochs=1, batch_size=32), out, progress=False)
    return out, data


def test_encode_decode_cli(trained, tmp_path, capsys):
    from vaelab.cli import main

    folder, data = trained
    mols = data.smiles_test[:2]
    assert main(["encode", str(folder), *mols]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.strip().splitlines()]
    assert [d["smiles"] for d in lines] == mols and len(lines[0]["z"]) == 8
    npy = tmp_path / "z.npy"
    assert main(["encode", str(folder), *mols, "--out", str(npy)]) == 0
    z = np.load(npy, allow_pickle=False)
    np.testing.assert_allclose(z, np.array([d["z"] for d in lines]), atol=1e-4)
    capsys.readouterr()
    assert main(["decode", str(folder), "--z", str(npy)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["decode", str(folder), "--n", "3", "--temperature", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    # bad input: one clear message, non-zero exit
    assert main(["encode", str(folder), "C1CC"]) != 0
    assert "invalid" in capsys.readouterr().err
    assert main(["decode", str(folder), "--sampler", "gmm"]) != 0
    assert "density-gmm.json" in capsys.readouterr().err


def test_neighbours_cli(trained, tmp_path, capsys):
    from vaelab.cli import main

    folder, data = trained
    out = tmp_path / "nb.json"
    assert main(["neighbours", str(folder), data.smiles_test[0], "--sigma", "0,1", "--n", "6",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "centre" in text and "tanimoto" in text
    res = json.loads(out.read_text())
    assert set(res["sigmas"]) == {"0.0", "1.0"}
    s0 = res["sigmas"]["0.0"]
    assert len(set(s0["decodes"])) == 1                           # sigma 0: the greedy decode of the code itself
    assert 0 <= s0["valid"] <= 1 and len(res["sigmas"]["1.0"]["decodes"]) == 6


def test_image_checkpoint_is_refused_by_encode(tmp_path, capsys, digits):
    pytest.importorskip("rdkit", reason="molecule commands need RDKit")
    from vaelab.cli import main

    fit(model_config("ae", input_shape=digits.shape, hidden=(16,)), digits, TrainConfig(epochs=1), tmp_path / "ae",
        progress=False)
    assert main(["encode", str(tmp_path / "ae"), "CCO"]) != 0
    assert "image model" in capsys.readouterr().err


def test_compare_routing():
    from vaelab.molecules.cli import route_compare

    assert route_compare(["compare", "--dataset", "moses"])[0] == "compare-molecules"
    assert route_compare(["compare", "--dataset=smiles:x.smi"])[0] == "compare-molecules"
    assert route_compare(["compare", "--dataset", "digits"])[0] == "compare"
    assert route_compare(["train", "vae"]) == ["train", "vae"]


def test_compare_molecules_end_to_end_and_report(smiles_file, tmp_path, capsys):
    """`vaelab compare --dataset smiles:FILE` on 300 molecules: every stage runs, the MOSES table and the
    molecule grids land in the run folder, and `vaelab report` re-renders it (it once crashed there)."""
    pytest.importorskip("fcd_torch")
    from vaelab.cli import main

    out = tmp_path / "run"
    rc = main(["compare", "--dataset", f"smiles:{smiles_file}", "--models", "ae,vae", "--epochs", "1",
               "--n-test", "40", "--n-samples", "40", "--latent-dim", "8", "--hidden", "32", "--embed-dim", "16",
               "--sigmas", "0.5", "--design-starts", "2", "--design-steps", "2", "--recon-history-n", "20",
               "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["kind"] == "molecules" and set(doc["models"]) == {"ae", "vae"}
    # issue 20: per-epoch reconstruction, the joint property head beside the probe, GuacaMol, the Design section
    assert all("recon_exact" in r and "token_accuracy" in r for h in doc["histories"].values() for r in h)
    assert set(doc["models"]["vae"]["property_head_r2"]) == {"qed", "logp", "sa"}
    assert "KL score" in doc["models"]["ae"]["samplers"]["gmm"] and "FCD score" in doc["models"]["ae"]["samplers"]["gmm"]
    assert set(doc["design"]["models"]) == {"ae", "vae"} and set(doc["design"]["models"]["ae"]) == {"gradient", "bo"}
    assert "reconstruction-curves.png" in doc["figures"].values() and "ae-design-bo.png" in doc["figures"].values()
    for name, m in doc["models"].items():
        assert m["status"] == "ok", m.get("error")
        for sampler in ("prior", "gmm"):
            row = m["samplers"][sampler]
            assert 0.0 <= row["valid"] <= 1.0 and row["n_samples"] == 40 and "FCD/Test" in row
    html = (out / "report.html").read_text()
    assert "MOSES VAE (published)" in html and html.count("data:image/png;base64,") >= 4
    assert 'id="design"' in html and "GuacaMol KL score" in html
    capsys.readouterr()
    assert main(["report", str(out), "--markdown", str(tmp_path / "table.md")]) == 0
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("| metric | ae (prior) | ae (gmm) | vae (prior) | vae (gmm) |") and "| Valid |" in table
