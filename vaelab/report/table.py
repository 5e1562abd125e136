"""The headline metrics table, shared by the terminal (rich) and the HTML report.

``ROWS`` fixes which numbers are headline, where they live in a model's metrics dict, and which
direction is better; ``table_rows(doc)`` turns metrics.json into rows of cells with the best value
per row marked. A cell reads "value ± half-width" of its 95 % interval (metrics.json "intervals": a
bootstrap over test images, samples and reference, and with several seeds also over seeds); without an
interval, with several seeds, "mean ± sd". A model whose collapse check fired (metrics.json "collapsed") is
marked in the header; its generation, memorisation and holes cells are greyed with the reason and not ranked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vaelab.config import flat_config
from vaelab.report.words import doc_words, space

# (section, label, path in a model's dict, better: "min" | "max" | None, format)
ROWS: list[tuple[str, str, tuple[str, ...], str | None, str]] = [
    ("Reconstruction", "BCE, mean z (nats/image)", ("reconstruction", "mean_z", "bce"), "min", ".2f"),
    ("Reconstruction", "PSNR, mean z (dB)", ("reconstruction", "mean_z", "psnr"), "max", ".2f"),
    ("Reconstruction", "RMSE per example, mean z (standardised)", ("reconstruction", "mean_z", "rmse"), "min", ".3f"),
    ("Likelihood", "−ELBO (nats)", ("likelihood", "neg_elbo"), "min", ".2f"),
    ("Likelihood", "IW bound on −log p(x) (nats)", ("likelihood", "iw_nll"), "min", ".2f"),
    ("Generation", "FD prior samples (judge features)", ("generation", "prior", "fd"), "min", ".2f"),
    ("Generation", "FD GMM samples (judge features)", ("generation", "gmm", "fd"), "min", ".2f"),
    ("Generation", "precision, prior samples", ("generation", "prior", "precision"), "max", ".3f"),
    ("Generation", "recall, prior samples", ("generation", "prior", "recall"), "max", ".3f"),
    ("Generation", "density, prior samples (Naeem et al.; 1 = matched)", ("generation", "prior", "density"), None,
     ".3f"),
    ("Generation", "coverage, prior samples (Naeem et al.)", ("generation", "prior", "coverage_nn"), "max", ".3f"),
    ("Generation", "precision, GMM samples", ("generation", "gmm", "precision"), "max", ".3f"),
    ("Generation", "recall, GMM samples", ("generation", "gmm", "recall"), "max", ".3f"),
    ("Generation", "density, GMM samples", ("generation", "gmm", "density"), None, ".3f"),
    ("Generation", "coverage, GMM samples", ("generation", "gmm", "coverage_nn"), "max", ".3f"),
    ("Generation", "judge confidence, prior samples (noise scores high)", ("generation", "prior", "confidence"), None,
     ".3f"),
    ("Generation", "class coverage, prior (nats)", ("generation", "prior", "coverage"), "max", ".3f"),
    ("Memorisation", "near-copies, prior samples (judge features)", ("novelty", "prior", "features", "copy_fraction"),
     "min", ".3f"),
    ("Memorisation", "near-copies, GMM samples (judge features)", ("novelty", "gmm", "features", "copy_fraction"),
     "min", ".3f"),
    ("Memorisation", "near-copies, GMM samples ({space})", ("novelty", "gmm", "pixels", "copy_fraction"), "min",
     ".3f"),
    ("Memorisation", "C_T, prior samples (< -3: copying)", ("novelty", "prior", "features", "ct"), None, ".2f"),
    ("Memorisation", "C_T, GMM samples (< -3: copying)", ("novelty", "gmm", "features", "ct"), None, ".2f"),
    ("Holes", "realistic prior samples (realism ≥ 1)", ("generation", "prior", "realism"), "max", ".3f"),
    ("Holes", "marginal KL(q(z) ‖ p(z)) (nats)", ("holes", "marginal_kl"), "min", ".2f"),
    ("Holes", "prior mass where q(z) < 0.1 p(z)", ("holes", "hole_mass"), "min", ".3f"),
    ("Holes", "I(x; z) (nats)", ("holes", "mutual_information"), None, ".2f"),
    ("Interpolation", "FD of midpoints", ("interpolation", "fd_midpoints"), "min", ".2f"),
    ("Interpolation", "judge confidence of midpoints", ("interpolation", "confidence_midpoints"), "max", ".3f"),
    ("Latent", "linear probe accuracy", ("latent", "linear_probe"), "max", ".3f"),
    ("Latent", "k-NN accuracy (k=5)", ("latent", "knn"), "max", ".3f"),
    ("Latent", "k-means NMI", ("latent", "kmeans_nmi"), "max", ".3f"),
    ("Latent", "silhouette by label", ("latent", "silhouette"), "max", ".3f"),
    ("Latent", "active units", ("latent", "active_units"), None, ".0f"),
    ("Denoising", "PSNR, gaussian σ=0.3 (dB)", ("denoising", "gaussian"), "max", ".2f"),
    ("Denoising", "PSNR, salt-and-pepper 20 % (dB)", ("denoising", "salt-and-pepper"), "max", ".2f"),
    ("Denoising", "PSNR, masking 25 % (dB)", ("denoising", "masking"), "max", ".2f"),
    ("Denoising", "RMSE, gaussian σ=0.3 (standardised)", ("denoising_rmse", "gaussian"), "min", ".3f"),
    ("Denoising", "RMSE, masking 25 % (standardised)", ("denoising_rmse", "masking"), "min", ".3f"),
    ("Cost", "training time (s)", ("train", "seconds"), None, ".1f"),
]
# the floor/ceiling rows of metrics.json "reference" shown beside the generation rows
REFERENCE_COLS = (("train_vs_test", "train"), ("uniform_noise", "noise"))
REFERENCE_METRICS = ("fd", "precision", "recall", "density", "coverage_nn", "realism", "confidence", "coverage")
# the note of a table's run (terminal, Markdown, HTML): what its numbers are and which image metrics are left out
VECTORS_NOTE = (
    "Tabular data: each example is a vector of standardised features (training-split mean and std, saved in every "
    "checkpoint). The likelihood to use is a Gaussian with a learned per-feature sigma: a Bernoulli is a distribution "
    "on {0, 1} (and the continuous Bernoulli one on [0, 1]), while standardised features are unbounded reals, so "
    "their cross-entropy is not a likelihood of them. Reconstruction and denoising are RMSE (standardised units; the "
    "per-feature figure is in the file's units); BCE, PSNR, salt-and-pepper noise and the image figures (grids, "
    "manifold, holes map) apply to pixels in [0, 1] and are left out. The generation metrics use the judge's "
    "features (an MLP classifier on the vectors); the noise reference row is N(0, I).")

# sections whose numbers describe the samples: greyed and not ranked for a collapsed model
GREYED_SECTIONS = ("Generation", "Memorisation", "Holes", "Interpolation")


def get(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def fmt(v: Any, spec: str) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec)


@dataclass
class Cell:
    text: str
    value: float | None
    is_best: bool = False
    greyed: str = ""            # why the cell is greyed (a collapsed model), or ""


@dataclass
class Row:
    section: str
    label: str
    better: str | None
    cells: list[Cell]
    reference: str


def ok_models(doc: dict[str, Any]) -> list[str]:
    return [n for n, m in doc.get("models", {}).items() if m.get("status") == "ok"]


def header(doc: dict[str, Any], name: str) -> str:
    """A model's column header: its name, marked "(collapsed)" when its collapse check fired."""
    return f"{name} (collapsed)" if (doc.get("models", {}).get(name) or {}).get("collapsed") else name


