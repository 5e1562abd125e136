"""Molecules: data loading/cleaning, SELFIES/SMILES tokenisers, and each MOSES metric on hand-made cases."""
from __future__ import annotations

import gzip
import json
import logging
import math

import numpy as np
import pytest

pytest.importorskip("rdkit", reason="molecule support needs RDKit: pip install vaelab[molecules]")
pytest.importorskip("selfies", reason="molecule support needs selfies: pip install vaelab[molecules]")

from rdkit import Chem, DataStructs  # noqa: E402
from rdkit.Chem import rdFingerprintGenerator  # noqa: E402

from vaelab.errors import ConfigError, DataError  # noqa: E402
from vaelab.molecules import data as D  # noqa: E402
from vaelab.molecules import metrics as M  # noqa: E402
from vaelab.molecules.tokenizers import (SmilesTokenizer, SelfiesTokenizer, make_tokenizer,  # noqa: E402
                                         tokenizer_from_dict)


def _has_molsets() -> bool:
    try:
        D.moses_data_dir()
        return True
    except DataError:
        return False


needs_moses = pytest.mark.skipif(not _has_molsets(), reason="MOSES data: pip install --no-deps molsets==0.3.1")


def _canon(s: str) -> str | None:
    return D.canonical_smiles(s)


# ----------------------------------------------------------------------------- data


def test_clean_smiles_counts_and_skips_invalid(caplog):
    with caplog.at_level(logging.WARNING, logger="vaelab.molecules"):
        valid, n_bad = D.clean_smiles(["OCC", "C1CC", "xyz", "", "C1=CC=CC=C1", "C(C)(C)(C)(C)C"], what="mine")
    assert valid == ["CCO", "c1ccccc1"]  # canonical, input order
    assert n_bad == 4
    assert len(caplog.records) == 1 and "skipped 4 invalid of 6" in caplog.records[0].getMessage()


def test_clean_smiles_all_valid_is_silent(caplog):
    with caplog.at_level(logging.WARNING, logger="vaelab.molecules"):
        assert D.clean_smiles(["CCO"]) == (["CCO"], 0)
    assert not caplog.records


def test_read_smiles_file_formats(tmp_path):
    smi = tmp_path / "a.smi"
    smi.write_text("SMILES\nCCO ethanol\n\n# comment\nc1ccccc1\tbenzene\n")
    assert D.read_smiles_file(smi) == ["CCO", "c1ccccc1"]
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("id,smiles\n1,CCO\n2,not_a_smiles\n")
    assert D.read_smiles_file(csv_path) == ["CCO", "not_a_smiles"]
    gz = tmp_path / "c.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("SMILES\nCCN\n")
    assert D.read_smiles_file(gz) == ["CCN"]
    with pytest.raises(DataError, match="does not exist"):
        D.read_smiles_file(tmp_path / "missing.smi")


def test_missing_molsets_says_how_to_install(monkeypatch):
    monkeypatch.setattr(D.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"--no-deps molsets==0.3.1"):
        D.load_moses("test")


@needs_moses
def test_load_moses_subset_is_seeded_and_valid():
    a = D.load_moses("test", subset=50, seed=3)
    assert a == D.load_moses("test", subset=50, seed=3) != D.load_moses("test", subset=50, seed=4)
    assert all(_canon(s) is not None for s in a)
    with pytest.raises(DataError, match="unknown MOSES split"):
        D.load_moses("valid")


# ----------------------------------------------------------------------------- tokenisers


@needs_moses
@pytest.mark.parametrize("name", ["selfies", "smiles"])
def test_tokenizer_round_trip_on_test_split(name):
    smiles = D.load_moses("test", subset=1000, seed=0)
    tok = make_tokenizer(name).fit(smiles)
    ids = tok.encode(smiles)
    assert ids.dtype.is_floating_point is False and ids.shape[0] == 1000
    decoded = tok.decode(ids)
    assert [_canon(s) for s in decoded] == [_canon(s) for s in smiles]


