"""Every metric of one trained model (DESIGN.md, "Metric definitions"); test split unless said.

``evaluate(model, data, judge=...)`` returns one JSON-able dict (floats; ``None`` = JSON null where
a metric does not apply, e.g. an AE has no likelihood: null, never 0). ``reference_rows(data,
judge)`` gives the floor/ceiling rows of the generation table (train-vs-test, mean image, uniform
noise), computed with the same functions as the models' rows.

Conventions and choices (where DESIGN.md is silent):
- Codes are posterior means; labels are used only to score (and to condition a CVAE).
- Precision/recall subsample each set to at most ``PR_MAX`` (10k) points, seeded.
- The linear probe and k-NN fit on at most ``PROBE_MAX_TRAIN`` (10k) seeded training codes, so a
  60k-image training split costs seconds, not minutes.
- Collapse: z is shuffled across the test split (seeded permutation; a CVAE keeps each image's own
  label). ``shuffle_recon_increase`` is the increase of the mean reconstruction NLL in nats per
  image; ``decoder_ignores_z`` when it is below 1 % of the reconstruction term (for a Gaussian
  likelihood, of its data-dependent part, ||x - x_hat||^2 / 2 sigma^2, since the NLL itself can be < 0).
- Every random draw comes from a generator seeded with ``seed``: the same seed gives the same numbers.
- Feature vectors (tables: shape (1, 1, D), standardised): BCE and PSNR assume pixels in [0, 1] and are null;
  reconstruction is the per-example RMSE over features (standardised units) and "rmse_per_feature", the RMSE
  of each feature over the test split in the file's units (x std); denoising is that RMSE after gaussian
  (sigma 0.3 standardised units, not clipped) and masking (25 % of features set to their training mean)
  noise, in "denoising_rmse"; "denoising" (PSNR) is null. Image figures are not drawn (vaelab.report.figures).
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from vaelab.callable_module import make_callable
from vaelab import metrics as M
from vaelab.data import CORRUPTIONS, corrupt, corruptions_for
from vaelab.config import DEFAULT_SAMPLERS, SAMPLERS, words
from vaelab.errors import ConfigError
from vaelab.budget import flush_denormals
from vaelab.io import strict_json
from vaelab.metrics._arrays import as_numpy
from vaelab.measure.batched import decode_mean, device_of, encode, over_batches, recon_nll, split_features
from vaelab.sampling import fit_density, sample_labels

PR_MAX = 10_000
PROBE_MAX_TRAIN = 10_000
PR_K = 3
KNN_K = 5
COLLAPSE_FRACTION = 0.01


# -- small helpers -------------------------------------------------------------------------------
def _subsample(n: int, n_max: int, seed: int) -> np.ndarray:
    """Sorted seeded indices of at most ``n_max`` of ``n`` items (all of them when n <= n_max)."""
    if n <= n_max:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_max, replace=False))


class _Phases:
    """A progress bar over named phases that also records each phase's seconds."""

    def __init__(self, names: Sequence[str], desc: str, enabled: bool) -> None:
        self.timings: dict[str, float] = {}
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=len(names), desc=desc, unit="phase", leave=False)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - t0
            if self.bar is not None:
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _recon_row(x_hat: Tensor, x: Tensor, per_image: dict | None = None, key: str = "mean_z",
               data: Any = None) -> dict[str, Any]:
    if data is not None and data.domain == "vectors":
        return _vector_recon_row(x_hat, x, per_image, key, data)
    bce, mse, psnr = M.bce_sum_per_image(x_hat, x), M.mse_per_image(x_hat, x), M.psnr_per_image(x_hat, x)
    if per_image is not None:      # for the bootstrap intervals (vaelab.verdict)
        for name, v in (("bce", bce), ("mse", mse), ("psnr", psnr)):
            per_image[("reconstruction", key, name)] = v
    return {"bce": float(bce.mean()), "mse": float(mse.mean()), "psnr": float(psnr.mean())}


