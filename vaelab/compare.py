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

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from vaelab.config import (COMPARE_PRELOAD, DEFAULT_MODELS, EXECUTOR_RESUME_FREE, PRIOR_SWAP_SAMPLERS, SIZE_DEFAULTS,
                           CompareConfig, ModelConfig, TrainConfig, config_diff, refuse_resume_differences, size_class,
                           split_model_name, words)
from vaelab.callable_module import make_callable
from vaelab.errors import ConfigError, OutputError, VaelabError
from vaelab.budget import flush_denormals
from vaelab.lock import LOCK_NAME

if TYPE_CHECKING:
    from vaelab.executor import Unit

__all__ = ["compare", "CompareConfig", "DEFAULT_MODELS", "SIZE_DEFAULTS", "size_class", "aggregate"]

SCHEMA_VERSION = 1
PAIR_MODELS = {"ae-2d": "ae", "vae-2d": "vae"}
RUN_CONFIG_NAME = "run_config.json"
# options a resumed run may change, because they cannot change a result (besides --quiet, which is not recorded)
RESUME_FREE = {"n_threads": "--threads cannot change the result, it only sets how many CPU threads compute it",
               **EXECUTOR_RESUME_FREE}
OWNED = ("report.html", "metrics.json", "figures", "arrays", "models", RUN_CONFIG_NAME)
FAILURES = (VaelabError,)


def model_cfg(cfg: CompareConfig, name: str, data: Any, n_latent: int | None = None) -> ModelConfig:
    """The ModelConfig of model ``name`` under the shared protocol (``cfg`` resolved): ``cfg.model`` with the
    name, the data's shape and labels; open fields (beta, k) take the name's default; only beta-vae takes beta.
    A --priors name ("vae-uniform") is that model with that prior."""
    from vaelab.models import MODELS, model_config

    name, prior = split_model_name(name)
    fields = {k: v for k, v in cfg.model.to_dict().items()
              if k not in ("model", "input_shape", "n_classes") and f"model.{k}" not in cfg.auto}
    if prior:
        fields["prior"] = prior
    if name != "beta-vae":
        fields.pop("beta", None)      # the plain VAEs keep beta = 1: the comparison has a VAE
    if not MODELS[name].is_stochastic:
        fields.pop("prior", None)     # --prior is the VAE family's; the AEs generate through their ex-post GMM
        fields.pop("prior_components", None)
    if n_latent:
        fields["n_latent"] = n_latent
    return model_config(name, input_shape=data.shape, n_classes=data.n_classes if MODELS[name].is_conditional else 0,
                        **fields)


def train_cfg(cfg: CompareConfig, seed: int) -> TrainConfig:
    """The TrainConfig of one (model, seed) unit: the shared protocol with its seed."""
    return dataclasses.replace(cfg.train, seed=seed)


def training_classes(cfg: CompareConfig) -> list[int] | None:
    """The labels the models train on: --inliers or --classes (None = all)."""
    kept = cfg.inliers or cfg.data.classes
    return list(kept) if kept else None


def use_test_time(cfg: CompareConfig) -> bool:
    """The test-time section runs with --inliers, --ood-dataset or --classes (the founding question's set-up)."""
    return bool(cfg.inliers or cfg.ood_dataset or cfg.data.classes)


def data_meta(cfg: CompareConfig) -> dict[str, Any]:
    """How a model folder reloads the data it was trained on (--inliers are its classes)."""
    return {**cfg.data.meta(), "classes": training_classes(cfg)}


