"""The report's figures: one function per PNG (matplotlib Agg), each written atomically.

Every function takes trained models (the Autoencoder protocol), the Dataset and what else it
shows, and writes ``<fig_dir>/<name>.png``. ``FIGURES`` holds each figure's title and the one-line
caption that says what to look for; ``make_all`` draws every figure that applies and returns the
list the report renders (``[{"file", "title", "caption"}]``, stored in metrics.json).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from vaelab.imaging import make_grid
from vaelab.io import atomic_path

FIGURES: dict[str, tuple[str, str]] = {
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
        "Posterior means of the test images (PCA to 2-D when the latent is larger; the 2-D pair is shown as is). "
        "Look for separated clusters and for gaps between them."),
    "manifold_2d": (
        "The 2-D manifold: decoding a grid of z",
        "Decodes of a 2-D grid of z through the prior's quantiles (and, right, over the AE's own code range). "
        "The VAE's grid changes smoothly everywhere; the AE's has regions that decode to nothing recognisable."),
    "holes_map": (
        "Holes map: judge confidence over the 2-D grid",
        "The judge classifier's confidence (max softmax) for each grid decode; dots are test codes. Dark "
        "regions are holes: codes that decode to images the judge cannot place."),
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
}
GRID_N = 20            # holes-map grid size (GRID_N x GRID_N codes)
MANIFOLD_N = 15        # manifold-grid size
CONFIDENT = 0.9        # a grid decode "looks like a class" when the judge's max softmax is at least this


# -- helpers -----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    plt = _plt()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


save_png = _save      # the public name, for the other report modules (likelihood_figures)


def _show(ax: Any, grid: np.ndarray) -> None:
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")


def _rows_figure(rows: list[tuple[str, Tensor]], path: Path, title: str, n_col: int | None = None) -> None:
    """Draw labelled rows of images: rows = [(label, (N, C, H, W) in [0, 1])], one image grid per row."""
    plt = _plt()
    grids = [make_grid(x, n_col=n_col or x.shape[0]) for _, x in rows]
    width = max(g.shape[1] for g in grids)
    pad = lambda g: np.pad(g, [(0, 0), (0, width - g.shape[1])] + [(0, 0)] * (g.ndim - 2), constant_values=1.0)
    big = np.concatenate([pad(g) for g in grids], axis=0)
    heights = [g.shape[0] for g in grids]
    centres = np.cumsum(heights) - np.asarray(heights) / 2
    scale = 9.0 / width
    fig, ax = plt.subplots(figsize=(9 + 1.5, max(1.5, big.shape[0] * scale + 0.6)))
    _show(ax, big)
    ax.set_yticks(centres - 0.5)
    ax.set_yticklabels([label for label, _ in rows])
    ax.set_xticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title)
    _save(fig, path)


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


@torch.inference_mode()
def _decode(model: Any, z: Tensor, y: Tensor | None = None) -> Tensor:
    from vaelab.imaging import decode_images

    return decode_images(model, z, y)


@torch.inference_mode()
def _recon(model: Any, x: Tensor, y: Tensor | None) -> Tensor:
    device = next(model.parameters()).device
    yb = y.to(device) if (y is not None and model.is_conditional) else None
    return model.reconstruct(x.to(device), yb, use_mean=True).cpu()


def pick_test(data: Any, n: int) -> Tensor:
    """Indices of ``n`` test images, cycling through the classes (one per class first) when there are labels."""
    if data.y_test is None:
        return torch.arange(min(n, data.x_test.shape[0]))
    by_class = [torch.nonzero(data.y_test == c).flatten() for c in range(data.n_classes)]
    out: list[int] = []
    i = 0
    while len(out) < min(n, data.x_test.shape[0]):
        for idx in by_class:
            if i < len(idx) and len(out) < n:
                out.append(int(idx[i]))
        i += 1
    return torch.tensor(out)


def _labels(data: Any, idx: Tensor) -> Tensor | None:
    return data.y_test[idx] if data.y_test is not None else None


# -- latent grids (also the numbers of the holes map in metrics.json) ---------------------------
def latent_grid(kind: str, model: Any, data: Any = None, n: int = GRID_N) -> Tensor:
    """A 2-D grid of codes, (n * n, 2), row-major with z2 decreasing down the rows (as an image is read).

    kind "prior": both axes through the prior's quantiles, norm.ppf((i + 0.5) / n);
    kind "codes": the 1st..99th percentile range of the model's training codes on each axis.
    """
    if kind == "prior":
        from scipy.stats import norm

        axis1 = axis2 = norm.ppf((np.arange(n) + 0.5) / n)
    elif kind == "codes":
        from vaelab.sampling import encode_means

        z = encode_means(model, data.x_train, data.y_train if model.is_conditional else None).numpy()
        lo, hi = np.percentile(z, 1, axis=0), np.percentile(z, 99, axis=0)
        axis1, axis2 = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    else:
        raise ValueError(f"unknown grid kind {kind!r}")
    z1, z2 = np.meshgrid(axis1, axis2[::-1])
    return torch.from_numpy(np.stack([z1.ravel(), z2.ravel()], axis=1)).float()


def grid_confidence(model: Any, judge: Any, z: Tensor) -> dict[str, Any]:
    """Judge confidence (max softmax) of the decodes of a square 2-D grid ``z`` (n * n, 2).

    Returns {"n", "z_range" [[z1 lo, hi], [z2 lo, hi]], "mean_confidence", "frac_confident"
    (share of grid cells with confidence >= CONFIDENT), "confidence" (n x n, rows top to bottom)}.
    """
    n = int(round(math.sqrt(z.shape[0])))
    conf = judge.predict_proba(_decode(model, z)).max(1).values.numpy().reshape(n, n)
    return {"n": n, "z_range": [[float(z[:, 0].min()), float(z[:, 0].max())], [float(z[:, 1].min()), float(z[:, 1].max())]],
            "mean_confidence": float(conf.mean()), "frac_confident": float((conf >= CONFIDENT).mean()),
            "threshold": CONFIDENT, "confidence": np.round(conf, 4).tolist()}


# -- one function per PNG ----------------------------------------------------------------------
def fig_reconstructions(path: Path, models: dict[str, Any], data: Any, n: int = 10) -> None:
    idx = pick_test(data, n)
    x, y = data.x_test[idx], _labels(data, idx)
    rows = [("data", x)] + [(name, _recon(m, x, y)) for name, m in models.items()]
    _rows_figure(rows, path, FIGURES["reconstructions"][0])


@torch.inference_mode()
def fig_stochastic_reconstructions(path: Path, models: dict[str, Any], data: Any, n_decodes: int = 8,
                                   seed: int = 0) -> None:
    idx = pick_test(data, 1)
    x, y = data.x_test[idx], _labels(data, idx)
    rows = []
    gen = torch.Generator().manual_seed(seed)
    for name, m in models.items():
        device = next(m.parameters()).device
        yb = y.to(device) if m.is_conditional else None
        q = m.encode(x.to(device), yb)
        eps = torch.randn((n_decodes, *q.mean.shape), generator=gen).to(device)
        z = q.mean + q.stddev * eps                                   # (8, 1, D): z ~ q(z|x)
        yd = yb.expand(n_decodes) if yb is not None else None
        rows.append((name, torch.cat([x, _decode(m, z[:, 0], yd)])))
    _rows_figure(rows, path, FIGURES["stochastic_reconstructions"][0])


def fig_samples(path: Path, models: dict[str, Any], data: Any, sampler: str, n: int = 36, seed: int = 0) -> None:
    from vaelab.sampling import fit_density, sample_labels

    fig, axes = _panels(len(models))
    for ax, (name, m) in zip(axes, models.items()):
        density = fit_density(sampler, m, data, seed)
        x = _decode(m, density.sample(n, seed=seed), sample_labels(m, n))
        _show(ax, make_grid(x, n_col=int(math.sqrt(n))))
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(FIGURES[f"samples_{sampler}"][0])
    _save(fig, path)


def fig_cvae_labels(path: Path, model: Any, data: Any, n_rows: int = 6, seed: int = 0) -> None:
    c = model.cfg.n_classes
    z = torch.randn(n_rows, model.cfg.n_latent, generator=torch.Generator().manual_seed(seed))
    z = z.repeat_interleave(c, dim=0)                                 # (rows * C, D): each z once per label
    y = torch.arange(c).repeat(n_rows)
    x = _decode(model, z, y)
    names = list(data.class_names) or [str(i) for i in range(c)]
    rows = [(f"z #{r + 1}", x[r * c:(r + 1) * c]) for r in range(n_rows)]
    _rows_figure(rows, path, FIGURES["cvae_labels"][0] + "  (columns: " + ", ".join(names) + ")")


@torch.inference_mode()
def fig_interpolations(path: Path, models: dict[str, Any], data: Any, n_steps: int = 10, n_pairs: int = 2) -> None:
    idx = pick_test(data, 2 * n_pairs)
    if data.y_test is not None and data.n_classes >= 2:
        pairs = [(int(idx[2 * p]), int(idx[2 * p + 1])) for p in range(n_pairs)]
    else:
        pairs = [(2 * p, 2 * p + 1) for p in range(n_pairs)]
    t = torch.linspace(0, 1, n_steps)[:, None]                        # (T, 1)
    rows = []
    for name, m in models.items():
        device = next(m.parameters()).device
        for a, b in pairs:
            x = data.x_test[[a, b]]
            y = data.y_test[[a, b]] if (data.y_test is not None and m.is_conditional) else None
            mu = m.encode(x.to(device), y.to(device) if y is not None else None).mean.cpu()
            z = (1 - t) * mu[0] + t * mu[1]                           # (T, D)
            yz = torch.where(t[:, 0] < 0.5, y[0], y[1]) if y is not None else None
            rows.append((f"{name}", _decode(m, z, yz)))
    _rows_figure(rows, path, FIGURES["interpolations"][0])


def fig_latent_scatter(path: Path, models: dict[str, Any], data: Any, max_points: int = 2000) -> None:
    from sklearn.decomposition import PCA

    from vaelab.sampling import encode_means

    plt = _plt()
    fig, axes = _panels(len(models))
    n = min(max_points, data.x_test.shape[0])
    x = data.x_test[:n]
    y = data.y_test[:n].numpy() if data.y_test is not None else None
    for ax, (name, m) in zip(axes, models.items()):
        z = encode_means(m, x, data.y_test[:n] if m.is_conditional else None).numpy()
        how = ""
        if z.shape[1] > 2:
            z = PCA(n_components=2, random_state=0).fit_transform(z)
            how = " (PCA)"
        sc = ax.scatter(z[:, 0], z[:, 1], c=y if y is not None else "k", cmap="tab10", s=5,
                        vmin=-0.5, vmax=9.5 if y is not None else None, alpha=0.8, linewidths=0)
        ax.set_title(name + how)
        ax.set_xticks([])
        ax.set_yticks([])
    if y is not None and data.n_classes <= 10:
        names = list(data.class_names) or [str(i) for i in range(data.n_classes)]
        handles = [plt.Line2D([], [], marker="o", ls="", color=plt.cm.tab10(i), label=names[i])
                   for i in range(data.n_classes)]
        fig.legend(handles=handles, loc="lower center", ncol=min(10, data.n_classes), frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(FIGURES["latent_scatter"][0])
    _save(fig, path)


def _pair_grids(pair: dict[str, Any], data: Any, n: int) -> list[tuple[str, Any, Tensor]]:
    out = []
    if "ae-2d" in pair:
        out.append(("AE (prior quantiles)", pair["ae-2d"], latent_grid("prior", None, n=n)))
    if "vae-2d" in pair:
        out.append(("VAE (prior quantiles)", pair["vae-2d"], latent_grid("prior", None, n=n)))
    if "ae-2d" in pair:
        out.append(("AE (its code range)", pair["ae-2d"], latent_grid("codes", pair["ae-2d"], data, n=n)))
    return out


def fig_manifold_2d(path: Path, pair: dict[str, Any], data: Any, n: int = MANIFOLD_N) -> None:
    grids = _pair_grids(pair, data, n)
    fig, axes = _panels(len(grids), max_cols=3, size=4.0)
    for ax, (title, m, z) in zip(axes, grids):
        _show(ax, make_grid(_decode(m, z), n_col=n, pad=0))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"z1 {z[:, 0].min():.1f} … {z[:, 0].max():.1f}")
        ax.set_ylabel(f"z2 {z[:, 1].min():.1f} … {z[:, 1].max():.1f}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(FIGURES["manifold_2d"][0])
    _save(fig, path)


def fig_holes_map(path: Path, pair: dict[str, Any], data: Any, judge: Any, n: int = GRID_N) -> None:
    """Prior grids are drawn in prior-quantile coordinates (Phi(z), where the grid is uniform), code-range
    grids in z; the dots are test codes mapped the same way."""
    from scipy.stats import norm

    from vaelab.sampling import encode_means

    grids = _pair_grids(pair, data, n)
    fig, axes = _panels(len(grids), max_cols=3, size=4.0)
    im = None
    for ax, (title, m, z) in zip(axes, grids):
        g = grid_confidence(m, judge, z)
        codes = encode_means(m, data.x_test[:1000]).numpy()
        if "prior" in title:
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
        ax.set_title(f"{title}\nconfident (≥{CONFIDENT}) on {100 * g['frac_confident']:.0f} % of the grid",
                     fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="judge confidence")
    fig.suptitle(FIGURES["holes_map"][0])
    _save(fig, path)


def fig_training_curves(path: Path, curves: dict[str, Any]) -> None:
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
        ax.set_ylabel("nats per image")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))   # 20, 30, not 2x10^1
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
    a2.legend(fontsize=8, ncol=2)
    fig.suptitle(FIGURES["training_curves"][0])
    _save(fig, path)


def fig_denoising(path: Path, models: dict[str, Any], data: Any, n: int = 8, seed: int = 0) -> None:
    from vaelab.data import CORRUPTIONS, corrupt

    plt = _plt()
    idx = pick_test(data, n)
    x, y = data.x_test[idx], _labels(data, idx)
    fig, axes = _panels(len(CORRUPTIONS), max_cols=3, size=4.0)
    for i, (ax, (kind, level)) in enumerate(zip(axes, CORRUPTIONS.items())):
        noisy = corrupt(x, kind, level, generator=torch.Generator().manual_seed(seed + i))
        rows = [x, noisy] + [_recon(m, noisy, y) for m in models.values()]
        labels = ["clean", "input"] + list(models)
        grids = [make_grid(r, n_col=n) for r in rows]
        _show(ax, np.concatenate(grids, axis=0))
        h = grids[0].shape[0]
        ax.set_yticks([h * (j + 0.5) for j in range(len(rows))])
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xticks([])
        ax.set_title(f"{kind} {level:g}")
    fig.suptitle(FIGURES["denoising"][0])
    _save(fig, path)


# -- all of them -------------------------------------------------------------------------------
def make_all(fig_dir: str | Path, models: dict[str, Any], pair: dict[str, Any], data: Any, judge: Any,
             curves: dict[str, Any], cfg: Any) -> list[dict[str, str]]:
    """Draw every figure that applies (models that failed are absent) and return the report's list."""
    fig_dir = Path(fig_dir)
    seed = int(getattr(cfg, "seed", 0))
    plan: list[tuple[str, Callable[[Path], None]]] = []
    if models:
        plan += [("reconstructions", lambda p: fig_reconstructions(p, models, data)),
                 ("stochastic_reconstructions", lambda p: fig_stochastic_reconstructions(p, models, data, seed=seed)),
                 ("samples_prior", lambda p: fig_samples(p, models, data, "prior", seed=seed)),
                 ("samples_gmm", lambda p: fig_samples(p, models, data, "gmm", seed=seed))]
        if "cvae" in models:
            plan.append(("cvae_labels", lambda p: fig_cvae_labels(p, models["cvae"], data, seed=seed)))
        plan += [("interpolations", lambda p: fig_interpolations(p, models, data))]
    scatter = {**models, **pair}
    if scatter:
        plan.append(("latent_scatter", lambda p: fig_latent_scatter(p, scatter, data)))
    if pair:
        plan.append(("manifold_2d", lambda p: fig_manifold_2d(p, pair, data)))
        if judge is not None:
            plan.append(("holes_map", lambda p: fig_holes_map(p, pair, data, judge)))
    if any(curves.values()):
        plan.append(("training_curves", lambda p: fig_training_curves(p, curves)))
    if models:
        plan.append(("denoising", lambda p: fig_denoising(p, models, data, seed=seed)))
    out = []
    for name, draw in plan:
        draw(fig_dir / f"{name}.png")
        title, caption = FIGURES[name]
        out.append({"file": f"{name}.png", "title": title, "caption": caption})
    return out
