"""What the report's figures show, measured once: arrays of images and codes, saved beside metrics.json.

``evaluate`` calls ``model_views`` with the densities it fitted and the test codes it encoded;
``compare`` calls ``data_views`` once per run and ``pair_views`` for each 2-D model. The report
draws every figure from these arrays (``vaelab.report.figures``) without running a model.

Every random draw has its own generator seeded with ``seed`` (the metrics' draws are untouched):
the stochastic decodes use eps ~ N(0, I) from ``seed`` for every model, so models with the same
latent size see the same eps. Images are (N, C, H, W) float32 in [0, 1]; codes (N, D) float32.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaelab.measure.batched import decode_mean, encode, encode_means, reconstruct
from vaelab.measure.grid import GRID_N, MANIFOLD_N, latent_grid, pair_grid_measure

N_RECON = 10            # test images in the reconstructions figure (one per class first)
N_DECODES = 8           # stochastic decodes of one test image
N_SHOWN = 36            # samples per model and sampler (a 6 x 6 grid)
N_CVAE_ROWS = 6         # z rows of the CVAE label figure
N_STEPS, N_PAIRS = 10, 2    # interpolation steps and pairs
N_SCATTER = 2000        # test codes in the latent scatter
N_PRIOR_NORMS = 2000    # prior draws whose radius the code-norm histogram shows
N_DENOISE = 8           # test images per corruption
N_HOLES_CODES = 1000    # test codes drawn as dots on the holes map


def pick_test(y_test: Tensor | None, n_classes: int, n_test: int, n: int) -> Tensor:
    """Indices of ``n`` test images, cycling through the classes (one per class first) when there are labels."""
    if y_test is None:
        return torch.arange(min(n, n_test))
    by_class = [torch.nonzero(y_test == c).flatten() for c in range(n_classes)]
    out: list[int] = []
    i = 0
    while len(out) < min(n, n_test):
        for idx in by_class:
            if i < len(idx) and len(out) < n:
                out.append(int(idx[i]))
        i += 1
    return torch.tensor(out, dtype=torch.long)


def _pick(data: Any, n: int) -> Tensor:
    return pick_test(data.y_test, data.n_classes, int(data.x_test.shape[0]), n)


def _labels(data: Any, idx: Tensor) -> Tensor | None:
    return data.y_test[idx] if data.y_test is not None else None


def _np(x: Tensor) -> np.ndarray:
    return x.detach().cpu().float().numpy()


def data_views(data: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """The test images the figures show (the same for every model) and the corrupted inputs of the denoising figure.

    Keys: "recon_x" (10 images), "stochastic_x" (1), "denoise_x" (8), "denoise_input__<kind>" (8 per
    corruption, generator seeded seed + i as in ``evaluate``), "corruption_kinds" / "corruption_levels",
    "scatter_y" (labels of the first 2,000 test images; absent when unlabelled).
    """
    from vaelab.data import corrupt, corruptions_for

    corruptions = corruptions_for(data.shape)
    out = {"recon_x": _np(data.x_test[_pick(data, N_RECON)]), "stochastic_x": _np(data.x_test[_pick(data, 1)])}
    x = data.x_test[_pick(data, N_DENOISE)]
    out["denoise_x"] = _np(x)
    for i, (kind, level) in enumerate(corruptions.items()):
        out[f"denoise_input__{kind}"] = _np(corrupt(x, kind, level, generator=torch.Generator().manual_seed(seed + i)))
    out["corruption_kinds"] = np.array(list(corruptions), dtype=np.str_)
    out["corruption_levels"] = np.array(list(corruptions.values()), dtype=np.float64)
    if data.y_test is not None:
        out["scatter_y"] = data.y_test[:N_SCATTER].numpy().astype(np.int64)
    return out


def _scatter(mu: Tensor) -> dict[str, np.ndarray]:
    """The latent-scatter points: the codes as they are (D <= 2) or their PCA to 2-D (seeded, deterministic)."""
    z = mu[:N_SCATTER].numpy()
    is_pca = z.shape[1] > 2
    if is_pca:
        from sklearn.decomposition import PCA

        z = PCA(n_components=2, random_state=0).fit_transform(z)
    return {"scatter": z.astype(np.float32), "scatter_is_pca": np.array(is_pca)}


@torch.inference_mode()
def model_views(model: torch.nn.Module, data: Any, *, mu_test: Tensor, densities: dict[str, Any],
                seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of one model's figures.

    Args:
        mu_test: (N_test, D) posterior means of the test split (``evaluate``'s); densities: sampler ->
            the fitted density (``vaelab.sampling.fit_density``) of each sampler to show.
    Returns keys: "recon" (10 images), "stochastic" (8 decodes of z ~ q(z|x) of "stochastic_x"),
        "samples__<sampler>" (36), "cvae_labels" (rows, classes, C, H, W; CVAE only), "interpolations"
        (pairs, steps, C, H, W), "scatter" (n, 2) + "scatter_is_pca", "denoise__<kind>" (8 per corruption),
        "code_norms" (N_test,) = ||mu(x)|| and, for the VAE family, "prior_norms" (2000,) = ||z||, z ~ p(z).
    """
    from vaelab.data import corrupt, corruptions_for
    from vaelab.sampling import sample_labels

    model.eval()
    out: dict[str, np.ndarray] = {}
    idx = _pick(data, N_RECON)
    out["recon"] = _np(reconstruct(model, data.x_test[idx], _labels(data, idx)))

    idx = _pick(data, 1)
    x, y = data.x_test[idx], _labels(data, idx)
    mu, logvar = encode(model, x, y)                                     # (1, D)
    eps = torch.randn((N_DECODES, mu.shape[1]), generator=torch.Generator().manual_seed(seed))
    z = mu + (torch.exp(0.5 * logvar) * eps if logvar is not None else 0.0 * eps)   # (8, D): z ~ q(z|x)
    out["stochastic"] = _np(decode_mean(model, z, y.expand(N_DECODES) if y is not None else None))

    for sampler, density in densities.items():
        out[f"samples__{sampler}"] = _np(decode_mean(model, density.sample(N_SHOWN, seed=seed),
                                                     sample_labels(model, N_SHOWN)))

    if model.is_conditional:
        c = model.cfg.n_classes
        z = torch.randn(N_CVAE_ROWS, model.cfg.n_latent, generator=torch.Generator().manual_seed(seed))
        z = z.repeat_interleave(c, dim=0)                                # (rows * C, D): each z once per label
        x_c = decode_mean(model, z, torch.arange(c).repeat(N_CVAE_ROWS))
        out["cvae_labels"] = _np(x_c).reshape(N_CVAE_ROWS, c, *x_c.shape[1:])

    idx = _pick(data, 2 * N_PAIRS)
    if data.y_test is not None and data.n_classes >= 2:
        pairs = [(int(idx[2 * p]), int(idx[2 * p + 1])) for p in range(N_PAIRS)]
    else:
        pairs = [(2 * p, 2 * p + 1) for p in range(N_PAIRS)]
    t = torch.linspace(0, 1, N_STEPS)[:, None]                           # (T, 1)
    rows = []
    for a, b in pairs:
        ends = torch.tensor([a, b])
        y_ab = _labels(data, ends) if model.is_conditional else None
        mu_ab = encode(model, data.x_test[ends], y_ab)[0]                # (2, D)
        z = (1 - t) * mu_ab[0] + t * mu_ab[1]                            # (T, D)
        y_t = torch.where(t[:, 0] < 0.5, y_ab[0], y_ab[1]) if y_ab is not None else None
        rows.append(_np(decode_mean(model, z, y_t)))
    out["interpolations"] = np.stack(rows)                               # (P, T, C, H, W)

    out.update(_scatter(mu_test))
    out["code_norms"] = mu_test.double().norm(dim=1).numpy().astype(np.float32)      # ||E_q[z|x]|| of the test split
    if model.is_stochastic and hasattr(model, "prior"):       # ||z|| of z ~ p(z): the radius the prior expects
        z = model.prior.sample(N_PRIOR_NORMS, generator=torch.Generator().manual_seed(seed))
        out["prior_norms"] = z.double().norm(dim=1).cpu().numpy().astype(np.float32)

    idx = _pick(data, N_DENOISE)
    x, y = data.x_test[idx], _labels(data, idx)
    for i, (kind, level) in enumerate(corruptions_for(data.shape).items()):
        noisy = corrupt(x, kind, level, generator=torch.Generator().manual_seed(seed + i))
        out[f"denoise__{kind}"] = _np(reconstruct(model, noisy, y))
    return out


