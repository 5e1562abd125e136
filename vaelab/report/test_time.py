"""The report's test-time section, drawn from metrics.json's "test_time" block and arrays/test_time.npz only.

``plan(block, arrays)`` gives the draw functions of the score histograms (inliers vs each anomaly set, one
row per model, one column per score) and the most/least sure test images with their stochastic
reconstructions; ``rows(block)`` gives the detection and uncertainty tables; ``answer(block)`` the
sentences of the answer, each written from the numbers and calling a difference only when its
paired interval excludes 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from vaelab.config import Words, words
from vaelab.score import SCORE_LABELS

FIGURES = {
    "test_time_histograms": (
        "Anomaly scores: inliers vs anomalies",
        "Per model (rows) and score (columns): the distribution of the score on the in-distribution test {images} "
        "(grey) and on each anomaly set. Higher = more anomalous; a score detects anomalies when the coloured "
        "histogram sits right of the grey one. A coloured histogram left of the grey one in an IW bound column is "
        "the likelihood pathology (Nalisnick et al. 2019)."),
    "test_time_sure": (
        "What the VAE is sure and unsure of",
        "Top rows: the test images with the smallest posterior variance; bottom rows: the largest. Each row: the "
        "image, then 8 decodes of z ~ q(z|x). Where the VAE is unsure, its decodes vary (an AE's would not: one z, "
        "one decode)."),
}


def _save(fig: Any, path: Path) -> None:
    from vaelab.report.png import save_png     # one PNG writer: atomic, byte-reproducible

    save_png(fig, path)


def plan(block: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[tuple[str, Callable[[Path], Any]]]:
    """(figure name, draw(path)) of the section's figures that apply: ``block`` is metrics.json's "test_time",
    ``arrays`` the run's arrays/test_time.npz (``vaelab.report.figures.plan`` appends these)."""
    out: list[tuple[str, Callable[[Path], Any]]] = []
    if any(k.startswith("scores|") for k in arrays) and block.get("sets"):
        out.append(("test_time_histograms", lambda p: _histograms(block, arrays, p)))
    from vaelab.data import is_vector_shape

    sure = [v for k, v in arrays.items() if k.startswith("sure|") and k.endswith("|x")]
    if sure and not is_vector_shape(sure[0].shape[1:]):     # pictures of examples: images only, not tables
        out.append(("test_time_sure", lambda p: _sure(block, arrays, p)))
    return out