def half_width(m: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The half-width of the 95 % interval of ``path`` in a model's metrics (None when it has none)."""
    iv = (m.get("intervals") or {}).get(".".join(path))
    h = iv.get("half_width") if isinstance(iv, dict) else None
    return float(h) if isinstance(h, (int, float)) else None


def table_rows(doc: dict[str, Any]) -> tuple[list[str], list[Row]]:
    """(model names, rows) for the headline table; failed models are left out of it."""
    names = ok_models(doc)
    where = space(doc_words(doc))
    rows = []
    for section, label, path, better, spec in ROWS:
        label = label.format(space=where)
        cells = []
        for n in names:
            m = doc["models"][n]
            v = get(m, path)
            v = v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            hw = half_width(m, path)
            sd = get(m.get("sd"), path) if m.get("sd") else None
            spread = hw if hw is not None else (sd if isinstance(sd, (int, float)) else None)
            text = fmt(v, spec) + (f" ± {fmt(spread, spec)}" if v is not None and spread is not None else "")
            greyed = (m.get("collapsed") or "") if section in GREYED_SECTIONS else ""
            cells.append(Cell(text, v, greyed=greyed))
        vals = [c.value for c in cells if c.value is not None and not c.greyed]
        if better and len(vals) >= 2:
            best = min(vals) if better == "min" else max(vals)
            for c in cells:
                c.is_best = c.value is not None and not c.greyed and c.value == best
        ref = ""
        if path[0] == "generation" and path[-1] in REFERENCE_METRICS:
            parts = [f"{short} {fmt(get(doc.get('reference'), (key, path[-1])), spec)}"
                     for key, short in REFERENCE_COLS if get(doc.get("reference"), (key, path[-1])) is not None]
            ref = ", ".join(parts)
        if all(c.value is None for c in cells):
            continue            # e.g. no judge: no generation rows at all
        rows.append(Row(section, label, better, cells, ref))
    return names, rows


def headline_table(doc: dict[str, Any]) -> Any:
    """A rich Table of the headline numbers; the best value per row in bold with a '*'."""
    from rich.table import Table

    names, rows = table_rows(doc)
    ds = doc.get("dataset", {})
    seeds = doc.get("config", {}).get("seeds", [0])
    t = Table(title=f"vaelab compare: {ds.get('name')} ({ds.get('n_test')} test {doc_words(doc).many}, "
                    f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}) — * = best in row",
              caption="↓ lower is better, ↑ higher is better; n/a = does not apply (an AE has no likelihood)"
                      + ("\n" + VECTORS_NOTE if doc_words(doc).is_vectors else ""))
    t.add_column("metric", no_wrap=True)
    for n in names:
        t.add_column(header(doc, n), justify="right")
    t.add_column("reference (train vs test, noise)", style="dim")
    section = None
    for r in rows:
        if r.section != section:
            if section is not None:
                t.add_section()
            section = r.section
        arrow = {"min": " ↓", "max": " ↑"}.get(r.better or "", "")
        cells = [f"[bold green]{c.text}*[/bold green]" if c.is_best else f"[dim]{c.text}[/dim]" if c.greyed
                 else c.text for c in r.cells]
        t.add_row(f"{r.label}{arrow}", *cells, r.reference)
    return t