def rmse_per_example(x_hat: Tensor, x: Tensor) -> np.ndarray:
    """RMSE_n = sqrt(mean_d (x_hat_nd - x_nd)^2) of each example: (N, ...) -> (N,) float64."""
    return np.sqrt(M.mse_per_image(x_hat, x))


def _vector_recon_row(x_hat: Tensor, x: Tensor, per_image: dict | None, key: str, data: Any) -> dict[str, Any]:
    """Feature vectors: RMSE per example (standardised units) and per feature (the file's units: x std)."""
    mse, rmse = M.mse_per_image(x_hat, x), rmse_per_example(x_hat, x)
    if per_image is not None:
        per_image[("reconstruction", key, "mse")] = mse
        per_image[("reconstruction", key, "rmse")] = rmse
    err = (as_numpy(x_hat).astype(np.float64) - as_numpy(x).astype(np.float64)).reshape(len(x), -1)   # (N, D)
    std = np.asarray((data.standardization or {}).get("std") or np.ones(err.shape[1]), dtype=np.float64)
    return {"bce": None, "mse": float(mse.mean()), "psnr": None, "rmse": float(rmse.mean()),
            "rmse_per_feature": (np.sqrt((err ** 2).mean(0)) * std).tolist()}


# -- judge-based rows ----------------------------------------------------------------------------
def sample_quality(images: Tensor, judge: Any, real_features: Tensor, seed: int = 0,
                   feats: Tensor | None = None, use_intervals: bool = True) -> dict[str, Any]:
    """FD (judge features), precision/recall (k=3), density/coverage (Naeem et al. 2020), realism, judge
    confidence and class coverage of ``images``, with 95 % bootstrap intervals (``vaelab.verdict``).

    Args:
        images: (N, C, H, W) in [0, 1], N > 3; real_features: (M, F) judge features of the test split;
        feats: the judge features of ``images`` when already computed; use_intervals: False = point values.
    Returns:
        {"fd", "precision", "recall", "density", "coverage_nn" (Naeem's coverage), "realism" (fraction of
         samples with realism score >= 1), "confidence", "coverage" (entropy of predicted labels, nats),
         "coverage_max" (log #classes), "intervals": {name: interval dict}, REPLICATES: {name: (B,)}}.
    """
    from vaelab.verdict import REPLICATES, per_image_intervals, set_metric_block

    if not torch.isfinite(images).all():
        raise ValueError("the decoded images contain NaN/inf")
    feats = judge.features(images) if feats is None else feats
    probs = judge.predict_proba(images)
    ir = _subsample(len(real_features), PR_MAX, seed)
    i_f = _subsample(len(feats), PR_MAX, seed + 1)
    real_np, feats_np = as_numpy(real_features), as_numpy(feats)
    values, ivs, reps = set_metric_block(feats_np[i_f], real_np[ir], seed, k=PR_K, use_intervals=use_intervals)
    if len(i_f) < len(feats) or len(ir) < len(real_features):   # FD on every sample, as before the subsets
        values["fd"] = M.frechet_distance(feats, real_features)
    conf = as_numpy(probs).max(1)
    civ, crep = per_image_intervals({("confidence",): conf}, seed, what="samples") if use_intervals else ({}, {})
    cov = M.class_coverage(probs)
    ivs["coverage_nn"], reps["coverage_nn"] = ivs.pop("coverage", None), reps.pop("coverage", None)
    return {"fd": values["fd"], "precision": values["precision"], "recall": values["recall"],
            "density": values.get("density"), "coverage_nn": values.get("coverage"), "realism": values["realism"],
            "confidence": M.judge_confidence(probs), "coverage": cov["entropy"], "coverage_max": cov["max_entropy"],
            "intervals": {k: v for k, v in {**ivs, **civ}.items() if v is not None},
            REPLICATES: {k: v for k, v in {**reps, **crep}.items() if v is not None}}


def _null_quality() -> dict[str, None]:
    return dict.fromkeys(("fd", "precision", "recall", "density", "coverage_nn", "realism", "confidence", "coverage",
                          "coverage_max"))


