"""The self-contained HTML report, rendered only from a run folder's metrics.json and figures/*.png.

``render(doc, fig_dir) -> str`` fills one jinja2 template (autoescaped) with the section of the run's
domain (images, molecules); figures are embedded as
base64 data URIs and a Content-Security-Policy forbids every network request, so the page reads
the same offline. The short answer is recomputed from the numbers (``vaelab.report.answer``), so a
re-render (`vaelab report RUN`) always agrees with metrics.json.
"""
from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

from vaelab.config import flat_config, options_summary
from vaelab.errors import ConfigError, OutputError
from vaelab.io import atomic_write_text
from vaelab.report.answer import make_answer
from vaelab.report.priors import map_rows, swap_rows
from vaelab.report.table import VECTORS_NOTE, collapse_notes, get, header, table_rows
from vaelab.report.words import caption, doc_words, reference_name, space

SCHEMA_VERSION = 1

# One page (head, style, Content-Security-Policy) and one section per domain: ``render`` picks the section by
# metrics.json's "kind" ("images" unless it says "molecules"). A new part of a domain's report is a block in its
# section here plus the context it needs in that domain's ``*_context`` function (``CONTEXTS``).
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
 body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
 h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
 .answer { background: #f3f7ff; border-left: 4px solid #3a6ee8; padding: .8em 1em; }
 table { border-collapse: collapse; font-size: .9em; margin: .5em 0; }
 th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
 td.best { font-weight: bold; background: #e3f6e3; }
 td.grey { color: #999; }
 tr.section td { background: #f6f6f6; font-weight: bold; text-align: left; }
 td.ref { color: #777; text-align: left; }
 table.kv td { text-align: left; } table.kv td:first-child { color: #555; white-space: nowrap; }
 figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
 figcaption { color: #444; font-size: .95em; } .failed { color: #b00; } .muted { color: #777; font-size: .9em; }
</style>
</head>
<body>
{% include section %}
</body>
</html>
"""

IMAGES_SECTION = """<h1>What does a VAE buy over an autoencoder? — {{ ds.name }}</h1>
<p class="muted">vaelab {{ versions.vaelab }} · run created {{ doc.created }} · schema version {{ doc.schema_version }}</p>

<h2 id="question">The question</h2>
<p>{{ answer.question }}</p>
<div class="answer" id="answer"><p><strong>This run's answer.</strong> {{ answer.short }}</p>
<ul>{% for p in answer.points %}<li>{{ p.text }}</li>{% endfor %}</ul></div>

<h2 id="metrics">Headline metrics</h2>
<p class="muted">Test split. ↓ lower is better, ↑ higher is better; the best value of each row is marked. ± is the half-width of a 95 % bootstrap interval (over test {{ w.many }}, or over samples and reference for sample metrics{% if n_seeds > 1 %}, combined with the spread over {{ n_seeds }} seeds{% endif %}). Grey cells belong to a collapsed model and are not ranked. n/a: does not apply (an AE has no likelihood). FD is the Fréchet distance in the judge classifier's features, not FID.</p>
<table id="metrics-table">
<tr><th>metric</th>{% for n in headers %}<th>{{ n }}</th>{% endfor %}<th>reference</th></tr>
{% for r in rows %}{% if loop.first or r.section != rows[loop.index0 - 1].section %}<tr class="section"><td colspan="{{ names|length + 2 }}">{{ r.section }}</td></tr>{% endif %}
<tr><td>{{ r.label }}{% if r.better == 'min' %} ↓{% elif r.better == 'max' %} ↑{% endif %}</td>{% for c in r.cells %}<td class="{{ 'best' if c.is_best else 'grey' if c.greyed else '' }}"{% if c.greyed %} title="{{ c.greyed }}"{% endif %}>{{ c.text }}{% if c.is_best %} ★{% endif %}</td>{% endfor %}<td class="ref">{{ r.reference }}</td></tr>
{% endfor %}
</table>
{% if reference %}<p class="muted">Reference rows (same sample count and metrics): {% for k, r in reference.items() %}{{ reference_name(k, w) }}: FD {{ fmt(r.fd) }}, precision {{ fmt(r.precision, '.3f') }}, recall {{ fmt(r.recall, '.3f') }}{% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}
{% if likelihood_notes %}<p class="muted">Likelihood: {{ likelihood_notes|join(' ') }}</p>{% endif %}
{% if vectors_note %}<p class="muted" id="vectors-note">{{ vectors_note }}</p>{% endif %}
{% for line in collapse_notes %}<p class="failed">{{ line }}</p>{% endfor %}
{% for n, m in failed.items() %}<p class="failed">{{ n }} failed: {{ m.error }}</p>{% endfor %}

{% if test_time %}<h2 id="test-time">At test time: anomalies and uncertainty for new {{ w.many }}</h2>
<p class="muted">Every score is higher for more anomalous {{ w.many }}; AUROC/AUPRC ↑, FPR at 95 % TPR ↓, each with its 95 % bootstrap interval (stratified, paired across scores, {{ test_time.block.n_boot }} resamples); {{ test_time.block.n_inliers }} in-distribution test {{ w.many }}; IW bound and −ELBO with K = {{ test_time.block.k }}. ★: the best AUROC of the set.</p>
{% for set_name, rs in test_time.rows.detection.items() %}<h3>{{ set_name }} ({{ test_time.block.sets[set_name].n }} {{ w.many }}: {{ test_time.block.sets[set_name].source }})</h3>
<table class="test-time"><tr><th>model</th><th>score</th><th>AUROC ↑</th><th>AUPRC ↑</th><th>FPR at 95 % TPR ↓</th></tr>
{% for r in rs %}<tr><td>{{ r.model }}</td><td>{{ r.label }}</td><td class="{{ 'best' if r.is_best else '' }}">{{ r.auroc }}{% if r.is_best %} ★{% endif %}</td><td>{{ r.auprc }}</td><td>{{ r.fpr95 }}</td></tr>
{% endfor %}</table>{% endfor %}
{% if test_time.rows.uncertainty %}<h3>Does the model know when it is unsure? (inlier test split)</h3>
<table class="test-time"><tr><th>model</th><th>uncertainty</th><th>AUROC for a linear-probe error ↑</th><th>Spearman ρ with the judge's entropy</th><th>ρ with the reconstruction error</th><th>probe error rate</th></tr>
{% for r in test_time.rows.uncertainty %}<tr><td>{{ r.model }}</td><td>{{ r.measure }}</td><td>{{ r.probe_error }}</td><td>{{ r.entropy }}</td><td>{{ r.recon }}</td><td>{{ r.error_rate }}</td></tr>
{% endfor %}</table>{% endif %}
<ul>{% for t in test_time.answer %}<li>{{ t }}</li>{% endfor %}</ul>
{% for n in test_time.block.notes %}<p class="muted">{{ n }}</p>{% endfor %}
{% endif %}

{% if prior_swap %}<h2 id="prior-swap">Prior swap: one decoder ({{ prior_swap.model }}), five samplers</h2>
<p class="muted">The same trained decoder decodes codes drawn from each sampler; value [95 % bootstrap interval] of the generation metrics in the judge's features (the sampler's own interval).</p>
<table class="prior-swap"><tr><th>sampler</th><th>codes drawn from</th>{% for h in prior_swap.metrics %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in prior_swap.rows %}<tr><td>{{ r.sampler }}</td><td>{{ r.what }}</td>{% for c in r.cells %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>{{ prior_swap.answer }}</p>
{% endif %}
{% if prior_maps %}<h2 id="prior-maps">Latent geometry in 2-D: one VAE per prior</h2>
<p class="muted">A VAE with a 2-D latent per prior; its aggregate posterior q(z) (the mixture of the test posteriors) against its prior on an 80 x 80 grid over the prior's box (figure "Aggregate posterior over the prior"); value [95 % bootstrap interval over the test images].</p>
<table class="prior-maps"><tr><th>prior</th><th>KL(q(z) ‖ p(z)) on the box (nats) ↓</th><th>prior mass in holes, q &lt; p/10 ↓</th><th>test images</th></tr>
{% for r in prior_maps.rows %}<tr><td>{{ r.prior }}</td><td>{{ r.kl }}</td><td>{{ r.holes }}</td><td>{{ r.n }}</td></tr>
{% endfor %}</table>
{% if prior_maps.answer %}<p>{{ prior_maps.answer }}</p>{% endif %}
{% endif %}

<h2 id="figures">Figures</h2>
{% for f in figures %}<figure id="fig-{{ f.file[:-4] }}"><h3>{{ f.title }}</h3>
{% if f.uri %}<img src="{{ f.uri }}" alt="{{ f.title }}">{% else %}<p class="failed">figure {{ f.file }} is missing from figures/.</p>{% endif %}
<figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}

<h2 id="protocol">Protocol</h2>
<table class="kv">
{% for k, v in protocol %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
</table>
<h3>Models</h3>
<table>
<tr><th>model</th><th>status</th><th>parameters</th><th>epochs run</th><th>best epoch</th><th>training (s)</th><th>evaluation (s)</th></tr>
{% for n, m in all_models.items() %}<tr><td>{{ n }}</td><td>{{ m.status }}</td><td>{{ fmt(g(m, ('train', 'n_params')), ',.0f') }}</td><td>{{ fmt(g(m, ('train', 'epochs_done')), '.0f') }}</td><td>{{ fmt(g(m, ('train', 'best_epoch')), '.0f') }}</td><td>{{ fmt(g(m, ('train', 'seconds')), '.1f') }}</td><td>{{ fmt(g(m, ('eval_seconds',)), '.1f') }}</td></tr>
{% endfor %}
</table>

<h2 id="versions">Versions</h2>
<table class="kv">{% for k, v in versions.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<p class="muted">Every number on this page is in metrics.json beside it; `vaelab report RUN` re-renders this page from it.</p>
"""

MOLECULES_SECTION = """{% macro table(header, rows) %}<table>
<tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr>{% for cell in r %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endmacro %}<h1>vaelab: molecule AE vs VAE on {{ ds.name }}</h1>
<p>{{ ds.n_train }} training / {{ ds.n_val }} validation / {{ ds.n_test }} test molecules ({{ ds.tokenizer }} tokens, vocabulary {{ ds.n_vocab }}, max length {{ ds.max_len }}); skipped: {{ ds.skipped }}. Training: {{ tr.epochs }} epochs, batch {{ tr.batch_size }}, AdamW lr {{ tr.lr }}, KL warm-up {{ tr.kl_warmup_steps }} steps, seed {{ tr.seed }}; latent {{ c.latent_dim }}, GRU {{ c.hidden }}. Generation: {{ c.n_samples }} samples per model and sampler at temperature {{ c.temperature }}. References: {{ doc.reference.note }}. Total time {{ total_s }} s.</p>
{% for n, m in failed.items() %}<p class="failed">{{ n }} failed: {{ m.error }}</p>{% endfor %}
<h2 id="moses">MOSES metrics of generated molecules</h2>
<p>The published row used 30,000 samples of a VAE trained on all 1.58M MOSES molecules; FCD grows on small samples, so compare FCD only at equal sample sizes.</p>
{{ table(*moses) }}
<h2 id="latent">Reconstruction, latent structure and smoothness</h2>
<p>Smoothness: around test molecules, greedy decodes of z + σ·ε: <i>valid</i> fraction, <i>same</i> = fraction decoding to the centre molecule, <i>tanimoto</i> = mean similarity to it.</p>
{{ table(*latent) }}
{% if design %}<h2 id="design">Design: raising {{ doc.design.property }} in the latent space</h2>
<p>From each of {{ doc.design.starts|length }} test molecules, {{ doc.design.steps }} steps of gradient ascent on the joint property head and of Bayesian optimisation (GP, expected improvement) over z; every decoded candidate scored by RDKit's true property. Mean over start molecules [95 % interval].{% if doc.design.answer %} {{ doc.design.answer }}{% endif %}</p>
{{ table(*design) }}{% endif %}
<h2 id="figures">Figures</h2>
{% for f in figures %}{% if f.uri %}<figure id="fig-{{ f.file[:-4] }}"><h3>{{ f.title }}</h3><img src="{{ f.uri }}" alt="{{ f.title }}"></figure>
{% endif %}{% endfor %}
"""
TEMPLATES = {"page.html": PAGE, "images.html": IMAGES_SECTION, "molecules.html": MOLECULES_SECTION}


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return format(v, spec)


def _protocol(doc: dict[str, Any]) -> list[tuple[str, str]]:
    ds, c = doc.get("dataset", {}), flat_config(doc.get("config"))
    w = doc_words(doc)
    judge = doc.get("judge") or {}
    shape = ds.get("shape") or []
    what = (f"rows of {shape[-1]} standardised features (the training split's mean and std)" if w.is_vectors and shape
            else f"images {'x'.join(map(str, shape))} in [0, 1]")
    classes = ", ".join(map(str, ds.get("class_names") or [])) or "none (unlabelled)"
    seeds = c.get("seeds") or [c.get("seed", 0)]
    rows = [
        ("data", f"{ds.get('name')} from {ds.get('source')}; {what}; fingerprint {ds.get('fingerprint')}"),
        ("classes", f"{ds.get('n_classes')}: {classes}" + (f" (kept labels {c.get('classes')})" if c.get("classes") else "")),
        ("splits", f"train {ds.get('n_train')}, validation {ds.get('n_val')}, test {ds.get('n_test')} "
                   f"(split seed {c.get('split_seed')}, validation fraction {c.get('val_fraction')}); every metric on the test split"),
        ("models", ", ".join(doc.get("models", {}))),
        ("shared architecture", f"{c.get('backbone')} backbone, hidden {c.get('hidden')}"
                                + (f", channels {c.get('channels')}" if c.get("backbone") == "conv" else "")
                                + f", latent size {c.get('n_latent')}, {c.get('likelihood')} likelihood"),
        ("model-specific", "beta-vae β = " + _fmt(c.get("beta") or 4.0, "g")
                           + (" with " + _fmt(0.5 if c.get("free_bits") is None else c.get("free_bits"), "g")
                              + " free nats per latent unit (Kingma et al. 2016; β = 4 alone leaves 0 active units on "
                              "digits: its code collapses)" if (c.get("free_bits") is None or c.get("free_bits"))
                              else "") + "; iwae K = " + _fmt(c.get("k") or 5, "g")
                           + "; dae corruption " + str(c.get("corruption") or "gaussian:0.3")
                           + "; cvae conditions encoder and decoder on the label"),
        ("optimiser", f"AdamW, lr {c.get('lr')}, weight decay {c.get('weight_decay')}, batch {c.get('batch_size')}, "
                      f"{c.get('epochs')} epochs, best validation epoch kept"
                      + (f", KL warm-up {c.get('kl_warmup_steps')} steps" if c.get("kl_schedule") == "linear" else "")),
        ("seeds", f"{len(seeds)}: {', '.join(map(str, seeds))}" + (" (mean ± sd over seeds)" if len(seeds) > 1 else "")),
        ("generation", f"{c.get('n_samples')} samples per model and sampler (prior N(0, I); GMM with 10 components "
                       f"fitted to the training codes), decoded to the likelihood's mean"),
        ("uncertainty", f"95 % percentile-bootstrap intervals, seeded and paired across models (the same resampled test "
                        f"{w.many} for every model, so each difference has its own interval): B = 1000 over test {w.many} "
                        f"for per-{w.one} metrics; FD B = 50 and the k-NN metrics B = 200 over samples and reference; "
                        "a difference is called only when its interval excludes 0"),
        ("novelty", f"per sampler, each sample's distance to its nearest training {w.one} against the test {w.many}' "
                    f"(judge features and {space(w)}); near-copies = samples closer than the test {w.many}' 1st "
                    "percentile; C_T of Meehan et al. 2020 on 10 k-means cells of the training features"),
        ("holes", "on the test codes: E KL(q(z|x) ‖ p) = I(x; z) + KL(q(z) ‖ p(z)) (Hoffman & Johnson 2016; q(z) the "
                  "mixture of the posteriors, a Scott-rule KDE of the codes for AEs); prior mass where q(z) < 0.1 p(z) "
                  "(2000 prior draws); realism score ≥ 1 (Kynkäänniemi et al. 2019) of decoded prior samples"),
        ("likelihood", f"importance-weighted bound with K = {c.get('iw_k')} samples per test {w.one}; −ELBO with one "
                       "sample"),
        ("interpolation", f"{c.get('n_interp_pairs')} random pairs of test codes, decoded at the midpoint"),
        ("feature extractor", f"the judge: a small {judge.get('arch') or ''} classifier trained on the training split "
                              f"(test accuracy {_fmt(judge.get('test_accuracy'), '.3f')}); FD, precision/recall (k=3) "
                              "in its penultimate features, confidence = its mean max softmax" if judge else
                              "none (the data have no labels): judge-based metrics are n/a"),
        ("2-D pair", "an AE and a VAE with a 2-D latent, trained under the same protocol, for the "
                     + ("latent scatter and the q(z)-against-p(z) holes figure" if w.is_vectors else
                        "manifold grid and the holes map") if doc.get("pairs_2d") else "not trained (--no-pair)"),
        ("options", "every option that differs from its default: "
                    + options_summary(doc.get("config")) if isinstance((doc.get("config") or {}).get("model"), dict)
                    else "not recorded (a run of an older vaelab)"),
        ("device", f"{c.get('device')}, {c.get('workers') or 1} worker(s) x {c.get('torch_threads')} torch thread(s) each"),
        ("time", ", ".join(f"{k} {v:.0f} s" for k, v in (doc.get("timings") or {}).items() if isinstance(v, (int, float)))),
    ]
    return rows


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _images_context(doc: dict[str, Any], fig_dir: Path) -> dict[str, Any]:
    """What the images section shows: the headline table, the answer, figures, protocol (from ``doc`` alone)."""
    names, rows = table_rows(doc)
    figures = [{**f, "uri": _data_uri(fig_dir / Path(f["file"]).name)} for f in doc.get("figures") or []]
    lik_notes = sorted({m["likelihood"]["note"] for m in doc.get("models", {}).values()
                        if isinstance(m.get("likelihood"), dict) and m["likelihood"].get("note")})
    ds, w = doc.get("dataset", {}), doc_words(doc)
    return dict(
        title=f"vaelab compare: {ds.get('name')}", ds=ds, versions=doc.get("versions", {}), answer=make_answer(doc),
        names=names, headers=[header(doc, n) for n in names], collapse_notes=collapse_notes(doc), rows=rows,
        n_seeds=len(doc.get("config", {}).get("seeds", [0])),
        reference=doc.get("reference") or {}, likelihood_notes=lik_notes,
        failed={n: m for n, m in doc.get("models", {}).items() if m.get("status") != "ok" or m.get("error")},
        figures=figures, protocol=_protocol(doc), all_models=doc.get("models", {}), fmt=_fmt, g=get,
        test_time=_test_time(doc), prior_swap=swap_rows(doc), prior_maps=map_rows(doc), vectors_note=VECTORS_NOTE if w.is_vectors else "", w=w,
        reference_name=reference_name)


def _test_time(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The test-time section's rows and sentences (vaelab.report.test_time), or None when the run has none."""
    block = doc.get("test_time")
    if not block:
        return None
    from vaelab.report import test_time

    return {"block": block, "rows": test_time.rows(block), "answer": test_time.answer(block, doc_words(doc))}


def _molecules_context(doc: dict[str, Any], fig_dir: Path) -> dict[str, Any]:
    """What the molecules section shows: the MOSES table, the reconstruction/smoothness table, the figures."""
    from vaelab.molecules.report import design_table_rows, latent_table, moses_table

    figures = [{"title": title, "file": f, "uri": _data_uri(fig_dir / f)} for title, f in (doc.get("figures") or {}).items()]
    total = (doc.get("timings") or {}).get("total") or {}
    return dict(title="vaelab molecules", ds=doc["dataset"], c=doc["config"], tr=doc["train"],
                total_s=total.get("wall_s", "?") if isinstance(total, dict) else total,
                failed={m: r for m, r in doc["models"].items() if r.get("status") != "ok"},
                moses=moses_table(doc), latent=latent_table(doc), design=design_table_rows(doc), figures=figures)


CONTEXTS = {"images": _images_context, "molecules": _molecules_context}   # metrics.json "kind" -> its section


def render(doc: dict[str, Any], fig_dir: str | Path) -> str:
    """The report page for a metrics.json dict (any domain), with the PNGs of ``fig_dir`` embedded."""
    import jinja2

    kind = doc.get("kind") or "images"
    if kind not in CONTEXTS:
        raise ConfigError(f"metrics.json has kind {kind!r}; this vaelab renders {', '.join(CONTEXTS)} reports.")
    env = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("page.html").render(doc=doc, section=f"{kind}.html", **CONTEXTS[kind](doc, Path(fig_dir)))


def write_molecule_report(run: Path, doc: dict[str, Any]) -> Path:
    """Render a molecule run's report.html (self-contained) from metrics.json's content and figures/*.png."""
    atomic_write_text(run / "report.html", render({**doc, "kind": "molecules"}, run / "figures"))
    return run / "report.html"


def _molecule_report(run: Path, doc: dict[str, Any], args: argparse.Namespace) -> int:
    """`vaelab report` of a `compare --dataset moses` run: its own page and table (needs the molecule extra)."""
    from vaelab.molecules import report as mol

    if args.out:
        raise ConfigError("--out is not supported for molecule runs: their report.html is re-rendered in place.")
    path = write_molecule_report(run, doc)
    table = mol.markdown_table(doc)
    print(table)
    print(f"wrote {path}")
    if args.markdown:
        atomic_write_text(args.markdown, table + "\n")
        print(f"wrote {args.markdown}")
    return 0


def read_metrics(run: str | Path) -> dict[str, Any]:
    """Load and check a run folder's metrics.json."""
    run = Path(run)
    p = run / "metrics.json"
    if not p.is_file():
        raise ConfigError(f"{run} has no metrics.json: pass a run folder written by `vaelab compare`.")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not valid JSON ({e}); it was truncated or edited. Re-run `vaelab compare`.") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        got = doc.get("schema_version") if isinstance(doc, dict) else None
        raise ConfigError(f"{p} has schema_version {got!r}; this vaelab reads schema version {SCHEMA_VERSION}.")
    return doc


def write_report(run: str | Path, out: str | Path | None = None, redraw: bool = False) -> Path:
    """Render ``run``/report.html (or ``out``) from ``run``/metrics.json and ``run``/figures/. Returns the path.

    ``redraw``: first draw every figure again from the run folder's files (metrics.json and arrays/;
    ``vaelab.report.figures.draw_run``), as `vaelab report RUN` does: no model is needed, and the PNGs
    and the page come out byte for byte as `compare` wrote them. A run without arrays/ (written before
    vaelab saved them) keeps its PNGs; only the metrics-only figures it lacks are drawn.
    """
    run = Path(run)
    doc = read_metrics(run)
    path = Path(out) if out else run / "report.html"
    if redraw:
        _redraw_figures(run, doc)
    atomic_write_text(path, render(doc, run / "figures"))
    return path


def _redraw_figures(run: Path, doc: dict[str, Any]) -> None:
    from vaelab.measure.store import ARRAYS_DIR
    from vaelab.report.figures import FIGURES, draw_run
    from vaelab.report.likelihood_figures import metrics_plan

    if (run / ARRAYS_DIR).is_dir():
        doc["figures"] = draw_run(run, doc)
        return
    have = {f.get("file") for f in doc.get("figures") or []}
    for name, draw in metrics_plan(doc).items():
        if not (run / "figures" / f"{name}.png").is_file():
            draw(run / "figures" / f"{name}.png")
        if f"{name}.png" not in have:
            title, text = FIGURES[name]
            doc["figures"] = list(doc.get("figures") or []) + [{"file": f"{name}.png", "title": title,
                                                                 "caption": caption(text, doc_words(doc))}]


# -- `vaelab report` ---------------------------------------------------------------------------
def report_cmd(args: argparse.Namespace) -> int:
    from vaelab.report.table import headline_table, wide_console

    run = Path(args.run)
    if args.out and Path(args.out).exists() and Path(args.out).resolve() != (run / "report.html").resolve():
        raise OutputError(f"{args.out} exists; choose another --out (vaelab report only replaces RUN/report.html).")
    from vaelab import lock

    with lock.hold(run, "report", create=False):
        doc = read_metrics(run)
        if doc.get("kind") == "molecules":
            return _molecule_report(run, doc, args)
        path = write_report(run, args.out, redraw=True)
    wide_console().print(headline_table(doc))
    print(f"wrote {path}")
    if args.markdown:
        from vaelab.report.table import markdown_report

        atomic_write_text(args.markdown, markdown_report({**doc, "answer": make_answer(doc)}))
        print(f"wrote {args.markdown}")
    return 0
