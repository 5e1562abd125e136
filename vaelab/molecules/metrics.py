"""The MOSES metrics (Polykovskiy et al. 2020, "Molecular Sets (MOSES)"), re-implemented on current RDKit.

Definitions follow the molsets 0.3.1 source (``moses/metrics/metrics.py`` and ``utils.py``), whose
own module no longer imports with current RDKit:

- valid: fraction of strings that RDKit parses and sanitises.
- unique@k: distinct canonical SMILES among the first k valid molecules / k.
- Novelty: fraction of the *distinct* valid generated molecules that are not in the training set.
- IntDiv_p: 1 - mean_i (mean_j T(i, j)^p)^(1/p) over all pairs (i, j) of generated molecules,
  self-pairs included; T is Tanimoto similarity of Morgan fingerprints (radius 2, 1024 bits).
- SNN: mean over generated molecules of the max Tanimoto similarity to the reference set.
- Frag / Scaf: cosine similarity of the count vectors of BRICS fragments / Bemis-Murcko scaffolds
  (canonical SMILES; scaffolds with fewer than 2 rings are dropped) of generated and reference sets.
- Filters: fraction passing the MCF and PAINS SMARTS filters (the csv files shipped in molsets),
  with only C, N, S, O, F, Cl, Br, H atoms, no formal charge and no ring of 8 or more atoms.
- FCD: Fréchet distance between Gaussians fitted to ChemNet activations (fcd_torch, CPU).

In :func:`moses_metrics` every metric but validity is computed on the valid molecules, duplicates
kept, as MOSES does. Reference statistics (fingerprints, fragment/scaffold counts, ChemNet mean and
covariance) are computed once with :func:`reference_stats` and reused.
"""
from __future__ import annotations

import csv
import functools
import math
import multiprocessing
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from vaelab.errors import DataError
from vaelab.molecules.data import INSTALL_HINT, canonical_smiles, get_mol, moses_data_dir, quiet_rdkit

FP_RADIUS = 2          # Morgan radius (ECFP4), as MOSES
FP_BITS = 1024         # Morgan bit-vector length, as MOSES
MIN_SCAFFOLD_RINGS = 2  # MOSES drops scaffolds with fewer rings (benzene has none left)
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})


# ----------------------------------------------------------------------------- helpers


