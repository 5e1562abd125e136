"""The short answer to "what does a VAE buy me over an AE, on my data?", written from this run's numbers.

``make_answer(doc)`` reads a metrics.json dict and returns
``{"question", "short", "points": [{"topic", "text"}], "baseline", "contender"}``. Nothing here is a
fixed verdict: every sentence compares numbers of the run and names them. A difference is called
("better", "worse") only when the 95 % interval of the paired difference (metrics.json "differences",
``vaelab.metrics.intervals``) excludes 0; otherwise the two count as "about the same" ("no measurable
difference on N test images"), and so does a pair without an interval. A collapsed model (metrics.json
"collapsed") is named as such and never ranked.

The comparison is between the plain ``ae`` and the plain ``vae`` (or the first deterministic /
stochastic model present when those are missing). With exactly two classes (``--classes 3,5``)
the answer speaks to the founding question: how the two clusters differ and what lies between them.
"""
from __future__ import annotations

from typing import Any

from vaelab.config import Words, split_model_name

from vaelab.report.differences import called, difference
from vaelab.report.table import get
from vaelab.report.words import doc_words, reference_name

QUESTION = "What does a VAE buy me over a deterministic autoencoder, on this data?"
FOUNDING = ("With two classes, both an AE and a VAE map the test {images} to two clusters. How are the VAE's "
            "two clusters better than the AE's?")


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


def _pm(diff: dict | None, spec: str = ".2f") -> str:
    """'; difference +x.xx, 95 % interval [lo, hi]' for the text (inside its parentheses), or ''."""
    if not diff or diff.get("low") is None or diff.get("high") is None:
        return ""
    return (f"; difference {format(diff['value'], '+' + spec)}, 95 % interval [{format(diff['low'], spec)}, "
            f"{format(diff['high'], spec)}]")


