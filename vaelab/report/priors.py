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
    return points


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


def _versus(m: dict[str, Any], a: str, b: str) -> str:
    """How sampler a's FD interval relates to sampler b's (one model): disjoint (a difference) or overlapping."""
    x, y = _interval(m, a, "fd"), _interval(m, b, "fd")
    them = "N(0, I)'s" if b == "prior" else f"{b}'s"
    if x is None or y is None or x[1] != x[1] or y[1] != y[1]:
        return f"not comparable with {them}"
    if x[2] < y[1]:
        return f"lower than {them} (disjoint 95 % intervals)"
    if x[1] > y[2]:
        return f"higher than {them} (disjoint 95 % intervals)"
    return f"the same as {them} within the intervals (they overlap)"


def swap_answer(name: str, m: dict[str, Any]) -> str:
    """One sentence from the prior-swap numbers: what the prior's shape, warp and fit cost or buy one decoder."""
    fd = {s: _interval(m, s, "fd")[0] for s, _ in SWAP_SAMPLERS}
    return (f"Prior swap on {name}'s decoder (FD of decoded samples, judge features): uniform noise through the "
            f"normal's inverse CDF gives {fd['uniform-cdf']:.2f} against {fd['prior']:.2f} from N(0, I), "
            f"{_versus(m, 'uniform-cdf', 'prior')}: a uniform prior is the Gaussian one behind a fixed warp that a "
            f"decoder can absorb. The uniform box with the prior's mean and variance gives {fd['uniform-box']:.2f}, "
            f"{_versus(m, 'uniform-box', 'prior')}: what counts for this decoder is the shape it was trained on. "
            f"A Gaussian fitted to the codes gives {fd['gaussian-fit']:.2f}, {_versus(m, 'gaussian-fit', 'prior')}, "
            f"and the ex-post GMM {fd['gmm']:.2f}, {_versus(m, 'gmm', 'prior')}: how far the aggregate posterior "
            f"sits from the prior. Each interval is its sampler's own; a difference is named only where they are "
            f"disjoint.")
