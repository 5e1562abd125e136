"""The short answer to "what does a VAE buy me over an AE, on my data?", written from this run's numbers.

``make_answer(doc)`` reads a metrics.json dict and returns
``{"question", "short", "points": [{"topic", "text"}], "baseline", "contender"}``. Nothing here is a
fixed verdict: every sentence compares numbers of the run and names them. Two numbers count as
"about the same" when they differ by less than the tolerance of their kind (``TOL``) or, with
several seeds, by less than twice the standard error of their difference.

The comparison is between the plain ``ae`` and the plain ``vae`` (or the first deterministic /
stochastic model present when those are missing). With exactly two classes (``--classes 3,5``)
the answer speaks to the founding question: how the two clusters differ and what lies between them.
"""
from __future__ import annotations

import math
from typing import Any

from vaelab.report.table import get

QUESTION = "What does a VAE buy me over a deterministic autoencoder, on this data?"
FOUNDING = ("With two classes, both an AE and a VAE map the test images to two clusters. How are the VAE's "
            "two clusters better than the AE's?")
# (absolute, relative) tolerance under which two single-seed numbers count as "about the same"
TOL = {"acc": (0.01, 0.0), "score": (0.02, 0.0), "fd": (0.0, 0.10), "psnr": (0.25, 0.0), "conf": (0.02, 0.0)}


def _v(doc: dict[str, Any], model: str, path: tuple[str, ...]) -> float | None:
    m = doc.get("models", {}).get(model)
    if not m or m.get("status") != "ok":
        return None
    v = get(m, path)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _sd(doc: dict[str, Any], model: str, path: tuple[str, ...]) -> float | None:
    m = doc.get("models", {}).get(model) or {}
    v = get(m.get("sd"), path) if m.get("sd") else None
    return float(v) if isinstance(v, (int, float)) else None


def compare_values(a: float, b: float, better: str, kind: str, sd_a: float | None = None, sd_b: float | None = None,
                   n: int = 1, n_test: int | None = None) -> str:
    """'better' / 'worse' / 'similar' for b relative to a ('min' or 'max' is better).

    With several seeds (n > 1 and both sds): similar when |b - a| <= 2 standard errors of the difference.
    Otherwise the kind's tolerance; accuracies on ``n_test`` images also get two binomial standard errors of
    the difference (72 test images cannot tell 0.97 from 0.99).
    """
    d = b - a
    if sd_a is not None and sd_b is not None and n > 1:
        tol = 2 * math.sqrt((sd_a ** 2 + sd_b ** 2) / n)
    else:
        t_abs, t_rel = TOL[kind]
        tol = max(t_abs, t_rel * max(abs(a), abs(b)))
        if kind == "acc" and n_test:
            pa, pb = min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0)
            tol = max(tol, 2 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n_test))
    if abs(d) <= tol:
        return "similar"
    good = d < 0 if better == "min" else d > 0
    return "better" if good else "worse"


