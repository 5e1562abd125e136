"""GuacaMol distribution-learning scores (vaelab.molecules.guacamol) against their definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rdkit", reason="molecule support needs RDKit: pip install vaelab[molecules]")

from vaelab.errors import DataError  # noqa: E402
from vaelab.molecules import guacamol as G  # noqa: E402


def test_continuous_kl_of_a_sample_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=300)
    assert G.continuous_kldiv(x, x) == pytest.approx(0.0, abs=1e-12)


def test_continuous_kl_of_two_unit_gaussians_is_half_the_squared_mean_gap():
    """KL(N(0,1) || N(1,1)) = 1/2; Scott's KDE widens each to variance 1 + n^(-2/5), so about 0.5 / 1.036."""
    rng = np.random.default_rng(1)
    n = 4000
    kl = G.continuous_kldiv(rng.normal(0, 1, n), rng.normal(1, 1, n))
    assert kl == pytest.approx(0.5 / (1 + n ** -0.4), abs=0.04)


def test_discrete_kl_by_hand():
    """Reference [0,0,1,1] -> density 5 in the first and last of 10 bins; generated [0,0,0,1] -> 7.5 and 2.5.
    Normalised: P = (1/2, 1/2), Q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2."""
    kl = G.discrete_kldiv(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]))
    assert kl == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2), abs=1e-8)


def test_discrete_kl_with_no_generated_value_in_range_is_finite_not_nan():
    """GuacaMol's histogram gives 0/0 there; vaelab's Q is uniform then: KL = log(10 bins / 4 occupied)."""
    kl = G.discrete_kldiv(np.array([0, 1, 2, 3]), np.array([10, 11]))
    assert kl == pytest.approx(math.log(10 / 4), abs=1e-6)


def test_scores_are_their_formulas():
    assert G.kl_score({"a": 0.0, "b": math.log(2)}) == pytest.approx(0.75)
    assert G.fcd_score(0.0) == 1.0
    assert G.fcd_score(5.0) == pytest.approx(math.exp(-1.0))
    with pytest.raises(DataError):
        G.fcd_score(-1.0)


def test_internal_similarity_is_the_nearest_other_molecule():
    sim = G.max_internal_similarity(["CCO", "OCC", "c1ccccc1"])   # ethanol twice (two spellings), benzene
    assert sim[0] == pytest.approx(1.0) and sim[1] == pytest.approx(1.0)
    assert sim[2] == pytest.approx(0.0)      # benzene shares no Morgan bit with ethanol


def test_descriptors_of_aspirin():
    d = dict(zip(G.DESCRIPTORS, G.descriptors(["CC(=O)Oc1ccccc1C(=O)O"])[0]))
    assert d["MolWt"] == pytest.approx(180.159, abs=1e-3)     # C9H8O4, PubChem CID 2244: 180.16 g/mol
    assert d["TPSA"] == pytest.approx(63.6, abs=0.05)         # PubChem: 63.6 A^2
    assert d["NumHDonors"] == 1 and d["NumAromaticRings"] == 1 and d["NumAliphaticRings"] == 0


def test_kl_divergences_of_a_set_with_itself_score_one():
    smiles = ["CCO", "CCCO", "CCN", "c1ccccc1", "CC(=O)O", "c1ccccc1O", "CC(C)O", "CCOC", "C1CCCCC1", "CCCCN"]
    divs = G.kl_divergences(smiles, smiles)
    assert set(divs) == set(G.DESCRIPTORS) | {"internal_similarity"}
    assert G.kl_score(divs) == pytest.approx(1.0, abs=1e-6)
    shifted = G.kl_divergences(["CCCCCCCCCC", "CCCCCCCCCCC", "CCCCCCCCCCCC", "CCCCCCCCO"], smiles)
    assert G.kl_score(shifted) < 0.9


def test_too_few_molecules_is_one_clear_error():
    with pytest.raises(DataError, match="at least 2 unique valid generated"):
        G.kl_divergences(["CCO", "OCC", "not a smiles"], ["CCO", "CCN"])


def test_guacamol_row_reuses_the_rows_fcd_and_reports_undefined_scores():
    ref = ["CCO", "CCCO", "CCN", "c1ccccc1", "CC(=O)O", "c1ccccc1O", "CC(C)O", "CCOC"]
    row = G.guacamol_row(ref, ref, fcd=0.0)
    assert row == {"KL score": pytest.approx(1.0, abs=1e-6), "FCD score": 1.0}
    bad = G.guacamol_row(["CCO"], ref, fcd=None)
    assert "at least 2 unique" in bad["error"] and "FCD score" not in bad
