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
- FCD: Fréchet distance between Gaussians fitted to ChemNet activations (fcd_torch's ChemNet, CPU), with
  vaelab's one Fréchet distance (``vaelab.metrics.fd.gaussian_frechet_distance``, a symmetric eigenproblem:
  stable on the singular covariances of small sets, where fcd_torch's ``scipy.linalg.sqrtm`` takes ~20 s).

In :func:`moses_metrics` every metric but validity is computed on the valid molecules, duplicates
kept, as MOSES does. Reference statistics (fingerprints, fragment/scaffold counts, ChemNet mean and
covariance) are computed once with :func:`reference_stats` and reused; for the MOSES test splits
:func:`moses_reference_stats` computes them from the split's SMILES and caches them (JSON and
pickle-free npz; the ``*_stats.npz`` shipped in molsets is a pickle and is never read).
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import math
import multiprocessing
import os
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from vaelab.errors import DataError
from vaelab.metrics.fd import gaussian_frechet_distance
from vaelab.molecules.data import INSTALL_HINT, canonical_smiles, get_mol, moses_data_dir, quiet_rdkit

FP_RADIUS = 2          # Morgan radius (ECFP4), as MOSES
FP_BITS = 1024         # Morgan bit-vector length, as MOSES
MIN_SCAFFOLD_RINGS = 2  # MOSES drops scaffolds with fewer rings (benzene has none left)
log = logging.getLogger("vaelab.molecules")

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


CHEMNET_FILE = "ChemNet_v0.13_pretrained.pt"
# SHA-256 of that file in the fcd_torch 1.0.7 wheel: the reader below is written for exactly this file.
CHEMNET_SHA256 = "a36658cc7c94d3c728eacd7ed2d2f104753bb2fde742c2817daefe9533a28080"