# -- the run folder ----------------------------------------------------------------------------
def prepare_run_folder(out: Path, written: dict[str, Any], resume: bool, overwrite: bool,
                       differences: Callable[[dict[str, Any]], list[tuple[str, Any, Any]]],
                       free: dict[str, str]) -> None:
    """Refuse an existing run folder unless told to overwrite or resume it; a resumed run must have the same
    options: ``differences(old run_config.json)`` lists them (``config_diff``), every one is named, and those
    that cannot change a result (``free``) are only noted. ``written`` becomes out/run_config.json.
    Any domain's comparison (images, molecules) uses it."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another --out.")
    used = out.exists() and any(p.name != LOCK_NAME for p in out.iterdir())   # our own lock file is not a run
    if used and not (resume or overwrite):
        raise OutputError(f"{out} already exists and is not empty. Pass --overwrite to replace the run, --resume to "
                          "continue it (finished models are reused), or choose another --out.")
    if used and resume and not overwrite and (out / RUN_CONFIG_NAME).exists():
        try:
            diffs = differences(json.loads((out / RUN_CONFIG_NAME).read_text(encoding="utf-8")))
        except (ValueError, VaelabError) as e:
            raise OutputError(f"cannot --resume {out}: its {RUN_CONFIG_NAME} is unreadable or from another vaelab "
                              f"version ({e}). Use --overwrite or another --out.") from None
        refuse_resume_differences(out, diffs, free)
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

    atomic_write_json(out / RUN_CONFIG_NAME, written)


def train_or_reuse(mcfg: Any, tcfg: TrainConfig, data: Any, folder: Path, *, device: torch.device,
                   meta: dict[str, Any], resume: bool, progress: bool,
                   on_epoch: Any = None) -> tuple[Any, dict[str, Any]]:
    """Train (or, with resume, reuse a finished / continue an unfinished) model of any domain.

    Returns (model, training summary); ``meta`` is written under "data" in the model's config.json.
    ``on_epoch``: fit's per-epoch hook (default vaelab.metrics.collapse.record_epoch; a domain's own hook,
    e.g. the molecules' ReconstructionRecorder, calls that one after its own records).
    """
    from vaelab import checkpoint as ckpt
    from vaelab.io import read_jsonl
    from vaelab.metrics import collapse
    from vaelab.rundir import LOG_NAME
    from vaelab.retry import fit_with_retries

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
    run = fit_with_retries(mcfg, data, tcfg, folder, on_nan=tcfg.on_nan, max_retries=tcfg.max_retries, resume=resume,
                           overwrite=not resume, progress=progress, data_meta=meta,
                           on_epoch=on_epoch or collapse.record_epoch)
    collapse.warn_history(mcfg.model, run.history)
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

    return resolve_device(cfg.train.device)


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
    from vaelab.io import atomic_write_json, strict_json
    from vaelab.judge import load_or_train_judge
    from vaelab.report.answer import make_answer
    from vaelab.report.html import write_report
    from vaelab.measure.store import load_arrays
    from vaelab.models import MODELS
    from vaelab.verdict import (collapse_reason, combine_seed_intervals, comparison_pairs, paired_differences,
                                sampler_differences)

    t_start = time.perf_counter()
    out = Path(out)
    timings: dict[str, float] = {}
    if cfg.executor.executor == "local" and _device(cfg).type == "cpu":     # `vaelab compare` started it already
        from vaelab.executor import start_fork_server

        start_fork_server(COMPARE_PRELOAD, cfg.executor.n_workers)
    flush_denormals()   # after the fork server: its workers set it themselves
    data = load_dataset(cfg.data.dataset, **{**cfg.data.load_kwargs(), "classes": training_classes(cfg)})
    _check_enough_test(data, cfg)
    rcfg = cfg.resolved(data.shape)
    if any(split_model_name(m)[0] == "cvae" for m in rcfg.model_names()) and not data.has_labels:
        raise ConfigError(f"cvae needs labels and {data.name} has none; drop it from --models.")
    device = _device(rcfg)          # a bad --device fails here, before anything is written
    sets: dict[str, Any] = {}
    t0 = time.perf_counter()
    if use_test_time(rcfg):         # the anomalies (held-out classes, --ood-dataset): bad ones fail before training
        from vaelab import test_time

        sets = test_time.anomaly_sets(data, spec=rcfg.data.dataset, load_kwargs=rcfg.data.load_kwargs(),
                                      inliers=rcfg.inliers, ood_dataset=rcfg.ood_dataset, seed=rcfg.train.seed)
    t_sets = time.perf_counter() - t0
    prepare_run_folder(out, cfg.to_dict(), resume, overwrite, free=RESUME_FREE,
                       differences=lambda old: config_diff(CompareConfig.from_dict(old).resolved(data.shape).to_dict(),
                                                           rcfg.to_dict()))
    from vaelab.train import capped_batch_size

    batch_size, batch_note = capped_batch_size(rcfg.train.batch_size, data.x_train.shape[0])
    if batch_note:              # small data trains on the defaults; the protocol records the batch used
        rcfg = dataclasses.replace(rcfg, train=dataclasses.replace(rcfg.train, batch_size=batch_size))
        print(f"vaelab: {batch_note}", file=sys.stderr)
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
    else:
        # numpy/scipy's BLAS (GMM fits, probes, FD, bootstrap) works on thin matrices in this process; with a
        # thread per core OpenBLAS spins against the training threads: np.dot of (16 x 27,000)(27,000 x 16)
        # took 0.83 s with two threads and 4 ms with one on a loaded 2-core machine (torch keeps its threads)
        from threadpoolctl import threadpool_limits

        limits.enter_context(threadpool_limits(1, user_api="blas"))
    timings["data"] = time.perf_counter() - t_start - t_sets
    try:
        t0 = time.perf_counter()
        judge = load_or_train_judge(data, seed=0, progress=progress, device=str(device))
        timings["judge"] = time.perf_counter() - t0

        # the arrays the figures are drawn from: rewritten by every run (evaluation always runs, even on resume)
        from vaelab.measure.store import ARRAYS_DIR, DATA_NAME, arrays_path, save_arrays
        from vaelab.measure.views import data_views

        shutil.rmtree(out / ARRAYS_DIR, ignore_errors=True)
        save_arrays(arrays_path(out, DATA_NAME), data_views(data, rcfg.train.seed))
        seeds = [rcfg.train.seed + i for i in range(rcfg.n_seeds)]
        executor, n_workers, unit_threads = _executor(rcfg, data, judge, out, progress, threads, device)
        # in-process units draw their own bars (training, evaluation); worker units get the executor's bars
        units = image_units(rcfg, out, seeds, resume, progress and n_workers == 1 and rcfg.executor.executor == "local",
                            threads)
        _WORKER_INPUTS.clear()
        _WORKER_INPUTS[_inputs_key(rcfg)] = (data, judge)     # an in-process unit uses them as they are
        t0 = time.perf_counter()
        results = executor.run(units)
        # the phases of timings add up to the total; what each unit took (in parallel with others when
        # --workers > 1) is in unit_timings
        timings["units"] = time.perf_counter() - t0
        reference = results[REFERENCE_UNIT]
        unit_timings: dict[str, float] = {"reference": float(reference.pop("unit_seconds", 0.0))}
        per_seed: dict[str, list[dict[str, Any]]] = {m: [] for m in rcfg.model_names()}
        kept: dict[str, Any] = {}          # the first seed's trained models (test time) or their classes
        replicates: dict[str, Any] = {}    # the first seed's bootstrap replicates: paired differences
        curves: dict[str, Any] = {}
        for s in seeds:
            for name in rcfg.model_names():
                rec = results[_unit_key(name, s)]
                rec.pop("unit_seconds", None)
                for phase, key in ((f"train:{name}", "train_wall_seconds"), (f"evaluate:{name}", "eval_seconds")):
                    unit_timings[phase] = unit_timings.get(phase, 0.0) + float(rec.get(key) or 0.0)
                if s == seeds[0] and rec["status"] == "ok":
                    replicates[name] = load_arrays(_replicates_path(out, name))
                    kept[name] = (_load_trained(rec["train"]["folder"], device) if use_test_time(rcfg)
                                  else MODELS[split_model_name(name)[0]])
                    curves[name] = rec["train"].pop("history", None)
                else:
                    rec.get("train", {}).pop("history", None)
                per_seed[name].append(rec)

        models_doc = {name: _combine(recs) for name, recs in per_seed.items()}
        for name, entry in models_doc.items():
            entry["collapsed"] = collapse_reason(entry, words(data.domain))
            if len(per_seed[name]) > 1:
                combine_seed_intervals(entry, [r for r in per_seed[name] if r["status"] == "ok"])
        ivs = {n: e.get("intervals") or {} for n, e in models_doc.items()}
        differences = {**paired_differences(replicates, ivs, comparison_pairs(list(replicates))),
                       **sampler_differences(replicates, ivs)}
        shutil.rmtree(_replicates_dir(out), ignore_errors=True)     # read: not part of the run folder

        pairs: dict[str, Any] = {}          # the AE/VAE pair, then (--priors) the prior-only 2-D VAEs
        priors_2d: dict[str, Any] = {}
        for pname in pair_models(rcfg):
            rec = results[pname]
            unit_timings["pairs_2d"] = unit_timings.get("pairs_2d", 0.0) + float(rec.pop("unit_seconds", 0.0))
            if rec["status"] == "ok":
                curves[pname] = rec["train"].pop("history", None)
            (pairs if pname in PAIR_MODELS else priors_2d)[pname] = rec

        test_time_doc = None
        if use_test_time(rcfg) and kept:
            t0 = time.perf_counter()
            from vaelab import test_time

            test_time_doc, tt_arrays = test_time.measure(kept, data, sets, judge=judge, seed=rcfg.train.seed,
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
                       "device": str(device), "torch_threads": unit_threads,
                       **({"batch_note": batch_note} if batch_note else {})},
            "versions": versions() | _more_versions(),
            "judge": ({"test_accuracy": judge.test_accuracy, "fingerprint": judge.fingerprint,
                       "arch": getattr(judge, "arch", None)} if judge is not None else None),
            "reference": reference,
            "models": models_doc,
            "pairs_2d": pairs,
            **({"priors_2d": priors_2d} if priors_2d else {}),
            "differences": differences,
            "kl_schedule": _kl_schedule_block(rcfg, kept, curves),
            "test_time": test_time_doc,
        }
        doc["training_curves"] = curves
        doc["unit_timings"] = unit_timings
        t0 = time.perf_counter()
        # every figure from the run folder's files alone (metrics + arrays/), as `vaelab report` redraws them; in
        # the local workers when the units ran there (5 s of matplotlib for the default digits compare)
        doc["figures"] = draw_figures(out, strict_json(doc), n_workers if rcfg.executor.executor == "local" else 1)
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
        return {"model": name, "train": cfg.train.to_dict(), "free_bits": float(cfg.model.free_bits),
                "n_steps": hist[-1]["step"] if hist else 0, "history": hist}
    return None


def _run_model(name: str, cfg: CompareConfig, data: Any, seed: int, folder: Path, judge: Any, resume: bool,
               progress: bool, evaluate: Any, outputs: dict[str, str] | None = None) -> dict[str, Any]:
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
        e = cfg.eval
        res = evaluate(model, data, judge=judge, n_samples=e.n_samples, iw_k=e.iw_k, samplers=samplers_for(cfg, name),
                       n_interp_pairs=e.n_interp_pairs, seed=seed, progress=progress, name=name,
                       arrays_path=(outputs or {}).get("arrays"), replicates_path=(outputs or {}).get("replicates"),
                       novelty_path=(outputs or {}).get("novelty"))
        rec["eval_seconds"] = time.perf_counter() - t0
    except (VaelabError, ValueError) as e:
        return {**rec, "status": "failed", "error": f"evaluation: {e}"}
    return {**res, **rec, "_model": model}


def samplers_for(cfg: CompareConfig, name: str) -> tuple[str, ...]:
    """The samplers a model is scored with: --samplers; in a --priors comparison the Gaussian-prior models decode
    the prior swap's samplers too (vaelab.report.priors: one decoder, five samplers)."""
    if cfg.compares_priors and split_model_name(name)[1] == "gaussian":
        return tuple(dict.fromkeys((*cfg.eval.samplers, *PRIOR_SWAP_SAMPLERS)))
    return cfg.eval.samplers


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