def test_smiles_regex_tokens():
    tok = SmilesTokenizer()
    assert tok.tokenize("Clc1cc[nH]c1Br") == ["Cl", "c", "1", "c", "c", "[nH]", "c", "1", "Br"]
    assert tok.tokenize("C[C@@H](N)C(=O)[O-]") == ["C", "[C@@H]", "(", "N", ")", "C", "(", "=", "O", ")", "[O-]"]
    assert tok.tokenize("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    assert tok.tokenize("F/C=C\\F") == ["F", "/", "C", "=", "C", "\\", "F"]


def test_encode_pads_and_decode_stops_at_eos():
    tok = SmilesTokenizer().fit(["CCO", "c1ccccc1"])
    v = tok.vocab
    assert (v.pad, v.bos, v.eos, v.unk) == (0, 1, 2, 3)
    ids = tok.encode(["CCO", "CN"], max_len=6)  # N is not in the vocabulary -> <unk>
    assert ids.tolist()[0] == [v.bos, v.stoi["C"], v.stoi["C"], v.stoi["O"], v.eos, v.pad]
    assert ids.tolist()[1][:4] == [v.bos, v.stoi["C"], v.unk, v.eos]
    # everything after <eos> is ignored
    assert tok.decode([[v.bos, v.stoi["C"], v.stoi["O"], v.eos, v.stoi["C"], v.stoi["C"]]]) == ["CO"]
    with pytest.raises(DataError, match="max_len"):
        tok.encode(["c1ccccc1"], max_len=4)


def test_selfies_decode_of_any_ids_is_a_valid_molecule():
    tok = SelfiesTokenizer().fit(["CC(=O)Nc1ccc(O)cc1", "C1CCOC1", "CCN(CC)CC"])
    rng = np.random.default_rng(0)
    decoded = tok.decode(rng.integers(0, len(tok.vocab), size=(50, 20)).tolist())
    assert all(s == "" or _canon(s) is not None for s in decoded)


@pytest.mark.parametrize("name", ["selfies", "smiles"])
def test_tokenizer_dict_round_trip_through_json(name):
    tok = make_tokenizer(name).fit(["CC(=O)O", "c1ccncc1Cl"])
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert type(again) is type(tok) and again.vocab.itos == tok.vocab.itos
    ids = tok.encode(["c1ccncc1Cl"])
    assert again.decode(ids) == tok.decode(ids)
    with pytest.raises(ConfigError):
        make_tokenizer("graph")
    with pytest.raises(ConfigError):
        SmilesTokenizer().encode(["C"])  # not fitted


# ----------------------------------------------------------------------------- metrics


def test_fraction_valid_known_invalid():
    gen = ["CCO", "C1CC", "xyz", "", "c1ccccc1", "C(C)(C)(C)(C)C"]  # open ring, junk, empty, pentavalent C
    assert M.fraction_valid(gen) == pytest.approx(2 / 6)


def test_fraction_unique_counts_canonical_duplicates():
    assert M.fraction_unique(["CCO", "OCC", "C(O)C", "c1ccccc1"]) == pytest.approx(2 / 4)
    assert M.fraction_unique(["CCO", "OCC", "CCN"], k=2) == pytest.approx(1 / 2)
    with pytest.warns(UserWarning, match="unique@10"):
        assert M.fraction_unique(["CCO", "CCN"], k=10) == 1.0
    with pytest.raises(DataError):
        M.fraction_unique(["CCO", "xyz"])


def test_novelty_against_tiny_train():
    gen = ["CCO", "OCC", "CCN", "c1ccccc1", "xyz"]          # distinct valid: CCO, CCN, benzene
    assert M.novelty(gen, ["C(C)O", "CCC"]) == pytest.approx(2 / 3)
    assert M.novelty(gen, frozenset({"CCO"})) == pytest.approx(2 / 3)  # a set is used as-is
    assert M.novelty(["CCO"], ["OCC"]) == 0.0


def _rdkit_tanimoto_matrix(smiles):
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    return np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])


def test_internal_diversity_identical_is_zero_and_matches_rdkit():
    assert M.internal_diversity(["Cc1ccccc1O"] * 5) == pytest.approx(0.0, abs=1e-7)
    assert M.internal_diversity(["Cc1ccccc1O"] * 5, p=2) == pytest.approx(0.0, abs=1e-7)
    gen = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC"]
    T = _rdkit_tanimoto_matrix(gen)  # (4, 4), self-pairs included as in MOSES
    assert M.internal_diversity(gen) == pytest.approx(1 - T.mean(), abs=1e-6)
    assert M.internal_diversity(gen, p=2) == pytest.approx(1 - np.sqrt((T ** 2).mean(1)).mean(), abs=1e-6)


def test_snn_with_itself_is_one_and_matches_rdkit():
    ref = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1"]
    assert M.snn(ref, ref) == pytest.approx(1.0)
    gen = ["CCCO", "Cc1ccccc1"]
    T = _rdkit_tanimoto_matrix(gen + ref)[:2, 2:]  # (gen, ref)
    assert M.snn(gen, ref) == pytest.approx(T.max(1).mean(), abs=1e-6)


@needs_moses
def test_filters_known_alerts():
    assert M.passes_filters("CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1")  # a MOSES train molecule
    assert not M.passes_filters("O=C1NC(=S)SC1=Cc1ccccc1")   # PAINS ene_rhod (5-benzylidene rhodanine)
    assert not M.passes_filters("C=CC#N")                   # MCF1: alpha,beta-unsaturated nitrile
    assert not M.passes_filters("C[N+](C)(C)C")              # formal charge
    assert not M.passes_filters("CCP(C)C")                   # P is not an allowed atom
    assert not M.passes_filters("C1CCCCCCC1")                # ring of 8 atoms
    gen = ["CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1", "C=CC#N"]
    assert M.fraction_passes_filters(gen) == pytest.approx(0.5)