@torch.inference_mode()
def pair_views(model: torch.nn.Module, data: Any, judge: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The 2-D model's holes-map numbers (for metrics.json) and the arrays of its manifold, holes and scatter figures.

    Returns (grids, arrays): grids = {"grid_prior", "grid_codes"} (``pair_grid_measure`` over the GRID_N
    prior-quantile grid and the training codes' 1..99 % range; {} without a judge); arrays =
    "manifold__prior", "manifold__codes" (MANIFOLD_N^2 decodes) with their grids "manifold_z__prior" /
    "manifold_z__codes", "holes_codes" (the first 1,000 test codes) and "scatter" / "scatter_is_pca".
    """
    model.eval()
    z_train = encode_means(model, data.x_train, data.y_train)
    grids: dict[str, Any] = {}
    if judge is not None:
        grids["grid_prior"] = pair_grid_measure(model, judge, latent_grid("prior", GRID_N))
        grids["grid_codes"] = pair_grid_measure(model, judge, latent_grid("codes", GRID_N, z_train))
    out: dict[str, np.ndarray] = {}
    for kind in ("prior", "codes"):
        z = latent_grid(kind, MANIFOLD_N, z_train)
        out[f"manifold__{kind}"] = _np(decode_mean(model, z))
        out[f"manifold_z__{kind}"] = z.numpy()
    mu_test = encode_means(model, data.x_test, data.y_test)
    out["holes_codes"] = mu_test[:N_HOLES_CODES].numpy()
    out.update(_scatter(mu_test))
    return grids, out


PRIOR_MAP_N = 80         # cells per axis of a 2-D model's aggregate-posterior map
PRIOR_MAP_IMAGES = 2000  # test images whose posteriors make q(z) there


def prior_map_box(prior: Any, codes: np.ndarray, seed: int = 0) -> tuple[float, float, float, float]:
    """The (x1, x2, y1, y2) box a 2-D prior's map is drawn over: (0, 1)^2 for the uniform prior, else the
    0.1..99.9 % range of 2,000 prior draws and of the codes on each axis, widened by 5 % each side."""
    if prior.name == "uniform":
        return 0.0, 1.0, 0.0, 1.0
    with torch.no_grad():
        draws = prior.sample(2000, generator=torch.Generator().manual_seed(seed)).double().cpu().numpy()
    both = np.concatenate([draws, np.asarray(codes, dtype=np.float64)])
    lo, hi = np.percentile(both, 0.1, axis=0), np.percentile(both, 99.9, axis=0)
    pad = 0.05 * (hi - lo)
    return float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])


@torch.no_grad()
def prior_map_view(model: torch.nn.Module, data: Any, seed: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The aggregate posterior of a 2-D VAE-family model over its prior, on a PRIOR_MAP_N^2 grid of cell centres
    (``vaelab.metrics.holes.aggregate_map``: KL(q || p) on the box and the prior mass in holes, with intervals).

    Returns (numbers, arrays): numbers for metrics.json (+ "prior", "extent"); arrays "map_log_q", "map_log_p"
    (n, n; rows top-down, z2 decreasing as an image is read), "map_extent", "map_codes" (the first
    N_HOLES_CODES test posterior means) and "map_labels" (their labels, when the data have them).
    """
    from vaelab.metrics.holes import aggregate_map

    model.eval()
    prior = model.prior
    x = data.x_test[:PRIOR_MAP_IMAGES]
    dev = next(model.parameters()).device
    a, b = map(torch.cat, zip(*[model.posterior(x[i:i + 1024].to(dev)) for i in range(0, len(x), 1024)]))
    codes = prior.distribution(a, b).mean.float().cpu().numpy()        # the posterior means (encode_means)
    x1, x2, y1, y2 = prior_map_box(prior, codes, seed)
    n = PRIOR_MAP_N
    cx = x1 + (np.arange(n) + 0.5) * (x2 - x1) / n
    cy = (y1 + (np.arange(n) + 0.5) * (y2 - y1) / n)[::-1]
    gx, gy = np.meshgrid(cx, cy)
    zg = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1)).to(dev, a.dtype)     # (G, 2)
    log_qn = torch.cat([prior.log_q(zg[None, i:i + 512], a[:, None], b[:, None])           # (N, g) each
                        for i in range(0, len(zg), 512)], dim=1)
    log_p = prior.log_prob(zg)
    res = aggregate_map(log_qn.double().cpu().numpy(), log_p.double().cpu().numpy(), seed=seed)
    log_q = res.pop("log_q").reshape(n, n)
    arrays = {"map_log_q": log_q.astype(np.float32), "map_log_p": log_p.reshape(n, n).float().cpu().numpy(),
              "map_extent": np.array([x1, x2, y1, y2]), "map_codes": codes[:N_HOLES_CODES].astype(np.float32)}
    if data.y_test is not None:
        arrays["map_labels"] = data.y_test[:N_HOLES_CODES].numpy()
    return {**res, "prior": prior.name, "extent": [x1, x2, y1, y2]}, arrays
