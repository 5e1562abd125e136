"""What the explorer serves, without HTTP: the run's models, their test codes on a 2-D map, decoding.

One ``Explorer`` per run folder. Models, datasets, test codes, map projections, ex-post GMMs and
holes maps are computed on first use and cached (a lock per model, so concurrent requests compute
each thing once). Every user mistake raises an ``ExploreError`` with an HTTP status and a message.

The map of a model with D latent dimensions:
  * D == 2: the latent plane itself, (u, v) = (z1, z2) ("identity");
  * D == 1: u = z1, v unused ("line");
  * D > 2: the plane of the first two principal components of the test codes ("pca"):
    (u, v) = (z - mean) @ C.T with C (2, D) orthonormal rows. A map point becomes a full code by
    holding every other direction at a chosen test example's code z_b:
    z = z_b + ((u, v) - P(z_b)) @ C, so that P(z) = (u, v) and z - z_b lies in the plane.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from vaelab.config import is_vector_shape
from vaelab.errors import VaelabError
from vaelab.measure.grid import grid_confidence

MAX_MAP_POINTS = 20000      # more test codes than this are subsampled (seeded) for the map
HOLES_GRID = 32             # cells per side of the holes map
BAR_FEATURES = 128          # a table's row is drawn as at most this many bars (its first features)
BAR_CLIP = 3.0              # bars reach +-3 standardised units (training standard deviations) from the middle line
BAR_ABOVE, BAR_BELOW, BAR_LINE = (0.12, 0.47, 0.71), (0.84, 0.15, 0.16), (0.6, 0.6, 0.6)   # RGB in [0, 1]


class ExploreError(VaelabError):
    """A bad request to the explorer: ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


JudgeLoader = Callable[[Any], Any]


def default_judge_loader(data: Any) -> Any:
    """The cached judge of ``data`` (vaelab.judge), or None where vaelab.judge is not installed/has no judge."""
    try:
        from vaelab.judge import load_or_train_judge
    except ImportError:
        return None
    return load_or_train_judge(data, progress=False)


