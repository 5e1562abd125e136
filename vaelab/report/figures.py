"""The report's figures: one function per PNG (matplotlib Agg), each written atomically.

Every figure is drawn from a run folder's files alone: metrics.json (its numbers) and ``arrays/*.npz``
(``vaelab.measure.views``: the images and codes ``evaluate`` measured). No model runs here, so
`vaelab report RUN` redraws the very same PNGs after the models are deleted. ``FIGURES`` holds
each figure's title and the caption that says what to look for; ``draw_all`` draws every figure
that applies and returns the list the report renders (``[{"file", "title", "caption"}]``).

To add a figure: measure its arrays in ``vaelab.measure.views`` (or read metrics.json), write a
``fig_*`` function of plain arrays, give it a ``FIGURES`` entry and a line in ``plan``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vaelab.imaging import make_grid
from vaelab.report.png import pyplot as _plt
from vaelab.report.png import rows_figure, save_png, show_grid
from vaelab.report.words import caption, doc_words
from vaelab.measure.grid import CONFIDENT

FIGURES: dict[str, tuple[str, str]] = {
    "code_norms": (
        "Latent geometry: how far from the origin the codes lie",
        "Histogram of ||mu(x)|| over the test split (filled) against ||z|| of 2,000 draws from the model's prior "
        "(line). A d-dimensional N(0, I) puts its mass on a shell near radius sqrt(d), not at the origin; codes "
        "inside or outside that shell are where prior samples decode from regions the encoder never used. The AEs "
        "have no prior: only their codes are shown."),
    "reconstructions": (
        "Reconstructions",
        "Top row: test images; below, each model's reconstruction through the posterior mean. Look for blur "
        "and wrong classes: the VAEs trade some sharpness for a smooth latent space."),
    "stochastic_reconstructions": (
        "Stochastic reconstructions (one input, eight decodes)",
        "Each row decodes eight codes drawn from q(z|x) for the same input (left). A VAE's decodes vary (it "
        "encodes uncertainty); a deterministic AE repeats one image."),
    "samples_prior": (
        "Samples from the prior N(0, I)",
        "Decodes of z ~ N(0, I). A VAE is trained for this; an AE's codes do not fill N(0, I), so its prior "
        "samples fall into 'holes' and look like blends or noise."),
    "samples_gmm": (
        "Samples from an ex-post Gaussian mixture",
        "Decodes of z from a 10-component GMM fitted to each model's training codes (Ghosh et al. 2020): what "
        "an AE can generate once it is given a density. Compare with the prior samples above."),
    "cvae_labels": (
        "CVAE: the same z, each label",
        "Each row keeps one z ~ N(0, I) and changes only the label (columns): z carries style (slant, "
        "thickness), the label carries the class."),
    "interpolations": (
        "Interpolations between two test images",
        "Decodes along the straight line between the codes of two test images of different classes. Look at "
        "the middle: plausible images mean the space between the clusters is filled."),
    "latent_scatter": (
        "Latent space of the test split, coloured by label",
        "Posterior means of the test {images} (PCA to 2-D when the latent is larger; the 2-D pair is shown as is). "
        "Look for separated clusters and for gaps between them."),
    "manifold_2d": (
        "The 2-D manifold: decoding a grid of z",
        "Decodes of a 2-D grid of z through the prior's quantiles (and, right, over the AE's own code range). "
        "The VAE's grid changes smoothly everywhere; the AE's has regions that decode to nothing recognisable."),
    "holes_map": (
        "Holes map: judge confidence over the 2-D grid",
        "The judge classifier's confidence (max softmax) for each grid decode; dots are test codes. Dark "
        "regions are holes: codes that decode to images the judge cannot place."),
    "prior_maps": (
        "Aggregate posterior over the prior, one 2-D VAE per prior",
        "Each panel is a VAE with a 2-D latent trained with one prior: the shading is log q(z), the mixture of the "
        "test {images}' posteriors (brighter = more codes), the white lines enclose 50, 90 and 99 % of the prior's "
        "mass (none for the uniform prior: its density is flat on the box), the dots are posterior means coloured "
        "by label. Where the prior has mass and the shading is dark, prior samples decode from regions the encoder "
        "never used (holes); the title gives KL(q(z) || p(z)) on the box and the prior mass in holes "
        "(q < p / 10), each with a 95 % bootstrap interval over the {images}."),
    "training_curves": (
        "Training curves",
        "Validation reconstruction term (left) and each model's own validation objective (right) per epoch. "
        "Flat or rising curves mean under- or over-fitting; the objectives differ across models."),
    "likelihood_curve": (
        "−ELBO ≥ IW-NLL(K) ≥ −log p(x): the bound against K",
        "Each VAE-family model's importance-weighted bound (±1 SE) against the number of samples K, with its −ELBO "
        "dashed: look for the curve falling below the dashed line and flattening as K grows (the gap is the "
        "posterior's mismatch); AEs have no likelihood and are absent."),
    "kl_schedule": (
        "KL weight schedule against the optimiser step",
        "The KL weight each step used (line) and the weight recorded at the end of each epoch (dots): check the "
        "warm-up ended well before training did; the title names the free-bits floor."),
    "kl_per_dim": (
        "KL per latent dimension (collapse diagnostic)",
        "Each stochastic model's KL(q(z_d|x) || N(0,1)) per dimension, sorted: dimensions under the dotted 0.01-nat "
        "line are collapsed (unused); many of them mean posterior collapse."),
    "denoising": (
        "Noisy → denoised",
        "Per corruption: clean test images, the corrupted input, and each model's reconstruction of it. Look "
        "for which models remove the noise rather than copy it (the DAE is trained for Gaussian noise)."),
    "rmse_per_feature": (
        "Reconstruction error per feature",
        "Tables: each model's RMSE of the posterior-mean reconstruction per feature over the test split, in the "
        "file's units (standardised RMSE x the training std). Image figures (grids, manifold, holes map, "
        "denoising pictures) do not apply to feature vectors and are left out."),
}
Arrays = dict[str, np.ndarray]


# -- helpers -----------------------------------------------------------------------------------


def _panels(n: int, max_cols: int = 4, size: float = 3.0) -> tuple[Any, list[Any]]:
    plt = _plt()
    n_cols = min(n, max_cols)
    n_rows = math.ceil(n / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows + 0.3), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _class_names(dataset: dict[str, Any]) -> list[str]:
    return list(dataset.get("class_names") or []) or [str(i) for i in range(int(dataset.get("n_classes") or 0))]


# -- one function per PNG, each of plain arrays (model name -> that model's arrays) ------------
def fig_reconstructions(path: Path, models: dict[str, Arrays], shown: Arrays) -> None:
    rows = [("data", shown["recon_x"])] + [(name, a["recon"]) for name, a in models.items()]
    rows_figure(rows, path, FIGURES["reconstructions"][0])


def fig_stochastic_reconstructions(path: Path, models: dict[str, Arrays], shown: Arrays) -> None:
    rows = [(name, np.concatenate([shown["stochastic_x"], a["stochastic"]])) for name, a in models.items()]
    rows_figure(rows, path, FIGURES["stochastic_reconstructions"][0])


def fig_samples(path: Path, models: dict[str, Arrays], sampler: str) -> None:
    fig, axes = _panels(len(models))
    for ax, (name, a) in zip(axes, models.items()):
        x = a[f"samples__{sampler}"]
        show_grid(ax, make_grid(x, n_col=int(math.sqrt(x.shape[0]))))
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(FIGURES[f"samples_{sampler}"][0])
    save_png(fig, path)


def fig_cvae_labels(path: Path, a: Arrays, class_names: list[str]) -> None:
    x = a["cvae_labels"]                                              # (rows, classes, C, H, W)
    rows = [(f"z #{r + 1}", x[r]) for r in range(x.shape[0])]
    names = class_names or [str(i) for i in range(x.shape[1])]
    rows_figure(rows, path, FIGURES["cvae_labels"][0] + "  (columns: " + ", ".join(names) + ")")


def fig_interpolations(path: Path, models: dict[str, Arrays]) -> None:
    rows = [(name, steps) for name, a in models.items() for steps in a["interpolations"]]
    rows_figure(rows, path, FIGURES["interpolations"][0])


def _class_legend(fig: Any, class_names: list[str], below: float) -> None:
    """One legend of the tab10 class colours under the panels (up to ten classes; more would be unreadable)."""
    if len(class_names) > 10:
        return
    plt = _plt()
    handles = [plt.Line2D([], [], marker="o", ls="", color=plt.cm.tab10(i), label=class_names[i])
               for i in range(len(class_names))]
    fig.legend(handles=handles, loc="lower center", ncol=min(10, len(class_names)), frameon=False,
               bbox_to_anchor=(0.5, below))


def fig_latent_scatter(path: Path, models: dict[str, Arrays], labels: np.ndarray | None,
                       class_names: list[str]) -> None:
    fig, axes = _panels(len(models))
    for ax, (name, a) in zip(axes, models.items()):
        z = a["scatter"]
        y = labels[:len(z)] if labels is not None else None
        ax.scatter(z[:, 0], z[:, 1], c=y if y is not None else "k", cmap="tab10", s=5,
                   vmin=-0.5, vmax=9.5 if y is not None else None, alpha=0.8, linewidths=0)
        ax.set_title(name + (" (PCA)" if bool(a["scatter_is_pca"]) else ""))
        ax.set_xticks([])
        ax.set_yticks([])
    if labels is not None:
        _class_legend(fig, class_names, -0.02)
    fig.suptitle(FIGURES["latent_scatter"][0])
    save_png(fig, path)


def _pair_grids(pair: dict[str, Arrays]) -> list[tuple[str, str, str]]:
    """(title, pair model, grid kind) of each panel of the manifold and holes figures."""
    out = []
    if "ae-2d" in pair:
        out.append(("AE (prior quantiles)", "ae-2d", "prior"))
    if "vae-2d" in pair:
        out.append(("VAE (prior quantiles)", "vae-2d", "prior"))
    if "ae-2d" in pair:
        out.append(("AE (its code range)", "ae-2d", "codes"))
    return out


def fig_manifold_2d(path: Path, pair: dict[str, Arrays]) -> None:
    grids = _pair_grids(pair)
    fig, axes = _panels(len(grids), max_cols=3, size=4.0)
    for ax, (title, name, kind) in zip(axes, grids):
        x, z = pair[name][f"manifold__{kind}"], pair[name][f"manifold_z__{kind}"]
        show_grid(ax, make_grid(x, n_col=int(round(math.sqrt(len(z)))), pad=0))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"z1 {z[:, 0].min():.1f} … {z[:, 0].max():.1f}")
        ax.set_ylabel(f"z2 {z[:, 1].min():.1f} … {z[:, 1].max():.1f}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(FIGURES["manifold_2d"][0])
    save_png(fig, path)


def fig_holes_map(path: Path, pair: dict[str, Arrays], blocks: dict[str, dict[str, Any]]) -> None:
    """Judge confidence over each grid (metrics.json's ``pairs_2d.<model>.grid_<kind>``), test codes as dots.

    Prior grids are drawn in prior-quantile coordinates (Phi(z), where the grid is uniform), code-range
    grids in z; the dots are test codes mapped the same way."""
    from scipy.stats import norm

    grids = _pair_grids(pair)
    fig, axes = _panels(len(grids), max_cols=3, size=4.0)
    im = None
    for ax, (title, name, kind) in zip(axes, grids):
        g = blocks[name][f"grid_{kind}"]
        codes = pair[name]["holes_codes"]
        n = int(g["n"])
        if kind == "prior":
            extent, codes = (0.0, 1.0, 0.0, 1.0), norm.cdf(codes)
            ax.set_xlabel("Φ(z1): prior quantile")
            ax.set_ylabel("Φ(z2)")
        else:
            (x1, x2), (y1, y2) = g["z_range"]
            hx, hy = (x2 - x1) / (2 * (n - 1)), (y2 - y1) / (2 * (n - 1))   # half a cell: edges, not centres
            extent = (x1 - hx, x2 + hx, y1 - hy, y2 + hy)
            ax.set_xlabel("z1")
            ax.set_ylabel("z2")
        im = ax.imshow(np.asarray(g["confidence"]), cmap="magma", vmin=0, vmax=1, extent=extent, aspect="auto",
                       interpolation="nearest")
        keep = ((codes[:, 0] >= extent[0]) & (codes[:, 0] <= extent[1]) & (codes[:, 1] >= extent[2])
                & (codes[:, 1] <= extent[3]))
        ax.scatter(codes[keep, 0], codes[keep, 1], s=2, c="cyan", alpha=0.6, linewidths=0)
        ax.set_title(f"{title}\nconfident (≥{g.get('threshold', CONFIDENT)}) on {100 * g['frac_confident']:.0f} % "
                     "of the grid", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="judge confidence")
    fig.suptitle(FIGURES["holes_map"][0])
    save_png(fig, path)


def _mass_levels(log_p: np.ndarray, shares: tuple[float, ...] = (0.5, 0.9, 0.99)) -> list[float]:
    """The density levels of a gridded prior whose upper sets hold ``shares`` of its mass (ascending levels)."""
    p = np.exp(log_p - log_p.max()).ravel()
    order = np.sort(p)[::-1]
    cum = np.cumsum(order) / order.sum()
    levels = sorted({float(order[min(np.searchsorted(cum, s), len(order) - 1)]) for s in shares})
    return [np.log(v) + float(log_p.max()) for v in levels]


def fig_prior_maps(path: Path, maps: dict[str, tuple[dict[str, Any], Arrays]], class_names: list[str]) -> None:
    """One panel per 2-D VAE (``maps``: name -> (its prior_map numbers, its arrays))."""
    fig, axes = _panels(len(maps), max_cols=3, size=3.8)
    for ax, (name, (num, a)) in zip(axes, maps.items()):
        log_q, log_p = a["map_log_q"], a["map_log_p"]
        extent = tuple(float(v) for v in a["map_extent"])
        top = float(np.nanmax(log_q))
        ax.imshow(np.clip(log_q, top - 10, top), cmap="magma", extent=extent, aspect="auto", interpolation="nearest")
        if np.ptp(log_p) > 1e-9:
            ax.contour(log_p, levels=_mass_levels(log_p), colors="white", linewidths=0.8, linestyles="solid", extent=extent,
                       origin="upper")
        codes, y = a["map_codes"], a.get("map_labels")
        ax.scatter(codes[:, 0], codes[:, 1], s=2, c=y if y is not None else "cyan", cmap="tab10", vmin=-0.5,
                   vmax=9.5, alpha=0.6, linewidths=0)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_title(f"{name} ({num.get('prior', '?')} prior)\nKL {num['kl']:.2f} [{num['kl_low']:.2f}, "
                     f"{num['kl_high']:.2f}] nats; holes {100 * num['hole_mass']:.0f} % "
                     f"[{100 * num['hole_mass_low']:.0f}, {100 * num['hole_mass_high']:.0f}]", fontsize=9)
    if any(a.get("map_labels") is not None for _, a in maps.values()):
        _class_legend(fig, class_names, -0.09)
    fig.suptitle(FIGURES["prior_maps"][0])
    save_png(fig, path)


def prior_maps(doc: dict[str, Any], arrays: dict[str, Arrays]) -> dict[str, tuple[dict[str, Any], Arrays]]:
    """The 2-D VAEs of a --priors run that mapped their aggregate posterior: name -> (numbers, arrays)."""
    from vaelab.report.priors import prior_map_records

    return {name: (num, arrays[name]) for name, num in prior_map_records(doc).items()
            if "map_log_q" in arrays.get(name, {})}


def fig_training_curves(path: Path, curves: dict[str, Any], per: str = "image") -> None:
    import matplotlib.ticker

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, c in curves.items():
        if not c or not c.get("epoch"):
            continue
        val = c.get("val", {})
        if "recon" in val:
            a1.plot(c["epoch"], val["recon"], label=name)
        if "loss" in val:
            a2.plot(c["epoch"], val["loss"], label=name)
    a1.set_title("validation reconstruction term")
    a2.set_title("validation objective (each model's own)")
    for ax in (a1, a2):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"nats per {per}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))   # 20, 30, not 2x10^1
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
    a2.legend(fontsize=8, ncol=2)
    fig.suptitle(FIGURES["training_curves"][0])
    save_png(fig, path)


def fig_denoising(path: Path, models: dict[str, Arrays], shown: Arrays) -> None:
    kinds, levels = [str(k) for k in shown["corruption_kinds"]], [float(v) for v in shown["corruption_levels"]]
    fig, axes = _panels(len(kinds), max_cols=3, size=4.0)
    x = shown["denoise_x"]
    for ax, kind, level in zip(axes, kinds, levels):
        rows = [x, shown[f"denoise_input__{kind}"]] + [a[f"denoise__{kind}"] for a in models.values()]
        labels = ["clean", "input"] + list(models)
        grids = [make_grid(r, n_col=x.shape[0]) for r in rows]
        show_grid(ax, np.concatenate(grids, axis=0))
        h = grids[0].shape[0]
        ax.set_yticks([h * (j + 0.5) for j in range(len(rows))])
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xticks([])
        ax.set_title(f"{kind} {level:g}")
    fig.suptitle(FIGURES["denoising"][0])
    save_png(fig, path)


def _rmse_per_feature(m: Any) -> list[float] | None:
    v = ((m or {}).get("reconstruction") or {}).get("mean_z") if isinstance(m, dict) else None
    return (v or {}).get("rmse_per_feature")


def fig_rmse_per_feature(path: Path, doc: dict[str, Any]) -> None:
    """Tables: each model's reconstruction RMSE per feature (test split, the file's units), grouped bars."""
    plt = _plt()
    rows = {n: _rmse_per_feature(m) for n, m in doc["models"].items() if isinstance(m, dict) and m.get("status") == "ok"}
    rows = {n: r for n, r in rows.items() if r}
    names = (doc.get("dataset") or {}).get("feature_names") or [f"x{j}" for j in range(len(next(iter(rows.values()))))]
    d = len(names)
    shown = min(d, 40)                                  # at most 40 features: the first ones, in file order
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * shown * max(1, len(rows)) / 2), 3.2))
    for i, (n, r) in enumerate(rows.items()):
        ax.bar(np.arange(shown) + i * width, r[:shown], width, label=n)
    ax.set_xticks(np.arange(shown) + 0.4 - width / 2)
    ax.set_xticklabels(names[:shown], rotation=90, fontsize=7)
    ax.set_ylabel("RMSE (file units)")
    ax.legend(fontsize=7, ncol=min(len(rows), 4))
    ax.set_title(FIGURES["rmse_per_feature"][0] + ("" if shown == d else f" (first {shown} of {d})"))
    save_png(fig, path)


def fig_code_norms(path: Path, models: dict[str, Arrays]) -> None:
    """Latent geometry: histograms of ||mu(x)|| of the test codes against ||z|| of prior draws, one panel a model."""
    plt = _plt()
    names = [n for n, a in models.items() if "code_norms" in a]
    cols = min(len(names), 4)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False)
    for ax, n in zip(axes.flat, names):
        codes, prior = models[n]["code_norms"], models[n].get("prior_norms")
        hi = float(max(codes.max(), prior.max() if prior is not None else 0.0)) * 1.05 + 1e-9
        bins = np.linspace(0.0, hi, 40)
        # one filled outline, not 40 bars: the same picture, in about a quarter less time (benchmarks/README.md)
        ax.hist(codes, bins=bins, density=True, histtype="stepfilled", alpha=0.6, color="C0",
                label="test codes ||mu(x)||")
        if prior is not None:
            ax.hist(prior, bins=bins, density=True, histtype="step", color="C3", lw=1.5, label="prior ||z||")
        ax.set_title(n, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(FIGURES["code_norms"][0], fontsize=10)
    save_png(fig, path)


# -- all of them, from a run folder's files ------------------------------------------------------
def plan(doc: dict[str, Any], arrays: dict[str, Arrays]) -> list[tuple[str, Callable[[Path], Any]]]:
    """(figure name, draw(path)) of every figure that applies to ``doc`` (a metrics.json dict) and ``arrays``.

    Models appear in metrics.json's order when their evaluation succeeded and their arrays exist (with
    several seeds: the first seed's); the likelihood figures come from metrics.json alone.
    """
    from vaelab.measure.store import DATA_NAME
    from vaelab.report.likelihood_figures import metrics_plan

    def ok(block: dict[str, Any]) -> list[str]:
        return [n for n, m in (block or {}).items() if isinstance(m, dict) and m.get("status") == "ok" and n in arrays]

    models = {n: arrays[n] for n in ok(doc.get("models"))}
    pair_docs = doc.get("pairs_2d") or {}
    pair = {n: arrays[n] for n in ok(pair_docs)}
    shown = data_arrays = arrays.get(DATA_NAME)
    w = doc_words(doc)
    if w.is_vectors:   # tables: no pictures of examples (grids, manifold, holes map); the scatter, curves and RMSE stay
        shown, pair_pictures = None, {}
    else:
        pair_pictures = pair
    names = _class_names(doc.get("dataset") or {})
    out: list[tuple[str, Callable[[Path], Any]]] = []
    if models and shown is not None:
        out += [("reconstructions", lambda p: fig_reconstructions(p, models, shown)),
                ("stochastic_reconstructions", lambda p: fig_stochastic_reconstructions(p, models, shown))]
        for sampler in ("prior", "gmm"):
            having = {n: a for n, a in models.items() if f"samples__{sampler}" in a}
            if having:
                out.append((f"samples_{sampler}", lambda p, h=having, s=sampler: fig_samples(p, h, s)))
        if "cvae" in models and "cvae_labels" in models["cvae"]:
            out.append(("cvae_labels", lambda p: fig_cvae_labels(p, models["cvae"], names)))
        out.append(("interpolations", lambda p: fig_interpolations(p, models)))
    scatter = {**models, **pair}
    if scatter:
        labels = data_arrays.get("scatter_y") if data_arrays is not None else None
        out.append(("latent_scatter", lambda p: fig_latent_scatter(p, scatter, labels, names)))
    if any("code_norms" in a for a in models.values()):
        out.append(("code_norms", lambda p: fig_code_norms(p, models)))
    if pair_pictures:
        out.append(("manifold_2d", lambda p: fig_manifold_2d(p, pair)))
        if all("grid_prior" in pair_docs[n] for n in pair):
            out.append(("holes_map", lambda p: fig_holes_map(p, pair, pair_docs)))
    maps = prior_maps(doc, arrays)
    if maps:
        out.append(("prior_maps", lambda p: fig_prior_maps(p, maps, names)))
    if doc.get("test_time"):       # the test-time section (vaelab.report.test_time), from arrays/test_time.npz
        from vaelab.report import test_time

        out += test_time.plan(doc["test_time"], arrays.get("test_time") or {})
    curves = doc.get("training_curves") or {}
    if any(curves.values()):
        out.append(("training_curves", lambda p: fig_training_curves(p, curves, w.one)))
    if models and shown is not None:
        out.append(("denoising", lambda p: fig_denoising(p, models, shown)))
    if w.is_vectors and any(_rmse_per_feature(m) for m in (doc.get("models") or {}).values()):
        out.append(("rmse_per_feature", lambda p: fig_rmse_per_feature(p, doc)))
    out += list(metrics_plan(doc).items())
    return out


def draw_all(fig_dir: str | Path, doc: dict[str, Any], arrays: dict[str, Arrays],
             names: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Draw every figure of ``plan`` (or those of it in ``names``) into ``fig_dir``; return the report's list
    ``[{"file", "title", "caption"}]``."""
    from vaelab.report.test_time import FIGURES as TEST_TIME_FIGURES

    fig_dir, w = Path(fig_dir), doc_words(doc)
    out = []
    for name, draw in plan(doc, arrays):
        if names is not None and name not in names:
            continue
        draw(fig_dir / f"{name}.png")
        title, text = FIGURES[name] if name in FIGURES else TEST_TIME_FIGURES[name]
        out.append({"file": f"{name}.png", "title": title, "caption": caption(text, w)})
    return out


