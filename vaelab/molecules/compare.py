"""`vaelab compare --dataset moses`: train sequence AE/VAE/... on molecules under one protocol and measure them.

Per model (all on held-out MOSES test molecules unless said):
  * reconstruction accuracy: exact canonical-SMILES match of greedy decode(encode(x));
  * generation from the prior N(0, I) and from an ex-post GMM fitted to the training codes: the
    MOSES row (valid, unique@k, FCD/SNN/Frag/Scaf against MOSES test, IntDiv, Filters, Novelty
    against the full MOSES train split) on ``n_samples`` molecules decoded at ``temperature``;
  * property probe: R^2 of a ridge regression from the code (posterior mean) to logP, QED, SA and
    MW, fitted on training molecules, scored on test molecules;
  * smoothness: around ``n_smooth`` test molecules, greedy decodes of z + sigma * eps for each sigma:
    validity, identity with the centre, mean Tanimoto to it.
The run folder follows the contract of the image compare (metrics.json, figures/, models/, report.html).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.config import EXECUTOR_RESUME_FREE, MoleculeCompareConfig, TrainConfig
from vaelab.errors import ConfigError, VaelabError
from vaelab.io import atomic_write_json, strict_json

log = logging.getLogger("vaelab.molecules")

# Polykovskiy et al. 2020 (MOSES), Table 2 / the MOSES README: the VAE row (30,000 samples, full data).
MOSES_VAE = {"valid": 0.977, "unique@10000": 0.998, "FCD/Test": 0.099, "SNN/Test": 0.626, "Frag/Test": 0.999,
             "Scaf/Test": 0.939, "IntDiv": 0.856, "Filters": 0.997, "Novelty": 0.695}
PROPERTIES = ("logP", "QED", "SA", "MW")


def _seq_name(name: str) -> str:
    """The model of ``name`` on token sequences: the same name (seq-* are aliases of the v1 names)."""
    return name


def _timer() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> dict[str, float]:
    return {"wall_s": round(time.perf_counter() - t[0], 1), "cpu_s": round(time.process_time() - t[1], 1)}


def property_probe(z_train: np.ndarray, smiles_train: list[str], z_test: np.ndarray,
                   smiles_test: list[str]) -> dict[str, float]:
    """R^2 on test of a ridge regression (alpha 1, standardised codes) from code to each property."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from vaelab.molecules.metrics import properties

    p_tr, p_te = properties(smiles_train), properties(smiles_test)
    out = {}
    for name in PROPERTIES:
        ok_tr, ok_te = np.isfinite(p_tr[name]), np.isfinite(p_te[name])
        reg = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(z_train[ok_tr], p_tr[name][ok_tr])
        out[name] = float(reg.score(z_test[ok_te], p_te[name][ok_te]))
    return out


def train_sample_row(cfg: MoleculeCompareConfig, ref, train_set) -> dict[str, Any]:
    """The MOSES row of ``n_samples`` MOSES *training* molecules: what the data itself scores at this sample size.

    MOSES's "Train" row, at our n: FCD, Scaf and unique@k depend on n, so this is the floor/ceiling the
    models' columns are read against (its Novelty is ~0 by construction).
    """
    from vaelab.molecules.data import load_moses
    from vaelab.molecules.metrics import moses_metrics

    smiles = load_moses("train", subset=cfg.n_samples, seed=cfg.seed + 1, max_length=cfg.max_smiles_len)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        row = moses_metrics(smiles, train=train_set, test=ref, unique_k=(1000, cfg.n_samples))
    row["unique@n"] = row[f"unique@{cfg.n_samples}"] if cfg.n_samples == 1000 else row.pop(f"unique@{cfg.n_samples}")
    row["n_samples"] = len(smiles)
    return row