def _read_chemnet_weights(path: str) -> list:
    """Read fcd_torch's ChemNet file (legacy ``torch.save`` format) WITHOUT unpickling it.

    The file is five pickles followed by raw float32 storages. We never run a pickle: its opcodes
    are decoded with :func:`pickletools.genops` (pure parsing) and interpreted by a tiny stack
    machine that knows only lists, dicts, tuples, strings, numbers and exactly three names
    (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``);
    anything else is refused. The file's SHA-256 must also match the known fcd_torch file.

    Returns:
        The ``keras_config`` list that ``fcd_torch.utils.load_imported_model`` takes:
        [(layer_type, (state_dict, kwargs, other_info)), ...] with float32 tensors.
    """
    import hashlib
    import pickletools
    import struct
    import torch

    with open(path, "rb") as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != CHEMNET_SHA256:
        raise DataError(f"{path} is not the ChemNet file of fcd_torch 1.0.7 (SHA-256 differs); vaelab reads "
                        f"only that file. {INSTALL_HINT}")
    import io
    f = io.BytesIO(raw)
    for _ in range(3):                      # magic number, protocol version, sys info: skipped
        for _op in pickletools.genops(f):
            pass
    mark = object()
    allowed = {"collections OrderedDict": "odict", "torch._utils _rebuild_tensor_v2": "tensor",
               "torch FloatStorage": "float"}
    tensors: list[tuple[dict, str, int, tuple, tuple]] = []   # (holder, key) filled once storages are read

    def run(ops) -> object:
        stack: list = []
        memo: dict = {}

        def pop_mark() -> list:
            i = max(k for k, v in enumerate(stack) if v is mark)   # the innermost MARK
            items = stack[i + 1:]
            del stack[i:]
            return items
        for op, arg, _pos in ops:
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                return stack.pop()
            if name == "MARK":
                stack.append(mark)
            elif name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[arg if name != "MEMOIZE" else len(memo)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name in ("BINUNICODE", "SHORT_BINUNICODE", "BININT", "BININT1", "BININT2", "BINFLOAT"):
                stack.append(arg)
            elif name == "NONE":
                stack.append(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.append(name == "NEWTRUE")
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(name[-1])
                items = tuple(stack[-k:])
                del stack[-k:]
                stack.append(items)
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name == "APPENDS":
                items = pop_mark()
                stack[-1].extend(items)
            elif name == "SETITEM":
                v = stack.pop()
                k = stack.pop()
                stack[-1][k] = v
            elif name == "SETITEMS":
                items = pop_mark()
                stack[-1].update(zip(items[::2], items[1::2]))
            elif name == "GLOBAL":
                if arg not in allowed:
                    raise DataError(f"{path}: unexpected name {arg!r} in the ChemNet file; refusing to read it")
                stack.append(("global", allowed[arg]))
            elif name == "BINPERSID":
                pid = stack.pop()   # ('storage', ('global', 'float'), key, location, numel, view)
                if not (isinstance(pid, tuple) and pid[0] == "storage" and pid[1] == ("global", "float")):
                    raise DataError(f"{path}: unexpected storage in the ChemNet file; refusing to read it")
                stack.append(("storage", pid[2], pid[4]))
            elif name == "REDUCE":
                args = stack.pop()
                func = stack.pop()
                if func == ("global", "odict") and args == ():
                    stack.append({})
                elif func == ("global", "tensor"):
                    storage, offset, size, stride = args[:4]
                    stack.append(("tensor", storage[1], offset, tuple(size), tuple(stride)))
                else:
                    raise DataError(f"{path}: unexpected call in the ChemNet file; refusing to read it")
            elif name == "BUILD":
                stack.pop()         # OrderedDict state (its _metadata attribute): not needed
            else:
                raise DataError(f"{path}: unexpected pickle opcode {name} in the ChemNet file; refusing to read it")
        raise DataError(f"{path}: truncated ChemNet file")

    config = run(pickletools.genops(f))
    keys = run(pickletools.genops(f))
    storages: dict[str, torch.Tensor] = {}
    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        buf = f.read(4 * numel)
        if len(buf) != 4 * numel:
            raise DataError(f"{path}: truncated ChemNet file")
        storages[key] = torch.from_numpy(np.frombuffer(buf, dtype="<f4").copy())

    def tensor(spec: tuple) -> torch.Tensor:
        _, key, offset, size, stride = spec
        return torch.as_strided(storages[key], size, stride, offset).clone()

    out = []
    for layer_type, (state_dict, kwargs, other) in config:
        sd = {k: tensor(v) if isinstance(v, tuple) and v and v[0] == "tensor" else v for k, v in state_dict.items()}
        out.append((layer_type, (sd, kwargs, other)))
    return out


@functools.lru_cache(maxsize=1)
def _chemnet():
    """fcd_torch's ChemNet (the weights ship in the fcd_torch wheel), in eval mode on the CPU.

    The weights are read by :func:`_read_chemnet_weights`, never by ``torch.load`` (no unpickling).
    """
    try:
        from fcd_torch.utils import load_imported_model
        import fcd_torch
    except ImportError:
        raise DataError(f"fcd_torch is not installed. {INSTALL_HINT}") from None
    import os
    path = os.path.join(os.path.dirname(fcd_torch.__file__), CHEMNET_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{path} is missing. {INSTALL_HINT}")
    return load_imported_model(_read_chemnet_weights(path)).eval()


def chemnet_activations(smiles: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
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
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(data), desc="ChemNet (FCD statistics)", unit="mol", leave=False)
    try:
        with torch.no_grad(), quiet_rdkit():
            for i in range(0, len(data), batch_size):
                x = torch.from_numpy(np.stack([data[j] for j in range(i, min(i + batch_size, len(data)))]))
                # a copy: the output is a view into the LSTM's whole (B, 350, H) output, and keeping the
                # view kept that alive too (~170 KB per molecule: the full test split ran out of 24 GB)
                out.append(model(x.transpose(1, 2).float()).numpy().copy())  # (B, 512)
                if bar is not None:
                    bar.update(len(x))
    finally:
        torch.set_num_threads(n_threads)
        if bar is not None:
            bar.close()
    return np.concatenate(out) if out else np.zeros((0, 512), dtype=np.float32)


def chemnet_stats(smiles: Sequence[str], batch_size: int = 256,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean (512,) and covariance (512, 512) of ChemNet activations of valid SMILES."""
    if len(smiles) < 2:
        raise DataError(f"FCD needs at least 2 valid molecules, got {len(smiles)}")
    act = chemnet_activations(smiles, batch_size, progress=progress).astype(np.float64)
    return act.mean(0), np.cov(act.T)


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


def reference_stats(smiles: Sequence[str], n_jobs: int = 1, use_fcd: bool = True,
                    progress: bool = False) -> ReferenceStats:
    """Statistics of a reference set of valid SMILES (invalid ones raise DataError)."""
    smiles = _check_valid(smiles, "reference set")
    mu = sigma = None
    if use_fcd:
        mu, sigma = chemnet_stats(smiles, progress=progress)
    return ReferenceStats(n=len(smiles), fps=fingerprints(smiles), fragments=fragment_counts(smiles, n_jobs),
                          scaffolds=scaffold_counts(smiles, n_jobs), fcd_mu=mu, fcd_sigma=sigma)


REF_CACHE_FORMAT = 1   # bump when what the cached files hold (or how it is computed) changes


def moses_reference_dir(split: str = "test", n: int | None = 10000, seed: int = 0,
                        cache_dir: str | os.PathLike | None = None, max_length: int | None = None) -> Path:
    """``$VAELAB_CACHE/moses-ref/<split>-<n>-<seed>[-len<max_length>]/`` (n = "all" for the full split)."""
    from vaelab.judge import cache_root
    tail = "" if max_length is None else f"-len{max_length}"
    return cache_root(cache_dir) / "moses-ref" / f"{split}-{'all' if n is None else n}-{seed}{tail}"


def _load_reference_cache(folder: Path, use_fcd: bool) -> tuple[ReferenceStats | None, bool]:
    """(stats, has_fcd) from a cache folder, or (None, False) if absent. Raises ValueError/OSError if corrupt.

    Reads only files vaelab wrote, and only as data: JSON, and npz with ``allow_pickle=False``.
    """
    meta_path = folder / "counts.json"
    if not meta_path.exists():
        return None, False
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != REF_CACHE_FORMAT:
        raise ValueError(f"cache format {meta.get('format')!r}, expected {REF_CACHE_FORMAT}")
    with np.load(folder / "fps.npz", allow_pickle=False) as z:
        fps = z["fps"]
    if fps.dtype != np.uint8 or fps.ndim != 2 or fps.shape != (meta["n"], FP_BITS):
        raise ValueError(f"fps.npz holds {fps.dtype} {fps.shape}, expected uint8 ({meta['n']}, {FP_BITS})")
    frags, scafs = meta["fragments"], meta["scaffolds"]
    if not all(isinstance(c, dict) and all(isinstance(v, int) for v in c.values()) for c in (frags, scafs)):
        raise ValueError("fragment / scaffold counts are not {smiles: int} objects")
    stats = ReferenceStats(n=int(meta["n"]), fps=fps, fragments=Counter(frags), scaffolds=Counter(scafs))
    fcd_path = folder / "fcd.npz"
    if use_fcd and fcd_path.exists():
        with np.load(fcd_path, allow_pickle=False) as z:
            mu, sigma = z["mu"], z["sigma"]
        if mu.shape != (512,) or sigma.shape != (512, 512) or not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError(f"fcd.npz holds mu {mu.shape}, sigma {sigma.shape}; expected finite (512,), (512, 512)")
        stats.fcd_mu, stats.fcd_sigma = mu.astype(np.float64), sigma.astype(np.float64)
    return stats, stats.fcd_mu is not None


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    from vaelab.io import atomic_path
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def moses_reference_stats(split: str = "test", n: int | None = 10000, seed: int = 0, use_fcd: bool = True,
                          progress: bool = True, n_jobs: int = 1,
                          cache_dir: str | os.PathLike | None = None, max_length: int | None = None) -> ReferenceStats:
    """Reference statistics of the MOSES "test" or "test_scaffolds" split, computed by vaelab.

    The statistics of ``n`` molecules sampled from the split with ``seed``
    (``vaelab.molecules.data.load_moses(split, n, seed)``; n=None: the whole split, 176k molecules),
    computed with :func:`reference_stats` on the installed RDKit and fcd_torch's ChemNet. They are
    cached under ``$VAELAB_CACHE/moses-ref/<split>-<n>-<seed>/`` (see :func:`moses_reference_dir`) as
    files vaelab writes itself: ``fps.npz`` (Morgan bits), ``fcd.npz`` (ChemNet mean (512,) and
    covariance (512, 512)), ``counts.json`` (fragment and scaffold counts). A corrupt entry is
    recomputed with a warning. We do not use the ``<split>_stats.npz`` that molsets ships: it is a
    pickled dict, and vaelab never unpickles a file it did not write.

    Cost on 2 CPU cores: ChemNet runs at ~50-400 molecules/s (n=10000: 1-3 minutes; the full
    split: ~25 minutes on one core); fingerprints, fragments and scaffolds ~1-2 ms per molecule.
    With ``use_fcd=False`` no ChemNet statistics are computed (a later ``use_fcd=True`` call adds them).
    ``max_length``: only molecules whose SMILES has at most this many characters (the length-limited data of
    the CPU default, vaelab.molecules.defaults), sampled after the filter; n larger than what is left = all of it.
    """
    from vaelab.molecules.data import load_moses
    if split not in ("test", "test_scaffolds"):
        raise DataError(f"MOSES reference split must be 'test' or 'test_scaffolds', not {split!r}")
    if max_length is not None and n is not None:
        n = min(n, len(load_moses(split, max_length=max_length)))
    folder = moses_reference_dir(split, n, seed, cache_dir, max_length)
    try:
        stats, has_fcd = _load_reference_cache(folder, use_fcd)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        log.warning("the cached MOSES reference statistics in %s are unreadable (%s); recomputing them", folder, e)
        stats, has_fcd = None, False
    if stats is not None and (has_fcd or not use_fcd):
        return stats
    from vaelab.io import atomic_write_json
    smiles = load_moses(split, subset=n, seed=seed, max_length=max_length)
    what = f"{'all' if n is None else n} molecules of MOSES {split} (seed {seed})" + (
        f" with SMILES of at most {max_length} characters" if max_length is not None else "")
    if stats is None:
        log.info("computing reference statistics of %s (cached in %s)", what, folder)
        stats = reference_stats(smiles, n_jobs=n_jobs, use_fcd=False)
        (folder / "fcd.npz").unlink(missing_ok=True)      # never pair new counts with an old FCD file
        _save_npz(folder / "fps.npz", fps=stats.fps)
        atomic_write_json(folder / "counts.json", {
            "format": REF_CACHE_FORMAT, "split": split, "n": stats.n, "n_requested": n, "seed": seed,
            "max_length": max_length,
            "rdkit": _rdkit_version(), "fragments": dict(stats.fragments), "scaffolds": dict(stats.scaffolds)})
    if use_fcd:
        log.info("computing ChemNet statistics of %s for FCD", what)
        stats.fcd_mu, stats.fcd_sigma = chemnet_stats(smiles, progress=progress)
        _save_npz(folder / "fcd.npz", mu=stats.fcd_mu, sigma=stats.fcd_sigma)
    return stats


def _rdkit_version() -> str:
    import rdkit
    return rdkit.__version__


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
    return gaussian_frechet_distance(mu, sigma, ref.fcd_mu, ref.fcd_sigma)


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


def sa_score(mol) -> float:
    """Synthetic accessibility of an RDKit molecule, 1 (easy) .. 10 (hard) (Ertl & Schuffenhauer 2009, RDKit Contrib)."""
    return _sascorer().calculateScore(mol)


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
            out[f"FCD/{name}"] = gaussian_frechet_distance(mu, sigma, ref.fcd_mu, ref.fcd_sigma)
        out[f"SNN/{name}"] = float(tanimoto_agg(ref.fps, fps, agg="max").mean())
        out[f"Frag/{name}"] = cosine_similarity_counts(ref.fragments, frags)
        out[f"Scaf/{name}"] = cosine_similarity_counts(ref.scaffolds, scafs)
    out["IntDiv"] = _internal_diversity_fps(fps, p=1)
    out["IntDiv2"] = _internal_diversity_fps(fps, p=2)
    out["Filters"] = fraction_passes_filters(valid, n_jobs)
    if train is not None:
        out["Novelty"] = novelty(valid, train)
    return out