def _parallel_map(func: Callable, items: Sequence, n_jobs: int = 1) -> list:
    """``list(map(func, items))``, over a process pool when ``n_jobs > 1`` (items are SMILES strings)."""
    if n_jobs <= 1 or len(items) < 2000:
        with quiet_rdkit():
            return list(map(func, items))
    with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
        return pool.map(func, items, chunksize=max(1, len(items) // (8 * n_jobs)))


def _check_valid(smiles: Iterable[str], what: str) -> list[str]:
    """The SMILES as a list; DataError if any is invalid (metrics other than validity take valid molecules)."""
    smiles = list(smiles)
    with quiet_rdkit():
        n_bad = sum(get_mol(s) is None for s in smiles)
    if n_bad:
        raise DataError(f"{what}: {n_bad} of {len(smiles)} SMILES are invalid; this metric is defined on "
                        "valid molecules: drop them first with vaelab.molecules.data.clean_smiles")
    return smiles


def fingerprints(smiles: Sequence[str]) -> np.ndarray:
    """Morgan fingerprints (radius 2, 1024 bits, no chirality) of valid SMILES, as MOSES.

    Molecules are parsed one at a time and dropped (176k RDKit Mol objects would hold ~GBs).

    Returns:
        (N, 1024) uint8 bit matrix.
    """
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)
    fps = np.zeros((len(smiles), FP_BITS), dtype=np.uint8)
    with quiet_rdkit():
        for i, s in enumerate(smiles):
            mol = get_mol(s)
            if mol is None:
                raise DataError(f"invalid SMILES {s!r}: drop invalid molecules first with clean_smiles")
            fps[i] = gen.GetFingerprintAsNumPy(mol)
    return fps


def tanimoto_agg(ref_fps: np.ndarray, gen_fps: np.ndarray, agg: str = "max", p: int = 1,
                 batch_ref: int = 16384, batch_gen: int = 1024) -> np.ndarray:
    """For each generated fingerprint, the max or power mean of its Tanimoto similarities to ``ref``.

    Tanimoto of bit vectors a, b is |a & b| / (|a| + |b| - |a & b|); two empty vectors count as 1
    (MOSES). Intersections are a float32 matrix product in blocks (exact: counts <= 1024; torch,
    so both CPU cores work), memory stays at batch_gen x batch_ref floats. 10k x 176k takes ~35 s
    on 2 cores.

    Args:
        ref_fps: (R, D) {0, 1}.  gen_fps: (G, D) {0, 1}.
        agg: "max" (SNN) or "mean" ((mean_j T^p)^(1/p), IntDiv).
    Returns:
        (G,) float64.
    """
    import torch
    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', not {agg!r}")
    ref = torch.from_numpy(np.ascontiguousarray(ref_fps, dtype=np.float32))
    gen = torch.from_numpy(np.ascontiguousarray(gen_fps, dtype=np.float32))
    ref_n, gen_n = ref.sum(1), gen.sum(1)                          # (R,), (G,)
    out = torch.zeros(len(gen), dtype=torch.float64)
    for i in range(0, len(gen), batch_gen):
        g, gn = gen[i:i + batch_gen], gen_n[i:i + batch_gen]
        acc = torch.zeros(len(g), dtype=torch.float64)
        for j in range(0, len(ref), batch_ref):
            tp = g @ ref[j:j + batch_ref].T                            # (g, r) intersections
            union = (gn[:, None] + ref_n[None, j:j + batch_ref]).sub_(tp).clamp_(min=1)
            t = tp.div_(union)                                         # (g, r) Tanimoto; 0 where both empty
            if agg == "max":
                acc = torch.maximum(acc, t.amax(1).double())
            else:
                acc += (t.pow_(p) if p != 1 else t).sum(1, dtype=torch.float64)
        out[i:i + batch_gen] = acc
    n_empty_ref = int((ref_n == 0).sum())
    if n_empty_ref:  # empty vs empty counts as similarity 1 (MOSES sets 0/0 to 1)
        empty_gen = gen_n == 0
        out[empty_gen] = 1.0 if agg == "max" else out[empty_gen] + n_empty_ref
    if agg == "mean":
        out /= max(len(ref), 1)
        if p != 1:
            out = out ** (1.0 / p)
    return out.numpy()


def _fragments_of(smiles: str) -> list[str]:
    """BRICS fragments of one molecule as canonical SMILES (with dummy atoms), as MOSES ``fragmenter``."""
    from rdkit import Chem
    from rdkit.Chem import AllChem
    return Chem.MolToSmiles(AllChem.FragmentOnBRICSBonds(get_mol(smiles))).split(".")


def scaffold_of(smiles: str, min_rings: int = MIN_SCAFFOLD_RINGS) -> str | None:
    """Bemis-Murcko scaffold as canonical SMILES, or None if it has fewer than ``min_rings`` rings."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold
    mol = get_mol(smiles)
    if mol is None:
        return None
    try:
        scaffold = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    s = Chem.MolToSmiles(scaffold)
    if s == "" or scaffold.GetRingInfo().NumRings() < min_rings:
        return None
    return s


def fragment_counts(smiles: Sequence[str], n_jobs: int = 1) -> Counter:
    """Counts of BRICS fragments over the molecules (duplicates counted)."""
    counts: Counter = Counter()
    for frags in _parallel_map(_fragments_of, list(smiles), n_jobs):
        counts.update(frags)
    return counts


def scaffold_counts(smiles: Sequence[str], n_jobs: int = 1) -> Counter:
    """Counts of Bemis-Murcko scaffolds with at least 2 rings (duplicates counted)."""
    counts = Counter(_parallel_map(scaffold_of, list(smiles), n_jobs))
    counts.pop(None, None)
    return counts


def cosine_similarity_counts(ref: Counter, gen: Counter) -> float:
    """Cosine similarity of two count dicts (missing keys are 0); NaN if either is empty (MOSES)."""
    if not ref or not gen:
        return float("nan")
    keys = list(set(ref) | set(gen))
    r = np.array([ref.get(k, 0) for k in keys], dtype=np.float64)
    g = np.array([gen.get(k, 0) for k in keys], dtype=np.float64)
    return float(r @ g / (np.linalg.norm(r) * np.linalg.norm(g)))


# ----------------------------------------------------------------------------- filters


@functools.lru_cache(maxsize=1)
def _filter_patterns() -> tuple:
    """The MCF (22) and PAINS (479) SMARTS shipped in molsets 0.3.1 (``moses/metrics/*.csv``)."""
    from rdkit import Chem
    folder = moses_data_dir().parent.parent / "metrics"
    smarts: list[str] = []
    try:
        with open(folder / "mcf.csv", newline="") as f:
            smarts += [row["smarts"] for row in csv.DictReader(f)]
        with open(folder / "wehi_pains.csv", newline="") as f:  # no header: smarts, name
            smarts += [row[0].strip() for row in csv.reader(f) if row]
    except OSError as e:
        raise DataError(f"the MCF/PAINS filter files of molsets are missing ({e}). {INSTALL_HINT}") from None
    patterns = tuple(Chem.MolFromSmarts(s) for s in smarts)
    if any(p is None for p in patterns):
        raise DataError("a MCF/PAINS SMARTS pattern in molsets does not parse with this RDKit")
    return patterns


def passes_filters(smiles: str) -> bool:
    """MOSES ``mol_passes_filters``: no ring >= 8 atoms, no charge, allowed atoms, no MCF/PAINS alert."""
    from rdkit import Chem
    mol = get_mol(smiles)
    if mol is None:
        return False
    ring_info = mol.GetRingInfo()
    if ring_info.NumRings() != 0 and any(len(r) >= 8 for r in ring_info.AtomRings()):
        return False
    if any(a.GetFormalCharge() != 0 for a in mol.GetAtoms()):
        return False
    if any(a.GetSymbol() not in ALLOWED_ATOMS for a in mol.GetAtoms()):
        return False
    h_mol = Chem.AddHs(mol)  # the PAINS patterns spell out explicit hydrogens
    if any(h_mol.HasSubstructMatch(p) for p in _filter_patterns()):
        return False
    s = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(s) and Chem.MolFromSmiles(s) is not None


# ----------------------------------------------------------------------------- FCD


@functools.lru_cache(maxsize=1)
def _chemnet():
    """fcd_torch's ChemNet (the weights ship in the fcd_torch wheel), in eval mode on the CPU."""
    try:
        from fcd_torch.utils import load_imported_model
        import fcd_torch
    except ImportError:
        raise DataError(f"fcd_torch is not installed. {INSTALL_HINT}") from None
    import os
    import torch
    path = os.path.join(os.path.dirname(fcd_torch.__file__), "ChemNet_v0.13_pretrained.pt")
    model = load_imported_model(torch.load(path, map_location="cpu"))
    return model.eval()


def chemnet_activations(smiles: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """ChemNet penultimate activations (N, 512) of valid SMILES, exactly as ``fcd_torch.FCD``.

    fcd_torch canonicalises each SMILES and one-hot encodes it padded to 350 characters; we reuse
    its dataset class and model, batching ourselves (its ``get_predictions`` uses ``np.row_stack``,
    deprecated in NumPy 2). Runs on one thread: the LSTM's 350 small steps gain little from two,
    and on a busy machine OpenMP's thread hand-offs made 8 molecules take 12 s instead of 0.2 s.
    About 100-400 molecules/s.
    """
    import torch
    from fcd_torch.utils import SmilesDataset
    model = _chemnet()
    data = SmilesDataset(list(smiles), canonize=True)
    out = []
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), quiet_rdkit():
            for i in range(0, len(data), batch_size):
                x = torch.from_numpy(np.stack([data[j] for j in range(i, min(i + batch_size, len(data)))]))
                out.append(model(x.transpose(1, 2).float()).numpy())  # (B, 512)
    finally:
        torch.set_num_threads(n_threads)
    return np.concatenate(out) if out else np.zeros((0, 512), dtype=np.float32)


def chemnet_stats(smiles: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean (512,) and covariance (512, 512) of ChemNet activations of valid SMILES."""
    if len(smiles) < 2:
        raise DataError(f"FCD needs at least 2 valid molecules, got {len(smiles)}")
    act = chemnet_activations(smiles, batch_size).astype(np.float64)
    return act.mean(0), np.cov(act.T)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).

    For covariance (PSD) matrices Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)), a symmetric
    eigenproblem: fast and stable even for the singular covariances of small sets, where fcd_torch's
    ``scipy.linalg.sqrtm`` takes ~20 s. Agrees with fcd_torch to ~1e-6 on full-rank inputs.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    r1 = _psd_sqrt(s1)
    eig = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


# ----------------------------------------------------------------------------- reference statistics


@dataclass
class ReferenceStats:
    """What the metrics need of a reference set (test or scaffold test), computed once."""

    n: int
    fps: np.ndarray                 # (N, 1024) uint8 Morgan bits, for SNN
    fragments: Counter              # BRICS fragment counts, for Frag
    scaffolds: Counter              # scaffold counts, for Scaf
    fcd_mu: np.ndarray | None = None     # (512,) ChemNet mean
    fcd_sigma: np.ndarray | None = None  # (512, 512) ChemNet covariance


def reference_stats(smiles: Sequence[str], n_jobs: int = 1, use_fcd: bool = True) -> ReferenceStats:
    """Statistics of a reference set of valid SMILES (invalid ones raise DataError)."""
    smiles = _check_valid(smiles, "reference set")
    mu = sigma = None
    if use_fcd:
        mu, sigma = chemnet_stats(smiles)
    return ReferenceStats(n=len(smiles), fps=fingerprints(smiles), fragments=fragment_counts(smiles, n_jobs),
                          scaffolds=scaffold_counts(smiles, n_jobs), fcd_mu=mu, fcd_sigma=sigma)


def moses_reference_stats(split: str = "test") -> ReferenceStats:
    """MOSES's own precomputed statistics of the full "test" or "test_scaffolds" split.

    They ship in molsets as ``<split>_stats.npz`` (a pickled dict, loaded with ``allow_pickle``:
    trusted data of an installed package, never a user file). Computed by MOSES with an older RDKit;
    current RDKit gives the same Morgan bits for >99.9% of molecules (checked on 5000).
    """
    path = moses_data_dir() / f"{split}_stats.npz"
    if not path.is_file():
        raise DataError(f"{path} is missing. {INSTALL_HINT}")
    s = np.load(path, allow_pickle=True)["stats"].item()
    fps = s["SNN"]["fps"]
    return ReferenceStats(n=len(fps), fps=fps, fragments=Counter(s["Frag"]["frag"]),
                          scaffolds=Counter(s["Scaf"]["scaf"]),
                          fcd_mu=np.asarray(s["FCD"]["mu"], dtype=np.float64), fcd_sigma=s["FCD"]["sigma"])


def _as_ref(ref: Sequence[str] | ReferenceStats, use_fcd: bool = False) -> ReferenceStats:
    return ref if isinstance(ref, ReferenceStats) else reference_stats(ref, use_fcd=use_fcd)


# ----------------------------------------------------------------------------- the metrics


def fraction_valid(gen: Sequence[str]) -> float:
    """Fraction of strings that RDKit parses and sanitises (empty strings are invalid)."""
    if len(gen) == 0:
        return float("nan")
    with quiet_rdkit():
        return sum(get_mol(s) is not None for s in gen) / len(gen)


def fraction_unique(gen: Sequence[str], k: int | None = None) -> float:
    """unique@k: distinct canonical SMILES among the first k (valid) molecules, divided by k.

    With fewer than k molecules it warns and uses them all (MOSES behaviour).
    """
    gen = list(gen)
    if k is not None:
        if len(gen) < k:
            warnings.warn(f"unique@{k}: only {len(gen)} molecules; computed on all of them")
        gen = gen[:k]
    with quiet_rdkit():
        canon = [canonical_smiles(s) for s in gen]
    if None in canon:
        raise DataError("unique@k got invalid SMILES; drop them first with clean_smiles")
    return len(set(canon)) / len(canon) if canon else float("nan")


def novelty(gen: Sequence[str], train: Iterable[str]) -> float:
    """Fraction of distinct valid generated molecules absent from ``train``.

    ``train`` as a set/frozenset is taken as canonical SMILES as-is (e.g. the MOSES train split,
    shipped canonical: build the set once and reuse it); any other iterable is canonicalised first.
    """
    with quiet_rdkit():
        gen_set = {canonical_smiles(s) for s in gen} - {None}
        if not isinstance(train, (set, frozenset)):
            train = {canonical_smiles(s) for s in train} - {None}
    if not gen_set:
        return float("nan")
    return len(gen_set - train) / len(gen_set)


def internal_diversity(gen: Sequence[str], p: int = 1) -> float:
    """IntDiv_p = 1 - mean_i (mean_j T(i, j)^p)^(1/p), all pairs incl. i = j (so n identical -> 0)."""
    fps = fingerprints(_check_valid(gen, "IntDiv"))
    return _internal_diversity_fps(fps, p)


def _internal_diversity_fps(fps: np.ndarray, p: int) -> float:
    if len(fps) == 0:
        return float("nan")
    return float(1 - tanimoto_agg(fps, fps, agg="mean", p=p).mean())


def fraction_passes_filters(gen: Sequence[str], n_jobs: int = 1) -> float:
    """Fraction of molecules passing the MOSES filters (see :func:`passes_filters`)."""
    if len(gen) == 0:
        return float("nan")
    return float(np.mean(_parallel_map(passes_filters, list(gen), n_jobs)))


def snn(gen: Sequence[str], ref: Sequence[str] | ReferenceStats) -> float:
    """SNN: mean over generated molecules of the max Tanimoto similarity to the reference set."""
    fps = fingerprints(_check_valid(gen, "SNN"))
    return float(tanimoto_agg(_as_ref(ref).fps, fps, agg="max").mean())


def fragment_similarity(gen: Sequence[str], ref: Sequence[str] | ReferenceStats, n_jobs: int = 1) -> float:
    """Frag: cosine similarity of BRICS-fragment counts of generated and reference molecules."""
    _check_valid(gen, "Frag")
    return cosine_similarity_counts(_as_ref(ref).fragments, fragment_counts(gen, n_jobs))


def scaffold_similarity(gen: Sequence[str], ref: Sequence[str] | ReferenceStats, n_jobs: int = 1) -> float:
    """Scaf: cosine similarity of scaffold (>= 2 rings) counts; NaN if either side has none."""
    _check_valid(gen, "Scaf")
    return cosine_similarity_counts(_as_ref(ref).scaffolds, scaffold_counts(gen, n_jobs))


def fcd(gen: Sequence[str], ref: Sequence[str] | ReferenceStats) -> float:
    """Fréchet ChemNet Distance between generated and reference sets (fcd_torch, CPU).

    Biased upward on small sets (a few thousand molecules give a clearly positive value even for
    two samples of one distribution); compare FCDs only at equal sample sizes.
    """
    _check_valid(gen, "FCD")
    ref = ref if isinstance(ref, ReferenceStats) else reference_stats(ref, use_fcd=True)
    if ref.fcd_mu is None:
        raise DataError("reference statistics were computed with use_fcd=False")
    mu, sigma = chemnet_stats(gen)
    return frechet_distance(mu, sigma, ref.fcd_mu, ref.fcd_sigma)


def reconstruction_accuracy(inputs: Sequence[str], outputs: Sequence[str]) -> float:
    """Fraction of pairs whose canonical SMILES are equal; an invalid output is a miss."""
    if len(inputs) != len(outputs):
        raise DataError(f"reconstruction_accuracy: {len(inputs)} inputs but {len(outputs)} outputs")
    if len(inputs) == 0:
        return float("nan")
    with quiet_rdkit():
        hits = sum(a is not None and a == canonical_smiles(o)
                   for a, o in zip((canonical_smiles(i) for i in inputs), outputs))
    return hits / len(inputs)


@functools.lru_cache(maxsize=1)
def _sascorer():
    """RDKit's Contrib SA_Score module (Ertl & Schuffenhauer 2009), loaded from its file path."""
    import importlib.util
    import os
    from rdkit.Chem import RDConfig
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not os.path.isfile(path):
        raise DataError(f"RDKit's SA_Score contrib module is missing ({path}); reinstall rdkit from PyPI")
    spec = importlib.util.spec_from_file_location("vaelab_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _props_of(smiles: str) -> tuple[float, float, float, float]:
    from rdkit.Chem import Crippen, Descriptors, QED
    mol = get_mol(smiles)
    if mol is None:
        return (math.nan,) * 4
    return (Crippen.MolLogP(mol), QED.qed(mol), _sascorer().calculateScore(mol), Descriptors.MolWt(mol))


def properties(smiles: Sequence[str], n_jobs: int = 1) -> dict[str, np.ndarray]:
    """logP (Crippen), QED, SA (synthetic accessibility, 1 easy .. 10 hard) and MW (g/mol).

    Returns:
        {"logP", "QED", "SA", "MW"} -> (N,) float64 arrays; NaN where a SMILES is invalid.
    """
    values = np.array(_parallel_map(_props_of, list(smiles), n_jobs), dtype=np.float64).reshape(-1, 4)
    return {name: values[:, i] for i, name in enumerate(("logP", "QED", "SA", "MW"))}


def moses_metrics(gen: Sequence[str], train: Iterable[str] | None = None,
                  test: Sequence[str] | ReferenceStats | None = None,
                  test_scaffolds: Sequence[str] | ReferenceStats | None = None,
                  n_jobs: int = 1, unique_k: Sequence[int] = (1000, 10000),
                  use_fcd: bool = True) -> dict[str, float]:
    """The MOSES row for a set of generated SMILES.

    Args:
        gen: generated SMILES, invalid ones included (they count against "valid" only).
        train: training SMILES for Novelty (a set is taken as canonical as-is); None skips it.
        test, test_scaffolds: reference SMILES or precomputed :class:`ReferenceStats`
            (see :func:`reference_stats`, :func:`moses_reference_stats`); None skips that column.
        n_jobs: worker processes for the per-molecule RDKit work (fragments, scaffolds, filters).
        unique_k: the k of unique@k.
        use_fcd: False skips FCD (ChemNet runs at ~100-400 molecules/s on a CPU).
    Returns:
        {"valid", "unique@1000", "unique@10000", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test",
        "FCD/TestSF", ..., "IntDiv", "IntDiv2", "Filters", "Novelty"}: floats.
    """
    gen = list(gen)
    out: dict[str, float] = {"valid": fraction_valid(gen)}
    with quiet_rdkit():
        valid = [c for c in (canonical_smiles(s) for s in gen) if c is not None]
    if len(valid) == 0:
        raise DataError("no valid molecule among the generated SMILES: MOSES metrics are undefined")
    for k in unique_k:
        out[f"unique@{k}"] = fraction_unique(valid, k)
    fps = fingerprints(valid)
    frags = fragment_counts(valid, n_jobs)
    scafs = scaffold_counts(valid, n_jobs)
    mu = sigma = None
    if use_fcd and (test is not None or test_scaffolds is not None):
        mu, sigma = chemnet_stats(valid)  # once, for both references
    for name, ref in (("Test", test), ("TestSF", test_scaffolds)):
        if ref is None:
            continue
        ref = ref if isinstance(ref, ReferenceStats) else reference_stats(ref, n_jobs, use_fcd=use_fcd)
        if mu is not None and ref.fcd_mu is not None:
            out[f"FCD/{name}"] = frechet_distance(mu, sigma, ref.fcd_mu, ref.fcd_sigma)
        out[f"SNN/{name}"] = float(tanimoto_agg(ref.fps, fps, agg="max").mean())
        out[f"Frag/{name}"] = cosine_similarity_counts(ref.fragments, frags)
        out[f"Scaf/{name}"] = cosine_similarity_counts(ref.scaffolds, scafs)
    out["IntDiv"] = _internal_diversity_fps(fps, p=1)
    out["IntDiv2"] = _internal_diversity_fps(fps, p=2)
    out["Filters"] = fraction_passes_filters(valid, n_jobs)
    if train is not None:
        out["Novelty"] = novelty(valid, train)
    return out
