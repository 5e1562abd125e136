"""`vaelab compare`: train the autoencoder family under one protocol, measure it, write a run folder.

    compare(cfg, out) -> metrics dict      (also written to out/metrics.json)

One protocol for every model: the same backbone, latent size, optimiser, epochs, batch size and
seed (``CompareConfig``); only the model's objective differs. The run folder (BRIEF.md contract):

    out/report.html         self-contained (figures as data URIs), re-rendered by `vaelab report`
    out/metrics.json        schema_version 1, strict JSON (NaN/inf -> null), written atomically
    out/figures/*.png       every figure of the report, drawn from metrics.json and arrays/ alone
    out/arrays/*.npz        what the figures show (vaelab.measure.views), per model + data.npz (no pickle)
    out/models/<model>/     one model folder per model (``models/<model>/seed-<s>/`` with --seeds > 1)
    out/models/ae-2d, vae-2d  the 2-D-latent AE and VAE pair of the manifold grid and the holes map
    out/run_config.json     the CompareConfig (checked by --resume)

Defaults depend on the image size (``SIZE_DEFAULTS``): small images (<= 256 pixels, e.g. the
embedded 8x8 digits) get 60 epochs at batch 64 of a 256-128 MLP with 8 latent dimensions, 2,000
generated samples and K = 200 importance samples: the whole default run (7 models + the 2-D pair +
evaluation + figures) measured 66 s of CPU time, single-threaded (docs/example-digits.md). Larger
images (Fashion-MNIST) get 20 epochs at batch 128 of a 512-256 MLP with 16 latent dimensions,
10,000 samples and K = 100.
Every option overrides its default; the report's protocol section lists what was used.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vaelab.errors import ConfigError, OutputError, VaelabError

if TYPE_CHECKING:
    from vaelab.executor import Unit

SCHEMA_VERSION = 1
DEFAULT_MODELS = ("ae", "dae", "vae", "beta-vae", "cvae", "iwae", "rae")
PAIR_MODELS = {"ae-2d": "ae", "vae-2d": "vae"}
SMALL_PIXELS = 256     # images with at most this many pixels use the "small" defaults
SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    # epochs/batch/hidden/latent: the shared training protocol; the rest sizes the evaluation
    "small": {"epochs": 60, "batch_size": 64, "hidden": (256, 128), "n_latent": 8,
              "n_samples": 2000, "iw_k": 200, "n_interp_pairs": 500},
    "large": {"epochs": 20, "batch_size": 128, "hidden": (512, 256), "n_latent": 16,
              "n_samples": 10_000, "iw_k": 100, "n_interp_pairs": 1000},
}
RUN_CONFIG_NAME = "run_config.json"
RESUME_IGNORES = ("n_threads", "n_workers", "executor", "ray_address", "ray_shared_dir")   # options a resumed run may change (they do not change the protocol)
OWNED = ("report.html", "metrics.json", "figures", "arrays", "models", RUN_CONFIG_NAME)
FAILURES = (VaelabError,)


@dataclass(frozen=True)
class CompareConfig:
    """One comparison: the data, the models, and the protocol they share. None = the size default."""

    dataset: str = "digits"
    data_dir: str | None = None
    classes: tuple[int, ...] | None = None      # keep only these labels (relabelled 0..k-1)
    max_train: int | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    n_latent: int | None = None
    backbone: str = "mlp"
    hidden: tuple[int, ...] | None = None
    channels: tuple[int, ...] = (32, 64)
    likelihood: str = "bernoulli"
    sigma: float | None = None
    beta: float | None = None                   # beta-vae's KL weight (None: 4); the vae keeps beta = 1
    free_bits: float | None = None
    k: int | None = None
    corruption: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    patience: int = 0
    kl_schedule: str = "constant"
    kl_warmup_steps: int = 0
    seed: int = 0
    n_seeds: int = 1                            # seeds seed, seed+1, ..., seed+n_seeds-1
    device: str = "auto"
    n_samples: int | None = None                # generated images per model and sampler
    iw_k: int | None = None                     # importance samples per test image
    n_interp_pairs: int | None = None
    use_pair_2d: bool = True                    # also train the 2-D AE/VAE pair (manifold grid, holes map)
    n_threads: int = 0                          # CPU threads (torch and BLAS); 0 = 1 for small images, else torch's default
    n_workers: int = 0                          # parallel (model, seed) units; 0 = the cores, capped by memory
    executor: str = "local"                     # local (in-process / worker processes) or ray
    ray_address: str | None = "auto"            # --executor ray: auto or HOST:PORT of the cluster's head
    ray_shared_dir: str | None = None           # --executor ray: a folder every node sees (else files travel back)
    inliers: tuple[int, ...] | None = None      # train on these labels; the other test classes are the anomalies
    ood_dataset: str | None = None              # an outside data set to detect (resized to the data's image size)

    def __post_init__(self) -> None:
        from vaelab.models import MODELS

        if not self.models:
            raise ConfigError("--models needs at least one model, e.g. ae,vae.")
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            raise ConfigError(f"unknown model(s) {', '.join(bad)} in --models; choose from {', '.join(MODELS)}.")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"--models names a model twice: {','.join(self.models)}.")
        if self.n_seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.n_seeds}.")
        for name in ("n_latent", "epochs", "batch_size", "iw_k", "n_interp_pairs"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {v}.")
        if self.n_workers < 0:
            raise ConfigError(f"--workers must be >= 0 (0 = the number of cores), got {self.n_workers}.")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown --executor {self.executor!r}; choose local or ray.")
        if self.n_threads < 0:
            raise ConfigError(f"--threads must be >= 0 (0 = automatic), got {self.n_threads}.")
        if self.inliers and self.classes:
            raise ConfigError("--inliers and --classes both choose the training classes; pass one of them "
                              "(--inliers also makes the other test classes the anomalies).")
        if self.n_samples is not None and self.n_samples < 10:
            raise ConfigError(f"the number of generated samples must be >= 10, got {self.n_samples}.")

    def resolved(self, shape: tuple[int, int, int]) -> CompareConfig:
        """Fill every None protocol field from ``SIZE_DEFAULTS`` for images of ``shape`` (C, H, W)."""
        d = SIZE_DEFAULTS[size_class(shape)]
        return dataclasses.replace(self, **{k: v for k, v in d.items() if getattr(self, k) is None})

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"CompareConfig has unknown fields {unknown} (written by another vaelab version?).")
        tuples = ("classes", "models", "hidden", "channels", "inliers")
        return cls(**{k: (tuple(v) if k in tuples and v is not None else v) for k, v in d.items()})


def size_class(shape: tuple[int, int, int]) -> str:
    return "small" if math.prod(shape) <= SMALL_PIXELS else "large"


def model_cfg(cfg: CompareConfig, name: str, data: Any, n_latent: int | None = None):
    """The ModelConfig of model ``name`` under the shared protocol (``cfg`` resolved)."""
    from vaelab.models import MODELS, model_config

    return model_config(name, input_shape=data.shape, n_latent=n_latent or cfg.n_latent, backbone=cfg.backbone,
                        hidden=cfg.hidden, channels=cfg.channels, likelihood=cfg.likelihood, sigma=cfg.sigma,
                        beta=cfg.beta if name == "beta-vae" else None,
                        free_bits=cfg.free_bits, k=cfg.k, corruption=cfg.corruption,
                        n_classes=data.n_classes if MODELS[name].is_conditional else 0)


def train_cfg(cfg: CompareConfig, seed: int):
    from vaelab.config import TrainConfig

    return TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       grad_clip=cfg.grad_clip, seed=seed, device=cfg.device, patience=cfg.patience,
                       kl_schedule=cfg.kl_schedule, kl_warmup_steps=cfg.kl_warmup_steps)


def training_classes(cfg: CompareConfig) -> list[int] | None:
    """The labels the models train on: --inliers or --classes (None = all)."""
    kept = cfg.inliers or cfg.classes
    return list(kept) if kept else None


def use_test_time(cfg: CompareConfig) -> bool:
    """The test-time section runs with --inliers, --ood-dataset or --classes (the founding question's set-up)."""
    return bool(cfg.inliers or cfg.ood_dataset or cfg.classes)


def data_meta(cfg: CompareConfig) -> dict[str, Any]:
    return {"spec": cfg.dataset, "data_dir": cfg.data_dir, "split_seed": cfg.split_seed,
            "val_fraction": cfg.val_fraction, "classes": training_classes(cfg),
            "max_train": cfg.max_train}


# -- the run folder ----------------------------------------------------------------------------
def prepare_run_folder(out: Path, cfg: Any, resume: bool, overwrite: bool) -> None:
    """Refuse an existing run folder unless told to overwrite or resume it (with the same options).

    ``cfg``: the comparison's frozen config (any domain's: ``to_dict()``, defaults from ``type(cfg)()``,
    ``RESUME_IGNORES`` on the class or this module's); it is written to ``out/run_config.json``.
    """
    ignores = getattr(type(cfg), "RESUME_IGNORES", RESUME_IGNORES)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another --out.")
    used = out.exists() and any(out.iterdir())
    if used and not (resume or overwrite):
        raise OutputError(f"{out} already exists and is not empty. Pass --overwrite to replace the run, --resume to "
                          "continue it (finished models are reused), or choose another --out.")
    if used and resume and not overwrite:
        p = out / RUN_CONFIG_NAME
        if p.exists():
            try:
                old = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                old = None
            new = {k: v for k, v in cfg.to_dict().items() if k not in ignores}
            if isinstance(old, dict):     # fields added since the run started take their defaults
                old = {**type(cfg)().to_dict(), **old}
                old = {k: v for k, v in old.items() if k not in ignores}
            if old != new:
                diff = ([f"{k}: {old.get(k)!r} then, {v!r} now" for k, v in new.items()
                         if old.get(k) != v] if isinstance(old, dict) else ["unreadable run_config.json"])
                raise OutputError(f"cannot --resume {out}: it was started with other options "
                                  f"({'; '.join(diff[:4])}). Use the same options, --overwrite, or another --out.")
    if used and overwrite:
        for name in OWNED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    try:
        (out / "models").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror or e}. Choose a writable --out.") from None
    from vaelab.io import atomic_write_json

    atomic_write_json(out / RUN_CONFIG_NAME, cfg.to_dict())


