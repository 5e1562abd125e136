"""The test-time section of `vaelab compare`: anomaly detection and uncertainty for new images.

``anomaly_sets(...)`` builds what counts as an anomaly: the test images of the classes held out of
training (``--inliers 0,1,2,3,4``: train on those, the other test classes are anomalies) and an
outside data set (``--ood-dataset SPEC``, resized to the in-distribution's image size, bilinear).
``measure(...)`` scores the inlier test split and every anomaly set with every model
(``vaelab.score.image_scores``), and returns the metrics.json block and the arrays its figures are
drawn from:

* detection: AUROC, AUPRC, FPR at 95 % TPR of every (model, score) per anomaly set, with paired
  stratified bootstrap intervals (``vaelab.metrics.detection``); the best score and its paired
  difference to the runner-up;
* the likelihood pathology (Nalisnick et al. 2019, "Do deep generative models know what they don't
  know?"): an outside set that the model gives a *higher* likelihood than its own test images, i.e.
  an IW-NLL AUROC whose interval lies below 0.5;
* uncertainty on the inlier test split: Spearman's rho between the VAE's per-image uncertainty
  (posterior variance, spread of 8 stochastic reconstructions) and (a) the judge's predictive entropy,
  (b) the reconstruction error; and the AUROC of each uncertainty for predicting when the linear probe
  on the model's codes misclassifies, against the distance to the nearest class centroid (the best
  stand-in a deterministic AE has), paired over images.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaelab.config import words
from vaelab.errors import ConfigError

N_OOD_MAX = 10_000        # images of the outside set scored: a seeded subset of at most this many, and at most
OOD_PER_INLIER = 2        # this many per inlier test image (the detection intervals are set by the smaller set)
N_SURE = 8                # most / least sure test images in the figure
N_DECODES = 8             # stochastic reconstructions per image
HELD_OUT = "held-out classes"
ARRAYS_NAME = "test_time"  # RUN/arrays/test_time.npz: what the section's figures are drawn from


def resize_images(x: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """(N, C, H, W) in [0, 1] -> (N, *shape): bilinear resize (antialiased), grey <-> RGB by mean / repeat."""
    import torch.nn.functional as F

    c, h, w = shape
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True) if c == 1 else x[:, :1].expand(-1, c, -1, -1)
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0).contiguous()


def anomaly_sets(data: Any, *, spec: str, load_kwargs: dict[str, Any], inliers: tuple[int, ...] | None,
                 ood_dataset: str | None, seed: int = 0) -> dict[str, dict[str, Any]]:
    """{set name: {"x": (M, C, H, W), "source": text, ...}} of the anomalies to detect.

    The held-out classes come from the same seeded split as the inliers (the full data set loaded with the
    same options, ``load_kwargs`` of ``DataSpec.load_kwargs()``, and, for tables, the inliers' training
    statistics: its test split restricted to the inlier classes is exactly ``data.x_test``). An outside set is
    read as new data for these models (``load_new_data``: a table by the training columns and statistics).
    """
    from vaelab.data import load_dataset, load_new_data

    sets: dict[str, dict[str, Any]] = {}
    if inliers:
        full = load_dataset(spec, **{**load_kwargs, "classes": None}, standardization=data.standardization)
        held = ~np.isin(full.y_test.numpy(), list(inliers))
        if not held.any():
            raise ConfigError(f"--inliers {','.join(map(str, inliers))} names every class of {full.name}: no class is "
                              "left to be the anomalies. Name fewer classes.")
        names = [full.class_names[c] for c in range(full.n_classes) if c not in inliers]
        sets[HELD_OUT] = {"x": full.x_test[torch.from_numpy(held)], "labels": full.y_test[torch.from_numpy(held)],
                          "source": f"test {words(data.domain).many} of the classes not trained on: "
                                    f"{', '.join(names)}"}
    if ood_dataset:
        ood = load_new_data(ood_dataset, data.summary(), seed=load_kwargs.get("seed", 0), what="--ood-dataset")
        x = ood.x_test
        n_max = min(N_OOD_MAX, OOD_PER_INLIER * len(data.x_test))
        if len(x) > n_max:
            idx = np.sort(np.random.default_rng(seed).choice(len(x), n_max, replace=False))
            x = x[torch.from_numpy(idx)]
        note = f"test split of {ood.name}"
        if tuple(x.shape[1:]) != tuple(data.shape):
            note += f", resized from {'x'.join(map(str, x.shape[1:]))} to {'x'.join(map(str, data.shape))} (bilinear)"
            x = resize_images(x, tuple(data.shape))
        sets[f"outside: {ood.name}"] = {"x": x, "source": note}
    return sets


def _entropy(p: Tensor) -> np.ndarray:
    """Predictive entropy -sum_c p_c log p_c (nats) per row of (N, C) probabilities."""
    p = p.double().clamp_min(1e-12)
    return (-(p * p.log()).sum(1)).numpy()


def measure(models: dict[str, Any], data: Any, sets: dict[str, dict[str, Any]], *, judge: Any = None, seed: int = 0,
            k: int | None = None, n_boot: int | None = None,
            progress: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The test-time block of metrics.json and the arrays its figures are drawn from.

    Args:
        models: name -> trained model (the first seed's); data: the in-distribution Dataset.
        sets: ``anomaly_sets(...)``; judge: the data's judge (None: no entropy row); seed: every draw.
    Returns:
        (doc, arrays): doc is JSON-able (after strict-JSON cleaning); arrays maps
        "scores|<set>|<model>|<score>" -> (M,) (set "inliers" = the test split) and the uncertainty
        figure's "sure|<model>|x" (2 N_SURE, C, H, W) and "sure|<model>|decodes" (2 N_SURE, S, C, H, W).
    """
    from vaelab.metrics import detection as D
    from vaelab.sampling import fit_density
    from vaelab.score import K_SCORE, image_scores

    k = k or K_SCORE
    n_boot = n_boot or D.N_BOOT
    t0 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    scored: dict[str, dict[str, dict[str, np.ndarray]]] = {"inliers": {}}
    notes: list[str] = []
    for name, model in models.items():
        if model.is_conditional:
            notes.append(f"{name}: not scored (label-conditioned: a new image comes without its label).")
            continue
        density = fit_density("gmm", model, data, seed)
        scored["inliers"][name] = image_scores(model, data.x_test, density=density, k=k, seed=seed, split="test")
        for set_name, s in sets.items():
            scored.setdefault(set_name, {})[name] = image_scores(model, s["x"], density=density, k=k, seed=seed,
                                                                 split="test")
    for set_name, per_model in scored.items():
        for name, cols in per_model.items():
            for score, v in cols.items():
                arrays[f"scores|{set_name}|{name}|{score}"] = v

    doc: dict[str, Any] = {"k": k, "n_boot": n_boot, "n_inliers": int(len(data.x_test)),
                           "sets": {n: {"n": int(len(s["x"])), "source": s["source"]} for n, s in sets.items()},
                           "detection": {}, "best": {}, "pathology": {}, "uncertainty": {}, "notes": notes}
    for set_name in sets:
        pairs = {f"{m}|{sc}": (scored["inliers"][m][sc], scored[set_name][m][sc])
                 for m in scored["inliers"] for sc in scored["inliers"][m]}
        table = D.detection_table(pairs, n_boot=n_boot, seed=seed)
        nested: dict[str, dict[str, Any]] = {}
        for key, row in D.strip_boot(table).items():
            m, sc = key.split("|")
            nested.setdefault(m, {})[sc] = row
        doc["detection"][set_name] = nested
        ranked = sorted(table, key=lambda key: -table[key]["auroc"]["value"])
        if ranked:
            best = {"model": ranked[0].split("|")[0], "score": ranked[0].split("|")[1],
                    "auroc": table[ranked[0]]["auroc"]["value"], "ci": table[ranked[0]]["auroc"]["ci"]}
            if len(ranked) > 1:
                best["runner_up"] = {"model": ranked[1].split("|")[0], "score": ranked[1].split("|")[1],
                                     "difference": D.paired_difference(table, ranked[0], ranked[1])}
            doc["best"][set_name] = best
        doc["pathology"][set_name] = {}
        for m in scored["inliers"]:
            if "iw_nll" not in scored["inliers"][m]:
                continue
            s_in, s_out = scored["inliers"][m]["iw_nll"], scored[set_name][m]["iw_nll"]
            row = table[f"{m}|iw_nll"]["auroc"]
            doc["pathology"][set_name][m] = {
                "auroc_iw_nll": row["value"], "ci": row["ci"], "mean_nll_inliers": float(s_in.mean()),
                "mean_nll_anomalies": float(s_out.mean()),
                "fraction_more_likely_than_median_inlier": float(np.mean(s_out < np.median(s_in))),
                "appears": bool(row["ci"][1] < 0.5)}

    if data.has_labels:
        doc["uncertainty"] = _uncertainty(models, data, judge, scored["inliers"], seed, n_boot, arrays)
    else:
        notes.append("uncertainty: the data have no labels, so there is no probe to be wrong and no judge.")
    doc["seconds"] = time.perf_counter() - t0
    return doc, arrays