def _f(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _pick(doc: dict[str, Any], preferred: str, stochastic: bool) -> str | None:
    models = doc.get("models", {})
    for name in (preferred, f"{preferred}-gaussian"):      # a --priors run names its N(0, I) VAE vae-gaussian
        if models.get(name, {}).get("status") == "ok":
            return name
    for n, m in models.items():
        if m.get("status") == "ok" and bool(m.get("is_stochastic")) == stochastic and not n.startswith("cvae") \
                and not m.get("collapsed"):
            return n
    return None


def _collapsed(doc: dict[str, Any]) -> dict[str, str]:
    return {n: m["collapsed"] for n, m in doc.get("models", {}).items() if m.get("status") == "ok" and m.get("collapsed")}


def make_answer(doc: dict[str, Any]) -> dict[str, Any]:
    """The question, a short answer paragraph and the supporting points, each with its numbers inline."""
    ae, vae = _pick(doc, "ae", False), _pick(doc, "vae", True)
    ds = doc.get("dataset", {})
    n_classes = int(ds.get("n_classes") or 0)
    n_test = ds.get("n_test")
    is_two = n_classes == 2
    names = ds.get("class_names") or []
    w = doc_words(doc)                 # images, or the rows of a table
    question = QUESTION + (f" Here: two classes ({' vs '.join(map(str, names))}). "
                           + FOUNDING.replace("{images}", w.many) if is_two else "")
    if ae is None or vae is None:
        missing = "deterministic AE" if ae is None else "VAE that trained without collapse"
        text = f"This run has no {missing}, so it cannot answer the question; see the table."
        from vaelab.report.priors import answer as priors_answer

        points = [{"topic": "priors", "text": t} for t in priors_answer(doc)]
        return {"question": question, "short": text, "points": points, "baseline": ae, "contender": vae}

    def pair(path: tuple[str, ...]) -> tuple[float | None, float | None, float | None, float | None]:
        return _v(doc, ae, path), _v(doc, vae, path), _sd(doc, ae, path), _sd(doc, vae, path)

    def verdict(path: tuple[str, ...], better: str, kind: str = "") -> str | None:
        a, b, _, _ = pair(path)
        if a is None or b is None:
            return None
        return called(difference(doc, ae, vae, ".".join(path)), better, n_test)

    collapsed = _collapsed(doc)

    points: list[dict[str, str]] = []
    short: list[str] = []
    # the text's names: AE, VAE, RAE...; a --priors run's vae-gaussian is "VAE (N(0, I) prior)"
    AE, VAE = (n.upper() if split_model_name(n)[1] is None else
               f"{split_model_name(n)[0].upper()} ({split_model_name(n)[1]} prior)" for n in (ae, vae))

    # -- generation ----------------------------------------------------------------------------
    fd_a, fd_v, _, _ = pair(("generation", "prior", "fd"))
    gfd_a = _v(doc, ae, ("generation", "gmm", "fd"))
    floor = get(doc.get("reference"), ("train_vs_test", "fd"))
    noise = get(doc.get("reference"), ("uniform_noise", "fd"))
    if fd_a is not None and fd_v is not None:
        fds = {n: _v(doc, n, ("generation", "prior", "fd")) for n in doc.get("models", {})}
        fds = {n: v for n, v in fds.items() if v is not None and n not in collapsed} or \
            {n: v for n, v in fds.items() if v is not None}
        best = min(fds, key=fds.get)
        g = verdict(("generation", "prior", "fd"), "min", "fd")
        word = {"better": "better", "worse": "worse", "similar": "about as good"}[g]
        ref = (f"; floor: train vs test {_f(floor)}; {reference_name('uniform_noise', w)} {_f(noise)}"
               if floor is not None else "")
        d_fd = difference(doc, ae, vae, "generation.prior.fd")
        paren = (ref + _pm(d_fd)).lstrip("; ")
        txt = (f"Sampling z ~ N(0, I), the {VAE} generates {word} than the {AE}: FD (judge features) {_f(fd_v)} vs "
               f"{_f(fd_a)}" + (f" ({paren})" if paren else "") + ". Best prior-sample FD of the models that are not collapsed: "
               f"{best} ({_f(fds[best])})"
               + (", which is given the label when it decodes." if best == "cvae" else "."))
        d_gmm = ((doc.get("differences") or {}).get(f"{ae}: gmm - prior") or {}).get("fd")
        gmm_better = called(d_gmm, "min") == "better"      # gmm - prior < 0: the GMM's samples are closer
        if gfd_a is not None:
            if gmm_better:
                txt += (f" The {AE}'s prior samples are worse than its samples from a GMM fitted to its codes "
                        f"(FD {_f(fd_a)} vs {_f(gfd_a)}): N(0, I) lands in holes of its code space. With that ex-post "
                        f"density the {AE} reaches FD {_f(gfd_a)}, "
                        + ("better than" if gfd_a < fd_v else "still worse than") + f" the {VAE}'s prior samples.")
            else:
                txt += (f" The {AE}'s prior samples are not measurably worse than its GMM samples (FD {_f(fd_a)} vs "
                        f"{_f(gfd_a)}{_pm(d_gmm)}): at this size its codes happen to fill N(0, I) about as well.")
            nov = get(doc["models"][ae], ("novelty", "gmm", "features"))
            if isinstance(nov, dict) and nov.get("copy_fraction") is not None:
                copying = nov["copy_fraction"] > 5 * nov["copy_expected"] or (nov.get("ct") is not None
                                                                               and nov["ct"] < -3)
                txt += (f" Memorisation: {100 * nov['copy_fraction']:.1f} % of the {AE}'s GMM samples are closer to a "
                        f"training {w.one} than 99 % of test {w.many} are (fresh draws: "
                        f"{100 * nov['copy_expected']:.0f} %), "
                        f"C_T {_f(nov.get('ct'))}: " + ("its low FD comes with copying." if copying
                                                        else "no sign of copying."))
        points.append({"topic": "generation", "text": txt})
        cmpw = {"better": "better than", "worse": "worse than",
                "similar": "not measurably different from (95 % interval of the difference includes 0)"}[g]
        s = f"Generation: the {VAE}'s prior samples are {cmpw} the {AE}'s (FD {_f(fd_v)} vs {_f(fd_a)})"
        if gfd_a is not None and gmm_better:
            s += f", and the {AE}'s prior samples are worse than its own GMM samples (FD {_f(gfd_a)}): holes"
        short.append(s + ".")

    holes = _holes_text(doc, ae, vae, AE, VAE, w)
    if holes:
        points.append({"topic": "holes", "text": holes[0]})
        short.append(holes[1])

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
            summary = (f"the {VAE}'s clusters are about as separable as the {AE}'s (no measurable difference on "
                       f"{n_test} test {w.many})")
        elif verdicts.count("better") > verdicts.count("worse"):
            summary = f"the {VAE}'s clusters are more separable than the {AE}'s"
        elif verdicts.count("worse") > verdicts.count("better"):
            summary = f"the {VAE}'s clusters are less separable than the {AE}'s"
        else:
            summary = "neither model's clusters are clearly more separable"
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
        txt = (f"Between the clusters: the midpoint between two test codes decodes to {w.many} the judge finds {what} "
               f"recognisable for the {VAE} (confidence {_f(cv, '.3f')} vs {_f(ca, '.3f')}; FD of midpoints "
               f"{_f(mv)} vs {_f(ma)}, {'lower' if gf == 'better' else 'higher' if gf == 'worse' else 'about the same'} for the {VAE}).")
        points.append({"topic": "between", "text": txt})
        if is_two or g != "similar":
            short.append(f"Between the clusters: midpoints decode to {what} recognisable {w.many} for the {VAE} "
                         f"(judge confidence {_f(cv, '.2f')} vs {_f(ca, '.2f')}).")

    # -- reconstruction, likelihood, denoising ---------------------------------------------------
    pa, pv, _, _ = pair(("reconstruction", "mean_z", "psnr"))
    if pa is not None and pv is not None:
        g = verdict(("reconstruction", "mean_z", "psnr"), "max", "psnr")
        word = {"better": "sharper", "worse": "blurrier",
                "similar": f"about as good (no measurable difference on {n_test} test {w.many})"}[g]
        points.append({"topic": "reconstruction",
                       "text": f"Reconstruction: the {VAE}'s is {word} (PSNR {_f(pv)} dB vs {_f(pa)} dB for the {AE}): "
                               "the price of the KL term." if g == "worse" else
                               f"Reconstruction: the {VAE}'s is {word} (PSNR {_f(pv)} dB vs {_f(pa)} dB for the {AE})."})
        short.append(f"Reconstruction: {word} (PSNR {_f(pv)} vs {_f(pa)} dB).")
    ra, rv, _, _ = pair(("reconstruction", "mean_z", "rmse"))
    if w.is_vectors and ra is not None and rv is not None:       # tables: RMSE of standardised features, no PSNR
        g = verdict(("reconstruction", "mean_z", "rmse"), "min")
        word = {"better": "closer", "worse": "further off",
                "similar": f"about as close (no measurable difference on {n_test} test {w.many})"}[g]
        d_r = difference(doc, ae, vae, "reconstruction.mean_z.rmse")
        points.append({"topic": "reconstruction",
                       "text": f"Reconstruction: the {VAE}'s is {word} (RMSE {_f(rv, '.3f')} vs {_f(ra, '.3f')} for the "
                               f"{AE}, standardised units{_pm(d_r, '.3f')})"
                               + (": the price of the KL term." if g == "worse" else ".")})
        short.append(f"Reconstruction: {word} (RMSE {_f(rv, '.3f')} vs {_f(ra, '.3f')}, standardised).")
    lik = get(doc.get("models", {}).get(vae, {}), ("likelihood",))
    if isinstance(lik, dict) and lik.get("iw_nll") is not None:
        kind = lik.get("kind") or "bound"
        points.append({"topic": "likelihood",
                       "text": f"Likelihood: the {VAE} gives an importance-weighted bound of {_f(lik['iw_nll'])} nats per "
                               f"{w.one} (K={lik.get('iw_k')}; {kind}); the {AE} has none (n/a)."})
    den = []
    for kind in ("gaussian", "salt-and-pepper", "masking"):
        vals = {n: _v(doc, n, ("denoising", kind)) for n in doc.get("models", {})}
        vals = {n: v for n, v in vals.items() if v is not None}
        if vals:
            best = max(vals, key=vals.get)
            den.append(f"{kind}: best {best} {_f(vals[best])} dB ({VAE} {_f(vals.get(vae))}, {AE} {_f(vals.get(ae))})")
    if den:
        points.append({"topic": "denoising", "text": "Denoising (PSNR against the clean image): " + "; ".join(den) + "."})
    den = []
    for kind in ("gaussian", "masking") if w.is_vectors else ():   # tables: RMSE against the clean row, no PSNR
        vals = {n: _v(doc, n, ("denoising_rmse", kind)) for n in doc.get("models", {})}
        vals = {n: v for n, v in vals.items() if v is not None}
        if vals:
            best = min(vals, key=vals.get)
            den.append(f"{kind}: best {best} {_f(vals[best], '.3f')} ({VAE} {_f(vals.get(vae), '.3f')}, {AE} "
                       f"{_f(vals.get(ae), '.3f')})")
    if den:
        points.append({"topic": "denoising", "text": "Denoising (RMSE against the clean row, standardised units; "
                                                     "lower is better): " + "; ".join(den) + "."})

    if collapsed:
        txt = "Collapsed (not ranked; generation numbers greyed): " + "; ".join(f"{n}: {r}" for n, r in collapsed.items())
        points.insert(0, {"topic": "collapse", "text": txt + "."})
        short.append("Collapsed, not ranked: " + ", ".join(collapsed) + ".")

    if doc.get("judge") is None:
        txt = ("The data have no labels, so there is no judge classifier: sample quality, interpolation and cluster "
               "scores are n/a here; only reconstruction, likelihood and denoising are compared.")
        points.insert(0, {"topic": "judge", "text": txt})
        short.append(txt)

    if doc.get("test_time"):
        from vaelab.report.test_time import answer as test_time_answer

        tt = test_time_answer(doc["test_time"], w)
        points += [{"topic": "test time", "text": t} for t in tt]
        short += tt[:1]

    from vaelab.report.priors import answer as priors_answer

    pr = priors_answer(doc)
    points += [{"topic": "priors", "text": t} for t in pr]
    short += pr[:1]

    intro = f"On {ds.get('name')}" + (f" ({' vs '.join(map(str, names))})" if is_two else "")
    text = (f"{intro}, {VAE} vs {AE}. " + " ".join(short)) if short else f"{intro}: no comparable numbers (see the table)."
    return {"question": question, "short": text, "points": points, "baseline": ae, "contender": vae}



def _holes_text(doc: dict[str, Any], ae: str, vae: str, AE: str, VAE: str, w: Words) -> tuple[str, str] | None:
    """(point, short sentence) on holes, from the marginal KL, the prior's mass in holes and realism."""
    hv, ha = (get(doc["models"].get(n, {}), ("holes",)) or {} for n in (vae, ae))
    if hv.get("hole_mass") is None or ha.get("hole_mass") is None:
        return None
    rv = get(doc["models"][vae], ("generation", "prior", "realism"))
    ra = get(doc["models"][ae], ("generation", "prior", "realism"))
    r_test = get(doc.get("reference"), ("train_vs_test", "realism"))
    r_noise = get(doc.get("reference"), ("uniform_noise", "realism"))
    thr = hv.get("hole_ratio") or 0.1
    which = "more" if ha["hole_mass"] > hv["hole_mass"] + 2 * ((ha.get("hole_mass_se") or 0) + (hv.get("hole_mass_se")
                                                                                               or 0)) else None
    txt = (f"Holes: {100 * hv['hole_mass']:.0f} % of the prior's mass lies where the {VAE}'s aggregate posterior q(z) is "
           f"below {thr:g} p(z), against {100 * ha['hole_mass']:.0f} % for the {AE}'s codes (marginal KL(q(z) ‖ p(z)) "
           f"{_f(hv.get('marginal_kl'))} vs {_f(ha.get('marginal_kl'))} nats; the {VAE}'s KL term splits into "
           f"I(x; z) {_f(hv.get('mutual_information'))} + marginal KL {_f(hv.get('marginal_kl'))} nats).")
    if rv is not None and ra is not None:
        txt += (f" Decoded prior samples inside the real manifold (realism score ≥ 1): {100 * rv:.0f} % for the {VAE}, "
                f"{100 * ra:.0f} % for the {AE}" + (f" (training {w.many}: {100 * r_test:.0f} %, "
                                                     f"{reference_name('uniform_noise', w)}: {100 * r_noise:.0f} %)"
                                                     if r_test is not None and r_noise is not None else "")
                + ". Judge confidence is not used here: noise scores high on it.")
    pairs = doc.get("pairs_2d") or {}
    pv, pa = get(pairs, ("vae-2d", "holes", "hole_mass")), get(pairs, ("ae-2d", "holes", "hole_mass"))
    if pv is not None and pa is not None:
        txt += (f" In the 2-D pair (the holes map): {100 * pv:.0f} % of the prior's mass in holes for the 2-D VAE, "
                f"{100 * pa:.0f} % for the 2-D AE.")
    if which:
        short = (f"Holes: N(0, I) puts {100 * ha['hole_mass']:.0f} % of its mass where the {AE}'s codes are sparse "
                 f"(q(z) below {thr:g} p(z)), {100 * hv['hole_mass']:.0f} % for the {VAE}.")
    else:
        short = (f"Holes: the {AE}'s codes leave no more of the prior uncovered than the {VAE}'s "
                 f"({100 * ha['hole_mass']:.0f} % vs {100 * hv['hole_mass']:.0f} % of its mass where q(z) is below "
                 f"{thr:g} p(z)).")
    return txt, short
