"""Per-image anomaly scores of a trained model, and the `vaelab score` command.

Every score is *higher for more anomalous* images (DESIGN.md, "Test time"):

    recon_error          -log p(x | z = mu(x)), the reconstruction term through the posterior mean, on x
                         in [0, 1] (AE and VAE family; the TensorFlow-tutorial anomaly score)
    gmm_nll              -log p_GMM(mu(x)): the code's density under the ex-post 10-component Gaussian
                         mixture fitted to the training codes (Ghosh et al. 2020; AE and VAE family)
    neg_elbo             -ELBO = -(1/K) sum_k log w_k, w_k = p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x)
    iw_nll               -log (1/K) sum_k w_k, the importance-weighted bound on -log p(x) (Burda et al. 2016)
    posterior_spread     sum_d sigma_d^2(x), the trace of the posterior covariance q(z|x)
    complexity_corrected S(x) = -log2 p(x) - L(x) with -log p(x) the IW bound in bits and L(x) the length
                         in bits of x as an 8-bit PNG (Serra et al. 2020, "Input complexity and
                         out-of-distribution detection with likelihood-based generative models", eq. 2)

The likelihood scores (neg_elbo, iw_nll, posterior_spread, complexity_corrected) exist for the VAE
family only; the label-conditioned cvae gets no scores (a new image comes without its label).
The likelihood terms are computed on the data as the model's likelihood sees it
(``vaelab.preprocess.modelled``: one fixed seeded binarisation / dequantisation).

Why the input-complexity correction and not the likelihood ratio of Ren et al. 2019: the ratio needs
a second "background" model trained on perturbed inputs for every model compared, which would double
training time; the complexity correction needs only a lossless compressor (Pillow's PNG) and the
likelihood every VAE already has, and Serra et al. report it works across data sets.
"""
from __future__ import annotations

import functools
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from vaelab.config import SCORE_NAMES, ScoreConfig
from vaelab.errors import ConfigError

if TYPE_CHECKING:          # torch and numpy are imported where used: `vaelab score --help` stays fast
    import numpy as np
    import torch
    from torch import Tensor

K_SCORE = ScoreConfig.k   # importance samples per image for neg_elbo / iw_nll (a score, not the report's K)
BATCH = 64          # images per batch: (K x BATCH) decodes at once
SCORES = SCORE_NAMES
SCORE_LABELS = {
    "recon_error": "reconstruction error −log p(x|μ)",
    "gmm_nll": "−log density of the code under the ex-post GMM",
    "neg_elbo": "−ELBO",
    "iw_nll": "IW bound on −log p(x)",
    "posterior_spread": "posterior spread Σσ²",
    "complexity_corrected": "complexity-corrected −log₂ p(x) − L_PNG(x)",
}


def _inference(fn):  # noqa: ANN001, ANN202
    """torch.inference_mode() around ``fn``, importing torch only when called."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)
    return wrapper


def applicable_scores(model: torch.nn.Module) -> tuple[str, ...]:
    """The scores of ``SCORES`` that exist for ``model`` (none for label-conditioned models; no PNG complexity
    correction for feature vectors, which are not images)."""
    from vaelab.data import is_vector_shape

    if model.is_conditional:
        return ()
    if getattr(model, "has_likelihood", False):
        if is_vector_shape(model.cfg.input_shape):
            return tuple(s for s in SCORES if s != "complexity_corrected")
        return SCORES
    return ("recon_error", "gmm_nll")


def png_bits(x: Tensor | np.ndarray) -> np.ndarray:
    """Length in bits of each image losslessly compressed by the PNG encoder (Pillow's "zip" codec).

    The complexity estimate L(x) of Serra et al. 2020. The codec's output is the PNG file's image data
    (row filters + zlib): an 8-bit PNG file of the image is that plus a constant 57 bytes of chunks, which
    shifts S(x) by a constant and so changes no ranking.

    Args:
        x: (N, C, H, W) in [0, 1], C in {1, 3}.
    Returns:
        (N,) float64 bits.
    """
    import numpy as np
    import torch
    from PIL import Image

    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"png_bits needs (N, 1 or 3, H, W) images, got {a.shape}")
    a8 = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    out = np.empty(len(a8))
    for i, img in enumerate(a8):
        pil = Image.fromarray(img[0]) if img.shape[0] == 1 else Image.fromarray(img.transpose(1, 2, 0))
        out[i] = 8.0 * len(pil.tobytes("zip", pil.mode))
    return out


def check_shape(model: torch.nn.Module, x: Tensor, what: str) -> None:
    """One clear message when images do not have the model's input shape."""
    want, got = tuple(model.cfg.input_shape), tuple(x.shape[1:])
    if got != want:
        raise ConfigError(f"{what} has images of shape {got} (C, H, W) but the model takes {want}: score data of "
                          "the size it was trained on (resize the images, or train on data of this size).")


def image_noise(x: Tensor, k: int, n_latent: int, seed: int) -> Tensor:
    """(K, B, D) standard-normal noise for the images x (B, C, H, W), seeded by each image's own bytes.

    The same image gets the same importance samples whatever batch, position or data set it comes in, so
    `vaelab score` on a run's test split reproduces the report's numbers.
    """
    import torch

    rows = []
    for img in x.detach().cpu().float().numpy():
        g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(img.tobytes())) % (2**63))
        rows.append(torch.randn(k, n_latent, generator=g))
    return torch.stack(rows, 1)                                                            # (K, B, D)


