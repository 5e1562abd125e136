"""The answer to the founding question's open comment, "why a unit Gaussian and not a uniform prior?",
written from a `vaelab compare --priors ...` run's numbers (metrics.json alone).

Each VAE-family model with a prior other than the Gaussian is compared with the same model under the
Gaussian prior (``vae-uniform`` against ``vae-gaussian``) on the paired 95 % bootstrap intervals of
metrics.json's "differences": a difference is called only when its interval excludes zero.
"""
from __future__ import annotations

from typing import Any

from vaelab.config import split_model_name
from vaelab.report.differences import called, difference
from vaelab.report.words import doc_words

# (metric key of the intervals, what it is, which direction is better, number format)
ROWS = (("likelihood.iw_nll", "IW-NLL (nats)", "min", ".2f"),
        ("generation.prior.fd", "FD of prior samples", "min", ".2f"),
        ("generation.gmm.fd", "FD of ex-post GMM samples", "min", ".2f"),
        ("generation.prior.coverage_nn", "coverage of prior samples", "max", ".3f"),
        ("latent.knn", "k-NN accuracy of the codes", "max", ".3f"))


def prior_models(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{base model: {prior: model name}} for the models of a --priors comparison that trained."""
    out: dict[str, dict[str, str]] = {}
    for name, m in (doc.get("models") or {}).items():
        base, prior = split_model_name(name)
        if prior and m.get("status") == "ok":
            out.setdefault(base, {})[prior] = name
    return out


def answer(doc: dict[str, Any]) -> list[str]:
    """The "Why a Gaussian prior?" points: one per base model with a Gaussian and at least one other prior."""
    points = []
    for base, by_prior in prior_models(doc).items():
        ref = by_prior.get("gaussian")
        if ref is None or len(by_prior) < 2:
            continue
        parts = []
        for prior, name in by_prior.items():
            if prior == "gaussian":
                continue
            said = []
            for key, what, better, spec in ROWS:
                d = difference(doc, ref, name, key)
                if not d or d.get("low") is None:
                    continue
                verdict = called(d, better)
                word = {"better": "better", "worse": "worse", "similar": "no difference called"}[verdict]
                said.append(f"{what} {word} ({format(d['value'], '+' + spec)}, 95 % interval "
                            f"[{format(d['low'], spec)}, {format(d['high'], spec)}])")
            holes = ((doc["models"][name].get("holes") or {}), (doc["models"][ref].get("holes") or {}))
            if holes[0].get("marginal_kl") is not None and holes[1].get("marginal_kl") is not None:
                said.append(f"KL(q(z) || p(z)) {holes[0]['marginal_kl']:.2f} vs {holes[1]['marginal_kl']:.2f} nats, "
                            f"I(x; z) {holes[0].get('mutual_information') or 0:.2f} vs "
                            f"{holes[1].get('mutual_information') or 0:.2f}")
            au = [(doc["models"][n].get("latent") or {}).get("active_units") for n in (name, ref)]
            if all(isinstance(a, int) for a in au):
                said.append(f"active units {au[0]} vs {au[1]}")
            flags = [f"{n} is collapsed" for n in (name, ref) if doc["models"][n].get("collapsed")]
            if said:
                parts.append(f"{name} against {ref}: " + "; ".join(said) + (f" ({', '.join(flags)}: its numbers "
                                                                           "are those of the decoder's mean)"
                                                                           if flags else ""))
        if parts:
            points.append("Why a Gaussian prior? Measured here, " + ". ".join(parts) + ". Differences are "
                          f"{base} with that prior minus {base} with N(0, I), paired over the same test "
                          f"{doc_words(doc).many}.")
    said = map_answer(doc)
    return points + ([said] if said else [])


def prior_map_records(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{2-D model: its prior_map numbers} (metrics.json's pairs_2d.vae-2d and priors_2d), for models that trained."""
    return {name: rec["prior_map"] for block in ("pairs_2d", "priors_2d") for name, rec in (doc.get(block) or {}).items()
            if isinstance(rec, dict) and rec.get("status") == "ok" and rec.get("prior_map")}


def prior_map_numbers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{prior: the prior_map numbers of its 2-D VAE}."""
    return {num["prior"]: num for num in prior_map_records(doc).values()}


def _map_cell(num: dict[str, Any], key: str, scale: float = 1.0, spec: str = ".2f") -> str:
    return (f"{format(scale * num[key], spec)} [{format(scale * num[key + '_low'], spec)}, "
            f"{format(scale * num[key + '_high'], spec)}]")


def map_answer(doc: dict[str, Any]) -> str | None:
    """The 2-D maps' sentence: how much of each prior the codes fill, against the Gaussian prior's 2-D VAE.

    The 2-D models are trained independently, so a difference is named only where the two 95 % intervals are
    disjoint (the conservative reading)."""
    nums = prior_map_numbers(doc)
    ref = nums.get("gaussian")
    if ref is None or len(nums) < 2:
        return None
    parts = []
    for prior, num in nums.items():
        if prior == "gaussian":
            continue
        calls = []
        for key, what in (("hole_mass", "prior mass in holes"), ("kl", "KL(q(z) || p(z))")):
            if num[key + "_high"] < ref[key + "_low"]:
                calls.append(f"less {what}")
            elif num[key + "_low"] > ref[key + "_high"]:
                calls.append(f"more {what}")
        parts.append(f"{prior}: holes {_map_cell(num, 'hole_mass', 100, '.1f')} %, KL {_map_cell(num, 'kl')} nats"
                     + (f" ({' and '.join(calls)} than N(0, I))" if calls else " (no difference called)"))
    return ("In two dimensions (one 2-D VAE per prior, the figure of aggregate posteriors), the Gaussian prior's "
            f"codes leave {_map_cell(ref, 'hole_mass', 100, '.1f')} % of its mass in holes (q(z) < p(z) / 10) with "
            f"KL(q(z) || p(z)) {_map_cell(ref, 'kl')} nats on the box; " + "; ".join(parts) + ". Intervals: 95 % "
            "bootstrap over the test images; a difference is named only where two intervals are disjoint.")


# -- the prior swap: one Gaussian-prior decoder, five samplers ----------------------------------------------------
SWAP_SAMPLERS = (("prior", "N(0, I), the prior it was trained with"),
                 ("uniform-cdf", "uniform noise through the normal's inverse CDF (N(0, I) again)"),
                 ("uniform-box", "U(−√3, √3)^d: the prior's mean and variance, a uniform's shape"),
                 ("gaussian-fit", "one full-covariance Gaussian fitted to the training codes"),
                 ("gmm", "the ex-post 10-component GMM (Ghosh et al. 2020)"))
SWAP_METRICS = (("fd", "FD ↓", ".2f"), ("precision", "precision ↑", ".3f"), ("recall", "recall ↑", ".3f"),
                ("coverage_nn", "coverage ↑", ".3f"))


def swap_model(doc: dict[str, Any]) -> str | None:
    """The model of a --priors comparison whose decoder was scored with every swap sampler (vae-gaussian), or None."""
    for name, m in (doc.get("models") or {}).items():
        gen = m.get("generation") or {}
        if m.get("status") == "ok" and split_model_name(name)[1] == "gaussian" and all(
                isinstance((gen.get(s) or {}).get("fd"), (int, float)) for s, _ in SWAP_SAMPLERS):
            return name
    return None


def _interval(m: dict[str, Any], sampler: str, metric: str) -> tuple[float, float, float] | None:
    v = ((m.get("generation") or {}).get(sampler) or {}).get(metric)
    iv = (m.get("intervals") or {}).get(f"generation.{sampler}.{metric}") or {}
    if not isinstance(v, (int, float)):
        return None
    return float(v), iv.get("low", float("nan")), iv.get("high", float("nan"))


def swap_rows(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The prior-swap table (one row per sampler decoded by the same decoder) and its sentence, or None."""
    name = swap_model(doc)
    if name is None:
        return None
    m = doc["models"][name]
    rows = []
    for sampler, what in SWAP_SAMPLERS:
        cells = []
        for metric, _, spec in SWAP_METRICS:
            iv = _interval(m, sampler, metric)
            cells.append("n/a" if iv is None else f"{format(iv[0], spec)} [{format(iv[1], spec)}, {format(iv[2], spec)}]")
        rows.append({"sampler": sampler, "what": what, "cells": cells})
    return {"model": name, "metrics": [label for _, label, _ in SWAP_METRICS], "rows": rows,
            "answer": swap_answer(name, m)}


def _disjoint(m: dict[str, Any], a: str, b: str) -> list[str]:
    """The metrics in which sampler a's 95 % interval lies wholly above or below sampler b's (one model)."""
    out = []
    for metric, label, spec in SWAP_METRICS:
        x, y = _interval(m, a, metric), _interval(m, b, metric)
        if x is None or y is None or x[1] != x[1] or y[1] != y[1]:
            continue
        if x[2] < y[1] or x[1] > y[2]:
            word = "lower" if x[2] < y[1] else "higher"
            out.append(f"{label.split()[0]} ({word}: {format(x[0], spec)} [{format(x[1], spec)}, {format(x[2], spec)}] "
                       f"vs {format(y[0], spec)} [{format(y[1], spec)}, {format(y[2], spec)}])")
    return out


def swap_answer(name: str, m: dict[str, Any]) -> str:
    """The prior-swap sentences, written from the numbers: what the warp, the shape and a fit do to one decoder.

    A difference between two samplers is named only where their 95 % intervals are disjoint (each interval is
    its sampler's own, so this is the conservative reading of two intervals)."""
    fd = {s: _interval(m, s, "fd")[0] for s, _ in SWAP_SAMPLERS}
    said = [f"Prior swap on {name}'s decoder (FD in judge features; differences named only where the 95 % "
            f"intervals are disjoint): N(0, I) gives FD {fd['prior']:.2f}."]
    cdf = _disjoint(m, "uniform-cdf", "prior")
    said.append(f"Uniform noise through the normal's inverse CDF ({fd['uniform-cdf']:.2f}) "
                + ("agrees with it on every metric: a uniform prior is the Gaussian one behind a fixed warp, which a "
                   "decoder can absorb." if not cdf else
                   f"differs in {', '.join(cdf)} although both are N(0, I) draws: read these intervals as approximate."))
    box = _disjoint(m, "uniform-box", "prior")
    said.append(f"The uniform box with the prior's mean and variance ({fd['uniform-box']:.2f}) "
                + (f"differs in {', '.join(box)}: at equal moments the shape of the codes still matters to a decoder "
                   "trained on Gaussian ones." if box else
                   "agrees on every metric: at equal mean and variance the shape did not change the samples here."))
    for sampler, what in (("gaussian-fit", "A Gaussian fitted to the codes"), ("gmm", "The ex-post GMM")):
        d = _disjoint(m, sampler, "prior")
        said.append(f"{what} ({fd[sampler]:.2f}) " + (f"differs in {', '.join(d)}." if d else "agrees on every metric."))
    return " ".join(said)


def map_rows(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The 2-D maps' table (one row per prior: KL(q || p) on the box, prior mass in holes) and sentence, or None."""
    nums = prior_map_numbers(doc)
    if len(nums) < 2:
        return None
    rows = [{"prior": p, "kl": _map_cell(n, "kl"), "holes": _map_cell(n, "hole_mass", 100, ".1f") + " %",
             "n": n["n_images"]} for p, n in nums.items()]
    return {"rows": rows, "answer": map_answer(doc)}


def markdown(doc: dict[str, Any]) -> str:
    """The priors sections of a --priors run as Markdown: the answer points, the prior swap, the 2-D maps."""
    lines = [f"- {t}" for t in answer(doc)]
    swap = swap_rows(doc)
    if swap:
        lines += ["", f"**Prior swap: one decoder ({swap['model']}), five samplers** (value [95 % bootstrap interval])",
                  "", "| sampler | codes drawn from | " + " | ".join(swap["metrics"]) + " |",
                  "|---|---|" + "---|" * len(swap["metrics"])]
        lines += [f"| {r['sampler']} | {r['what']} | " + " | ".join(r["cells"]) + " |" for r in swap["rows"]]
        lines += ["", swap["answer"]]
    maps = map_rows(doc)
    if maps:
        lines += ["", "**Latent geometry in 2-D: one VAE per prior** (aggregate posterior over the prior on an "
                  "80 x 80 grid; value [95 % bootstrap interval over the test images])", "",
                  "| prior | KL(q(z) ‖ p(z)) on the box (nats) ↓ | prior mass in holes, q < p/10 ↓ | test images |",
                  "|---|---|---|---|"]
        lines += [f"| {r['prior']} | {r['kl']} | {r['holes']} | {r['n']} |" for r in maps["rows"]]
    return "\n".join(lines) + "\n"
