"""The evaluation's uncertainty, novelty and holes blocks: arrays in, metrics.json blocks out.

``evaluate`` hands over what it already computed (per-image values, judge features, codes); this module
turns them into the blocks of DESIGN.md "Uncertainty", "Sample novelty" and "Holes", with the pure
functions of ``vaelab.metrics`` (intervals, prd, novelty, holes). Choices (where DESIGN.md is silent):

- Per-image intervals: B = 1000 resamples of the test images, drawn from ``seed`` alone, so every model of a
  run is scored on the same resampled images; the replicates are kept (``REPLICATES`` key, stripped before
  the JSON is written) so ``paired_differences`` gives each pair of models its own interval of the
  difference (replicate b's difference = T_b(model 2) - T_b(model 1) on the same images).
- Sample metrics over generated samples (judge confidence): a bootstrap over the samples.
- Set metrics (FD, precision, recall, density, coverage): B = 50 (FD) / 200 (k-NN) resamples, see
  ``vaelab.metrics.prd``; the reference (test split) resamples come from ``seed`` and are shared by models.
- Novelty: at most ``NOVELTY_MAX`` samples per sampler (seeded subset) against at most ``NOVELTY_MAX_TRAIN``
  training images, in judge features and in pixels; C_T in judge features (PCA-free: the judge has 128).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.config import Words, words
from vaelab.metrics import holes as H
from vaelab.metrics import intervals as I
from vaelab.metrics import novelty as N
from vaelab.metrics import prd
from vaelab.measure.store import save_arrays
from vaelab.metrics._arrays import ArrayMemo
from vaelab.metrics.fd import frechet_distance

REPLICATES = "_replicates"     # key of the bootstrap replicates in an evaluate() result (not JSON: stripped)
N_BOOT_FD = 50       # FD replicates: each refits a (128, 128) covariance and an eigendecomposition
NOVELTY_MAX = 2000
NOVELTY_MAX_TRAIN = 20_000


def _key(path: tuple[str, ...]) -> str:
    return ".".join(path)


def per_image_intervals(per_image: dict[tuple[str, ...], np.ndarray], seed: int, n_boot: int = I.N_BOOT,
                        what: str = "test images") -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """95 % intervals of the mean of each per-image metric; the same resampled indices for every metric of
    the same length (and for every model: they depend only on n and ``seed``).

    Returns:
        ({"a.b.c": Interval dict}, {"a.b.c": (B,) replicates}).
    """
    out, reps = {}, {}
    idx_by_n: dict[int, np.ndarray] = {}
    for path, v in per_image.items():
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if len(v) < 2 or not np.isfinite(v).all():
            continue
        idx = idx_by_n.setdefault(len(v), I.bootstrap_indices(len(v), n_boot, seed))
        r = I.mean_replicates(v, idx)
        iv = I.percentile_interval(float(v.mean()), r, method=I.method_note(what, len(v), n_boot, seed), n=len(v))
        out[_key(path)], reps[_key(path)] = iv.to_dict(), r
    return out, reps


_REF_MOMENTS = ArrayMemo()   # the reference resamples' moments of the last reference (one at a time)


def _weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the rows of x (N, D) each counted w_i times (bootstrap counts).

    The (D, D) product runs in float32 on the rows with w_i > 0 (a replicate's spread, not its
    last digits, is what the interval needs); the result is float64.
    """
    keep = w > 0
    x, w = x[keep], w[keep]
    n = w.sum()
    m = w @ x / n
    y = ((x - m) * np.sqrt(w)[:, None]).astype(np.float32)
    return m, (y.T @ y).astype(np.float64) / (n - 1)