def _uncertainty(models: dict[str, Any], data: Any, judge: Any, inlier_scores: dict[str, dict[str, np.ndarray]],
                 seed: int, n_boot: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The uncertainty rows (module docstring); fills the figure's arrays."""
    from vaelab.metrics import detection as D
    from vaelab.metrics.latent import linear_probe_predictions as probe
    from vaelab.metrics.latent import nearest_centroid_distance as centroid
    from vaelab.sampling import encode_means as encode
    from vaelab.score import stochastic_reconstructions as recon
    from vaelab.score import uncertainty

    entropy = _entropy(judge.predict_proba(data.x_test)) if judge is not None else None
    y_test = data.y_test.numpy()
    per_image: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out: dict[str, Any] = {"models": {}}
    for name, model in models.items():
        if model.is_conditional or name not in inlier_scores:
            continue
        z_train, z_test = encode(model, data.x_train).numpy(), encode(model, data.x_test).numpy()
        wrong = probe(z_train, data.y_train.numpy(), z_test, seed=seed) != y_test
        row: dict[str, Any] = {"probe_error_rate": float(wrong.mean()), "correlations": {}}
        per_image[f"{name}|centroid_distance"] = (centroid(z_train, data.y_train.numpy(), z_test), wrong)
        if model.is_stochastic:
            u = uncertainty(model, data.x_test, n_decodes=N_DECODES, seed=seed)
            for u_name, v in u.items():
                per_image[f"{name}|{u_name}"] = (v, wrong)
                row["correlations"][u_name] = {
                    "judge_entropy": (D.rank_correlation(v, entropy, n_boot=n_boot, seed=seed)
                                      if entropy is not None else {"value": None, "ci": [None, None]}),
                    "recon_error": D.rank_correlation(v, inlier_scores[name]["recon_error"], n_boot=n_boot, seed=seed)}
            order = np.argsort(u["posterior_variance"], kind="stable")
            pick = np.r_[order[:N_SURE], order[-N_SURE:]]                   # most sure, then least sure
            x = data.x_test[torch.from_numpy(pick)]
            arrays[f"sure|{name}|x"] = x.numpy()
            arrays[f"sure|{name}|decodes"] = recon(model, x, n_decodes=N_DECODES, seed=seed).numpy()
            arrays[f"sure|{name}|posterior_variance"] = u["posterior_variance"][pick]
        out["models"][name] = row
    table = D.image_bootstrap_auroc(per_image, n_boot=n_boot, seed=seed)
    for key, row in table.items():
        m, u_name = key.split("|")
        out["models"][m].setdefault("probe_error_auroc", {})[u_name] = {"value": row["auroc"]["value"],
                                                                       "ci": row["auroc"]["ci"]}
    # the VAE's uncertainty against the AE's stand-in, paired over the same test images
    vae = next((m for m in ("vae", *models) if m in models and models[m].is_stochastic
                and not models[m].is_conditional), None)
    ae = next((m for m in ("ae", *models) if m in models and not models[m].is_stochastic), None)
    if vae and ae and f"{vae}|posterior_variance" in table and table[f"{vae}|posterior_variance"]["auroc"]["value"] \
            is not None and table[f"{ae}|centroid_distance"]["auroc"]["value"] is not None:
        out["vae_vs_ae"] = {"vae": vae, "ae": ae, **{
            u: D.paired_difference(table, f"{vae}|{u}", f"{ae}|centroid_distance")
            for u in ("posterior_variance", "recon_spread", "centroid_distance")}}
    out["n_classes"] = int(data.n_classes)
    out["judge"] = judge is not None
    return out