def test_scaffolds_benzene_vs_cyclohexane():
    assert M.scaffold_of("Cc1ccccc1", min_rings=1) == "c1ccccc1"
    assert M.scaffold_of("CC1CCCCC1", min_rings=1) == "C1CCCCC1"
    assert M.scaffold_of("Cc1ccccc1") is None                # MOSES drops 1-ring scaffolds
    assert M.scaffold_of("CCc1ccc2ccccc2c1") == "c1ccc2ccccc2c1"
    naph = ["Cc1ccc2ccccc2c1", "CCOc1ccc2ccccc2c1"]         # same scaffold, other substituents
    assert M.scaffold_similarity(naph[:1], naph[1:]) == pytest.approx(1.0)
    assert M.scaffold_similarity(naph, ["CC1CCC2CCCCC2C1"]) == pytest.approx(0.0)  # decalin
    assert math.isnan(M.scaffold_similarity(["CCO"], naph))  # no scaffold at all: NaN (MOSES)


def test_fragment_similarity():
    assert M.fragment_counts(["CCCC", "CCCC"]) == {"CCCC": 2}   # no BRICS bond: the molecule itself
    assert M.fragment_similarity(["CCCC"], ["c1ccccc1"]) == pytest.approx(0.0)
    gen = ["CC(=O)Nc1ccc(O)cc1", "CCOC(=O)c1ccccc1"]
    assert M.fragment_similarity(gen, gen) == pytest.approx(1.0)
    assert M.cosine_similarity_counts({"a": 1, "b": 1}, {"a": 2}) == pytest.approx(1 / math.sqrt(2))


def test_reconstruction_accuracy_is_canonical_match():
    inputs = ["CCO", "c1ccccc1", "CCN", "CC"]
    outputs = ["OCC", "C1=CC=CC=C1", "xx", "CCC"]            # same, same (Kekulé), invalid, different
    assert M.reconstruction_accuracy(inputs, outputs) == pytest.approx(2 / 4)
    with pytest.raises(DataError):
        M.reconstruction_accuracy(["C"], [])


def test_properties_known_values():
    p = M.properties(["CCO", "c1ccccc1", "not a molecule"])
    assert set(p) == {"logP", "QED", "SA", "MW"} and all(v.shape == (3,) for v in p.values())
    assert p["MW"][0] == pytest.approx(46.069, abs=1e-3) and p["MW"][1] == pytest.approx(78.114, abs=1e-3)
    assert p["logP"][1] == pytest.approx(1.6866, abs=1e-3)     # Crippen logP of benzene
    assert 1 <= p["SA"][1] <= 2 and 0 < p["QED"][1] < 1        # benzene: trivially synthesisable
    assert all(math.isnan(v[2]) for v in p.values())


def test_fcd_of_a_set_with_itself_is_about_zero():
    pytest.importorskip("fcd_torch")
    a = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OC1CCCCC1", "Cc1ccncc1", "CC(C)CO", "ClCCl"]
    b = ["CCCCCCCCCCCC", "CCCCCCCCCCCCC", "CCCCCCCCCCCCCC", "CCCCCCCCCCCCCCCC"]
    ref = M.reference_stats(a)
    assert M.fcd(a, ref) == pytest.approx(0.0, abs=1e-2)
    assert M.fcd(b, ref) > 1.0


@needs_moses
def test_moses_metrics_row_on_small_sets():
    test = D.load_moses("test", subset=200, seed=1)
    gen = test[:50] + ["xyz", "C1CC"]
    row = M.moses_metrics(gen, train=test[:25], test=test, test_scaffolds=None, unique_k=(10,), use_fcd=False)
    assert row["valid"] == pytest.approx(50 / 52)
    assert row["unique@10"] == 1.0 and row["SNN/Test"] == pytest.approx(1.0)
    assert row["Novelty"] == pytest.approx(25 / 50) and row["Filters"] == 1.0
    assert 0.8 < row["IntDiv"] < 0.95 and row["IntDiv2"] < row["IntDiv"]
    assert 0.0 < row["Frag/Test"] <= 1.0 and 0.0 < row["Scaf/Test"] <= 1.0
    assert "FCD/Test" not in row and "SNN/TestSF" not in row


@pytest.mark.long
@needs_moses
def test_train_row_reproduces_published_moses_numbers():
    """MOSES "Train" row, 10,000 train molecules vs the full test/scaffold-test statistics (~3-5 min)."""
    pytest.importorskip("fcd_torch")
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "moses_train_row.py"
    spec = importlib.util.spec_from_file_location("moses_train_row", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.compare(bench.train_row(n=10000, seed=0, n_jobs=2))
    bad = [r for r in rows if not r[-1]]
    assert not bad, f"outside tolerance (metric, measured, published, tol, ok): {bad}"