def _f(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _pick(doc: dict[str, Any], preferred: str, stochastic: bool) -> str | None:
    models = doc.get("models", {})
    if models.get(preferred, {}).get("status") == "ok":
        return preferred
    for n, m in models.items():
        if m.get("status") == "ok" and bool(m.get("is_stochastic")) == stochastic and not n.startswith("cvae"):
            return n
    return None


def make_answer(doc: dict[str, Any]) -> dict[str, Any]:
    """The question, a short answer paragraph and the supporting points, each with its numbers inline."""
    ae, vae = _pick(doc, "ae", False), _pick(doc, "vae", True)
    ds = doc.get("dataset", {})
    n_classes = int(ds.get("n_classes") or 0)
    n_seeds = len(doc.get("config", {}).get("seeds", [0]))
    n_test = ds.get("n_test")
    is_two = n_classes == 2
    names = ds.get("class_names") or []
    question = QUESTION + (f" Here: two classes ({' vs '.join(map(str, names))}). " + FOUNDING if is_two else "")
    if ae is None or vae is None:
        missing = "a deterministic AE" if ae is None else "a VAE"
        text = f"This run has no successfully trained {missing}, so it cannot answer the question; see the table."
        return {"question": question, "short": text, "points": [], "baseline": ae, "contender": vae}

    def pair(path: tuple[str, ...]) -> tuple[float | None, float | None, float | None, float | None]:
        return _v(doc, ae, path), _v(doc, vae, path), _sd(doc, ae, path), _sd(doc, vae, path)

    def verdict(path: tuple[str, ...], better: str, kind: str) -> str | None:
        a, b, sa, sb = pair(path)
        if a is None or b is None:
            return None
        return compare_values(a, b, better, kind, sa, sb, n_seeds, n_test)

    points: list[dict[str, str]] = []
    short: list[str] = []
    AE, VAE = ae.upper(), vae.upper()

    # -- generation ----------------------------------------------------------------------------
    fd_a, fd_v, _, _ = pair(("generation", "prior", "fd"))
    gfd_a = _v(doc, ae, ("generation", "gmm", "fd"))
    floor = get(doc.get("reference"), ("train_vs_test", "fd"))
    noise = get(doc.get("reference"), ("uniform_noise", "fd"))
    if fd_a is not None and fd_v is not None:
        fds = {n: _v(doc, n, ("generation", "prior", "fd")) for n in doc.get("models", {})}
        fds = {n: v for n, v in fds.items() if v is not None}
        best = min(fds, key=fds.get)
        g = verdict(("generation", "prior", "fd"), "min", "fd")
        word = {"better": "better", "worse": "worse", "similar": "about as good"}[g]
        ref = (f" (floor: train vs test {_f(floor)}; uniform noise {_f(noise)})" if floor is not None else "")
        txt = (f"Sampling z ~ N(0, I), the {VAE} generates {word} than the {AE}: FD (judge features) {_f(fd_v)} vs "
               f"{_f(fd_a)}{ref}. Best prior-sample FD of all models: {best} ({_f(fds[best])})"
               + (", which is given the label when it decodes." if best == "cvae" else "."))
        if gfd_a is not None:
            if compare_values(fd_a, gfd_a, "min", "fd") == "better":
                txt += (f" The {AE}'s prior samples are worse than its samples from a GMM fitted to its codes "
                        f"(FD {_f(fd_a)} vs {_f(gfd_a)}): N(0, I) lands in holes of its code space. With that ex-post "
                        f"density the {AE} reaches FD {_f(gfd_a)}, "
                        + ("better than" if gfd_a < fd_v else "still worse than") + f" the {VAE}'s prior samples.")
            else:
                txt += (f" The {AE}'s prior samples are not worse than its GMM samples (FD {_f(fd_a)} vs "
                        f"{_f(gfd_a)}): at this size its codes happen to fill N(0, I) about as well.")
        points.append({"topic": "generation", "text": txt})
        cmpw = {"better": "better than", "worse": "worse than", "similar": "about as good as"}[g]
        s = f"Generation: the {VAE}'s prior samples are {cmpw} the {AE}'s (FD {_f(fd_v)} vs {_f(fd_a)})"
        if gfd_a is not None and compare_values(fd_a, gfd_a, "min", "fd") == "better":
            s += f", and the {AE}'s prior samples are worse than its own GMM samples (FD {_f(gfd_a)}): holes"
        short.append(s + ".")

    pairs = doc.get("pairs_2d") or {}
    ga, gv = get(pairs, ("ae-2d", "grid_prior", "frac_confident")), get(pairs, ("vae-2d", "grid_prior", "frac_confident"))
    if ga is not None and gv is not None:
        thr = get(pairs, ("vae-2d", "grid_prior", "threshold")) or 0.9
        gc = get(pairs, ("ae-2d", "grid_codes", "frac_confident"))
        txt = (f"Holes in 2-D: decoding a grid through the prior's quantiles, the judge is confident (≥ {thr:g}) on "
               f"{100 * gv:.0f} % of the grid for the 2-D VAE and on {100 * ga:.0f} % for the 2-D AE"
               + (f" ({100 * gc:.0f} % over the AE's own code range)" if gc is not None else "") + ".")
        points.append({"topic": "holes", "text": txt})

    # -- clusters ------------------------------------------------------------------------------
    parts, verdicts = [], []
    for label, path, kind in (("linear probe", ("latent", "linear_probe"), "acc"), ("k-NN", ("latent", "knn"), "acc"),
                              ("k-means NMI", ("latent", "kmeans_nmi"), "score"),
                              ("silhouette", ("latent", "silhouette"), "score")):
        a, b, _, _ = pair(path)
        if a is None or b is None:
            continue
        parts.append(f"{label} {_f(b, '.3f')} vs {_f(a, '.3f')}")
        verdicts.append(verdict(path, "max", kind))
    if parts:
        if all(v == "similar" for v in verdicts):
            summary = f"the {VAE}'s clusters are about as separable as the {AE}'s"
        elif verdicts.count("better") > verdicts.count("worse"):
            summary = f"the {VAE}'s clusters are more separable than the {AE}'s"
        elif verdicts.count("worse") > verdicts.count("better"):
            summary = f"the {VAE}'s clusters are less separable than the {AE}'s"
        else:
            summary = f"neither model's clusters are clearly more separable"
        lead = ("The two clusters" if is_two else "Clusters (labels used only to score)")
        points.append({"topic": "clusters", "text": f"{lead}: {summary} ({VAE} vs {AE}: {'; '.join(parts)})."})
        short.append(("The two clusters: " if is_two else "Clusters: ") + summary + f" ({'; '.join(parts[:3])}).")

    # -- between the clusters ------------------------------------------------------------------
    ca, cv, _, _ = pair(("interpolation", "confidence_midpoints"))
    ma, mv, _, _ = pair(("interpolation", "fd_midpoints"))
    if ca is not None and cv is not None:
        g = verdict(("interpolation", "confidence_midpoints"), "max", "conf")
        gf = verdict(("interpolation", "fd_midpoints"), "min", "fd")
        what = {"better": "more", "worse": "less", "similar": "about as"}[g]
        txt = (f"Between the clusters: the midpoint between two test codes decodes to images the judge finds {what} "
               f"recognisable for the {VAE} (confidence {_f(cv, '.3f')} vs {_f(ca, '.3f')}; FD of midpoints "
               f"{_f(mv)} vs {_f(ma)}, {'lower' if gf == 'better' else 'higher' if gf == 'worse' else 'about the same'} for the {VAE}).")
        points.append({"topic": "between", "text": txt})
        if is_two or g != "similar":
            short.append(f"Between the clusters: midpoints decode to {what} recognisable images for the {VAE} "
                         f"(judge confidence {_f(cv, '.2f')} vs {_f(ca, '.2f')}).")

    # -- reconstruction, likelihood, denoising ---------------------------------------------------
    pa, pv, _, _ = pair(("reconstruction", "mean_z", "psnr"))
    if pa is not None and pv is not None:
        g = verdict(("reconstruction", "mean_z", "psnr"), "max", "psnr")
        word = {"better": "sharper", "worse": "blurrier", "similar": "about as good"}[g]
        points.append({"topic": "reconstruction",
                       "text": f"Reconstruction: the {VAE}'s is {word} (PSNR {_f(pv)} dB vs {_f(pa)} dB for the {AE}): "
                               "the price of the KL term." if g == "worse" else
                               f"Reconstruction: the {VAE}'s is {word} (PSNR {_f(pv)} dB vs {_f(pa)} dB for the {AE})."})
        short.append(f"Reconstruction: {word} (PSNR {_f(pv)} vs {_f(pa)} dB).")
    lik = get(doc.get("models", {}).get(vae, {}), ("likelihood",))
    if isinstance(lik, dict) and lik.get("iw_nll") is not None:
        kind = lik.get("kind") or "bound"
        points.append({"topic": "likelihood",
                       "text": f"Likelihood: the {VAE} gives an importance-weighted bound of {_f(lik['iw_nll'])} nats per "
                               f"image (K={lik.get('iw_k')}; {kind}); the {AE} has none (n/a)."})
    den = []
    for kind in ("gaussian", "salt-and-pepper", "masking"):
        vals = {n: _v(doc, n, ("denoising", kind)) for n in doc.get("models", {})}
        vals = {n: v for n, v in vals.items() if v is not None}
        if vals:
            best = max(vals, key=vals.get)
            den.append(f"{kind}: best {best} {_f(vals[best])} dB ({VAE} {_f(vals.get(vae))}, {AE} {_f(vals.get(ae))})")
    if den:
        points.append({"topic": "denoising", "text": "Denoising (PSNR against the clean image): " + "; ".join(den) + "."})

    if doc.get("judge") is None:
        txt = ("The data have no labels, so there is no judge classifier: sample quality, interpolation and cluster "
               "scores are n/a here; only reconstruction, likelihood and denoising are compared.")
        points.insert(0, {"topic": "judge", "text": txt})
        short.append(txt)

    if doc.get("test_time"):
        from vaelab.report.test_time import answer as test_time_answer

        tt = test_time_answer(doc["test_time"])
        points += [{"topic": "test time", "text": t} for t in tt]
        short += tt[:1]

    intro = f"On {ds.get('name')}" + (f" ({' vs '.join(map(str, names))})" if is_two else "")
    text = (f"{intro}, {VAE} vs {AE}. " + " ".join(short)) if short else f"{intro}: no comparable numbers (see the table)."
    return {"question": question, "short": text, "points": points, "baseline": ae, "contender": vae}