# -- images on the wire --------------------------------------------------------------------------
def view_shape(input_shape: tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """(C, H, W) of what the page draws for one example: the image itself, or a table row's bar picture."""
    if not is_vector_shape(input_shape):
        return tuple(int(v) for v in input_shape)
    d = min(int(input_shape[-1]), BAR_FEATURES)
    side = max(24, d * max(1, 48 // d))
    return 3, side, side


def vector_bars(x: Tensor) -> Tensor:
    """Rows of a table (N, 1, 1, D), standardised -> (N, 3, S, S) RGB bar pictures in [0, 1] (``view_shape``).

    One bar per feature, left to right in file order (the first BAR_FEATURES of them), from the middle line (the
    training mean) up for values above it (blue), down below it (red); the picture's half-height is BAR_CLIP sd.
    """
    v = x.detach().float().reshape(len(x), -1)[:, :BAR_FEATURES].clamp(-BAR_CLIP, BAR_CLIP)      # (N, D)
    _, s, _ = view_shape(x.shape[1:])
    w = s // v.shape[1]                                                   # pixels per bar
    mid = s / 2
    rows = torch.arange(s, dtype=torch.float32)[:, None] + 0.5           # (S, 1) pixel-row centres, top = 0
    end = mid - v[:, None, :] * (mid / BAR_CLIP)                          # (N, 1, D) the bar's far end
    above = (rows >= end) & (rows < mid)                                  # (N, S, D)
    below = (rows >= mid) & (rows < end)
    pic = torch.ones(len(v), 3, s, v.shape[1])
    pic[:, :, int(mid)] = torch.tensor(BAR_LINE)[None, :, None]          # the mean, under the bars
    for mask, rgb in ((above, BAR_ABOVE), (below, BAR_BELOW)):
        pic = torch.where(mask[:, None], torch.tensor(rgb)[None, :, None, None], pic)
    pic = pic.repeat_interleave(w, dim=3)                                 # (N, 3, S, D * w)
    return torch.nn.functional.pad(pic, (0, s - pic.shape[3]), value=1.0)   # (N, 3, S, S)


def to_bytes(x: Tensor) -> np.ndarray:
    """Images in [0, 1] (N, C, H, W) -> uint8 (N, H, W, C), rounded: what the page draws."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def encode_images(x: Tensor) -> list[str]:
    """Each image as base64 of its raw uint8 (H, W, C) bytes (row-major); the page calls putImageData. A table's
    rows (N, 1, 1, D) go as their bar pictures (``vector_bars``)."""
    b = to_bytes(vector_bars(x) if is_vector_shape(x.shape[1:]) else x)
    return [base64.b64encode(b[i].tobytes()).decode("ascii") for i in range(b.shape[0])]


# -- the run folder ------------------------------------------------------------------------------
def find_model_folders(run_dir: str | Path) -> dict[str, Path]:
    """Model folders of a run: RUN/models/<name>/ (or <name>/seed-<s>/, named "<name>@seed-<s>"), else
    RUN/<name>/, else RUN itself; 2-D pair first."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ExploreError(f"{run} is not a folder. Pass a run folder written by `vaelab compare` "
                           "(RUN/models/<model>/) or a folder of model folders.", 404)
    if (run / "config.json").is_file():
        return {run.name: run}
    for root in (run / "models", run):
        if root.is_dir():
            found = {}
            for p in sorted(root.iterdir()):
                if p.is_dir() and (p / "config.json").is_file():
                    found[p.name] = p
                elif p.is_dir():     # a multi-seed run: models/<name>/seed-<s>/ -> "<name>@seed-<s>"
                    for q in sorted(p.glob("seed-*"), key=lambda q: (len(q.name), q.name)):
                        if (q / "config.json").is_file():
                            found[f"{p.name}@{q.name}"] = q
            if found:
                order = ["ae-2d", "vae-2d"]
                return {**{k: found[k] for k in order if k in found},
                        **{k: v for k, v in found.items() if k not in order}}
    raise ExploreError(f"{run} holds no model folders: expected {run}/models/<model>/config.json (as written by "
                       "`vaelab compare`) or <model>/config.json folders directly inside it.", 404)


@dataclass
class ModelState:
    """One model of the run and everything computed for it (filled lazily, under ``lock``)."""

    name: str
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    ckpt: Any = None
    data: Any = None
    z_test: Tensor | None = None            # (N, D) posterior means of the test split
    mean: np.ndarray | None = None          # (D,) PCA centre
    components: np.ndarray | None = None    # (2, D) orthonormal PCA rows (D > 2)
    explained: list[float] | None = None
    map_cache: dict[str, Any] | None = None
    gmm: Any = None
    holes: dict[tuple, dict[str, Any]] = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module:
        return self.ckpt.model

    @property
    def n_latent(self) -> int:
        return int(self.model.cfg.n_latent)


class Explorer:
    """The models of one run folder, loaded and prepared on demand."""

    def __init__(self, run_dir: str | Path, judge_loader: JudgeLoader | None = default_judge_loader):
        self.run_dir = Path(run_dir)
        self.models: dict[str, ModelState] = {n: ModelState(n, p) for n, p in find_model_folders(run_dir).items()}
        self.judge_loader = judge_loader
        self._data: dict[str, Any] = {}
        self._judges: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- lookup and lazy loading ------------------------------------------------------------------
    def get(self, name: str) -> ModelState:
        m = self.models.get(name)
        if m is None:
            raise ExploreError(f"unknown model {name!r}; this run has {', '.join(self.models)}.", 404)
        self._load(m)
        return m

    def _load(self, m: ModelState) -> None:
        if m.ckpt is not None:
            return
        from vaelab.checkpoint import load_model

        with m.lock:
            if m.ckpt is None:
                try:
                    m.ckpt = load_model(m.path)
                except VaelabError as e:
                    raise ExploreError(f"model {m.name!r} cannot be loaded: {e}", 409) from None

    def dataset(self, m: ModelState) -> Any:
        """The model's dataset (reloaded from config.json's "data" block; one copy per data block)."""
        if m.data is not None:
            return m.data
        from vaelab.sampling import reload_dataset

        block = m.ckpt.config.get("data") or {}
        key = json.dumps({k: block.get(k) for k in ("spec", "data_dir", "split_seed", "val_fraction", "classes",
                                                    "max_train")}, sort_keys=True)
        with self._lock:
            if key not in self._data:
                try:
                    self._data[key] = reload_dataset(m.ckpt.config)
                except VaelabError as e:
                    raise ExploreError(f"model {m.name!r}: cannot reload its dataset: {e}", 409) from None
            m.data = self._data[key]
        return m.data

    def _prepare(self, m: ModelState) -> None:
        """Encode the test split and fit the map projection (once)."""
        if m.z_test is not None:
            return
        from vaelab.measure.batched import encode_means

        data = self.dataset(m)
        with m.lock:
            if m.z_test is not None:
                return
            if m.model.is_conditional and data.y_test is None:
                raise ExploreError(f"model {m.name!r} is label-conditioned but its dataset has no labels.", 409)
            z = encode_means(m.model, data.x_test, data.y_test if m.model.is_conditional else None).float()
            d = z.shape[1]
            zn = z.double().numpy()
            m.mean = zn.mean(0)
            if d > 2:
                _, s, vt = np.linalg.svd(zn - m.mean, full_matrices=False)
                m.components = vt[:2]
                var = s**2
                m.explained = [float(v) for v in (var[:2] / max(var.sum(), 1e-300))]
            m.z_test = z

    # -- the map -----------------------------------------------------------------------------------
    def projection_kind(self, m: ModelState) -> str:
        return {1: "line", 2: "identity"}.get(m.n_latent, "pca")

    def project(self, m: ModelState, z: Tensor | np.ndarray) -> np.ndarray:
        """Codes (N, D) -> map coordinates (N, 2)."""
        zn = np.asarray(z.double().numpy() if isinstance(z, Tensor) else z, dtype=np.float64)
        if m.n_latent == 1:
            return np.stack([zn[:, 0], np.zeros(len(zn))], 1)
        if m.n_latent == 2:
            return zn.copy()
        return (zn - m.mean) @ m.components.T

    def check_index(self, m: ModelState, index: int) -> int:
        n = int(m.z_test.shape[0])
        if not 0 <= index < n:
            raise ExploreError(f"example {index} is out of range: model {m.name!r}'s test split has {n} examples "
                               f"(0..{n - 1}).", 404)
        return index

    def unproject(self, m: ModelState, uv: np.ndarray, base_index: int) -> Tensor:
        """Map points (N, 2) -> codes (N, D), other directions held at test example ``base_index``."""
        self._prepare(m)
        uv = np.asarray(uv, dtype=np.float64)
        if m.n_latent == 1:
            return torch.from_numpy(uv[:, :1]).float()
        if m.n_latent == 2:
            return torch.from_numpy(uv).float()
        zb = m.z_test[self.check_index(m, base_index)].double().numpy()
        pb = (zb - m.mean) @ m.components.T
        return torch.from_numpy(zb[None] + (uv - pb) @ m.components).float()   # (N, D)

    def latent_map(self, m: ModelState) -> dict[str, Any]:
        """Map coordinates of the test codes, labels, projection info and the map's bounds."""
        self._prepare(m)
        if m.map_cache is not None:
            return m.map_cache
        data = m.data
        n = int(m.z_test.shape[0])
        idx = np.arange(n)
        if n > MAX_MAP_POINTS:
            idx = np.sort(np.random.default_rng(0).choice(n, MAX_MAP_POINTS, replace=False))
        uv = self.project(m, m.z_test)
        lo, hi = np.percentile(uv, 0.5, axis=0), np.percentile(uv, 99.5, axis=0)
        pad = 0.1 * np.maximum(hi - lo, 1e-3)
        lo, hi = lo - pad, hi + pad
        if m.n_latent == 1:
            lo[1], hi[1] = -1.0, 1.0
        else:  # equal scales on both axes: distances on the map are distances in the plane
            half, mid = (hi - lo).max() / 2, (hi + lo) / 2
            lo, hi = mid - half, mid + half
        z_lo, z_hi = m.z_test.min(0).values.numpy(), m.z_test.max(0).values.numpy()
        zpad = 0.25 * np.maximum(z_hi - z_lo, 1e-3)
        kind = self.projection_kind(m)
        messages = []
        if kind == "pca":
            messages.append(f"{m.n_latent}-D latent: the map is the plane of its first two principal components "
                            f"({100 * sum(m.explained):.0f}% of the codes' variance); the other directions are held "
                            "at the chosen example's code.")
        elif kind == "line":
            messages.append("1-D latent: the horizontal axis is z1; the vertical axis is unused.")
        if data.y_test is None:
            messages.append("This dataset has no labels: the points are not coloured by class.")
        if data.domain == "vectors":
            d = len(data.feature_names)
            shown = ", ".join(data.feature_names[:8]) + (" ..." if d > 8 else "")
            messages.append(f"Tabular data: each row is drawn as one bar per feature ({shown}"
                            + (f"; the first {BAR_FEATURES} of {d}" if d > BAR_FEATURES else "")
                            + f"), from the training mean (the middle line): blue above, red below, at most "
                            f"{BAR_CLIP:g} standard deviations.")
        m.map_cache = {
            "name": m.name, "n_latent": m.n_latent, "n_test": n, "indices": idx.tolist(),
            "coords": np.round(uv[idx], 4).tolist(),
            "labels": data.y_test[idx].tolist() if data.y_test is not None else None,
            "class_names": list(data.class_names),
            "projection": {"kind": kind, "explained_variance_ratio": m.explained,
                           "mean": m.mean.tolist() if kind == "pca" else None,
                           "components": m.components.tolist() if kind == "pca" else None},
            "bounds": {"u": [float(lo[0]), float(hi[0])], "v": [float(lo[1]), float(hi[1])]},
            "z_range": {"lo": (z_lo - zpad).tolist(), "hi": (z_hi + zpad).tolist()},
            "messages": messages,
        }
        return m.map_cache

    # -- decoding ------------------------------------------------------------------------------------
    def labels_for(self, m: ModelState, n: int, label: int | None, base_index: int | None = None) -> Tensor | None:
        """Decoder labels for a conditional model: ``label``, else the base example's, else class 0."""
        if not m.model.is_conditional:
            if label is not None:
                raise ExploreError(f"label applies only to label-conditioned models (cvae); {m.name!r} is a "
                                   f"{m.model.cfg.model}. Leave label out.", 422)
            return None
        c = m.model.cfg.n_classes
        if label is None:
            label = int(m.data.y_test[base_index]) if base_index is not None and m.data is not None else 0
        if not 0 <= label < c:
            raise ExploreError(f"label {label} is out of range: model {m.name!r} has {c} classes (0..{c - 1}).", 422)
        return torch.full((n,), label, dtype=torch.long)

    def check_z(self, m: ModelState, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != m.n_latent:
            got = z.shape[1] if z.dim() == 2 else tuple(z.shape)
            raise ExploreError(f"each code must have {m.n_latent} numbers (model {m.name!r} has a {m.n_latent}-D "
                               f"latent), got {got}.", 422)
        return z

    @torch.inference_mode()
    def decode(self, m: ModelState, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Codes (N, D) -> mean images (N, C, H, W) in [0, 1]."""
        self.check_z(m, z)
        return m.model.x_mean(m.model.decode(z, y)).float()

    @torch.inference_mode()
    def example(self, m: ModelState, index: int) -> dict[str, Any]:
        """Test example ``index``: its image, its code, its reconstruction and its map point."""
        self._prepare(m)
        self.check_index(m, index)
        z = m.z_test[index:index + 1]
        y = m.data.y_test[index:index + 1] if m.data.y_test is not None else None
        x_hat = self.decode(m, z, y if m.model.is_conditional else None)
        x = m.data.x_test[index:index + 1]
        out = {"index": index, "z": z[0].tolist(), "label": int(y[0]) if y is not None else None,
               "coords": self.project(m, z)[0].tolist(), "image": encode_images(x)[0], "recon": encode_images(x_hat)[0]}
        if m.data.domain == "vectors":          # the rows themselves (standardised), beside their bar pictures
            out.update(row=x.flatten(1)[0].tolist(), recon_row=x_hat.flatten(1)[0].tolist())
        return out

    def decoded(self, m: ModelState, x: Tensor) -> dict[str, Any]:
        """What a decode answers with: the page's "shape" and "images"; a table's decoded rows also as "rows"."""
        out = {"shape": list(view_shape(x.shape[1:])), "images": encode_images(x)}
        if is_vector_shape(x.shape[1:]):
            out["rows"] = x.flatten(1).tolist()                                  # (N, D) standardised
        return out

    def density(self, m: ModelState, sampler: str, seed: int) -> Any:
        from vaelab.sampling import fit_density

        if sampler == "prior":               # the model's own p(z): N(0, I), or its --prior (uniform, mog, ...)
            return fit_density("prior", m.model, None, seed)
        data = self.dataset(m)
        with m.lock:
            if m.gmm is None:
                m.gmm = fit_density("gmm", m.model, data, seed=0)
        return m.gmm

    # -- the holes map -------------------------------------------------------------------------------
    def judge_state(self, m: ModelState) -> dict[str, Any]:
        """{"status": "ready"|"pending"|"none"|"failed", "judge": .., "message": ..}; starts loading if needed."""
        if self.judge_loader is None:
            return {"status": "none", "message": "no judge: this explorer was started without one."}
        data = self.dataset(m)
        key = data.fingerprint
        with self._lock:
            st = self._judges.get(key)
            if st is None:
                st = self._judges[key] = {"status": "pending", "message": "loading (or training, once, then cached) "
                                          "the judge classifier for this dataset..."}
                threading.Thread(target=self._load_judge, args=(key, data), daemon=True).start()
        return st

    def _load_judge(self, key: str, data: Any) -> None:
        try:
            judge = self.judge_loader(data)
        except Exception as e:  # the holes map is optional: report, never crash the server
            st = {"status": "failed", "message": f"no judge: loading it failed ({type(e).__name__}: {e})."}
        else:
            if judge is None:
                st = {"status": "none", "message": "no judge: vaelab.judge is not available in this install, or the "
                      "dataset has no labels to train one on. The holes map needs a judge classifier."}
            else:
                st = {"status": "ready", "judge": judge, "message": ""}
        with self._lock:
            self._judges[key] = st

    @torch.inference_mode()
    def holes(self, m: ModelState, base_index: int, grid: int = HOLES_GRID,
              label: int | None = None) -> dict[str, Any]:
        """Judge confidence (max softmax) of the decoded image at each cell centre of the map's grid."""
        st = self.judge_state(m)
        if st["status"] != "ready":
            return {"available": False, "status": st["status"], "message": st["message"]}
        info = self.latent_map(m)
        self.check_index(m, base_index)
        key = (base_index if m.n_latent > 2 else None, grid, label)
        if key in m.holes:
            return m.holes[key]
        (u0, u1), (v0, v1) = info["bounds"]["u"], info["bounds"]["v"]
        us = u0 + (np.arange(grid) + 0.5) * (u1 - u0) / grid
        vs = v0 + (np.arange(grid) + 0.5) * (v1 - v0) / grid
        uu, vv = np.meshgrid(us, vs)                                     # (G, G): row = v, column = u
        z = self.unproject(m, np.stack([uu.ravel(), vv.ravel()], 1), base_index)   # (G*G, D)
        x = self.decode(m, z, self.labels_for(m, z.shape[0], label, base_index))
        g = grid_confidence(st["judge"], x, grid)                        # the report's holes map, same code
        out = {"available": True, "status": "ready", "grid": grid, "bounds": info["bounds"],
               "base_index": base_index if m.n_latent > 2 else None,
               "confidence": g["confidence"], "predicted": g["predicted"], "n_classes": g["n_classes"],
               "message": "judge confidence (max softmax) of the decoded image at each cell: dark = the judge "
                          "recognises no class there (a hole)."}
        m.holes[key] = out
        return out

    def describe(self, m: ModelState) -> dict[str, Any]:
        """What /api/models lists about a model (without loading its dataset)."""
        try:
            self._load(m)
        except ExploreError as e:
            return {"name": m.name, "ok": False, "error": str(e)}
        cfg = m.model.cfg
        data = m.ckpt.config.get("data") or {}
        return {"name": m.name, "ok": True, "model": cfg.model, "n_latent": cfg.n_latent,
                "input_shape": list(cfg.input_shape), "view_shape": list(view_shape(cfg.input_shape)),
                "domain": "vectors" if is_vector_shape(cfg.input_shape) else "images",
                "feature_names": data.get("feature_names") or [], "backbone": cfg.backbone, "likelihood": cfg.likelihood,
                "is_stochastic": m.model.is_stochastic, "is_conditional": m.model.is_conditional,
                "n_classes": cfg.n_classes, "dataset": data.get("name") or data.get("spec"),
                "has_labels": bool(data.get("n_classes")), "class_names": data.get("class_names") or []}