def pair_models(cfg: CompareConfig) -> dict[str, str]:
    """The 2-D-latent models of a comparison, name -> model: the AE/VAE pair (``PAIR_MODELS``) and, in a --priors
    comparison, a 2-D VAE for each prior but the Gaussian (``vae-uniform-2d``...: the aggregate-posterior maps)."""
    if not cfg.use_pair_2d:
        return {}
    extra = {f"vae-{p}-2d": f"vae-{p}" for p in cfg.priors if p != "gaussian"} if cfg.compares_priors else {}
    return {**PAIR_MODELS, **extra}


def _pair_unit(pname: str, cfg: CompareConfig, data: Any, folder: Path, judge: Any, resume: bool,
               progress: bool, outputs: dict[str, str]) -> dict[str, Any]:
    """One 2-D-latent model: trained like the others. The AE/VAE pair is scored by the judge over latent grids
    (the arrays of its manifold grid and holes map go to ``outputs`` "arrays", "holes"); in a --priors comparison
    each 2-D VAE also maps its aggregate posterior over its prior (``prior_map``; the prior-only 2-D models, whose
    prior is not N(0, I), only that)."""
    from vaelab.measure.store import save_arrays
    from vaelab.measure.views import pair_views, prior_map_view

    mname = pair_models(cfg)[pname]
    prior = split_model_name(mname)[1]
    rec: dict[str, Any] = {"model": mname, "n_latent": 2, "status": "ok", "error": None}
    try:
        mcfg = model_cfg(cfg, mname, data, n_latent=2)
        model, info = train_or_reuse(mcfg, cfg.train, data, folder, device=_device(cfg), meta=data_meta(cfg),
                                     resume=resume, progress=progress)
    except FAILURES as e:
        return {**rec, "status": "failed", "error": f"training: {e}"}
    rec["train"] = {**info, "n_params": n_params(model)}     # its "history" goes to the curves
    arrays: dict[str, Any] = {}
    if cfg.compares_priors and model.is_stochastic:
        rec["prior_map"], arrays = prior_map_view(model, data, cfg.train.seed)
    if prior not in (None, "gaussian"):      # a prior-only 2-D model: no N(0, I) grids
        save_arrays(Path(outputs["arrays"]), arrays)
        return rec
    grids, pair_arrays = pair_views(model, data, judge)
    rec.update(grids)
    save_arrays(Path(outputs["arrays"]), {**pair_arrays, **arrays})
    if judge is not None:          # holes measured: q(z) against p(z) on the prior grid, realism of its decodes
        from vaelab.measure.grid import latent_grid
        from vaelab.verdict import pair_holes

        rec["holes"] = pair_holes(model, data, judge, latent_grid("prior"), cfg.train.seed, Path(outputs["holes"]))
    return rec