def _batches(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


@_inference
def image_scores(model: torch.nn.Module, x: Tensor, *, density: Any = None, k: int = K_SCORE, seed: int = 0,
                 split: str = "test", progress: Any = None) -> dict[str, np.ndarray]:
    """Every applicable anomaly score of each image (higher = more anomalous).

    Args:
        model: a trained vaelab model; x: (N, C, H, W) in [0, 1] with the model's input shape.
        density: the ex-post density of the model's codes (``fit(z) -> self`` with ``log_prob``), e.g.
            ``vaelab.sampling.fit_density("gmm", model, data)``; None: no gmm_nll.
        k: importance samples per image (neg_elbo, iw_nll); seed: seeds them, with each image's bytes
            (``image_noise``: an image's scores do not depend on the batch or set it comes in, except through
            a --binarize / --dequantize draw, which ``split`` names and which covers the whole set).
        progress: an optional tqdm bar, advanced by the number of images scored.
    Returns:
        {score name: (N,) float64} for the names of ``applicable_scores(model)`` (gmm_nll only with a density).
    """
    import numpy as np
    import torch

    from vaelab.preprocess import modelled, nll_offset

    names = applicable_scores(model)
    if not names:
        return {}
    check_shape(model, x, "the data")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"the number of importance samples must be a positive integer, got {k!r}.")
    model.eval()
    dev = next(model.parameters()).device
    stochastic = getattr(model, "has_likelihood", False)
    x_mod = modelled(x, model.cfg, split) if stochastic else x
    offset = nll_offset(model.cfg) if stochastic else 0.0
    cols: dict[str, list[Tensor]] = {n: [] for n in names if n not in ("gmm_nll", "complexity_corrected")}
    mus = []
    for s in _batches(len(x), BATCH):
        xb = x[s].to(dev)
        q = model.encode(xb)
        mus.append(q.mean.float().cpu())
        cols["recon_error"].append(model.recon_nll(model.decode(q.mean), xb).double().cpu())
        if stochastic:
            xm = x_mod[s].to(dev)
            eps = image_noise(x[s], k, model.cfg.n_latent, seed)                             # (K, B, D)
            lw = model.log_weights(xm, None, k, eps=eps.to(dev)).double().cpu()            # (K, B)
            cols["neg_elbo"].append(-lw.mean(0) + offset)
            cols["iw_nll"].append(-(torch.logsumexp(lw, 0) - math.log(k)) + offset)
            cols["posterior_spread"].append(q.variance.double().sum(1).cpu())               # (B,)
        if progress is not None:
            progress.update(xb.shape[0])
    out = {n: torch.cat(v).numpy() for n, v in cols.items()}
    if density is not None and "gmm_nll" in names:
        out["gmm_nll"] = -density.log_prob(torch.cat(mus).double()).numpy().astype(np.float64)
    if "complexity_corrected" in names:
        out["complexity_corrected"] = out["iw_nll"] / math.log(2) - png_bits(x)
    return {n: out[n] for n in names if n in out}