def collapse_notes(doc: dict[str, Any]) -> list[str]:
    """One line per collapsed model: why its sample rows are greyed and not ranked."""
    return [f"{n}: {m['collapsed']}; its generation, memorisation and holes numbers are greyed and not ranked."
            for n, m in doc.get("models", {}).items() if m.get("status") == "ok" and m.get("collapsed")]


def wide_console() -> Any:
    """A rich Console as wide as the terminal, or 160 columns when writing to a pipe or file (a log)."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def markdown_report(doc: dict[str, Any]) -> str:
    """The run's headline table (best value per row in bold) and its answer as Markdown, e.g. for docs/."""
    names, rows = table_rows(doc)
    ds, c, t = doc.get("dataset", {}), flat_config(doc.get("config")), doc.get("timings", {})
    lines = [f"# vaelab compare: {ds.get('name')}", ""]
    if doc.get("command"):
        lines += ["```", doc["command"], "```", ""]
    total = t.get("total")
    lines += [f"{ds.get('n_train')} training / {ds.get('n_test')} test {doc_words(doc).many}; {c.get('backbone')} backbone "
              f"{c.get('hidden')}, latent {c.get('n_latent')}, {c.get('epochs')} epochs, batch {c.get('batch_size')}, "
              f"seeds {c.get('seeds')}; {c.get('n_samples')} samples per sampler, IW K = {c.get('iw_k')}; "
              f"device {c.get('device')} ({c.get('workers') or 1} worker(s) x {c.get('torch_threads')} torch thread(s))"
              + (f"; {total:.0f} s end to end." if isinstance(total, (int, float)) else "."), ""]
    lines += ["| metric | " + " | ".join(header(doc, n) for n in names) + " | reference (train vs test, noise) |",
              "|---|" + "---:|" * len(names) + "---|"]
    for r in rows:
        arrow = {"min": " ↓", "max": " ↑"}.get(r.better or "", "")
        cells = [f"**{c_.text}**" if c_.is_best else f"({c_.text})" if c_.greyed else c_.text for c_ in r.cells]
        lines.append(f"| {r.section}: {r.label}{arrow} | " + " | ".join(cells) + f" | {r.reference} |")
    answer = doc.get("answer") or {}
    lines += ["", "Best value per row in bold; ± is the half-width of a 95 % bootstrap interval (metrics.json "
              "\"intervals\" says how each was obtained). Numbers in parentheses belong to a collapsed model: "
              "greyed, not ranked. FD is the Fréchet distance in the judge classifier's features, not FID.",
              *[f"- {line}" for line in collapse_notes(doc)],
              *(["", VECTORS_NOTE] if doc_words(doc).is_vectors else []),
              "", f"**Answer.** {answer.get('short', '')}", ""]
    if len((doc.get("config") or {}).get("priors") or ()) > 1:
        from vaelab.report.priors import markdown as priors_markdown

        lines += ["## Why a Gaussian prior?", "", priors_markdown(doc)]
    if doc.get("test_time"):
        from vaelab.report.test_time import markdown as test_time_markdown

        lines += ["## At test time: anomalies and uncertainty", "", test_time_markdown(doc["test_time"], doc_words(doc))]
    v = doc.get("versions", {})
    lines += ["Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "platform"), ""]
    return "\n".join(lines)