def _reference_moments(real: np.ndarray, seed: int, n_boot: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(mean, cov, cov^{1/2}) of each bootstrap resample of the reference, memoised: every model and sampler of a
    run shares the reference resamples (drawn from ``seed``), so the B roots are computed once."""
    from vaelab.metrics.fd import psd_sqrt

    def moments() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n_boot):
            w = np.bincount(rng.integers(0, len(real), len(real)), minlength=len(real)).astype(np.float64)
            m, c = _weighted_moments(real, w)
            out.append((m, c, psd_sqrt(c)))
        return out

    return _REF_MOMENTS([real], (seed, n_boot), moments)


def fd_interval(feats: np.ndarray, real: np.ndarray, seed: int, n_boot: int = N_BOOT_FD
                ) -> tuple[dict, np.ndarray]:
    """FD (judge features) with a bootstrap interval over both the samples and the reference, centred on the value.

    Replicate b: FD between the Gaussian fits of the b-th resample of the samples and of the reference
    (resampling = multinomial counts as weights, the same moments as refitting on the resampled rows). The
    reference resamples and their covariance roots come from ``seed`` alone and are shared across models.
    """
    from vaelab.metrics.fd import gaussian_frechet_distance

    feats, real = np.asarray(feats, np.float64), np.asarray(real, np.float64)
    refs = _reference_moments(real, seed, n_boot)
    rng = np.random.default_rng(seed + 1)
    reps = np.empty(n_boot)
    for b, (m_r, c_r, a_r) in enumerate(refs):
        w = np.bincount(rng.integers(0, len(feats), len(feats)), minlength=len(feats)).astype(np.float64)
        m_s, c_s = _weighted_moments(feats, w)
        reps[b] = gaussian_frechet_distance(m_r, c_r, m_s, c_s, sqrt_cov1=a_r)
    method = (f"percentile bootstrap over {len(feats)} samples and {len(real)} reference images (both resampled), "
              f"B={n_boot}, seed {seed}, centred on the value (resampled FDs are shifted upwards)")
    iv = I.centred_interval(frechet_distance(feats, real), reps, method=method, n=len(feats) + len(real),
                          lower_bound=0.0)
    return iv.to_dict(), reps


def set_metric_block(feats: np.ndarray, real: np.ndarray, seed: int, k: int = 3, use_intervals: bool = True
                     ) -> tuple[dict, dict, dict]:
    """FD, precision, recall, density, coverage and realism of one sample set, with intervals (unless
    ``use_intervals`` is False: point values only, e.g. for the noise and mean-image reference rows).

    Args:
        feats: (M, F) judge features of the samples; real: (N, F) of the test split.
    Returns:
        (values {"fd", "precision", "recall", "density", "coverage", "realism"}, intervals {name: dict},
         replicates {name: (B,)}).
    """
    if not use_intervals:
        try:
            values = {"fd": frechet_distance(feats, real), **prd.knn_set_metrics(real, feats, k)}
        except ValueError:      # a degenerate set (every sample in every ball)
            p, r = prd.precision_recall(real, feats, k)
            values = {"fd": frechet_distance(feats, real), "precision": p, "recall": r, "density": None,
                      "coverage": None}
        values["realism"] = H.fraction_realistic(real, feats, k)
        return values, {}, {}
    fd_iv, fd_r = fd_interval(feats, real, seed)
    values, ivs, reps = {"fd": fd_iv["value"]}, {"fd": fd_iv}, {"fd": fd_r}
    try:
        b = prd.knn_set_bootstrap(real, feats, k, seed=seed)
    except ValueError:          # a degenerate set (every sample in every ball): point values only
        b = None
    if b is not None:
        for n, d in b.items():
            reps[n] = np.asarray(d.pop("replicates"))
            values[n], ivs[n] = d["value"], d
    else:
        p, r = prd.precision_recall(real, feats, k)
        values.update(precision=p, recall=r, density=None, coverage=None)
    values["realism"] = H.fraction_realistic(real, feats, k)
    return values, ivs, reps


def novelty_block(sample_feats: np.ndarray, sample_pix: np.ndarray, train_feats: np.ndarray, train_pix: np.ndarray,
                  test_feats: np.ndarray, test_pix: np.ndarray, seed: int) -> dict[str, Any]:
    """Memorisation numbers of one sampler in judge features and in pixels (``vaelab.metrics.novelty``).

    Returns:
        {"features": novelty(...), "pixels": novelty(...) without C_T (ct None), "n_samples", "n_train"}.
    """
    rng = np.random.default_rng(seed)
    si = np.sort(rng.choice(len(sample_feats), min(NOVELTY_MAX, len(sample_feats)), replace=False))
    ti = np.sort(rng.choice(len(train_feats), min(NOVELTY_MAX_TRAIN, len(train_feats)), replace=False))
    flat = lambda x: np.asarray(x, dtype=np.float64).reshape(len(x), -1)   # noqa: E731
    feats = N.novelty(train_feats[ti], test_feats, sample_feats[si], seed=seed)
    pix = N.novelty(flat(train_pix[ti]), flat(test_pix), flat(sample_pix[si]), seed=seed, use_ct=False)
    for d in (feats, pix):      # indices into the full sample / training arrays
        d["closest"] = si[d["closest"]].tolist()
        d["closest_train"] = ti[d["closest_train"]].tolist()
    return {"features": feats, "pixels": pix, "n_samples": int(len(si)), "n_train": int(len(ti))}


def holes_block(mu: np.ndarray, logvar: np.ndarray | None, seed: int) -> dict[str, Any]:
    """ELBO surgery and the prior's mass in holes of q(z), on the test codes (``vaelab.metrics.holes``)."""
    s = H.elbo_surgery(mu, logvar, seed=seed)
    h = H.prior_hole_mass(mu, logvar, seed=seed)
    return {**s, "hole_mass": h["mass"], "hole_mass_se": h["se"], "hole_ratio": h["ratio"], "n_prior": h["n_prior"]}


def paired_differences(reps: dict[str, dict[str, np.ndarray]], intervals: dict[str, dict[str, dict]],
                       pairs: list[tuple[str, str]]) -> dict[str, dict[str, dict]]:
    """Interval of (b - a) for every metric both models share, from replicates on the same resamples.

    Args:
        reps: model -> {metric key: (B,) replicates}; intervals: model -> {metric key: Interval dict}.
        pairs: (a, b) model names.
    Returns:
        {"b - a": {metric key: Interval dict of b - a}}.
    """
    out: dict[str, dict[str, dict]] = {}
    for a, b in pairs:
        if a not in reps or b not in reps:
            continue
        block = {}
        for key in sorted(set(reps[a]) & set(reps[b])):
            ra, rb = reps[a][key], reps[b][key]
            va = (intervals[a].get(key) or {}).get("value")
            vb = (intervals[b].get(key) or {}).get("value")
            if len(ra) != len(rb) or va is None or vb is None:
                continue
            block[key] = I.percentile_interval(vb - va, rb - ra, method="paired: the replicates of both models on "
                                               "the same resamples", n=0).to_dict()
        out[f"{b} - {a}"] = block
    return out


def sampler_differences(reps: dict[str, dict[str, np.ndarray]], intervals: dict[str, dict[str, dict]],
                        a: str = "prior", b: str = "gmm") -> dict[str, dict[str, dict]]:
    """Per model, the interval of (sampler b - sampler a) for each generation metric (shared reference resamples)."""
    out: dict[str, dict[str, dict]] = {}
    for model, r in reps.items():
        block = {}
        for key in r:
            if not key.startswith(f"generation.{a}."):
                continue
            other = f"generation.{b}." + key[len(f"generation.{a}."):]
            va = (intervals.get(model, {}).get(key) or {}).get("value")
            vb = (intervals.get(model, {}).get(other) or {}).get("value")
            if other in r and va is not None and vb is not None and len(r[other]) == len(r[key]):
                block[key[len(f"generation.{a}."):]] = I.percentile_interval(
                    vb - va, r[other] - r[key], method="paired on the shared reference resamples", n=0).to_dict()
        out[f"{model}: {b} - {a}"] = block
    return out


def comparison_pairs(names: list[str]) -> list[tuple[str, str]]:
    """The (a, b) pairs whose differences metrics.json stores: every model against ae and against vae."""
    pairs = []
    for a in ("ae", "vae", "vae-gaussian"):      # vae-gaussian: the reference of a --priors comparison
        if a in names:
            pairs += [(a, b) for b in names if b != a and (b, a) not in pairs]
    return pairs


def collapse_reason(entry: dict[str, Any], w: Words = words(None)) -> str | None:
    """Why a model's code is unused (then its generation rows are greyed and not ranked), or None (``w``: the
    data's images or rows, for the wording).

    Fires when no latent unit is active (Cov_x E_q[z_d] <= 0.01 for every d, Burda et al. 2016) or when the
    shuffle test finds that the decoder ignores z (``evaluate``'s collapse block).
    """
    if entry.get("status") != "ok":
        return None
    lat, col = entry.get("latent") or {}, entry.get("collapse") or {}
    au, n = lat.get("active_units"), lat.get("n_latent")
    if isinstance(au, (int, float)) and au == 0:
        return (f"collapsed: 0 of {n} latent units active (Cov_x E_q[z] <= 0.01), KL "
                f"{col.get('kl_total') or 0:.3f} nats: its samples are the decoder's mean {w.one}")
    if col.get("decoder_ignores_z") is True:
        return (f"collapsed: the decoder ignores z (decoding another {w.one}'s code barely changes the "
                "reconstruction)")
    return None


def combine_seed_intervals(entry: dict[str, Any], recs: list[dict[str, Any]]) -> None:
    """Replace ``entry["intervals"]`` by intervals spanning the seeds too (``intervals.combine_seeds``)."""
    keys = set().union(*[set(r.get("intervals") or {}) for r in recs]) if recs else set()
    out = {}
    for key in sorted(keys):
        per = [r["intervals"][key] for r in recs if (r.get("intervals") or {}).get(key)]
        per = [I.Interval(p["value"], p["low"], p["high"], p["level"], p["method"], p["n"]) for p in per
               if all(p.get(f) is not None for f in ("value", "low", "high"))]
        if per:
            out[key] = I.combine_seeds(per)
    entry["intervals"] = out


def pair_holes(model: Any, data: Any, judge: Any, z_grid: Any, seed: int, arrays_file: Any) -> dict[str, Any]:
    """The holes map of a 2-D model: q(z) against p(z) on ``z_grid`` (G, 2) and the realism of its decodes.

    Saves ``arrays_file`` (.npz: z_grid, log_ratio = log q(z) - log p(z) on the grid, realism (G,) scores of the
    decoded grid in judge features against the test split, codes = test posterior means) for the figure.
    Returns holes_block(...) + {"grid_frac_hole": share of the grid with q < HOLE_RATIO p,
    "grid_frac_realistic": share of decoded grid points with realism >= 1}.
    """
    import torch

    dev = next(model.parameters()).device
    x, y = data.x_test, data.y_test if model.is_conditional else None
    with torch.inference_mode():
        mus, lvs = [], []
        for i in range(0, len(x), 2048):
            q = model.encode(x[i:i + 2048].to(dev), y[i:i + 2048].to(dev) if y is not None else None)
            mus.append(q.mean.double().cpu())
            if model.is_stochastic:
                lvs.append((2 * q.scale.log()).double().cpu())
        mu = torch.cat(mus).numpy()
        lv = torch.cat(lvs).numpy() if lvs else None
        zg = torch.as_tensor(z_grid, dtype=torch.float32)
        imgs = torch.cat([model.x_mean(model.decode(zg[i:i + 2048].to(dev))).float().cpu()
                          for i in range(0, len(zg), 2048)])
    block = holes_block(mu, lv, seed)
    log_ratio = H.log_density_ratio(zg.double().numpy(), mu, lv)
    from vaelab.measure.batched import split_features   # memoised on the judge: the models' evaluations computed them

    real = np.asarray(split_features(judge, data, "test"), dtype=np.float64)
    realism = prd.realism_scores(real, np.asarray(judge.features(imgs), dtype=np.float64))
    save_arrays(arrays_file, {"z_grid": zg.numpy(), "log_ratio": log_ratio, "realism": realism, "codes": mu})
    return {**block, "grid_frac_hole": float(np.mean(log_ratio < np.log(H.HOLE_RATIO))),
            "grid_frac_realistic": float(np.mean(realism >= 1.0))}