@_inference
def uncertainty(model: torch.nn.Module, x: Tensor, *, n_decodes: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A VAE's per-image uncertainty about a new image, and the stochastic reconstructions behind it.

    posterior_variance: sum_d sigma_d^2(x) (trace of the covariance of q(z|x));
    recon_spread: mean over pixels of the variance over ``n_decodes`` decodes of z_s ~ q(z|x)
    (the stochastic reconstructions; an AE has none: its decode is one image).

    Args:
        model: a VAE-family model; x: (N, C, H, W) in [0, 1].
    Returns:
        {"posterior_variance": (N,), "recon_spread": (N,)} float64.
    """
    import torch

    if not model.is_stochastic or model.is_conditional:
        raise ValueError(f"{model.cfg.model} has no posterior spread (deterministic or label-conditioned)")
    check_shape(model, x, "the data")
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    var, spread = [], []
    for s in _batches(len(x), 256):
        q = model.encode(x[s].to(dev))
        eps = torch.randn(n_decodes, *q.mean.shape, generator=gen).to(dev)               # (S, B, D)
        imgs = model.x_mean(model.decode(q.mean + q.stddev * eps))                          # (S, B, C, H, W)
        var.append(q.variance.double().sum(1).cpu())
        spread.append(imgs.double().var(0, unbiased=True).flatten(1).mean(1).cpu())
    return {"posterior_variance": torch.cat(var).numpy(), "recon_spread": torch.cat(spread).numpy()}


@_inference
def stochastic_reconstructions(model: torch.nn.Module, x: Tensor, n_decodes: int = 8, seed: int = 0) -> Tensor:
    """x (N, C, H, W) -> (N, n_decodes, C, H, W) decodes of z_s ~ q(z|x), on the CPU (for figures)."""
    import torch

    dev = next(model.parameters()).device
    q = model.encode(x.to(dev))
    eps = torch.randn(n_decodes, *q.mean.shape, generator=torch.Generator().manual_seed(seed)).to(dev)
    imgs = model.x_mean(model.decode(q.mean + q.stddev * eps))                               # (S, N, C, H, W)
    return imgs.transpose(0, 1).float().cpu()


# -- `vaelab score` ---------------------------------------------------------------------------------
def model_folders(path: str | Path) -> list[tuple[str, Path]]:
    """(name, folder) of every model under a run folder (``models/<name>[/seed-<s>]``), or the one model folder."""
    from vaelab.checkpoint import CONFIG_NAME

    p = Path(path)
    if (p / CONFIG_NAME).is_file():
        return [(p.name, p)]
    root = p / "models"
    if not root.is_dir():
        raise ConfigError(f"{p} is neither a run folder (with models/) nor a model folder (with {CONFIG_NAME}): "
                          "pass a folder written by `vaelab compare` or `vaelab train`.")
    out = []
    for cfg in sorted(root.rglob(CONFIG_NAME)):
        rel = cfg.parent.relative_to(root)
        out.append(("/".join(rel.parts), cfg.parent))
    if not out:
        raise ConfigError(f"{root} holds no model folders ({CONFIG_NAME} + weights); the run has not trained any.")
    return out


def rows_to_score(spec: str, data_dir: str | None, split: str, data_block: dict[str, Any] | None = None
                ) -> tuple[Tensor, Tensor | None, list[str], list[int]]:
    """The rows of ``split`` of ``spec``, read as new data for the trained model (``data_block``: config.json's
    "data"): tables with its columns, its saved standardisation and its label column (``load_new_data``)."""
    import torch

    from vaelab.data import load_new_data

    data = load_new_data(spec, data_block or {}, data_dir=data_dir)
    parts = ("train", "val", "test") if split == "all" else (split,)
    xs, ys, names, idx = [], [], [], []
    for part in parts:
        x = getattr(data, f"x_{part}")
        xs.append(x)
        y = getattr(data, f"y_{part}")
        if y is not None:
            ys.append(y)
        names += [part] * len(x)
        idx += list(range(len(x)))
    return torch.cat(xs), (torch.cat(ys) if len(ys) == len(parts) else None), names, idx


def score_run(run: str | Path, dataset: str, out: str | Path, *, data_dir: str | None = None, split: str = "all",
              fpr: float = 0.05, score: str = "recon_error", k: int = K_SCORE, seed: int = 0, progress: bool = True,
              overwrite: bool = False) -> dict[str, Any]:
    """Score ``dataset`` with every model of ``run``; thresholds at ``fpr`` from each model's validation split.

    Writes ``out`` (CSV, atomically): split, index (within that split of ``dataset``'s seeded split), label
    (if any), then ``<model>:<score>`` for every applicable score and ``<model>:anomaly`` (1 when the
    model's ``score`` exceeds its threshold), and ``out`` + ".json": the thresholds and flagged fractions.
    Returns that JSON document.
    """
    import numpy as np

    from vaelab.checkpoint import load_model
    from vaelab.io import atomic_write_json, atomic_write_text
    from vaelab.metrics.detection import threshold_at_fpr
    from vaelab.sampling import fit_density, reload_dataset

    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out must be a .csv file, got {out.name!r}.")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it or choose another --out.")
    if split not in ("all", "train", "val", "test"):
        raise ConfigError(f"--split must be all, train, val or test, got {split!r}.")
    if not 0.0 < fpr < 1.0:
        raise ConfigError(f"--fpr must be in (0, 1), e.g. 0.05, got {fpr!r}.")
    if score not in SCORES:
        raise ConfigError(f"unknown --score {score!r}; choose one of: {', '.join(SCORES)}.")
    folders = model_folders(run)
    loaded = [(name, load_model(folder)) for name, folder in folders]
    x, y, split_names, index = rows_to_score(dataset, data_dir, split, loaded[0][1].config.get("data"))
    for name, ck in loaded:
        check_shape(ck.model, x, f"--dataset {dataset}")
    columns: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"run": str(run), "dataset": dataset, "split": split, "fpr": fpr, "score": score,
                            "k": k, "seed": seed, "models": {}}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(loaded), desc="score", unit="model")
    try:
        for name, ck in loaded:
            model = ck.model
            if bar is not None:
                bar.set_postfix_str(name)
            names = applicable_scores(model)
            if not names:
                info["models"][name] = {"note": f"{model.cfg.model} is label-conditioned: a new image has no label, "
                                                "so it is not scored."}
                continue
            train_data = reload_dataset(ck.config)
            density = fit_density("gmm", model, train_data, seed)
            s_new = image_scores(model, x, density=density, k=k, seed=seed, split="test")
            s_val = image_scores(model, train_data.x_val, density=density, k=k, seed=seed, split="val")
            for n, v in s_new.items():
                columns[f"{name}:{n}"] = v
            entry: dict[str, Any] = {"scores": list(s_new), "n_val": int(len(train_data.x_val))}
            if score in s_new and len(train_data.x_val):
                t = threshold_at_fpr(s_val[score], fpr)
                flags = (s_new[score] > t).astype(np.int64)
                columns[f"{name}:anomaly"] = flags
                entry.update(threshold=t, flagged_fraction=float(flags.mean()),
                             val_flagged_fraction=float(np.mean(s_val[score] > t)))
            else:
                entry["note"] = (f"no anomaly column: {score} does not apply to {model.cfg.model}" if score not in s_new
                                 else "no anomaly column: the model's validation split is empty")
            info["models"][name] = entry
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    header = ["split", "index"] + (["label"] if y is not None else []) + list(columns)
    lines = [",".join(header)]
    for i in range(len(x)):
        row = [split_names[i], str(index[i])] + ([str(int(y[i]))] if y is not None else [])
        row += [str(int(v[i])) if v.dtype.kind == "i" else repr(float(v[i])) for v in columns.values()]
        lines.append(",".join(row))
    atomic_write_text(out, "\n".join(lines) + "\n")
    atomic_write_json(Path(str(out) + ".json"), info)
    return info
