"""Molecules: data loading/cleaning, SELFIES/SMILES tokenisers, and each MOSES metric on hand-made cases."""
from __future__ import annotations

import functools
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


def test_chemnet_activations_do_not_keep_each_batchs_lstm_output(monkeypatch):
    """ChemNet's (B, 512) output is a view of its (B, 350, H) LSTM output; keeping the view kept the whole
    output alive (~170 KB per molecule: 24 GB ran out on the 176k-molecule test split)."""
    pytest.importorskip("fcd_torch")
    import weakref

    import torch
    alive = []

    class ViewModel(torch.nn.Module):                  # ChemNet's output structure, at a small size
        def forward(self, x):
            assert not any(r() is not None for r in alive), "a previous batch's full output is still alive"
            base = np.random.default_rng(0).standard_normal((x.shape[0], 350, 512), dtype=np.float32)
            alive.append(weakref.ref(base))             # lives as long as any view of its memory does
            return torch.from_numpy(base)[:, -1, :]
    monkeypatch.setattr(M, "_chemnet", lambda: ViewModel())
    act = M.chemnet_activations(["CCO", "c1ccccc1", "CC(=O)O", "CCN"], batch_size=1)
    assert act.shape == (4, 512) and len(alive) == 4


def test_fcd_of_a_set_with_itself_is_about_zero():
    pytest.importorskip("fcd_torch")
    a = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OC1CCCCC1", "Cc1ccncc1", "CC(C)CO", "ClCCl"]
    b = ["CCCCCCCCCCCC", "CCCCCCCCCCCCC", "CCCCCCCCCCCCCC", "CCCCCCCCCCCCCCCC"]
    ref = M.reference_stats(a)
    assert M.fcd(a, ref) == pytest.approx(0.0, abs=1e-2)
    assert M.fcd(b, ref) > 1.0


def test_fcd_known_answers_through_the_one_frechet_distance():
    """FCD is vaelab.metrics.fd's Fréchet distance of the ChemNet fits: with the reference = the set's own fit
    moved by delta, FCD = ||delta||^2; with its covariance scaled by c^2, FCD = (1 - c)^2 Tr(S) (Dowson & Landau)."""
    pytest.importorskip("fcd_torch")
    import dataclasses

    a = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OC1CCCCC1", "Cc1ccncc1", "CC(C)CO", "ClCCl"]
    ref = M.reference_stats(a)
    delta = np.linspace(-0.05, 0.05, 512)
    moved = dataclasses.replace(ref, fcd_mu=ref.fcd_mu + delta)
    assert M.fcd(a, moved) == pytest.approx(float(delta @ delta), rel=1e-4, abs=1e-8)
    scaled = dataclasses.replace(ref, fcd_sigma=4.0 * ref.fcd_sigma)
    assert M.fcd(a, scaled) == pytest.approx(np.trace(ref.fcd_sigma), rel=1e-4)   # (1 - 2)^2 Tr(S)
    from vaelab.metrics.fd import gaussian_frechet_distance

    assert M.gaussian_frechet_distance is gaussian_frechet_distance                  # one Fréchet distance


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
    """MOSES "Train" row, 10,000 train molecules vs the full test/scaffold-test statistics.

    The first run computes and caches vaelab's statistics of both full splits (~50 min of ChemNet on one core).
    """
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


