"""Reproduce MOSES's published "Train" row: a random sample of the MOSES train split scored
against the full test and scaffold-test splits, with vaelab's MOSES metrics.

    python benchmarks/moses_train_row.py                 # n=10000, seed 0, 2 workers, full test splits
    python benchmarks/moses_train_row.py --n-ref 20000   # faster: 20k-molecule seeded reference samples
    python benchmarks/moses_train_row.py --n 30000 --out runs/moses_train_row.json

Reference side: statistics of the full test (176,074) and scaffold-test (176,226) splits (ChemNet
mean/covariance, Morgan bits, fragment and scaffold counts), computed by vaelab from the splits'
SMILES with current RDKit (``moses_reference_stats``) and cached under
``$VAELAB_CACHE/moses-ref/`` (pickle-free). The first run computes them: ChemNet over 2 x 176k
molecules took 24 + 23 minutes on one core each (plus ~10 min of fragments/scaffolds per split);
later runs reuse the cache. ``--n-ref N`` uses seeded N-molecule samples of the two splits instead (their
FCD/Scaf are then biased as described below). MOSES ships its own statistics as pickled
``*_stats.npz`` files; vaelab never unpickles a file it did not write, so they are not used.
Generated side: n train molecules, all computed here with current RDKit.
Novelty uses the whole train split (1,584,663), so it is 0 by definition; the published table
prints 1.0 in that cell, which is not what its own definition gives for train molecules. (We get
0.0003: 3 of 10,000 train molecules have a different canonical SMILES under current RDKit than the
shipped one, so they look novel.)

Sample-size effects: FCD is biased upward at small n (covariance of a 512-d feature from n
samples); Scaf/Test is a cosine of long-tailed count vectors, which a sample of n molecules
under-estimates. Both shrink as n grows, so at n = 10000 they are checked one-sided. ``--series``
checks them properly: it scores nested train samples of growing n (one ChemNet pass over the
largest) and extrapolates to n -> infinity, the published row's regime (it scored the train set
itself): FCD(n) = a + b / n (the bias of a plug-in covariance is O(1/n)) and, for the cosine of a
multinomial count vector, 1 / Scaf(n)^2 = c + d / n, Scaf(inf) = 1 / sqrt(c). The extrapolated
values must lie within SERIES_TOLERANCE of the published ones (fixed before the first run).

    python benchmarks/moses_train_row.py --series 2500,5000,10000,20000,40000 --out runs/moses_series.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaelab.molecules.data import load_moses  # noqa: E402
from vaelab.molecules.metrics import moses_metrics, moses_reference_stats  # noqa: E402

# MOSES README (molecularsets/moses, master), row "Train".
PUBLISHED_TRAIN = {
    "valid": 1.0, "unique@1000": 1.0, "unique@10000": 1.0,
    "FCD/Test": 0.008, "FCD/TestSF": 0.4755, "SNN/Test": 0.6419, "SNN/TestSF": 0.5859,
    "Frag/Test": 1.0, "Frag/TestSF": 0.9986, "Scaf/Test": 0.9907, "Scaf/TestSF": 0.0,
    "IntDiv": 0.8567, "IntDiv2": 0.8508, "Filters": 1.0, "Novelty": 1.0,
}
# Allowed (below, above) the published value at n = 10000; None: not compared. Measured with seed 0
# (2026, RDKit 2026.09.1): SNN, Frag, IntDiv within 7e-4 of the table. FCD and Scaf/Test are NOT
# reproduced tightly at n = 10000: FCD came out +0.13 (Test) / +0.16 (TestSF), the upward bias of a
# 512-d covariance estimated from 10k samples (the published row used far more molecules), and
# Scaf/Test 0.888 vs 0.991, a cosine of long-tailed scaffold counts under-estimated by a sample.
# Their bands are one-sided for that reason; they check direction and size, not the digits.
# Those measurements used MOSES's shipped (pickled) statistics of the full splits, which vaelab no
# longer reads; re-measured against vaelab's own full-split statistics every value agrees within 3e-5.
# The sample-size bias itself is checked by --series (FCD and Scaf extrapolated to n -> infinity).
TOLERANCE = {
    "valid": (0, 0), "unique@1000": (0, 0), "unique@10000": (2e-3, 0),
    "FCD/Test": (0.0, 0.25), "FCD/TestSF": (0.0, 0.25), "SNN/Test": (0.005, 0.005), "SNN/TestSF": (0.005, 0.005),
    "Frag/Test": (0.003, 0), "Frag/TestSF": (0.003, 0.003), "Scaf/Test": (0.15, 0), "Scaf/TestSF": (0, 0.01),
    "IntDiv": (0.003, 0.003), "IntDiv2": (0.003, 0.003), "Filters": (0, 0), "Novelty": None,
}


# |extrapolated - published| allowed for the --series check; set before it was first run.
SERIES_TOLERANCE = {"FCD/Test": 0.03, "FCD/TestSF": 0.05, "Scaf/Test": 0.02}


def series(ns: list[int], seed: int = 0, n_jobs: int = 2, n_ref: int | None = None) -> dict:
    """FCD and Scaf of nested train samples of size ns against the reference splits, and their n -> inf limits."""
    import numpy as np

    from vaelab.metrics.fd import gaussian_frechet_distance as frechet_distance
    from vaelab.molecules.metrics import (chemnet_activations, cosine_similarity_counts,
                                          scaffold_counts)
    ns = sorted(set(ns))
    gen = load_moses("train", subset=ns[-1], seed=seed)
    gen = [gen[i] for i in np.random.default_rng(seed).permutation(len(gen))]   # prefixes are random samples
    refs = {"Test": moses_reference_stats("test", n=n_ref, seed=0, n_jobs=n_jobs),
            "TestSF": moses_reference_stats("test_scaffolds", n=n_ref, seed=0, n_jobs=n_jobs)}
    act = chemnet_activations(gen, progress=True).astype(np.float64)
    rows, scaf, done = [], None, 0
    for n in ns:
        part = scaffold_counts(gen[done:n], n_jobs)
        scaf = part if scaf is None else scaf + part
        done = n
        mu, sigma = act[:n].mean(0), np.cov(act[:n].T)
        row = {"n": n}
        for name, ref in refs.items():
            row[f"FCD/{name}"] = frechet_distance(mu, sigma, ref.fcd_mu, ref.fcd_sigma)
            row[f"Scaf/{name}"] = cosine_similarity_counts(ref.scaffolds, scaf)
        rows.append(row)
        print(f"  n={n:>6}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "n"), flush=True)
    inv_n = np.array([1.0 / r["n"] for r in rows])
    design = np.stack([np.ones_like(inv_n), inv_n], 1)
    limit = {}
    for key in ("FCD/Test", "FCD/TestSF"):
        (a, b), *_ = np.linalg.lstsq(design, np.array([r[key] for r in rows]), rcond=None)
        limit[key] = {"limit": float(a), "slope": float(b)}
    (c, d), *_ = np.linalg.lstsq(design, np.array([1.0 / r["Scaf/Test"] ** 2 for r in rows]), rcond=None)
    limit["Scaf/Test"] = {"limit": float(1.0 / np.sqrt(c)), "slope": float(d)}
    return {"rows": rows, "limit": limit}


def train_row(n: int = 10000, seed: int = 0, n_jobs: int = 2, n_ref: int | None = None) -> dict[str, float]:
    """Score ``n`` random MOSES train molecules against test / scaffold-test statistics.

    ``n_ref``: molecules of each reference split (a sample with seed 0); None = the full splits.
    """
    train = load_moses("train")
    gen = load_moses("train", subset=n, seed=seed)
    test = moses_reference_stats("test", n=n_ref, seed=0, n_jobs=n_jobs)
    test_sf = moses_reference_stats("test_scaffolds", n=n_ref, seed=0, n_jobs=n_jobs)
    return moses_metrics(gen, train=frozenset(train), test=test, test_scaffolds=test_sf, n_jobs=n_jobs)


def compare(measured: dict[str, float]) -> list[tuple[str, float, float, tuple | None, bool]]:
    """(metric, measured, published, tolerance, within) for every published metric."""
    rows = []
    for key, pub in PUBLISHED_TRAIN.items():
        tol = TOLERANCE[key]
        got = measured[key]
        ok = tol is None or pub - tol[0] - 1e-9 <= got <= pub + tol[1] + 1e-9
        rows.append((key, got, pub, tol, ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="train molecules sampled (default 10000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train sample (default 0)")
    ap.add_argument("--n-ref", type=int, default=None,
                    help="molecules of each reference split (test, test_scaffolds), a seeded sample (seed 0); "
                         "default: the full splits (176,074 / 176,226: ~50 min of ChemNet on one core the first "
                         "time, then cached in $VAELAB_CACHE/moses-ref/). The tolerances were set on the full splits")
    ap.add_argument("--n-jobs", type=int, default=2, help="worker processes for RDKit work (default 2)")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    ap.add_argument("--series", default=None,
                    help="comma-separated sample sizes, e.g. 2500,5000,10000,20000,40000: score FCD and Scaf of "
                         "nested train samples of these sizes and extrapolate to n -> infinity (instead of the row)")
    args = ap.parse_args(argv)
    if args.series:
        from vaelab.config import parse_ints
        t0 = time.perf_counter()
        res = series(list(parse_ints(args.series, "--series")), args.seed, args.n_jobs, args.n_ref)
        res["seconds"] = time.perf_counter() - t0
        ok = True
        print(f"extrapolated to n -> infinity ({res['seconds']:.0f} s):")
        for key, tol in SERIES_TOLERANCE.items():
            got, pub = res["limit"][key]["limit"], PUBLISHED_TRAIN[key]
            within = abs(got - pub) <= tol
            ok &= within
            print(f"  {key:<11} {got:8.4f}  published {pub:.4f}  allowed +-{tol}  {'yes' if within else 'NO'}")
        if args.out:
            from vaelab.io import atomic_write_json
            atomic_write_json(args.out, {**res, "seed": args.seed, "n_ref": args.n_ref, "published": PUBLISHED_TRAIN,
                                         "tolerance": SERIES_TOLERANCE})
        return 0 if ok else 1
    t0 = time.perf_counter()
    measured = train_row(args.n, args.seed, args.n_jobs, args.n_ref)
    seconds = time.perf_counter() - t0
    rows = compare(measured)
    ref = ("full test / test_scaffolds" if args.n_ref is None
           else f"{args.n_ref}-molecule samples of test / test_scaffolds")
    print(f"MOSES Train row: {args.n} train molecules (seed {args.seed}) vs {ref} (statistics computed by vaelab), "
          f"{seconds:.0f} s")
    print(f"{'metric':<14}{'measured':>10}{'published':>11}{'allowed':>18}  ok")
    for key, got, pub, tol, ok in rows:
        band = "-" if tol is None else f"[{pub - tol[0]:.4f}, {pub + tol[1]:.4f}]"
        print(f"{key:<14}{got:>10.4f}{pub:>11.4f}{band:>18}  "
              f"{'yes' if ok else 'NO'}{'  (0 by definition)' if key == 'Novelty' else ''}")
    if args.out:
        from vaelab.io import atomic_write_json
        atomic_write_json(args.out, {"n": args.n, "seed": args.seed, "n_ref": args.n_ref, "seconds": seconds,
                                     "measured": measured, "published": PUBLISHED_TRAIN,
                                     "tolerance": TOLERANCE})
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