# -- units: what an executor runs (vaelab.executor) ---------------------------------------------
REFERENCE_UNIT = "reference"       # the unit of the generation table's reference rows (evaluate.reference_rows)
# units' costs against a VAE unit's, measured on the Fashion-MNIST example (a VAE unit ~290 s, train + evaluate):
REFERENCE_WORK = 0.2               # the reference rows, 42 s
PAIR_WORK = 0.7                    # a 2-D model of the pair, ~195 s (it trains as long; its evaluation is short)
_WORKER_INPUTS: dict[str, tuple[Any, Any]] = {}    # (data, judge) per data spec, loaded once per process
REPLICATES_DIR = ".replicates"      # RUN/arrays/.replicates/<model>.npz: a unit's bootstrap replicates, read by
                                    # compare for the paired differences, then removed


def _unit_key(name: str, seed: int) -> str:
    return f"{name}/seed-{seed}"


def _inputs_key(cfg: CompareConfig) -> str:
    return json.dumps([data_meta(cfg), cfg.train.device])


def _replicates_dir(out: Path) -> Path:
    from vaelab.measure.store import ARRAYS_DIR

    return out / ARRAYS_DIR / REPLICATES_DIR


def _replicates_path(out: Path, name: str) -> Path:
    return _replicates_dir(out) / f"{name}.npz"