def _histograms(block: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(block.get("sets") or {})
    models = list((block.get("detection") or {}).get(sets[0], {})) if sets else []
    if not models:
        return False
    scores = [s for s in SCORE_LABELS if any(f"scores|inliers|{m}|{s}" in arrays for m in models)]
    fig, axes = plt.subplots(len(models), len(scores), figsize=(2.6 * len(scores), 1.9 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        for j, s in enumerate(scores):
            ax = axes[i, j]
            ref = arrays.get(f"scores|inliers|{m}|{s}")
            if ref is None:
                ax.axis("off")
                continue
            groups = [("inliers", ref)] + [(n, arrays[f"scores|{n}|{m}|{s}"]) for n in sets]
            allv = np.concatenate([g for _, g in groups])
            lo, hi = np.quantile(allv, [0.005, 0.995])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
            for c, (n, v) in enumerate(groups):
                ax.hist(np.clip(v, lo, hi), bins=bins, density=True, histtype="stepfilled" if c == 0 else "step",
                        color="0.7" if c == 0 else f"C{c - 1}", lw=1.2, label=n)
            auc = ", ".join(f"{block['detection'][n][m][s]['auroc']['value']:.2f}" for n in sets)
            ax.set_title(f"{m}: {s}\nAUROC {auc}", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_yticks([])
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)
    return True


def _sure(block: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaelab.imaging import make_grid

    names = [k.split("|")[1] for k in arrays if k.startswith("sure|") and k.endswith("|x")]
    if not names:
        return False
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 6.5), squeeze=False)
    for ax, m in zip(axes[0], names):
        x, dec = arrays[f"sure|{m}|x"], arrays[f"sure|{m}|decodes"]            # (2n, C, H, W), (2n, S, C, H, W)
        rows = np.concatenate([x[:, None], dec], axis=1)                          # (2n, 1 + S, C, H, W)
        grid = make_grid(rows.reshape(-1, *x.shape[1:]), n_col=rows.shape[1])
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{m}: most sure (top {len(x) // 2}) / least sure (bottom)", fontsize=8)
        ax.axis("off")
    _save(fig, path)
    return True


# -- tables -------------------------------------------------------------------------------------------
def _ci(row: dict[str, Any] | None, spec: str = ".3f") -> str:
    if not row or row.get("value") is None:
        return "n/a"
    lo, hi = row.get("ci") or (None, None)
    if lo is None or hi is None:
        return format(row["value"], spec)
    return f"{format(row['value'], spec)} [{format(lo, spec)}, {format(hi, spec)}]"


def rows(block: dict[str, Any]) -> dict[str, Any]:
    """{"detection": {set: [row...]}, "uncertainty": [row...]} of formatted cells for the template and Markdown."""
    det: dict[str, list[dict[str, str]]] = {}
    for set_name, per_model in (block.get("detection") or {}).items():
        best = (block.get("best") or {}).get(set_name) or {}
        det[set_name] = [{"model": m, "score": s, "label": SCORE_LABELS.get(s, s),
                          "auroc": _ci(r["auroc"]), "auprc": _ci(r["auprc"]), "fpr95": _ci(r["fpr_at_95_tpr"]),
                          "is_best": m == best.get("model") and s == best.get("score")}
                         for m, sc in per_model.items() for s, r in sc.items()]
    unc = []
    for m, r in ((block.get("uncertainty") or {}).get("models") or {}).items():
        for u, auc in (r.get("probe_error_auroc") or {}).items():
            corr = (r.get("correlations") or {}).get(u) or {}
            unc.append({"model": m, "measure": u.replace("_", " "), "probe_error": _ci(auc),
                        "entropy": _ci(corr.get("judge_entropy")), "recon": _ci(corr.get("recon_error")),
                        "error_rate": f"{r['probe_error_rate']:.3f}"})
    return {"detection": det, "uncertainty": unc}


def markdown(block: dict[str, Any], w: Words = words(None)) -> str:
    """The section as Markdown (docs/test-time.md, `vaelab report --markdown`); ``w``: images or a table's rows."""
    r = rows(block)
    lines = []
    for set_name, rs in r["detection"].items():
        info = block["sets"][set_name]
        lines += [f"**{set_name}** ({info['n']} {w.many}: {info['source']}; {block['n_inliers']} inlier test {w.many})", "",
                  "| model | score | AUROC ↑ [95 % CI] | AUPRC ↑ | FPR at 95 % TPR ↓ |", "|---|---|---|---|---|"]
        lines += [f"| {x['model']} | {x['score']}{' ★' if x['is_best'] else ''} | {x['auroc']} | {x['auprc']} | "
                  f"{x['fpr95']} |" for x in rs]
        lines.append("")
    if r["uncertainty"]:
        lines += ["**Uncertainty on the inlier test split**", "",
                  "| model | uncertainty | AUROC for a probe error ↑ | ρ with judge entropy | ρ with recon error | "
                  "probe error rate |", "|---|---|---|---|---|---|"]
        lines += [f"| {x['model']} | {x['measure']} | {x['probe_error']} | {x['entropy']} | {x['recon']} | "
                  f"{x['error_rate']} |" for x in r["uncertainty"]]
        lines.append("")
    lines += [f"- {t}" for t in answer(block, w)]
    return "\n".join(lines) + "\n"


# -- the answer -----------------------------------------------------------------------------------------
def answer(block: dict[str, Any], w: Words = words(None)) -> list[str]:
    """Sentences written from the section's numbers (which score works best, the pathology, uncertainty)."""
    out = []
    for set_name, best in (block.get("best") or {}).items():
        auc = _ci({"value": best["auroc"], "ci": best["ci"]})
        s = (f"Against the {set_name} ({block['sets'][set_name]['n']} {w.many}), the best detector here is "
             f"{best['model']}'s {SCORE_LABELS.get(best['score'], best['score'])} (AUROC {auc})")
        ru = best.get("runner_up")
        if ru:
            d = ru["difference"]
            s += (f"; ahead of {ru['model']}'s {ru['score']} by {d['value']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
                  + ("" if d["excludes_zero"] else ", a difference the interval does not exclude from 0, so these two "
                                                   "are not told apart on this test set"))
        out.append(s + ".")
        patho = (block.get("pathology") or {}).get(set_name) or {}
        if patho:
            hit = [m for m, p in patho.items() if p["appears"]]
            if hit:
                p = patho[hit[0]]
                out.append(f"The likelihood pathology (Nalisnick et al. 2019) appears for the {set_name}: "
                           f"{', '.join(hit)} give{'s' if len(hit) == 1 else ''} them a higher likelihood than their own "
                           f"test {w.many} (IW-NLL AUROC {_ci({'value': p['auroc_iw_nll'], 'ci': p['ci']})}, "
                           f"{p['fraction_more_likely_than_median_inlier']:.0%} of them more likely than the median "
                           "inlier); a likelihood-based detector fails here.")
            else:
                worst = min(patho, key=lambda m: patho[m]["auroc_iw_nll"])
                p = patho[worst]
                out.append(f"No likelihood pathology for the {set_name}: no model gives them a measurably higher "
                           f"likelihood than its test {w.many} (lowest IW-NLL AUROC: {worst}, "
                           f"{_ci({'value': p['auroc_iw_nll'], 'ci': p['ci']})}).")
    unc = block.get("uncertainty") or {}
    vv = unc.get("vae_vs_ae")
    if vv:
        m = unc["models"]
        pv = m[vv["vae"]]["probe_error_auroc"]["posterior_variance"]
        cd = m[vv["ae"]]["probe_error_auroc"]["centroid_distance"]
        d = vv["posterior_variance"]
        n = (block.get("n_inliers") or 0)
        if not d["excludes_zero"]:
            verdict = f"no measurable difference on {n} test {w.many}"
        elif d["value"] > 0:
            verdict = (f"measurably better: the VAE's spread flags the test {w.many} that lie between its two "
                       "clusters better than the AE's geometry does" if unc.get("n_classes") == 2 else
                       f"measurably better: the VAE's spread flags the {w.many} its code gets wrong better than the "
                       "AE's geometry does")
        else:
            verdict = f"measurably worse: the AE's distance to the class centres is the better flag of an ambiguous {w.one}"
        lead = "At test time, with two classes" if unc.get("n_classes") == 2 else "Does the VAE know when it is unsure"
        out.append(f"{lead}: the {vv['vae']}'s posterior variance predicts a misclassification by the linear probe on "
                   f"its codes with AUROC {_ci(pv)} (0.5 = chance); the {vv['ae']}'s distance to the nearest class "
                   f"centroid, the best a deterministic code offers, {_ci(cd)} on its own probe's errors. Difference "
                   f"{d['value']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]: {verdict}.")
        corr = (m[vv["vae"]].get("correlations") or {}).get("posterior_variance") or {}
        je = corr.get("judge_entropy")
        if je and je.get("value") is not None:
            out.append(f"The {vv['vae']}'s posterior variance and the judge's predictive entropy have Spearman "
                       f"ρ = {_ci(je, '.2f')}; with the reconstruction error ρ = {_ci(corr.get('recon_error'), '.2f')}.")
    return out
