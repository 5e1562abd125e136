"""GuacaMol's distribution-learning scores (Brown et al. 2019, "GuacaMol: benchmarking models for de novo
molecular design", J. Chem. Inf. Model. 59:1096), re-implemented on current RDKit beside the MOSES row.

* **KL divergence score**: for each of nine RDKit physico-chemical descriptors and for the "internal
  similarity" (each molecule's maximum Tanimoto similarity to the other molecules of its own set; Morgan
  radius 2, 4096 bits), the KL divergence KL(P_ref || Q_gen) between the reference and generated
  distributions: continuous descriptors through Gaussian KDEs (scipy, Scott's bandwidth) evaluated on
  1000 equally spaced points spanning both sets, integer descriptors through a 10-bin histogram of the
  reference (the generated set binned on the same edges), each density + 1e-10 and normalised by
  ``scipy.stats.entropy``. Score = mean over the k = 10 divergences of exp(-KL_k), in [0, 1], 1 = equal.
  (guacamol/distribution_learning_benchmark.py ``KLDivBenchmark``, guacamol/utils/chemistry.py
  ``continuous_kldiv``, ``discrete_kldiv``, ``calculate_internal_pairwise_similarities``.)
* **FCD score**: exp(-0.2 * FCD), FCD the Fréchet ChemNet distance (vaelab.molecules.metrics.chemnet_stats
  and vaelab's one Fréchet distance, vaelab.metrics.fd.gaussian_frechet_distance).

GuacaMol scores 10,000 *unique* canonical molecules of a generator against a ChEMBL sample; vaelab scores
the unique valid molecules given against the reference given (a MOSES sample). Like FCD, both scores depend
on the sample size: compare them at equal n.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from vaelab.errors import DataError
from vaelab.molecules.data import canonical_smiles, get_mol, quiet_rdkit

# guacamol KLDivBenchmark.pc_descriptor_subset: the first four continuous, the last five integer-valued
CONTINUOUS_DESCRIPTORS = ("BertzCT", "MolLogP", "MolWt", "TPSA")
DISCRETE_DESCRIPTORS = ("NumHAcceptors", "NumHDonors", "NumRotatableBonds", "NumAliphaticRings", "NumAromaticRings")
DESCRIPTORS = CONTINUOUS_DESCRIPTORS + DISCRETE_DESCRIPTORS
SIMILARITY_RADIUS, SIMILARITY_BITS = 2, 4096    # guacamol.utils.chemistry.get_fingerprints
KDE_POINTS = 1000
HISTOGRAM_BINS = 10
EPS = 1e-10


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P || Q) = sum_i p_i log(p_i / q_i) of two non-negative vectors, each normalised to sum 1 (scipy entropy)."""
    p = p / p.sum()
    q = q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def continuous_kldiv(x_ref: np.ndarray, x_gen: np.ndarray) -> float:
    """KL(P_ref || Q_gen) between Gaussian KDEs of two 1-D samples, on 1000 points spanning both (GuacaMol).

    Args:
        x_ref, x_gen: (N,), (M,) values, each with at least 2 distinct values (a KDE needs a spread).
    """
    from scipy.stats import gaussian_kde

    x_ref, x_gen = np.asarray(x_ref, dtype=np.float64), np.asarray(x_gen, dtype=np.float64)
    both = np.concatenate([x_ref, x_gen])
    grid = np.linspace(both.min(), both.max(), KDE_POINTS)
    try:
        p = gaussian_kde(x_ref)(grid) + EPS
        q = gaussian_kde(x_gen)(grid) + EPS
    except (np.linalg.LinAlgError, ValueError):
        raise DataError("a continuous KL divergence needs at least 2 distinct values in each set "
                        f"(got {len(np.unique(x_ref))} and {len(np.unique(x_gen))}).") from None
    return _kl(p, q)


def discrete_kldiv(x_ref: np.ndarray, x_gen: np.ndarray) -> float:
    """KL(P_ref || Q_gen) of 10-bin density histograms on the reference's bin edges (GuacaMol).

    Generated values outside the reference's range fall outside every bin (as numpy.histogram does).
    """
    p, edges = np.histogram(np.asarray(x_ref, dtype=np.float64), bins=HISTOGRAM_BINS, density=True)
    counts, _ = np.histogram(np.asarray(x_gen, dtype=np.float64), bins=edges)
    # numpy's density=True; when no generated value is in range (GuacaMol's 0/0 = NaN) Q is 0 + eps everywhere,
    # i.e. uniform after normalisation: KL = log(10 / #non-empty reference bins), a finite penalty
    q = counts / (np.diff(edges) * counts.sum()) if counts.sum() else np.zeros_like(p)
    return _kl(p + EPS, q + EPS)


def descriptors(smiles: Sequence[str]) -> np.ndarray:
    """(N, 9) RDKit descriptors of :data:`DESCRIPTORS` for valid SMILES (rdkit.Chem.Descriptors, by name)."""
    from rdkit.ML.Descriptors.MoleculeDescriptors import MolecularDescriptorCalculator

    calc = MolecularDescriptorCalculator(list(DESCRIPTORS))
    rows = []
    with quiet_rdkit():
        for s in smiles:
            mol = get_mol(s)
            if mol is None:
                raise DataError(f"descriptors: {s!r} is not a valid SMILES")
            rows.append(calc.CalcDescriptors(mol))
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(DESCRIPTORS))