# figures that take two to four times the shortest (a worker starts them first; the others count 1), measured
# one after the other in one process on the default digits compare (0.19-0.86 s each)
FIGURE_WORK = {"likelihood_curve": 4.0, "samples_gmm": 4.0, "samples_prior": 3.0, "holes_map": 3.0,
               "holes_q_vs_p": 2.0, "latent_scatter": 2.0, "code_norms": 2.0, "training_curves": 2.0}


def figure_names(run: str | Path, doc: dict[str, Any]) -> list[str]:
    """The figures ``draw_run`` draws for run folder ``run`` (``doc``: its metrics.json), in the report's order."""
    from vaelab.measure.store import load_run_arrays
    from vaelab.report.verdict_figures import FIGURES as VERDICT_FIGURES

    return [name for name, _ in plan(doc, load_run_arrays(run))] + list(VERDICT_FIGURES)


def draw_run(run: str | Path, doc: dict[str, Any]) -> list[dict[str, str]]:
    """``draw_all`` from run folder ``run``'s files (``doc``: its metrics.json; ``run/arrays/*.npz``), then the
    novelty and holes figures (``vaelab.report.verdict_figures``, from arrays/ alone).

    ``draw_unit`` draws one of ``figure_names`` (in any process: vaelab.compare.draw_figures runs them in its local
    workers); their entries, in that order, are this list."""
    from vaelab.measure.store import load_run_arrays
    from vaelab.report.verdict_figures import draw_from_arrays

    fig_dir = Path(run) / "figures"
    return draw_all(fig_dir, doc, load_run_arrays(run)) + draw_from_arrays(run, fig_dir, doc_words(doc))


def draw_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """One figure of ``draw_run``: ``spec`` = {"run", "doc", "name"}; {"entries": its report entries, [] or one}."""
    from vaelab.measure.store import load_run_arrays
    from vaelab.report.verdict_figures import FIGURES as VERDICT_FIGURES
    from vaelab.report.verdict_figures import draw_from_arrays

    run, doc, name = Path(spec["run"]), spec["doc"], spec["name"]
    if name in VERDICT_FIGURES:
        return {"entries": draw_from_arrays(run, run / "figures", doc_words(doc), names=(name,))}
    return {"entries": draw_all(run / "figures", doc, load_run_arrays(run), names=(name,))}