def train_or_reuse(mcfg: Any, tcfg: Any, data: Any, folder: Path, *, device: torch.device, meta: dict[str, Any],
                   resume: bool, progress: bool) -> tuple[Any, dict[str, Any]]:
    """Train (or, with resume, reuse a finished / continue an unfinished) model of any domain.

    Returns (model, training summary); ``meta`` is written under "data" in the model's config.json.
    """
    from vaelab import checkpoint as ckpt
    from vaelab.io import read_jsonl
    from vaelab.train import LOG_NAME, fit

    if resume and (folder / ckpt.CONFIG_NAME).exists():
        conf = json.loads((folder / ckpt.CONFIG_NAME).read_text(encoding="utf-8"))
        st = (conf.get("training") or {}).get("status")
        if st in ("completed", "early-stopped") and conf.get("model") == json.loads(json.dumps(mcfg.to_dict())) \
                and conf.get("train") == tcfg.to_dict():
            loaded = ckpt.load_model(folder, device=device)
            history = read_jsonl(folder / LOG_NAME)
            tr = conf["training"]
            return loaded.model, {"status": st, "best_epoch": tr.get("best_epoch"), "epochs_done": tr.get("epochs_done"),
                                  "seconds": sum(r.get("seconds", 0.0) for r in history), "reused": True,
                                  "history": _curves(history), "test_loss": conf.get("test", {})}
    run = fit(mcfg, data, tcfg, folder, resume=resume, overwrite=not resume, progress=progress, data_meta=meta)
    return run.model, {"status": run.status, "best_epoch": run.best_epoch,
                       "epochs_done": run.history[-1]["epoch"] if run.history else 0,
                       "seconds": sum(r["seconds"] for r in run.history), "reused": False,
                       "history": _curves(run.history), "test_loss": run.test}