def evaluate_molecule_model(model: torch.nn.Module, data, cfg: MoleculeCompareConfig, ref, train_set,
                            folder: Path | None = None, ref_smiles: list[str] | None = None
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """All molecule metrics of one trained model. Returns (metrics, examples for the figures).

    ``ref_smiles``: the reference molecules themselves, for GuacaMol's KL score (default: the test molecules)."""
    from vaelab.molecules.guacamol import guacamol_row
    from vaelab.molecules.properties import head_r2

    ref_smiles = list(data.smiles_test) if ref_smiles is None else ref_smiles
    from vaelab.molecules.latent import decode_codes, encode_ids, neighbourhood_stats
    from vaelab.molecules.metrics import moses_metrics, reconstruction_accuracy
    from vaelab.sampling import fit_density

    tok = data.tokenizer
    res: dict[str, Any] = {"timings": {}}
    ex: dict[str, Any] = {}

    t = _timer()
    z_test = encode_ids(model, data.x_test)
    recon = decode_codes(model, tok, z_test)
    res["reconstruction_accuracy"] = reconstruction_accuracy(data.smiles_test, recon)
    res["n_reconstructed"] = len(recon)
    ex["recon"] = list(zip(data.smiles_test[:8], recon[:8]))
    res["timings"]["reconstruction"] = _since(t)

    res["samplers"] = {}
    for sampler in ("prior", "gmm"):
        t = _timer()
        # the prior, or a GMM fitted to the posterior means of the training molecules (data.x_train ids)
        density = fit_density(sampler, model, data, seed=cfg.seed)
        if sampler == "gmm" and folder is not None:
            atomic_write_json(folder / "density-gmm.json", density.to_dict())
        z = density.sample(cfg.n_samples, seed=cfg.seed)
        gen = decode_codes(model, tok, z, temperature=cfg.temperature, seed=cfg.seed)
        ex[sampler] = gen[:24]
        try:
            with warnings.catch_warnings():   # unique@1000 on fewer molecules: computed on all, said in the report
                warnings.simplefilter("ignore", UserWarning)
                row = moses_metrics(gen, train=train_set, test=ref, unique_k=(1000, cfg.n_samples))
            n = cfg.n_samples
            row["unique@n"] = row[f"unique@{n}"] if n == 1000 else row.pop(f"unique@{n}")
            row.update(guacamol_row(gen, ref_smiles, row.get("FCD/Test")))
        except VaelabError as e:   # e.g. no valid molecule at all: report it, keep going
            row = {"valid": 0.0, "error": str(e)}
        row["n_samples"] = len(gen)
        res["samplers"][sampler] = row
        res["timings"][f"generation_{sampler}"] = _since(t)

    t = _timer()
    n_probe = min(len(data.smiles_train), 5000)
    z_train = encode_ids(model, data.x_train[:n_probe]).numpy()
    res["property_r2"] = property_probe(z_train, data.smiles_train[:n_probe], z_test.numpy(), data.smiles_test)
    if getattr(model, "property_head", None) is not None:      # the joint head, beside the post-hoc probe
        res["property_head_r2"] = head_r2(model, z_test, data.smiles_test)
    res["timings"]["property_probe"] = _since(t)

    t = _timer()
    gen = torch.Generator().manual_seed(cfg.seed)
    n_c = min(cfg.n_smooth, len(data.smiles_test))
    smooth: dict[str, dict[str, float]] = {}
    ex["neighbours"] = {}
    for sigma in cfg.sigmas:
        eps = torch.randn(n_c, cfg.n_neighbours, z_test.shape[1], generator=gen)
        zs = (z_test[:n_c, None, :] + sigma * eps).reshape(-1, z_test.shape[1])   # (n_c * n, D)
        decodes = decode_codes(model, tok, zs)
        stats = [neighbourhood_stats(data.smiles_test[i], decodes[i * cfg.n_neighbours:(i + 1) * cfg.n_neighbours])
                 for i in range(n_c)]
        smooth[str(sigma)] = {k: float(np.nanmean([s[k] for s in stats])) for k in ("valid", "unique", "same",
                                                                                    "tanimoto")}
        ex["neighbours"][sigma] = decodes[:8]
    res["smoothness"] = smooth
    res["timings"]["smoothness"] = _since(t)

    # interpolation between the first two test molecules
    z_ab = z_test[:2]
    steps = torch.linspace(0, 1, 8)[:, None]
    ex["interpolation"] = decode_codes(model, tok, (1 - steps) * z_ab[0] + steps * z_ab[1]) if len(z_ab) == 2 else []
    ex["interpolation_ends"] = data.smiles_test[:2]
    ex["neighbour_centre"] = data.smiles_test[0] if data.smiles_test else None
    return res, ex


def _reference(cfg: MoleculeCompareConfig, data: Any, progress: bool) -> tuple[Any, frozenset, str]:
    """The statistics the MOSES metrics compare against, the Novelty train set, and what they are."""
    from vaelab.molecules.data import load_moses
    from vaelab.molecules.metrics import moses_reference_stats, reference_stats

    if cfg.dataset == "moses":
        ref = moses_reference_stats("test", n=cfg.n_ref, seed=cfg.seed, progress=progress,
                                    max_length=cfg.max_smiles_len)
        train_set = frozenset(load_moses("train"))   # Novelty against the whole MOSES train split, as MOSES
        what = ("all 176,074 molecules of the MOSES test split" if cfg.n_ref is None else
                f"{ref.n:,}-molecule seeded sample (seed {cfg.seed}) of the MOSES test split")
        if cfg.max_smiles_len is not None:
            what += f" with SMILES of at most {cfg.max_smiles_len} characters"
        return ref, train_set, (f"{what}, statistics computed by vaelab (not MOSES's shipped statistics); "
                                "Novelty vs all 1,584,663 train")
    return (reference_stats(data.smiles_test), frozenset(data.smiles_train),
            f"the {len(data.smiles_test)} test molecules of {data.name}; Novelty vs its train split")


def _reference_smiles(cfg: MoleculeCompareConfig, data: Any, ref: Any) -> list[str]:
    """The reference molecules themselves (GuacaMol's KL score needs their descriptors): the MOSES test sample the
    reference statistics were computed from, or the test split of a SMILES file."""
    from vaelab.molecules.data import load_moses

    if cfg.dataset != "moses":
        return list(data.smiles_test)
    n = None if cfg.n_ref is None else ref.n
    return load_moses("test", subset=n, seed=cfg.seed, max_length=cfg.max_smiles_len)


def _load(cfg: MoleculeCompareConfig) -> Any:
    """The dataset, with standardised property targets as y when the models have a joint property head."""
    from vaelab.molecules.dataset import load_molecules
    from vaelab.molecules.properties import with_properties

    data = load_molecules(cfg.dataset, subset=cfg.subset, n_test=cfg.n_test, tokenizer=cfg.tokenizer, seed=cfg.seed,
                          max_smiles_len=cfg.max_smiles_len if cfg.dataset == "moses" else None)
    if cfg.properties and cfg.property_weight > 0:
        data, mean, std = with_properties(data, cfg.properties)
        data.property_standardisation = (mean, std)
    return data


def _train_config(cfg: MoleculeCompareConfig, data: Any, seed: int) -> TrainConfig:
    steps = cfg.epochs * math.ceil(len(data.smiles_train) / cfg.batch_size)
    return TrainConfig(epochs=cfg.epochs, batch_size=min(cfg.batch_size, len(data.smiles_train)), lr=cfg.lr,
                       seed=seed, device=cfg.device, kl_schedule="linear",
                       kl_warmup_steps=int(cfg.kl_warmup_fraction * steps), grad_clip=10.0)


def _model_config(cfg: MoleculeCompareConfig, data: Any, name: str) -> Any:
    from vaelab.models import ALL_MODELS as SEQ_MODELS, model_config

    sname = _seq_name(name)
    head: dict[str, Any] = {}
    stand = getattr(data, "property_standardisation", None)
    if stand is not None and SEQ_MODELS[sname].has_property_loss and not SEQ_MODELS[sname].is_conditional:
        head = dict(properties=tuple(cfg.properties), property_mean=stand[0], property_std=stand[1],
                    property_weight=cfg.property_weight)
    return model_config(sname, tokenizer=data.tokenizer.name, vocab=tuple(data.tokenizer.vocab.itos),
                        max_len=data.shape[0], n_latent=cfg.latent_dim, hidden=cfg.hidden, embed_dim=cfg.embed_dim,
                        beta=cfg.beta, free_bits=cfg.free_bits if SEQ_MODELS[sname].is_stochastic else None, **head)


# -- the unit (one model, one seed) the compare loop's executor runs --------------------------------
_INPUTS: dict[str, tuple[Any, Any, frozenset, list]] = {}    # (data, ref, train_set, ref_smiles) per config, once per process


def run_molecule_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (or, with resume, reuse) and measure one molecule model for one seed; its JSON record.

    The record holds the metrics, the examples the figures show ("examples") and the training history.
    """
    from vaelab.compare import train_or_reuse
    from vaelab.io import read_jsonl
    from vaelab.metrics import collapse
    from vaelab.molecules.training import ReconstructionRecorder
    from vaelab.rundir import LOG_NAME
    from vaelab.train import resolve_device

    cfg = MoleculeCompareConfig.from_dict(spec["config"])
    key = json.dumps(spec["config"], sort_keys=True)
    if key not in _INPUTS:
        data = _load(cfg)
        _INPUTS.clear()
        ref, train_set, _ = _reference(cfg, data, progress=False)
        _INPUTS[key] = (data, ref, train_set, _reference_smiles(cfg, data, ref))
    data, ref, train_set, ref_smiles = _INPUTS[key]
    name, seed, folder = spec["name"], int(spec["seed"]), Path(spec["folder"])
    ecfg = dataclasses.replace(cfg, seed=seed)      # the unit's seed: training, sampling, smoothness noise
    mcfg = _model_config(cfg, data, name)
    try:
        t = _timer()
        recorder = (ReconstructionRecorder(data, n=cfg.recon_history_n, then=collapse.record_epoch)
                    if cfg.recon_history_n else None)
        model, info = train_or_reuse(mcfg, _train_config(cfg, data, seed), data, folder,
                                     device=resolve_device(cfg.device), resume=bool(spec["resume"]),
                                     progress=bool(spec["progress"]), meta=_data_meta(cfg), on_epoch=recorder)
        train_t = _since(t)
        res, ex = evaluate_molecule_model(model, data, ecfg, ref, train_set, folder, ref_smiles)
    except VaelabError as e:
        log.error("%s failed: %s", name, e)
        return {"model": name, "seed": seed, "status": "failed", "error": str(e)}
    res["timings"]["train"] = train_t
    res.update(status="ok", best_epoch=info["best_epoch"], test_loss=info["test_loss"], config=mcfg.to_dict(),
               n_parameters=sum(p.numel() for p in model.parameters()), reused=info["reused"])
    hist = read_jsonl(folder / LOG_NAME)       # the per-epoch log fit wrote (also for a reused model)
    return strict_json({"model": name, "seed": seed, "status": "ok", "error": None, "metrics": res,
                        "examples": ex, "history": hist})


def _data_meta(cfg: MoleculeCompareConfig) -> dict[str, Any]:
    return {"spec": cfg.dataset, "subset": cfg.subset, "n_test": cfg.n_test, "seed": cfg.seed,
            "max_smiles_len": cfg.max_smiles_len}


def run_compare(cfg: MoleculeCompareConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
                resume: bool = False) -> dict[str, Any]:
    """Train and measure every model of ``cfg`` (seeds x models, through the compare loop's executor);
    write the run folder; return metrics.json's content. ``resume`` reuses finished models and continues
    unfinished ones from their last epoch (a run killed with kill -9 finishes with the same numbers)."""
    from vaelab.checkpoint import versions
    from vaelab.compare import prepare_run_folder, resolve_workers, training_work, unit_executor
    from vaelab.config import config_diff
    from vaelab.executor import Unit
    from vaelab.models import ALL_MODELS as SEQ_MODELS
    from vaelab.molecules.report import write_figures
    from vaelab.report.html import write_molecule_report as write_report
    from vaelab.train import resolve_device

    for m in cfg.models:
        if _seq_name(m) not in SEQ_MODELS:
            raise ConfigError(f"unknown molecule model {m!r}; choose from ae, dae, vae, beta-vae, iwae, rae.")
    out = Path(out)
    device = resolve_device(cfg.device)
    prepare_run_folder(out, cfg.to_dict(), resume, overwrite, free=EXECUTOR_RESUME_FREE,
                       differences=lambda old: config_diff(MoleculeCompareConfig.from_dict(old).to_dict(), cfg.to_dict()))
    t_all = _timer()
    timings: dict[str, Any] = {}

    t = _timer()
    data = _load(cfg)
    timings["data"] = _since(t)
    log.info("%r", data)

    t = _timer()
    ref, train_set, reference_note = _reference(cfg, data, progress)
    reference_rows: dict[str, Any] = {}
    if cfg.dataset == "moses":
        reference_rows[f"MOSES train sample (n={cfg.n_samples})"] = train_sample_row(cfg, ref, train_set)
    timings["reference"] = _since(t)
    ref_smiles = _reference_smiles(cfg, data, ref)
    _INPUTS.clear()
    _INPUTS[json.dumps(cfg.to_dict(), sort_keys=True)] = (data, ref, train_set, ref_smiles)   # in-process units reuse them

    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    units_list = []
    n_workers = resolve_workers(cfg.executor.n_workers, len(seeds) * len(cfg.models), device, 0,
                                training_work(len(data.x_train), cfg.epochs, tuple(data.x_train.shape[1:])))
    in_process = n_workers == 1 and cfg.executor.executor == "local"
    for s in seeds:
        for name in cfg.models:
            folder = out / "models" / name if cfg.n_seeds == 1 else out / "models" / name / f"seed-{s}"
            units_list.append(Unit(f"{name}/seed-{s}", "vaelab.molecules.compare:run_molecule_unit",
                                   {"config": cfg.to_dict(), "name": name, "seed": s, "folder": str(folder),
                                    "resume": resume, "progress": progress and in_process},
                                   n_epochs=cfg.epochs, n_gpus=1.0 if device.type == "cuda" else 0.0))
    executor = unit_executor(cfg.executor, n_workers, 0, progress, out, [])
    t = _timer()
    done = executor.run(units_list)
    timings["units"] = _since(t)

    results: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    histories: dict[str, list] = {}
    for name in cfg.models:
        recs = [done[f"{name}/seed-{s}"] for s in seeds]
        first = recs[0]
        if first["status"] == "ok":
            ex = first["examples"]      # JSON made the sigmas of the neighbour decodes strings
            examples[name] = {**ex, "neighbours": {float(k): v for k, v in ex["neighbours"].items()}}
            histories[name] = first["history"]
        results[name] = _combine_seeds(recs)

    t = _timer()
    design, design_figures = _design(cfg, data, out, results, train_set)
    timings["design"] = _since(t)

    t = _timer()
    doc = {"schema_version": 1, "kind": "molecules", "dataset": data.summary(),
           "config": {**cfg.to_dict(), "seeds": seeds, "workers": n_workers},
           "train": _train_config(cfg, data, cfg.seed).to_dict(), "versions": versions(),
           "reference": {"MOSES VAE (published)": MOSES_VAE, "rows": reference_rows, "note": reference_note},
           "models": results, "histories": histories, "timings": timings}
    if design is not None:
        doc["design"] = design
    figures = {**write_figures(out / "figures", examples, histories), **design_figures}
    doc["figures"] = figures
    timings["figures"] = _since(t)
    timings["total"] = _since(t_all)
    doc = strict_json(doc)
    atomic_write_json(out / "metrics.json", doc)
    write_report(out, doc)
    return doc


def _design(cfg: MoleculeCompareConfig, data: Any, out: Path, results: dict[str, Any],
            train_set: frozenset) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The Design section: every trained model (first seed) designs from the first cfg.design_starts test
    molecules by both methods (vaelab.molecules.design.design_table); a path grid per model and method."""
    from vaelab.molecules.design import design_table
    from vaelab.molecules.latent import load_molecule_model
    from vaelab.molecules.report import path_grid_png

    ok = [m for m, r in results.items() if r.get("status") == "ok"]
    if not cfg.design_starts or not ok:
        return None, {}
    models = {}
    for name in ok:
        folder = out / "models" / name if cfg.n_seeds == 1 else out / "models" / name / f"seed-{cfg.seed}"
        models[name] = load_molecule_model(folder)
    starts = list(data.smiles_test[:cfg.design_starts])
    table = design_table(models, starts, cfg.design_property, steps=cfg.design_steps, seed=cfg.seed, train=train_set)
    figures = {}
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, per in table["models"].items():
        for method, res in per.items():
            if res.get("runs"):
                f = f"{name}-design-{method}.png"
                path_grid_png(out / "figures" / f, res["runs"][0])
                figures[f"{name}: design path ({method}, {table['property']}) from the first test molecule"] = f
    return table, figures


def _combine_seeds(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's metrics.json entry: its metrics (one seed), or the mean with "sd" and "per_seed" (several)."""
    from vaelab.compare import aggregate

    ok = [r["metrics"] for r in recs if r["status"] == "ok"]
    if not ok:
        return {"status": "failed", "error": "; ".join(f"seed {r['seed']}: {r['error']}" for r in recs)}
    if len(recs) == 1:
        return ok[0]
    mean, sd = aggregate(ok)
    failed = [r for r in recs if r["status"] != "ok"]
    return {**mean, "sd": sd, "per_seed": [r.get("metrics") or {"status": r["status"], "error": r["error"]}
                                           for r in recs],
            "n_seeds": len(ok), "failed_seeds": [r["seed"] for r in failed],
            "error": "; ".join(f"seed {r['seed']}: {r['error']}" for r in failed) or None}
