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