@torch.inference_mode()
def reference_rows(data: Any, judge: Any, *, n_samples: int = 10_000, seed: int = 0) -> dict[str, dict]:
    """Floor and ceiling rows for the generation table, with the same functions as ``evaluate``.

    train_vs_test: up to n_samples training images (seeded subset) against the test split (the best a
    model can hope for); mean_image: n_samples copies of the training mean image; uniform_noise:
    n_samples images of U(0, 1) pixels (both: what a useless generator scores). For feature vectors
    (standardised) the noise row is N(0, I): every feature's own mean and variance, no structure.

    Returns:
        {"train_vs_test": {...}, "mean_image": {...}, "uniform_noise": {...}} each as ``sample_quality``;
        all values None when there is no judge.
    """
    names = ("train_vs_test", "mean_image", "uniform_noise")
    if judge is None:
        return {k: _null_quality() for k in names}
    _check_n(n_samples)
    real = split_features(judge, data, "test")
    idx = torch.from_numpy(_subsample(len(data.x_train), n_samples, seed))
    mean_img = data.x_train.mean(0, keepdim=True)                                   # (1, C, H, W)
    gen = torch.Generator().manual_seed(seed)
    sets = {"train_vs_test": data.x_train[idx],
            "mean_image": mean_img.expand(n_samples, *mean_img.shape[1:]).contiguous(),
            "uniform_noise": (torch.randn if data.domain == "vectors" else torch.rand)((n_samples, *data.shape),
                                                                                      generator=gen)}
    from vaelab.verdict import REPLICATES

    # intervals for the floor (train vs test); the ceilings (mean image, noise) are far from every model
    rows = {k: sample_quality(x, judge, real, seed, use_intervals=k == "train_vs_test") for k, x in sets.items()}
    for r in rows.values():
        r.pop(REPLICATES, None)
    return strict_json(rows)


def _check_n(n_samples: int) -> None:
    if not isinstance(n_samples, int) or n_samples <= PR_K:
        raise ConfigError(f"the number of generated samples must be an integer > {PR_K} (precision/recall use "
                          f"k={PR_K} neighbours), got {n_samples!r}; the default is 10000.")


# -- the phases ----------------------------------------------------------------------------------
def _likelihood(model: torch.nn.Module, data: Any, iw_k: int, seed: int, progress: bool,
                per_image: dict | None = None) -> dict[str, Any] | None:
    if not getattr(model, "has_likelihood", False):
        return None
    from vaelab.preprocess import modelled

    # the test split as the likelihood models it (binarised / dequantised: a fixed seeded draw, same for every model)
    x, y = modelled(data.x_test, model.cfg, "test"), data.y_test if model.is_conditional else None
    elbo = M.negative_elbo(model, x, y, seed=seed, return_per_image=True)
    # one chunked pass gives IW-NLL(K) for every K of the curve; its last point (K = iw_k) is iw_nll, with the
    # very same importance samples as a lone K = iw_k estimate (the noise is drawn in sample order)
    c = M.importance_weighted_curve(model, x, y, ks=iw_curve_ks(iw_k), seed=seed, progress=progress,
                                    return_per_image=True)
    if per_image is not None:
        per_image[("likelihood", "neg_elbo")] = elbo["per_image"]
        per_image[("likelihood", "iw_nll")] = c["per_image_nll"]
    kind, note = M.likelihood_kind(model.cfg, {"is_binary": bool(((x == 0) | (x == 1)).all())})
    return {"neg_elbo": elbo["neg_elbo"], "kl": elbo["kl"], "iw_nll": c["nll"][-1], "iw_nll_se": c["se"][-1],
            "iw_k": int(iw_k),
            "bits_per_dim": c["bits_per_dim"][-1], "kind": kind, "note": note,
            "iw_curve": {"k": [int(k) for k in c["k"]], "nll": c["nll"], "se": c["se"]}}


def iw_curve_ks(iw_k: int) -> tuple[int, ...]:
    """The K of the report's IW-NLL(K) curve: the powers of ten up to ``iw_k``, and ``iw_k`` (200 -> 1, 10, 100, 200)."""
    ks = [10 ** i for i in range(len(str(int(iw_k)))) if 10 ** i <= iw_k]
    return tuple(sorted(set(ks) | {int(iw_k)}))