def image_units(cfg: CompareConfig, out: Path, seeds: list[int], resume: bool, progress: bool,
                n_threads: int) -> list[Unit]:
    """seeds x models (+ the 2-D pair): each an independent unit seeded by its own (model, seed).

    A unit writes its model folder and, for the first seed and the pair, the files its figures and the
    paired differences are drawn from (``outputs``: files an executor brings back from a Ray node).
    """
    from vaelab.executor import Unit
    from vaelab.measure.store import ARRAYS_DIR, arrays_path

    base = {"config": cfg.to_dict(), "resume": resume, "progress": progress, "n_threads": n_threads}
    gpu = 1.0 if _device(cfg).type == "cuda" else 0.0
    units = []
    for s in seeds:
        for name in cfg.model_names():
            folder = out / "models" / name if cfg.n_seeds == 1 else out / "models" / name / f"seed-{s}"
            outputs = {"arrays": str(arrays_path(out, name)), "replicates": str(_replicates_path(out, name)),
                       "novelty": str(out / ARRAYS_DIR / f"novelty-{name}.npz")} if s == seeds[0] else {}
            units.append(Unit(_unit_key(name, s), "vaelab.compare:run_image_unit",
                              {**base, "kind": "model", "name": name, "seed": s, "folder": str(folder),
                               "outputs": outputs},
                              n_epochs=cfg.train.epochs, n_cpus=max(1, n_threads), n_gpus=gpu,
                              work=unit_work(cfg, name)))
    # the generation table's floor and ceilings (the data scored as if it were a model): a unit too, so that it
    # runs beside the models instead of before them (42 s of the Fashion-MNIST example, on one core)
    units.append(Unit(REFERENCE_UNIT, "vaelab.compare:run_image_unit", {**base, "kind": "reference"},
                      n_cpus=max(1, n_threads), n_gpus=gpu, work=REFERENCE_WORK))
    for pname in pair_models(cfg):
        units.append(Unit(pname, "vaelab.compare:run_image_unit",
                          {**base, "kind": "pair", "name": pname, "seed": cfg.train.seed,
                           "folder": str(out / "models" / pname),
                           "outputs": {"arrays": str(arrays_path(out, pname)),
                                       "holes": str(out / ARRAYS_DIR / f"holes-{pname}.npz")}},
                          n_epochs=cfg.train.epochs, n_cpus=max(1, n_threads), n_gpus=gpu, work=PAIR_WORK))
    return units