def max_internal_similarity(smiles: Sequence[str]) -> np.ndarray:
    """(N,) each molecule's largest Tanimoto similarity to any *other* molecule of the set (Morgan r=2, 4096 bits)."""
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=SIMILARITY_RADIUS, fpSize=SIMILARITY_BITS)
    with quiet_rdkit():
        fps = [gen.GetFingerprint(get_mol(s)) for s in smiles]
    best = np.zeros(len(fps))
    for i in range(1, len(fps)):
        sims = np.asarray(DataStructs.BulkTanimotoSimilarity(fps[i], fps[:i]))    # (i,)
        best[i] = max(best[i], sims.max())
        best[:i] = np.maximum(best[:i], sims)
    return best


def _unique_valid(smiles: Sequence[str], what: str) -> list[str]:
    with quiet_rdkit():
        canon = [c for c in (canonical_smiles(s) for s in smiles) if c is not None]
    unique = list(dict.fromkeys(canon))
    if len(unique) < 2:
        raise DataError(f"the GuacaMol KL score needs at least 2 unique valid {what} molecules; got {len(unique)}.")
    return unique


def kl_divergences(gen: Sequence[str], ref: Sequence[str]) -> dict[str, float]:
    """The ten KL divergences of GuacaMol's KL benchmark: {descriptor name: KL, ..., "internal_similarity": KL}.

    Args:
        gen: generated SMILES (invalid ones and duplicates are dropped, as GuacaMol samples unique molecules).
        ref: reference SMILES (GuacaMol: its ChEMBL training set; here e.g. a MOSES sample).
    """
    g, r = _unique_valid(gen, "generated"), _unique_valid(ref, "reference")
    dg, dr = descriptors(g), descriptors(r)
    out: dict[str, float] = {}
    for j, name in enumerate(DESCRIPTORS):
        kl = continuous_kldiv if name in CONTINUOUS_DESCRIPTORS else discrete_kldiv
        out[name] = kl(dr[:, j], dg[:, j])
    out["internal_similarity"] = continuous_kldiv(max_internal_similarity(r), max_internal_similarity(g))
    return out


def kl_score(divergences: dict[str, float]) -> float:
    """GuacaMol's KL divergence score: (1/k) sum_k exp(-KL_k) over the k divergences, in [0, 1]."""
    if not divergences:
        raise DataError("kl_score needs at least one divergence.")
    return float(np.mean([math.exp(-v) for v in divergences.values()]))


def fcd_score(fcd: float) -> float:
    """GuacaMol's FCD score exp(-0.2 * FCD) (Brown et al. 2019, sec. 2.1.1), in (0, 1], 1 = FCD 0."""
    if not fcd >= 0:
        raise DataError(f"an FCD is >= 0, got {fcd}.")
    return math.exp(-0.2 * fcd)


def guacamol_scores(gen: Sequence[str], ref: Sequence[str], ref_stats=None) -> dict[str, float]:
    """{"KL score", "FCD score", "FCD", "n_valid", "n_unique", "kl_divergences"} of generated SMILES against reference SMILES.

    ``ref_stats``: precomputed vaelab.molecules.metrics.ReferenceStats of ``ref`` (its ChemNet mean and
    covariance), else computed from ``ref``.
    """
    from vaelab.metrics.fd import gaussian_frechet_distance
    from vaelab.molecules.metrics import chemnet_stats

    divs = kl_divergences(gen, ref)
    with quiet_rdkit():   # GuacaMol's Frechet benchmark scores valid samples, duplicates kept
        valid = [c for c in (canonical_smiles(s) for s in gen) if c is not None]
    mu, sigma = chemnet_stats(valid)
    if ref_stats is not None and getattr(ref_stats, "fcd_mu", None) is not None:
        mu_r, sigma_r = ref_stats.fcd_mu, ref_stats.fcd_sigma
    else:
        mu_r, sigma_r = chemnet_stats(_unique_valid(ref, "reference"))
    fcd = gaussian_frechet_distance(mu, sigma, mu_r, sigma_r)
    return {"KL score": kl_score(divs), "FCD score": fcd_score(fcd), "FCD": fcd, "n_valid": len(valid),
            "n_unique": len(dict.fromkeys(valid)),
            "kl_divergences": divs}


def guacamol_row(gen: Sequence[str], ref: Sequence[str], fcd: float | None) -> dict[str, float]:
    """The two GuacaMol scores beside a MOSES row: the KL score of ``gen`` against ``ref`` SMILES, and the FCD score
    of the row's own FCD (the same ChemNet statistics, so ChemNet is not run twice). {"error": ...} when undefined."""
    out: dict[str, float] = {}
    try:
        out["KL score"] = kl_score(kl_divergences(gen, ref))
    except DataError as e:
        out["error"] = str(e)
    if fcd is not None and np.isfinite(fcd):
        out["FCD score"] = fcd_score(fcd)
    return out