def _latent(model: torch.nn.Module, data: Any, mu_train: Tensor, mu_test: Tensor, logvar_test: Tensor | None,
            seed: int, notes: list[str], per_image: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(("linear_probe", "knn", "kmeans_nmi", "kmeans_ari", "silhouette"))
    if data.has_labels:
        sub = _subsample(len(mu_train), PROBE_MAX_TRAIN, seed)
        z_tr, y_tr = mu_train[sub], data.y_train[sub]
        out["linear_probe"], right_probe = M.linear_probe_accuracy(z_tr, y_tr, mu_test, data.y_test, seed=seed,
                                                                   return_per_image=True)
        out["knn"], right_knn = M.knn_accuracy(z_tr, y_tr, mu_test, data.y_test, k=KNN_K, return_per_image=True)
        if per_image is not None:
            per_image[("latent", "linear_probe")] = right_probe.astype(np.float64)
            per_image[("latent", "knn")] = right_knn.astype(np.float64)
        km = M.kmeans_scores(mu_test, data.y_test, n_clusters=data.n_classes, seed=seed)
        out["kmeans_nmi"], out["kmeans_ari"] = km["nmi"], km["ari"]
        try:
            out["silhouette"] = M.silhouette(mu_test, data.y_test, seed=seed)
        except ValueError as e:
            notes.append(f"silhouette: not defined here ({e}).")
    else:
        notes.append("latent: the data have no labels, so probe, k-NN, k-means and silhouette scores are null.")
    out["active_units"] = M.active_units(mu_test)["n_active"]
    out["n_latent"] = int(model.cfg.n_latent)
    out["kl_per_dim"] = M.kl_per_dimension(mu_test, logvar_test).tolist() if logvar_test is not None else None
    agg = M.aggregate_posterior_kl(mu_test)
    if not math.isfinite(agg):
        notes.append("aggregate_kl: the codes do not vary in some direction (singular covariance), so the KL of "
                     "their Gaussian fit to N(0, I) is infinite; reported as null.")
    out["aggregate_kl"] = agg
    out["mutual_information"] = (M.mutual_information(mu_test, logvar_test, seed=seed)
                                 if logvar_test is not None else None)
    return out


def _prior_surgery(lik: dict[str, Any] | None, latent: dict[str, Any], prior: str) -> dict[str, Any]:
    """The ELBO surgery of a model with a non-Gaussian prior (Hoffman & Johnson 2016):
    KL(q(z) || p(z)) = E_x KL(q(z|x) || p(z)) - I(x; z), the first term the model's own KL (closed form or
    Monte Carlo at its posterior samples), I(x; z) from ``latent``."""
    kl = (lik or {}).get("kl")
    mi = latent.get("mutual_information")
    return {"kl_mean": kl, "mutual_information": mi,
            "marginal_kl": kl - mi if kl is not None and mi is not None else None,
            "q": f"the model's KL to its {prior} prior minus I(x; z)", "hole_mass": None, "hole_mass_se": None}


def _collapse(model: torch.nn.Module, data: Any, mu_test: Tensor, kl_per_dim: list[float] | None,
              seed: int) -> dict[str, Any]:
    x, y = data.x_test, data.y_test if model.is_conditional else None
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    recon = recon_nll(model, mu_test, x, y)
    shuffled = recon_nll(model, mu_test[perm], x, y)
    increase = float((shuffled - recon).mean())
    scale = float(recon.mean())
    if model.cfg.likelihood == "gaussian":   # remove the constant log-normaliser: keep ||x - x_hat||^2 / 2 sigma^2
        scale -= float(over_batches(lambda xb: model.recon_nll(xb, xb).double(), x, device=device_of(model),
                                        batch_size=4096).mean())
    return {"kl_total": float(np.sum(kl_per_dim)) if kl_per_dim is not None else None,
            "units_below_0.01_nats": int(np.sum(np.asarray(kl_per_dim) < 0.01)) if kl_per_dim is not None else None,
            "shuffle_recon_increase": increase,
            "decoder_ignores_z": bool(increase < COLLAPSE_FRACTION * abs(scale))}


@torch.inference_mode()
def _denoising(model: torch.nn.Module, data: Any, seed: int, per_image: dict | None = None) -> dict[str, float]:
    """PSNR (images) or RMSE (vectors: per example, standardised units) of the reconstruction of a corrupted
    test example against the clean one, per corruption (``corruptions_for``)."""
    x, y = data.x_test, data.y_test if model.is_conditional else None
    is_vectors = data.domain == "vectors"
    out = {}
    for i, (kind, level) in enumerate(corruptions_for(data.shape).items()):
        x_noisy = corrupt(x, kind, level, generator=torch.Generator().manual_seed(seed + i))
        mu, _ = encode(model, x_noisy, y)
        x_hat = decode_mean(model, mu, y)
        v = rmse_per_example(x_hat, x) if is_vectors else M.psnr_per_image(x_hat, x)
        out[kind] = float(v.mean())
        if per_image is not None:
            per_image[("denoising_rmse" if is_vectors else "denoising", kind)] = v
    return out


# -- the entry point -----------------------------------------------------------------------------
def evaluate(model: torch.nn.Module, data: Any, *, judge: Any = None, n_samples: int = 10_000, iw_k: int = 100,
             samplers: Sequence[str] = DEFAULT_SAMPLERS, n_interp_pairs: int = 1000, seed: int = 0, progress: bool = True,
             name: str | None = None, arrays_path: str | Path | None = None,
             replicates_path: str | Path | None = None, novelty_path: str | Path | None = None) -> dict[str, Any]:
    """All metrics of one trained model on ``data`` (DESIGN.md "Metric definitions").

    Args:
        model: a trained vaelab model (the Autoencoder protocol), on any device.
        data: the vaelab.data.Dataset it was trained on (x_* (N, C, H, W) in [0, 1], y_* (N,) or None).
        judge: the dataset's Judge (``vaelab.judge.load_or_train_judge``); None makes judge metrics null.
        n_samples: generated images per sampler; iw_k: importance samples per test image.
        samplers: subset of ("prior", "gmm"); n_interp_pairs: random pairs of test codes for midpoints.
        seed: seeds every random draw (same seed, same numbers); name: "model" entry (default cfg.model).
        arrays_path: where to save the arrays the report's figures are drawn from (an .npz,
            ``vaelab.measure.views.model_views``: reconstructions, samples, ...), after every metric
            (their draws have their own generators: the metrics are the same with or without it); None: not saved.
        replicates_path: an .npz for the bootstrap replicates of every interval ({metric key: (B,)}), from
            which a comparison computes paired differences across models; novelty_path: an .npz for the
            images of the novelty figure (nearest training images of generated samples). None: not saved.
    Returns:
        a JSON-able dict: model, is_stochastic, n_latent, reconstruction, likelihood, generation,
        interpolation, latent, collapse, denoising, timings, notes (see module docstring / DESIGN.md).
    """
    _check_n(n_samples)
    flush_denormals()
    if not isinstance(iw_k, int) or iw_k < 1:
        raise ConfigError(f"the number of importance samples must be a positive integer, got {iw_k!r}.")
    if not isinstance(n_interp_pairs, int) or n_interp_pairs < 2:
        raise ConfigError(f"n_interp_pairs must be an integer >= 2, got {n_interp_pairs!r}.")
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad:
        raise ConfigError(f"unknown sampler(s) {', '.join(map(repr, bad))}; choose from {', '.join(SAMPLERS)}.")
    if tuple(data.x_test.shape[1:]) != tuple(model.cfg.input_shape):
        raise ConfigError(f"the model takes images of shape {tuple(model.cfg.input_shape)} but the data has "
                          f"{tuple(data.x_test.shape[1:])}: evaluate it on the dataset it was trained on.")
    if model.is_conditional and not data.has_labels:
        raise ConfigError(f"{model.cfg.model} is label-conditioned and needs labelled data to be evaluated.")

    model.eval()
    notes: list[str] = []
    if judge is None:
        notes.append("no judge (the data have no labels, or none was given): FD, precision/recall, confidence and "
                     "coverage are null.")
    from vaelab.verdict import REPLICATES, fd_interval, holes_block, novelty_block, per_image_intervals

    phases = _Phases(["encode", "reconstruction", "likelihood", *[f"generation:{s}" for s in samplers],
                      "interpolation", "latent", "holes", "collapse", "denoising", "intervals",
                      *(["arrays"] if arrays_path else [])],
                     desc=f"evaluate {name or model.cfg.model}", enabled=progress)
    x_test = data.x_test
    y_cond = data.y_test if model.is_conditional else None
    res: dict[str, Any] = {"model": name or model.cfg.model, "is_stochastic": bool(model.is_stochastic),
                           "n_latent": int(model.cfg.n_latent)}
    per_image: dict[tuple[str, ...], np.ndarray] = {}     # test-image values behind each mean: the intervals
    intervals: dict[str, dict] = {}
    replicates: dict[str, np.ndarray] = {}
    figure_arrays: dict[str, np.ndarray] = {}
    try:
        with torch.inference_mode():
            with phases("encode"):
                mu_test, logvar_test = encode(model, x_test, y_cond)
                mu_train, _ = encode(model, data.x_train, data.y_train if model.is_conditional else None)
                real = split_features(judge, data, "test") if judge is not None else None

            with phases("reconstruction"):
                rec: dict[str, Any] = {"mean_z": _recon_row(decode_mean(model, mu_test, y_cond), x_test, per_image,
                                                            data=data), "sampled_z": None}
                if model.is_stochastic:
                    eps = torch.randn(mu_test.shape, generator=torch.Generator().manual_seed(seed))
                    z = mu_test + torch.exp(0.5 * logvar_test) * eps
                    rec["sampled_z"] = _recon_row(decode_mean(model, z, y_cond), x_test, per_image, "sampled_z",
                                                  data=data)
                res["reconstruction"] = rec

            with phases("likelihood"):
                res["likelihood"] = _likelihood(model, data, iw_k, seed, progress, per_image)

            res["generation"], res["novelty"] = {}, {}
            densities: dict[str, Any] = {}          # kept for the figure arrays: fitted once
            for sampler in samplers:
                with phases(f"generation:{sampler}"):
                    row, res["novelty"][sampler] = _null_quality(), None
                    if judge is not None:
                        density = densities[sampler] = fit_density(sampler, model, data, seed, z_train=mu_train)
                        z = density.sample(n_samples, seed=seed)
                        images = decode_mean(model, z, sample_labels(model, n_samples))
                        try:
                            feats = judge.features(images)
                            row = sample_quality(images, judge, real, seed, feats=feats)
                            for k, v in row.pop("intervals").items():
                                intervals[f"generation.{sampler}.{k}"] = v
                            for k, v in row.pop(REPLICATES).items():
                                replicates[f"generation.{sampler}.{k}"] = v
                        except ValueError as e:
                            notes.append(f"generation:{sampler}: not scored ({e}).")
                        else:
                            nov = novelty_block(feats.numpy(), images.numpy(), split_features(judge, data, "train").numpy(),
                                                data.x_train.numpy(), real.numpy(), x_test.numpy(), seed)
                            res["novelty"][sampler] = nov
                            # the figure's arrays: the 8 closest samples (judge features) and their neighbours
                            close = nov["features"]
                            figure_arrays[f"novelty_{sampler}_samples"] = images[close["closest"]].numpy()
                            figure_arrays[f"novelty_{sampler}_train"] = data.x_train[close["closest_train"]].numpy()
                    res["generation"][sampler] = row

            with phases("interpolation"):
                res["interpolation"] = {"fd_midpoints": None, "confidence_midpoints": None}
                if judge is not None:
                    rng = np.random.default_rng(seed)
                    i = torch.from_numpy(rng.integers(0, len(mu_test), n_interp_pairs))
                    j = torch.from_numpy(rng.integers(0, len(mu_test), n_interp_pairs))
                    mid = 0.5 * (mu_test[i] + mu_test[j])                            # (P, D)
                    images = decode_mean(model, mid, y_cond[i] if y_cond is not None else None)
                    if torch.isfinite(images).all():
                        mid_feats, mid_probs = judge.features(images), judge.predict_proba(images)
                        res["interpolation"] = {
                            "fd_midpoints": M.frechet_distance(mid_feats, real),
                            "confidence_midpoints": M.judge_confidence(mid_probs)}
                        # the pairs (i, j) are drawn from the seed alone: the same pairs for every model
                        per_image[("interpolation", "confidence_midpoints")] = as_numpy(mid_probs).max(1)
                        iv, r = fd_interval(as_numpy(mid_feats), as_numpy(real), seed)
                        intervals["interpolation.fd_midpoints"], replicates["interpolation.fd_midpoints"] = iv, r
                    else:
                        notes.append("interpolation: the decoded midpoints contain NaN/inf; not scored.")

            with phases("latent"):
                res["latent"] = _latent(model, data, mu_train, mu_test, logvar_test, seed, notes, per_image)

            with phases("holes"):
                prior = getattr(model.cfg, "prior", "gaussian")
                if model.is_stochastic and prior != "gaussian":
                    res["holes"] = _prior_surgery(res["likelihood"], res["latent"], prior)
                    res["latent"]["aggregate_kl"] = None
                    notes.append(f"{prior} prior: the ELBO surgery is E KL(q(z|x) || p) (the model's own KL term) "
                                 "= I(x; z) + KL(q(z) || p), with I(x; z) from Gaussian moment matches of the "
                                 "posteriors; the prior-hole mass and the Gaussian aggregate KL are measured against "
                                 "N(0, I) only, so they are null here.")
                else:
                    res["holes"] = holes_block(mu_test.double().numpy(), None if logvar_test is None
                                               else logvar_test.double().numpy(), seed)

            with phases("collapse"):
                res["collapse"] = _collapse(model, data, mu_test, res["latent"]["kl_per_dim"], seed)

            with phases("denoising"):
                if data.domain == "vectors":      # PSNR needs pixels in [0, 1]: RMSE instead (module docstring)
                    res["denoising"] = dict.fromkeys(CORRUPTIONS)
                    res["denoising_rmse"] = _denoising(model, data, seed, per_image)
                    notes.append("vectors: BCE, PSNR and the image figures do not apply to standardised features; "
                                 "reconstruction and denoising are RMSE (salt-and-pepper, which sets pixels to 0 or 1, "
                                 "is left out).")
                else:
                    res["denoising"] = _denoising(model, data, seed, per_image)

            with phases("intervals"):
                ivs, reps = per_image_intervals(per_image, seed, what=f"test {words(data.domain).many}")
                intervals.update(ivs)
                replicates.update(reps)

            if arrays_path is not None:
                with phases("arrays"):
                    from vaelab.measure.store import save_arrays
                    from vaelab.measure.views import model_views

                    for sampler in samplers:   # without a judge nothing was fitted for the metrics
                        if sampler not in densities:
                            densities[sampler] = fit_density(sampler, model, data, seed, z_train=mu_train)
                    save_arrays(arrays_path, model_views(model, data, mu_test=mu_test, densities=densities, seed=seed))
    finally:
        phases.close()
    res["timings"] = phases.timings
    res["notes"] = notes
    res["intervals"] = intervals
    # not JSON, so in files: the bootstrap replicates (paired differences across models) and the novelty images
    from vaelab.measure.store import save_arrays

    if replicates_path is not None:
        save_arrays(replicates_path, replicates)
    if novelty_path is not None and figure_arrays:
        save_arrays(novelty_path, figure_arrays)
    return strict_json(res)


# -- the `vaelab evaluate` command -----------------------------------------------------------------
def evaluate_checkpoint(ckpt: str, out: str, *, n_samples: int = 10_000, iw_k: int = 100,
                        samplers: Sequence[str] = DEFAULT_SAMPLERS, seed: int = 0, progress: bool = True,
                        overwrite: bool = False) -> dict[str, Any]:
    """Load a model folder, reload its dataset, load or train the judge, evaluate, write ``out`` (JSON, atomic).

    The file holds {"schema_version", "checkpoint", "dataset", "judge", "settings", "versions",
    "reference" (reference_rows), "metrics" (the evaluate() dict)}. Returns that dict.
    """
    from pathlib import Path

    from vaelab.checkpoint import load_model, versions
    from vaelab.io import atomic_write_json
    from vaelab.judge import load_or_train_judge
    from vaelab.sampling import reload_dataset

    out_path = Path(out)
    if out_path.suffix.lower() != ".json":
        raise ConfigError(f"--out must be a .json file, got {out_path.name!r}.")
    if out_path.exists() and not overwrite:
        raise ConfigError(f"{out_path} exists; pass --overwrite to replace it or choose another --out.")
    ck = load_model(ckpt)
    data = reload_dataset(ck.config)
    judge = load_or_train_judge(data, seed=seed, progress=progress)
    t0 = time.perf_counter()
    result = evaluate(ck.model, data, judge=judge, n_samples=n_samples, iw_k=iw_k, samplers=samplers,
                      seed=seed, progress=progress)
    reference = reference_rows(data, judge, n_samples=n_samples, seed=seed)
    doc = {"schema_version": 1, "checkpoint": str(ck.path), "dataset": data.summary(),
           "judge": None if judge is None else {"test_accuracy": judge.test_accuracy,
                                                "fingerprint": judge.fingerprint, "arch": judge.arch},
           "settings": {"n_samples": n_samples, "iw_k": iw_k, "samplers": list(samplers), "seed": seed},
           "versions": versions(), "reference": reference, "metrics": result,
           "seconds": time.perf_counter() - t0}
    atomic_write_json(out_path, strict_json(doc))
    return doc


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec) if isinstance(v, float) else str(v)