def draw_figures(out: Path, doc: dict[str, Any], n_workers: int) -> list[dict[str, str]]:
    """The report's figures of run folder ``out`` (``vaelab.report.figures.draw_run``); with ``n_workers`` > 1 each
    figure is a unit of that many local workers, costliest first: the same PNGs and the same list, in the same
    order (tests/test_executor.py checks it). The driver then imports no matplotlib at all."""
    from vaelab.executor import Unit, make_executor
    from vaelab.report.figures import FIGURE_WORK, draw_run, figure_names

    if n_workers <= 1:
        return draw_run(out, doc)
    names = figure_names(out, doc)
    if len(names) < 2:
        return draw_run(out, doc)
    units = [Unit(f"figure/{n}", "vaelab.report.figures:draw_unit", {"run": str(out), "doc": doc, "name": n},
                  work=FIGURE_WORK.get(n, 1.0)) for n in names]
    done = make_executor("local", n_workers=min(n_workers, len(units)), preload=COMPARE_PRELOAD).run(units)
    return [e for n in names for e in done[f"figure/{n}"]["entries"]]


def unit_work(cfg: CompareConfig, name: str) -> float:
    """A model unit's cost relative to a plain VAE's (the executor starts the costliest first): a training step
    encodes once and decodes once per importance sample, so the IWAE's costs about (1 + k) / 2 of it."""
    from vaelab.models import MODEL_DEFAULTS

    base, _ = split_model_name(name)
    if base != "iwae":
        return 1.0
    k = cfg.model.k if "model.k" not in cfg.auto else MODEL_DEFAULTS["iwae"]["k"]
    return (1 + k) / 2