def _curves(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-epoch training and validation terms: {"epoch": [...], "train": {term: [...]}, "val": {...}}."""
    out: dict[str, Any] = {"epoch": [r["epoch"] for r in history], "train": {}, "val": {},
                           "step": [r.get("step") for r in history], "kl_weight": [r.get("kl_weight") for r in history]}
    for split in ("train", "val"):
        for r in history:
            for k, v in r.get(split, {}).items():
                out[split].setdefault(k, []).append(v)
    return out


def _device(cfg: CompareConfig) -> torch.device:
    from vaelab.train import resolve_device

    return resolve_device(cfg.device)


def n_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# -- aggregation over seeds --------------------------------------------------------------------
def aggregate(runs: list[Any]) -> tuple[Any, Any]:
    """Mean and sample standard deviation of every number across seeds, keeping the dict's shape.

    Floats/ints -> mean (float) and sd (None for one seed); None anywhere -> None; bools -> the
    fraction of seeds where true (mean) ; strings -> the first seed's; lists -> elementwise.
    """
    first = runs[0]
    if isinstance(first, dict):
        keys = list(first)
        pairs = {k: aggregate([r.get(k) if isinstance(r, dict) else None for r in runs]) for k in keys}
        return {k: m for k, (m, _) in pairs.items()}, {k: s for k, (_, s) in pairs.items()}
    if isinstance(first, list) and all(isinstance(r, list) and len(r) == len(first) for r in runs) \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in runs for v in r):
        a = np.asarray(runs, dtype=np.float64)
        return a.mean(0).tolist(), (a.std(0, ddof=1).tolist() if len(runs) > 1 else None)
    if isinstance(first, bool) and all(isinstance(r, bool) for r in runs):
        return (first if len(runs) == 1 else float(np.mean(runs))), None
    if all(isinstance(r, (int, float)) and not isinstance(r, bool) and r is not None for r in runs):
        a = np.asarray(runs, dtype=np.float64)
        if not np.isfinite(a).all():
            return None, None
        mean = float(a.mean()) if len(runs) > 1 or isinstance(first, float) else first
        return mean, (float(a.std(ddof=1)) if len(runs) > 1 else None)
    return first, None


# -- the comparison ----------------------------------------------------------------------------
def compare(cfg: CompareConfig, out: str | Path, *, progress: bool = True, resume: bool = False,
            overwrite: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train, evaluate and figure every model of ``cfg``; write the run folder ``out``. Returns the metrics dict.

    A model whose training or evaluation fails with a VaelabError (e.g. a DivergenceError) is
    recorded as ``{"status": "failed", "error": message}``; the others finish.
    """
    from vaelab.checkpoint import versions
    from vaelab.data import load_dataset
    from vaelab.evaluate import evaluate, reference_rows
    from vaelab.io import atomic_write_json, strict_json
    from vaelab.judge import load_or_train_judge
    from vaelab.report.answer import make_answer
    from vaelab.report.html import write_report

    t_start = time.perf_counter()
    out = Path(out)
    timings: dict[str, float] = {}
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.split_seed, val_fraction=cfg.val_fraction,
                        classes=training_classes(cfg), max_train=cfg.max_train)
    rcfg = cfg.resolved(data.shape)
    if "cvae" in rcfg.models and not data.has_labels:
        raise ConfigError(f"cvae needs labels and {data.name} has none; drop it from --models.")
    if rcfg.batch_size > data.x_train.shape[0]:
        raise ConfigError(f"batch size {rcfg.batch_size} is larger than the {data.x_train.shape[0]} training images; "
                          "pass a smaller --batch-size.")
    device = _device(rcfg)          # a bad --device fails here, before anything is written
    sets: dict[str, Any] = {}
    t0 = time.perf_counter()
    if use_test_time(rcfg):         # the anomalies (held-out classes, --ood-dataset): bad ones fail before training
        from vaelab import test_time

        sets = test_time.anomaly_sets(data, spec=rcfg.dataset, data_dir=rcfg.data_dir, split_seed=rcfg.split_seed,
                                      val_fraction=rcfg.val_fraction, inliers=rcfg.inliers,
                                      ood_dataset=rcfg.ood_dataset, seed=rcfg.seed)
    t_sets = time.perf_counter() - t0
    prepare_run_folder(out, cfg, resume, overwrite)
    n_threads = torch.get_num_threads()
    limits = contextlib.ExitStack()
    threads = rcfg.n_threads or (1 if device.type == "cpu" and size_class(data.shape) == "small" else 0)
    if threads:
        # Tiny matmuls gain nothing from threads, and on a shared machine the hand-off dominates: measured
        # 10x faster training and 17x faster GMM fits with one torch / one BLAS thread on 8x8 digits, and
        # 12x faster steps of the 784-512-256-16 VAE with one thread than two on a loaded 2-core machine.
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        limits.enter_context(threadpool_limits(threads))
    timings["data"] = time.perf_counter() - t_start - t_sets
    try:
        t0 = time.perf_counter()
        judge = load_or_train_judge(data, seed=0, progress=progress, device=str(device))
        timings["judge"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reference = reference_rows(data, judge, n_samples=rcfg.n_samples, seed=rcfg.seed)
        timings["reference"] = time.perf_counter() - t0

        # the arrays the figures are drawn from: rewritten by every run (evaluation always runs, even on resume)
        from vaelab.measure.store import ARRAYS_DIR, DATA_NAME, arrays_path, save_arrays
        from vaelab.measure.views import data_views

        shutil.rmtree(out / ARRAYS_DIR, ignore_errors=True)
        save_arrays(arrays_path(out, DATA_NAME), data_views(data, rcfg.seed))
        from vaelab.models import MODELS

        seeds = [rcfg.seed + i for i in range(rcfg.n_seeds)]
        executor, n_workers = _executor(rcfg, data, judge, out, progress, threads, device)
        in_process = executor.__class__.__name__ == "InProcess"
        # in-process units draw today's bars (training, evaluation); worker units get the executor's bars
        units = image_units(rcfg, out, seeds, resume, progress and in_process, threads)
        _WORKER_INPUTS[_inputs_key(rcfg)] = (data, judge)     # an in-process unit reuses them
        t0 = time.perf_counter()
        results = executor.run(units)
        timings["units_wall"] = time.perf_counter() - t0
        per_seed: dict[str, list[dict[str, Any]]] = {m: [] for m in rcfg.models}
        kept: dict[str, Any] = {}          # the first seed's trained models, for the figures
        curves: dict[str, Any] = {}
        for s in seeds:
            for name in rcfg.models:
                rec = results[_unit_key(name, s)]
                rec.pop("unit_seconds", None)
                for phase, key in ((f"train:{name}", "train_wall_seconds"), (f"evaluate:{name}", "eval_seconds")):
                    timings[phase] = timings.get(phase, 0.0) + float(rec.get(key) or 0.0)
                if s == seeds[0] and rec["status"] == "ok":
                    # the test-time measures need the trained model; the kl_schedule block only its class
                    kept[name] = (_load_trained(rec["train"]["folder"], device) if use_test_time(rcfg)
                                  else MODELS[name])
                    curves[name] = rec["train"].pop("history", None)
                else:
                    rec.get("train", {}).pop("history", None)
                per_seed[name].append(rec)

        models_doc = {name: _combine(recs) for name, recs in per_seed.items()}

        pairs: dict[str, Any] = {}
        if rcfg.use_pair_2d:
            for pname in PAIR_MODELS:
                rec = results[pname]
                timings["pairs_2d"] = timings.get("pairs_2d", 0.0) + float(rec.pop("unit_seconds", 0.0))
                if rec["status"] == "ok":
                    curves[pname] = rec["train"].pop("history", None)
                pairs[pname] = rec

        test_time_doc = None
        if use_test_time(rcfg) and kept:
            t0 = time.perf_counter()
            from vaelab import test_time

            test_time_doc, tt_arrays = test_time.measure(kept, data, sets, judge=judge, seed=rcfg.seed,
                                                         progress=progress)
            # its two figures are drawn with the others (draw_run, from arrays/test_time.npz): timed under "figures"
            save_arrays(arrays_path(out, test_time.ARRAYS_NAME), tt_arrays)
            timings["test_time"] = t_sets + time.perf_counter() - t0

        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command,
            "dataset": data.summary(),
            "config": {**rcfg.to_dict(), "seeds": seeds, "size_class": size_class(data.shape), "workers": n_workers,
                       "device": str(device), "torch_threads": torch.get_num_threads()},
            "versions": versions() | _more_versions(),
            "judge": ({"test_accuracy": judge.test_accuracy, "fingerprint": judge.fingerprint,
                       "arch": getattr(judge, "arch", None)} if judge is not None else None),
            "reference": reference,
            "models": models_doc,
            "pairs_2d": pairs,
            "kl_schedule": _kl_schedule_block(rcfg, kept, curves),
            "test_time": test_time_doc,
        }
        doc["training_curves"] = curves
        t0 = time.perf_counter()
        from vaelab.report.figures import draw_run

        # every figure from the run folder's files alone (metrics + arrays/), as `vaelab report` redraws them
        doc["figures"] = draw_run(out, strict_json(doc))
        timings["figures"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        timings["total"] = t0 - t_start
        doc["timings"] = timings
        doc["answer"] = make_answer(doc)
        doc = strict_json(doc)
        atomic_write_json(out / "metrics.json", doc)
        write_report(out)
        # the report's own time, then metrics.json once more so that its timings cover the whole run, and
        # the page from that final metrics.json (rendering is cheap; `vaelab report` then gives the same page)
        timings["report"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        doc["timings"] = dict(timings)
        atomic_write_json(out / "metrics.json", doc)
        write_report(out)
    finally:
        torch.set_num_threads(n_threads)
        limits.close()
    return doc


def _kl_schedule_block(cfg: CompareConfig, models: dict[str, Any], curves: dict[str, Any]) -> dict[str, Any] | None:
    """metrics.json's "kl_schedule": the TrainConfig, free bits and one stochastic model's per-epoch KL weights.

    Every model shares the schedule; the steps trained are those of the first stochastic model (the
    plain vae when present). None when no stochastic model trained (an AE has no KL term).
    """
    names = sorted((n for n, m in models.items() if getattr(m, "is_stochastic", False)),
                   key=lambda n: (n != "vae", list(models).index(n)))
    for name in names:
        c = curves.get(name) or {}
        hist = [{"step": s, "kl_weight": w} for s, w in zip(c.get("step") or [], c.get("kl_weight") or [])
                if s is not None and w is not None]
        return {"model": name, "train": train_cfg(cfg, cfg.seed).to_dict(), "free_bits": float(cfg.free_bits or 0.0),
                "n_steps": hist[-1]["step"] if hist else 0, "history": hist}
    return None


def _run_model(name: str, cfg: CompareConfig, data: Any, seed: int, folder: Path, judge: Any, resume: bool,
               progress: bool, evaluate: Any, arrays: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one model for one seed; failures become a record, never an exception.

    ``arrays``: where evaluate saves the arrays of the model's figures (the first seed's), or None."""
    rec: dict[str, Any] = {"model": name, "seed": seed, "status": "ok", "error": None}
    try:
        t0 = time.perf_counter()
        mcfg = model_cfg(cfg, name, data)
        model, train_info = train_or_reuse(mcfg, train_cfg(cfg, seed), data, folder, device=_device(cfg),
                                           meta=data_meta(cfg), resume=resume, progress=progress)
        rec["train"] = {**train_info, "n_params": n_params(model), "folder": str(folder)}
        rec["train_wall_seconds"] = time.perf_counter() - t0     # with set-up and checkpoint writes
    except FAILURES as e:
        return {**rec, "status": "failed", "error": f"training: {e}"}
    try:
        t0 = time.perf_counter()
        res = evaluate(model, data, judge=judge, n_samples=cfg.n_samples, iw_k=cfg.iw_k,
                       n_interp_pairs=cfg.n_interp_pairs, seed=seed, progress=progress, name=name,
                       arrays_path=arrays)
        rec["eval_seconds"] = time.perf_counter() - t0
    except (VaelabError, ValueError) as e:
        return {**rec, "status": "failed", "error": f"evaluation: {e}"}
    return {**res, **rec, "_model": model}


def _combine(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's entry in metrics.json: the evaluate() dict (means over seeds) + sd + per-seed values."""
    ok = [r for r in recs if r["status"] == "ok"]
    if not ok:
        return {"model": recs[0]["model"], "status": "failed", "error": recs[0]["error"],
                "n_seeds": len(recs), "failed_seeds": [r["seed"] for r in recs]}
    mean, sd = aggregate(ok)
    mean.pop("seed", None)
    entry = {**mean, "status": "ok", "error": None, "n_seeds": len(ok),
             "failed_seeds": [r["seed"] for r in recs if r["status"] != "ok"]}
    if len(recs) > 1:
        entry["sd"] = sd
        entry["per_seed"] = recs
        errs = [f"seed {r['seed']}: {r['error']}" for r in recs if r["status"] != "ok"]
        if errs:
            entry["error"] = "; ".join(errs)
    return entry


def _pair_unit(pname: str, cfg: CompareConfig, data: Any, folder: Path, judge: Any, resume: bool,
               progress: bool, arrays: Path | None) -> dict[str, Any]:
    """One model of the 2-D-latent AE/VAE pair: trained like the others, scored by the judge over latent grids."""
    from vaelab.measure.store import save_arrays
    from vaelab.measure.views import pair_views

    mname = PAIR_MODELS[pname]
    rec: dict[str, Any] = {"model": mname, "n_latent": 2, "status": "ok", "error": None}
    try:
        mcfg = model_cfg(cfg, mname, data, n_latent=2)
        model, info = train_or_reuse(mcfg, train_cfg(cfg, cfg.seed), data, folder, device=_device(cfg),
                                     meta=data_meta(cfg), resume=resume, progress=progress)
    except FAILURES as e:
        return {**rec, "status": "failed", "error": f"training: {e}"}
    rec["train"] = {**info, "n_params": n_params(model)}     # its "history" goes to the curves
    grids, arrs = pair_views(model, data, judge)
    rec.update(grids)
    if arrays is not None:
        save_arrays(arrays, arrs)
    return rec


# -- units: what an executor runs (vaelab.executor) ---------------------------------------------
_WORKER_INPUTS: dict[str, tuple[Any, Any]] = {}    # (data, judge) per data spec, loaded once per process


def _unit_key(name: str, seed: int) -> str:
    return f"{name}/seed-{seed}"


def _inputs_key(cfg: CompareConfig) -> str:
    return json.dumps([data_meta(cfg), training_classes(cfg), cfg.device])


def image_units(cfg: CompareConfig, out: Path, seeds: list[int], resume: bool, progress: bool,
                n_threads: int) -> list[Unit]:
    """seeds x models (+ the 2-D pair): each an independent unit seeded by its own (model, seed).

    A unit writes its model folder and, for the first seed and the pair, the arrays its figures are
    drawn from (``outputs["arrays"]``, a file the executor brings back from a Ray node).
    """
    from vaelab.executor import Unit
    from vaelab.measure.store import arrays_path

    base = {"config": cfg.to_dict(), "resume": resume, "progress": progress, "n_threads": n_threads}
    gpu = 1.0 if _device(cfg).type == "cuda" else 0.0
    units = []
    for s in seeds:
        for name in cfg.models:
            folder = out / "models" / name if cfg.n_seeds == 1 else out / "models" / name / f"seed-{s}"
            units.append(Unit(_unit_key(name, s), "vaelab.compare:run_image_unit",
                              {**base, "kind": "model", "name": name, "seed": s, "folder": str(folder),
                               "outputs": {"arrays": str(arrays_path(out, name))} if s == seeds[0] else {}},
                              n_epochs=cfg.epochs, n_cpus=max(1, n_threads), n_gpus=gpu))
    if cfg.use_pair_2d:
        for pname in PAIR_MODELS:
            units.append(Unit(pname, "vaelab.compare:run_image_unit",
                              {**base, "kind": "pair", "name": pname, "seed": cfg.seed,
                               "folder": str(out / "models" / pname),
                               "outputs": {"arrays": str(arrays_path(out, pname))}},
                              n_epochs=cfg.epochs, n_cpus=max(1, n_threads), n_gpus=gpu))
    return units


def run_image_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one unit of ``image_units`` (in any process): train or reuse, evaluate; its JSON record."""
    from vaelab.evaluate import evaluate
    from vaelab.io import strict_json

    cfg = CompareConfig.from_dict(spec["config"])
    key = _inputs_key(cfg)
    if key not in _WORKER_INPUTS:
        from vaelab.data import load_dataset
        from vaelab.judge import load_or_train_judge

        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.split_seed, val_fraction=cfg.val_fraction,
                            classes=training_classes(cfg), max_train=cfg.max_train)   # as compare() loads it
        judge = load_or_train_judge(data, seed=0, progress=False, device=str(_device(cfg)))
        _WORKER_INPUTS.clear()
        _WORKER_INPUTS[key] = (data, judge)
    data, judge = _WORKER_INPUTS[key]
    folder, resume, progress = Path(spec["folder"]), bool(spec["resume"]), bool(spec["progress"])
    t0 = time.perf_counter()
    arrays = Path(spec["outputs"]["arrays"]) if spec.get("outputs") else None
    if spec["kind"] == "pair":
        rec = _pair_unit(spec["name"], cfg, data, folder, judge, resume, progress, arrays)
    else:
        rec = _run_model(spec["name"], cfg, data, int(spec["seed"]), folder, judge, resume, progress, evaluate,
                         arrays)
        rec.pop("_model", None)
    rec["unit_seconds"] = time.perf_counter() - t0
    return strict_json(rec)


def _executor(cfg: CompareConfig, data: Any, judge: Any, out: Path, progress: bool, n_threads: int,
              device: torch.device) -> tuple[Any, int]:
    """The image comparison's executor and its worker count (large images share the cores among workers)."""
    n_units = cfg.n_seeds * len(cfg.models) + (len(PAIR_MODELS) if cfg.use_pair_2d else 0)
    n_workers = resolve_workers(cfg.n_workers, n_units, device, data_bytes(data))
    if n_workers > 1 and size_class(data.shape) == "large" and not cfg.n_threads:
        n_threads = max(1, _cores() // n_workers)
    cache = [f"judge/{judge.fingerprint}"] if judge is not None else []
    return unit_executor(cfg, n_workers, n_threads, progress, out, cache), n_workers


def resolve_workers(requested: int, n_units: int, device: torch.device, n_data_bytes: int) -> int:
    """``--workers``: 0 = the cores, capped by memory (a worker holds ~0.6 GB + 6x the data); one on a GPU."""
    from vaelab.executor import default_workers as by_memory

    n = requested or (1 if device.type == "cuda" else by_memory(600 * 2**20 + 6 * n_data_bytes))
    return max(1, min(n, n_units))


def unit_executor(cfg: Any, n_workers: int, n_threads: int, progress: bool, out: Path,
                  cache_dirs: list[str]) -> Any:
    """The executor named by ``cfg.executor`` (any domain's config: executor, ray_address, ray_shared_dir).

    A unit whose worker died is run again with resume on: it continues from its last epoch checkpoint.
    """
    from vaelab.executor import make_executor

    def again(u: Unit) -> Unit:
        return dataclasses.replace(u, spec={**u.spec, "resume": True})

    return make_executor(cfg.executor, n_workers=n_workers, n_threads=n_threads or 1, progress=progress,
                         ray_address=cfg.ray_address, shared_dir=cfg.ray_shared_dir, cache_dirs=cache_dirs,
                         run_root=str(out), on_retry=again)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def data_bytes(data: Any) -> int:
    """Bytes of a dataset's train/val/test tensors."""
    return sum(int(t.numel()) * t.element_size() for t in (data.x_train, data.x_val, data.x_test) if t is not None)


def _load_trained(folder: str | Path, device: torch.device) -> torch.nn.Module:
    """A unit's trained model (best weights), read back from its folder."""
    from vaelab import checkpoint as ckpt

    return ckpt.load_model(folder, device=device).model


def _more_versions() -> dict[str, str]:
    import platform

    import jinja2
    import matplotlib
    import scipy
    import sklearn

    return {"numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
            "matplotlib": matplotlib.__version__, "jinja2": jinja2.__version__, "platform": platform.platform()}


# -- CLI ---------------------------------------------------------------------------------------
def _override(p: argparse.ArgumentParser, dest: str, **kw: Any) -> None:
    for a in p._actions:
        if a.dest == dest:
            for k, v in kw.items():
                setattr(a, k, v)
            return
    raise KeyError(dest)


def add_compare_args(p: argparse.ArgumentParser) -> None:
    """`vaelab compare` options: the shared data/model/training groups plus the comparison's own."""
    from vaelab.cli import add_data_args, add_model_args, add_train_args
    from vaelab.executor import add_executor_args

    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma-separated models to compare (default {','.join(DEFAULT_MODELS)})")
    p.add_argument("--seeds", type=int, default=1,
                   help="repeat everything with this many seeds (--seed, --seed+1, ...) and report mean ± sd of "
                        "every number (default 1)")
    p.add_argument("--out", default=None, help="run folder to write (default runs/compare-DATASET[-classes-A-B])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: finished models are reused, unfinished ones resume")
    p.add_argument("--n-samples", type=int, default=None,
                   help="generated images per model and sampler for FD/precision/recall (default 2000 for small "
                        "images like digits, 10000 otherwise)")
    p.add_argument("--iw-k", type=int, default=None,
                   help="importance samples per test image for the IW-NLL bound (default 200 small, 100 otherwise)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch and BLAS; 0 (default) = 1 for small images such as digits (tiny matmuls "
                        "only lose to thread hand-off), else torch's default. Use 1 on a machine shared with other jobs")
    p.add_argument("--no-pair", action="store_true",
                   help="skip the 2-D-latent AE/VAE pair (no manifold grid or holes map)")
    p.add_argument("--inliers", default=None,
                   help="train on these labels only, e.g. 0,1,2,3,4; the test images of the other classes are the "
                        "anomalies of the report's test-time section (anomaly detection and uncertainty)")
    p.add_argument("--ood-dataset", default=None, metavar="SPEC",
                   help="an outside data set for the test-time section (digits, fashion-mnist, idx:FOLDER, npz:FILE): "
                        "its test split, resized to the training images' size, is detected as anomalies")
    add_data_args(p)
    add_model_args(p)
    add_train_args(p)
    add_executor_args(p)
    s, l = SIZE_DEFAULTS["small"], SIZE_DEFAULTS["large"]
    _override(p, "epochs", default=None,
              help=f"training epochs of every model (default {s['epochs']} for small images such as the embedded "
                   f"digits, {l['epochs']} otherwise, e.g. Fashion-MNIST)")
    _override(p, "batch_size", default=None,
              help=f"minibatch size (default {s['batch_size']} small images, {l['batch_size']} otherwise)")
    _override(p, "latent_dim", default=None,
              help=f"size of z for every model (default {s['n_latent']} small images, {l['n_latent']} otherwise)")
    _override(p, "beta", help="beta-vae's KL weight (default 4); the other VAEs keep beta = 1 so the comparison "
                              "still has a plain VAE")
    _override(p, "hidden", default=None,
              help="MLP hidden widths, comma-separated (default 256,128 small images, 512,256 otherwise); conv "
                   "uses the last as its dense layer")


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    from vaelab.cli import parse_classes
    from vaelab.config import parse_ints

    classes = parse_classes(args.classes)
    try:
        inliers = parse_classes(args.inliers)
    except ConfigError:
        raise ConfigError(f"--inliers takes at least two comma-separated integer labels, e.g. 0,1,2,3,4; got "
                          f"{args.inliers!r}.") from None
    return CompareConfig(
        dataset=args.dataset, data_dir=args.data_dir, classes=tuple(classes) if classes else None,
        max_train=args.max_train, val_fraction=args.val_fraction, split_seed=args.split_seed,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()), n_latent=args.latent_dim,
        backbone=args.backbone, hidden=parse_ints(args.hidden, "--hidden") if args.hidden else None,
        channels=parse_ints(args.channels, "--channels"), likelihood=args.likelihood, sigma=args.sigma,
        beta=args.beta, free_bits=args.free_bits, k=args.k, corruption=args.corruption, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        patience=args.patience, kl_schedule=args.kl_schedule, kl_warmup_steps=args.kl_warmup_steps,
        seed=args.seed, n_seeds=args.seeds, device=args.device, n_samples=args.n_samples, iw_k=args.iw_k,
        use_pair_2d=not args.no_pair, n_threads=args.threads, inliers=tuple(inliers) if inliers else None,
        ood_dataset=args.ood_dataset, n_workers=args.workers, executor=args.executor,
        ray_address=args.ray_address, ray_shared_dir=args.ray_shared_dir)


def default_out(cfg: CompareConfig) -> Path:
    from vaelab.cli import _slug

    name = f"compare-{_slug(cfg.dataset)}"
    if cfg.classes:
        name += "-classes-" + "-".join(map(str, cfg.classes))
    if cfg.inliers:
        name += "-inliers-" + "-".join(map(str, cfg.inliers))
    return Path("runs") / name


def compare_cmd(args: argparse.Namespace) -> int:
    from vaelab.report.table import headline_table, wide_console

    if not 0 <= args.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {args.val_fraction}.")
    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_out(cfg)
    command = "vaelab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["compare"] else None
    doc = compare(cfg, out, progress=not args.quiet, resume=args.resume, overwrite=args.overwrite, command=command)
    con = wide_console()
    con.print(headline_table(doc))
    for name, m in doc["models"].items():
        if m.get("status") != "ok" or m.get("error"):
            con.print(f"[red]{name} failed[/red]: {m.get('error')}")
    con.print(f"\n[bold]Answer[/bold]: {doc['answer']['short']}\n")
    con.print(f"Report: {out / 'report.html'}   ({doc['timings']['total']:.0f} s in all)")
    return 0