def print_summary(doc: dict[str, Any]) -> None:
    """A rich table of the headline numbers of an ``evaluate_checkpoint`` document."""
    from rich.console import Console
    from rich.table import Table

    m = doc["metrics"]
    lik = m["likelihood"] or {}
    rec = m["reconstruction"]["mean_z"]
    judge = doc["judge"]
    t = Table(title=f"{m['model']} on {doc['dataset']['name']} (test split)",
              caption="FD is in judge features (not FID); " + (
                  f"judge test accuracy {judge['test_accuracy']:.3f}" if judge else "no judge (unlabelled data)"))
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [("recon BCE (nats/image)", rec["bce"]), ("recon MSE (per pixel)", rec["mse"]),
            ("recon PSNR (dB)", rec["psnr"]),
            ("-ELBO (nats)", lik.get("neg_elbo")),
            (f"IW-NLL K={lik.get('iw_k', '')} (nats, {lik.get('kind', 'n/a')})", lik.get("iw_nll"))]
    for s, g in m["generation"].items():
        rows += [(f"FD {s} samples", g["fd"]), (f"precision / recall {s}",
                                                f"{_fmt(g['precision'])} / {_fmt(g['recall'])}")]
    ref = doc.get("reference") or {}
    for k, r in ref.items():
        rows.append((f"FD reference: {k.replace('_', ' ')}", r.get("fd")))
    rows += [("FD interpolation midpoints", m["interpolation"]["fd_midpoints"]),
             ("linear probe accuracy", m["latent"]["linear_probe"]),
             ("active units", f"{m['latent']['active_units']} / {m['latent']['n_latent']}"),
             ("decoder ignores z", m["collapse"]["decoder_ignores_z"])]
    rows += [(f"denoising PSNR {k} (dB)", v) for k, v in m["denoising"].items()]
    for name, v in rows:
        t.add_row(name, _fmt(v))
    con = Console()
    con.print(t)
    for note in m.get("notes", []):
        con.print(f"note: {note}")


make_callable(__name__, "evaluate")   # vaelab.evaluate(model, data) is this function (vaelab/__init__.py)