def run_image_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one unit of ``image_units`` (in any process): train or reuse, evaluate; its JSON record."""
    from vaelab.evaluate import evaluate
    from vaelab.io import strict_json

    cfg = CompareConfig.from_dict(spec["config"])
    key = _inputs_key(cfg)
    if key not in _WORKER_INPUTS:          # a worker process: load the data and the judge as compare() did
        from vaelab.data import load_dataset
        from vaelab.judge import load_or_train_judge

        data = load_dataset(cfg.data.dataset, **{**cfg.data.load_kwargs(), "classes": training_classes(cfg)})
        judge = load_or_train_judge(data, seed=0, progress=False, device=str(_device(cfg)))
        _WORKER_INPUTS.clear()
        _WORKER_INPUTS[key] = (data, judge)
    data, judge = _WORKER_INPUTS[key]
    t0 = time.perf_counter()
    if spec["kind"] == "reference":         # no folder: the rows are the whole result
        from vaelab.evaluate import reference_rows

        rec = reference_rows(data, judge, n_samples=cfg.eval.n_samples, seed=cfg.train.seed)
        rec["unit_seconds"] = time.perf_counter() - t0
        return strict_json(rec)
    folder, resume, progress = Path(spec["folder"]), bool(spec["resume"]), bool(spec["progress"])
    outputs = spec.get("outputs") or {}
    if spec["kind"] == "pair":
        rec = _pair_unit(spec["name"], cfg, data, folder, judge, resume, progress, outputs)
    else:
        rec = _run_model(spec["name"], cfg, data, int(spec["seed"]), folder, judge, resume, progress, evaluate,
                         outputs)
        rec.pop("_model", None)
    rec["unit_seconds"] = time.perf_counter() - t0
    return strict_json(rec)


def _executor(cfg: CompareConfig, data: Any, judge: Any, out: Path, progress: bool, n_threads: int,
              device: torch.device) -> tuple[Any, int, int]:
    """The image comparison's executor, its worker count and the torch threads of each unit (large images share
    the cores among workers)."""
    n_units = cfg.n_seeds * len(cfg.model_names()) + len(pair_models(cfg))
    n_workers = resolve_workers(cfg.executor.n_workers, n_units, device, data_bytes(data),
                                training_work(len(data.x_train), cfg.train.epochs, data.shape))
    if n_workers > 1 and size_class(data.shape) == "large" and not cfg.n_threads:
        from vaelab.executor import usable_cores

        n_threads = max(1, usable_cores() // n_workers)
    cache = [f"judge/{judge.fingerprint}"] if judge is not None else []
    return (unit_executor(cfg.executor, n_workers, n_threads, progress, out, cache, COMPARE_PRELOAD), n_workers,
            n_threads or torch.get_num_threads())


# auto workers (--workers 0) only when a unit trains on at least this many elements (images x epochs x pixels, or
# molecules x epochs x tokens): a worker's start (torch import, data, judge) costs a few CPU-seconds, which a
# smaller unit does not win back (the default digits compare: 5.0M per unit; a test's tiny compare: ~0.05M)
AUTO_MIN_WORK = 1_000_000


def resolve_workers(requested: int, n_units: int, device: torch.device, n_data_bytes: int,
                    work_per_unit: float = math.inf) -> int:
    """``--workers``: 0 = auto: the cores, capped by memory (a worker holds ~0.6 GB + 6x the data) and by the units,
    when each unit trains on at least AUTO_MIN_WORK elements (else in this process); one on a GPU."""
    from vaelab.executor import default_workers as by_memory

    if requested:
        n = requested
    elif device.type == "cuda" or work_per_unit < AUTO_MIN_WORK:
        n = 1
    else:
        n = by_memory(600 * 2**20 + 6 * n_data_bytes)
    return max(1, min(n, n_units))


def training_work(n_train: int, epochs: int, shape: tuple[int, ...]) -> int:
    """Elements one unit trains on: training examples x epochs x elements per example (resolve_workers)."""
    return int(n_train) * int(epochs) * math.prod(shape)


def unit_executor(ecfg: Any, n_workers: int, n_threads: int, progress: bool, out: Path,
                  cache_dirs: list[str], preload: tuple[str, ...] = ()) -> Any:
    """The executor of ``ecfg`` (an ExecutorConfig) for any domain's units.

    A unit whose worker died is run again with resume on: it continues from its last epoch checkpoint.
    """
    from vaelab.executor import make_executor

    def again(u: Unit) -> Unit:
        return dataclasses.replace(u, spec={**u.spec, "resume": True})

    return make_executor(ecfg.executor, n_workers=n_workers, n_threads=n_threads or 1, progress=progress,
                         ray_address=ecfg.ray_address, shared_dir=ecfg.ray_shared_dir, cache_dirs=cache_dirs,
                         run_root=str(out), on_retry=again, preload=preload)


def data_bytes(data: Any) -> int:
    """Bytes of a dataset's train/val/test tensors."""
    return sum(int(t.numel()) * t.element_size() for t in (data.x_train, data.x_val, data.x_test) if t is not None)


def _check_enough_test(data: Any, cfg: CompareConfig) -> None:
    """Refuse, with one message, a test split too small for the sample metrics' k-NN balls (more than k images)."""
    from vaelab.evaluate import PR_K

    n = len(data.x_test)
    if n > PR_K:
        return
    w = words(data.domain)
    kept = (f" of the {len(cfg.inliers or cfg.data.classes)} classes kept by "
            f"{'--inliers' if cfg.inliers else '--classes'}") if (cfg.inliers or cfg.data.classes) else ""
    raise ConfigError(f"{data.name}: the test split has {n} {w.many if n != 1 else w.one}{kept}; vaelab compare "
                      f"needs at least {PR_K + 1} to measure precision, recall and coverage (k-NN balls with "
                      f"k = {PR_K}). Add {w.many}, or keep more classes.")


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


make_callable(__name__, "compare")   # vaelab.compare(cfg, out) is this function (vaelab/__init__.py)