@pytest.mark.long
@needs_moses
def test_train_row_fcd_and_scaf_extrapolate_to_the_published_values():
    """FCD and Scaf of nested train samples (2.5k-40k) vs vaelab's full-split statistics, extrapolated to
    n -> infinity, land within SERIES_TOLERANCE of MOSES's Train row (set before the first run)."""
    pytest.importorskip("fcd_torch")
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "moses_train_row.py"
    spec = importlib.util.spec_from_file_location("moses_train_row", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.series([2500, 5000, 10000, 20000, 40000], seed=0, n_jobs=2)
    fcd = [r["FCD/Test"] for r in res["rows"]]
    assert all(a > b for a, b in zip(fcd, fcd[1:]))               # the small-sample bias shrinks with n
    for key, tol in bench.SERIES_TOLERANCE.items():
        assert abs(res["limit"][key]["limit"] - bench.PUBLISHED_TRAIN[key]) <= tol, (key, res["limit"][key])


# ----------------------------------------------------------------------------- MOSES reference statistics


def _same_stats(a: M.ReferenceStats, b: M.ReferenceStats) -> bool:
    same_fcd = (a.fcd_mu is None) == (b.fcd_mu is None) and (
        a.fcd_mu is None or (np.array_equal(a.fcd_mu, b.fcd_mu) and np.array_equal(a.fcd_sigma, b.fcd_sigma)))
    return (a.n == b.n and np.array_equal(a.fps, b.fps) and a.fps.dtype == b.fps.dtype
            and a.fragments == b.fragments and a.scaffolds == b.scaffolds and same_fcd)


@needs_moses
def test_moses_reference_stats_cache_round_trip_and_hit(monkeypatch):
    first = M.moses_reference_stats("test", n=200, seed=3, use_fcd=False, progress=False)
    direct = M.reference_stats(D.load_moses("test", subset=200, seed=3), use_fcd=False)
    assert _same_stats(first, direct)                       # the statistics of exactly that seeded sample
    folder = M.moses_reference_dir("test", 200, 3)
    assert sorted(p.name for p in folder.iterdir()) == ["counts.json", "fps.npz"]
    json.loads((folder / "counts.json").read_text())        # plain JSON

    def no_recompute(*a, **k):
        raise AssertionError("recomputed although cached")
    monkeypatch.setattr(M, "reference_stats", no_recompute)
    monkeypatch.setattr(D, "load_moses", no_recompute)
    second = M.moses_reference_stats("test", n=200, seed=3, use_fcd=False, progress=False)
    assert _same_stats(first, second)
    assert not M.moses_reference_dir("test", 200, 4).exists()  # another seed is another entry


@needs_moses
@pytest.mark.parametrize("victim, garbage", [("fps.npz", b"PK\x03\x04 not a zip"),
                                             ("counts.json", b'{"format": 1, "n"'),
                                             ("fps.npz", b"\x80\x04K\x01.")])   # the last one is a pickle
def test_corrupt_moses_reference_cache_is_recomputed(caplog, victim, garbage):
    good = M.moses_reference_stats("test", n=150, seed=0, use_fcd=False, progress=False)
    folder = M.moses_reference_dir("test", 150, 0)
    (folder / victim).write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="vaelab.molecules"):
        again = M.moses_reference_stats("test", n=150, seed=0, use_fcd=False, progress=False)
    assert _same_stats(good, again)
    assert any("recomputing" in r.getMessage() and str(folder) in r.getMessage() for r in caplog.records)
    assert _same_stats(good, M.moses_reference_stats("test", n=150, seed=0, use_fcd=False, progress=False))


@needs_moses
def test_moses_reference_stats_never_loads_pickles(monkeypatch):
    real_load = np.load

    def strict_load(*args, **kwargs):
        if kwargs.get("allow_pickle"):
            raise AssertionError("np.load(allow_pickle=True) called")
        return real_load(*args, **kwargs)
    monkeypatch.setattr(np, "load", strict_load)
    a = M.moses_reference_stats("test", n=200, use_fcd=False, progress=False)     # computes and writes
    b = M.moses_reference_stats("test", n=200, use_fcd=False, progress=False)     # reads the cache
    assert _same_stats(a, b)


def test_molecule_code_has_no_unpickling_calls():
    import pathlib
    import re
    root = pathlib.Path(M.__file__).resolve().parents[1]            # the vaelab package
    pattern = re.compile(r"allow_pickle\s*=\s*True|torch\.load\(|pickle\.loads?\(|Unpickler\(|joblib\.load")
    hits = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, f"unpickling calls in vaelab: {hits}"


@needs_moses
def test_moses_reference_fcd_is_cached_and_chemnet_is_read_without_unpickling(monkeypatch):
    pytest.importorskip("fcd_torch")
    import pickle
    import torch

    def refuse(*a, **k):
        raise AssertionError("something unpickled")
    for mod, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(mod, name, refuse)
    monkeypatch.setattr(M, "_chemnet", functools.lru_cache(maxsize=1)(M._chemnet.__wrapped__))  # load it afresh
    act = M.chemnet_activations(["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1"])
    # known answers: fcd_torch's own torch.load path gives these activations (checked once, identical to 0.0)
    np.testing.assert_allclose(act.sum(1), [1.1900651, 1.2848046, 6.538196], rtol=1e-5)
    np.testing.assert_allclose(act[0, :3], [-0.04489722, 0.0114582, -0.17740746], rtol=1e-5, atol=1e-7)

    no_fcd = M.moses_reference_stats("test", n=60, use_fcd=False, progress=False)
    assert no_fcd.fcd_mu is None
    with_fcd = M.moses_reference_stats("test", n=60, use_fcd=True, progress=False)  # adds fcd.npz only
    assert with_fcd.fcd_mu.shape == (512,) and with_fcd.fcd_sigma.shape == (512, 512)
    assert np.array_equal(with_fcd.fps, no_fcd.fps)
    mu, sigma = M.chemnet_stats(D.load_moses("test", subset=60, seed=0))
    np.testing.assert_allclose(with_fcd.fcd_mu, mu, rtol=1e-6, atol=1e-9)
    monkeypatch.setattr(M, "chemnet_stats", refuse)
    hit = M.moses_reference_stats("test", n=60, use_fcd=True, progress=False)
    assert _same_stats(with_fcd, hit)
    assert M.gaussian_frechet_distance(mu, sigma, hit.fcd_mu, hit.fcd_sigma) == pytest.approx(0.0, abs=1e-4)  # rank-59 sqrt


def test_chemnet_reader_refuses_another_file(tmp_path):
    p = tmp_path / "ChemNet_v0.13_pretrained.pt"
    p.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.")
    with pytest.raises(DataError, match="SHA-256"):
        M._read_chemnet_weights(str(p))
