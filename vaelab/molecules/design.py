"""Property-guided design in the latent space of a molecule AE/VAE (Gómez-Bombarelli et al. 2018, sec. "Bayesian
optimization" and Fig. 3): start from a molecule's code, move z to raise a property, decode each step.

Two methods, each returning a path of decoded candidates scored by RDKit's *true* property (never the head's guess):
  * ``gradient``: ascent on the joint property head f(z) (the model must have one: SeqModelConfig.properties),
    z_{t+1} = z_t + eta_t * grad f(z_t) / ||grad f(z_t)||, with eta_t halved (up to 10 times) until f increases,
    so the head's prediction never decreases along the path;
  * ``bo``: Bayesian optimisation of the true property over z with scikit-learn's GaussianProcessRegressor
    (Matérn 5/2 + white noise) and expected improvement EI(z) = (mu - y* - xi) Phi(u) + s phi(u),
    u = (mu - y* - xi) / s (Jones et al. 1998), maximised over random candidates around the best code so far.
    Any model works (no head needed); an invalid decode scores the worst value seen.

``design(...)`` reports: the start molecule and its property, best and top-10 (mean of the best 10 unique valid
candidates) true property, improvement over the start, validity, uniqueness, novelty against the training
molecules, and the Tanimoto similarity to the start at each step.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from vaelab.config import DESIGN_METHODS
from vaelab.errors import ConfigError, DataError
from vaelab.molecules.data import canonical_smiles, quiet_rdkit
from vaelab.molecules.latent import MoleculeModel, decode_codes, encode_smiles, tanimoto_to
from vaelab.molecules.properties import (CYCLE_MEAN, CYCLE_STD, LOGP_MEAN, LOGP_STD, SA_MEAN, SA_STD,
                                         check_property, property_values)

METHODS = DESIGN_METHODS          # vaelab.config: the options know them without importing torch


def head_objective(model: torch.nn.Module, name: str):
    """f(z): (N, D) -> (N,) the property head's prediction of ``name`` in its own units (differentiable).

    penalized-logp from a head of logp and sa: the JT-VAE standardisation of predicted logP and SA, with the
    cycle term at its value for rings of at most 6 atoms (vaelab.molecules.properties).
    """
    key = check_property(name)
    head = getattr(model, "property_head", None)
    names = tuple(model.cfg.properties) if head is not None else ()
    if key in names:
        j = names.index(key)
        return lambda z: head.predict(z)[..., j]
    if key == "penalized-logp" and {"logp", "sa"} <= set(names):
        i, j = names.index("logp"), names.index("sa")
        const = (0 - CYCLE_MEAN) / CYCLE_STD

        def f(z: Tensor) -> Tensor:
            p = head.predict(z)
            return (p[..., i] - LOGP_MEAN) / LOGP_STD + (-p[..., j] - SA_MEAN) / SA_STD + const
        return f
    have = ", ".join(names) if names else "none"
    raise ConfigError(f"gradient design of {key} needs a property head that predicts it (this model's head: {have}). "
                      "Train the models with a property head (properties qed, logp, sa), or use --method bo, "
                      "which needs no head.")


def gradient_path(model: torch.nn.Module, z0: Tensor, name: str, steps: int, step_size: float = 0.5) -> tuple[Tensor, list[float]]:
    """Codes z_0 .. z_S of gradient ascent on the head (backtracking: the prediction never decreases).

    Args:
        z0: (D,) the start code.
    Returns:
        ((S+1, D) codes, S+1 head predictions)
    """
    f = head_objective(model, name)
    was_training = model.training
    model.eval()
    z = z0.detach().clone().float()
    path, preds = [z.clone()], []
    with torch.enable_grad():
        zg = z.clone().requires_grad_(True)
        value = f(zg[None])[0]
        preds.append(float(value.detach()))
        for _ in range(steps):
            (g,) = torch.autograd.grad(value, zg)
            norm = float(g.norm())
            if not norm > 0:        # a flat head: stay
                path.append(zg.detach().clone())
                preds.append(preds[-1])
                continue
            eta = step_size
            for _ in range(11):
                cand = (zg.detach() + eta * g / norm).requires_grad_(True)
                new = f(cand[None])[0]
                if float(new.detach()) >= preds[-1]:
                    break
                eta /= 2
            else:                   # no ascent direction at this scale: stay
                cand, new = zg.detach().clone().requires_grad_(True), f(zg.detach()[None])[0]
            zg, value = cand, new
            path.append(zg.detach().clone())
            preds.append(float(value.detach()))
    model.train(was_training)
    return torch.stack(path), preds


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float, xi: float = 0.01) -> np.ndarray:
    """EI of maximisation: (mu - best - xi) Phi(u) + sd phi(u), u = (mu - best - xi) / sd; 0 where sd = 0."""
    from scipy.stats import norm

    imp = mu - best - xi
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(sd > 0, imp / sd, 0.0)
    return np.where(sd > 0, imp * norm.cdf(u) + sd * norm.pdf(u), np.maximum(imp, 0.0))


def bo_path(mm: MoleculeModel, z0: Tensor, name: str, steps: int, seed: int = 0, n_init: int = 5,
            radius: float = 1.0, n_candidates: int = 512) -> tuple[Tensor, list[str], list[float]]:
    """Bayesian optimisation of the true property over z: ((1 + n_init + steps, D) codes, their decodes, scores).

    The first code is z0; n_init codes z0 + radius * eps start the GP; each step fits the GP to every (z, score)
    seen and decodes the candidate of largest EI among n_candidates codes z_best + radius * eps.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    rng = np.random.default_rng(seed)
    D = z0.shape[-1]
    zs = [z0.float().numpy()] + [z0.float().numpy() + radius * rng.standard_normal(D) for _ in range(n_init)]
    smiles = decode_codes(mm.model, mm.tokenizer, torch.tensor(np.stack(zs), dtype=torch.float32))
    scores = list(property_values(smiles, name))
    kernel = ConstantKernel(1.0) * Matern(length_scale=np.sqrt(D), nu=2.5) + WhiteKernel(1e-2)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    for t in range(steps):
        y = np.asarray(scores, dtype=np.float64)
        floor = np.nanmin(y) if np.isfinite(y).any() else 0.0
        y = np.where(np.isfinite(y), y, floor)                   # invalid decodes: the worst value seen
        with warnings.catch_warnings():     # a hyper-parameter at its bound is expected with a handful of points
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed + t).fit(np.stack(zs), y)
        best = int(np.argmax(y))
        cand = zs[best] + radius * rng.standard_normal((n_candidates, D))   # (C, D)
        mu, sd = gp.predict(cand, return_std=True)
        z_next = cand[int(np.argmax(expected_improvement(mu, sd, float(y.max()))))]
        zs.append(z_next)
        (s,) = decode_codes(mm.model, mm.tokenizer, torch.tensor(z_next[None], dtype=torch.float32))
        smiles.append(s)
        scores.append(float(property_values([s], name)[0]))
    return torch.tensor(np.stack(zs), dtype=torch.float32), smiles, scores


def summarise(start: str, start_value: float, smiles: Sequence[str], values: Sequence[float],
              train: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """The design numbers of one path of candidates (the start itself excluded from the candidates)."""
    with quiet_rdkit():
        canon = [canonical_smiles(s) if s else None for s in smiles]
    valid = [(c, v) for c, v in zip(canon, values) if c is not None and np.isfinite(v)]
    unique = dict(valid)                                           # canonical -> value
    ranked = sorted(unique.values(), reverse=True)
    sim = tanimoto_to(start, [c if c is not None else "" for c in canon])
    novel = [c for c in unique if train is not None and c not in train]
    best = max(unique, key=unique.get) if unique else None
    return {
        "n_candidates": len(smiles), "validity": len(valid) / len(smiles) if smiles else math.nan,
        "uniqueness": len(unique) / len(valid) if valid else math.nan,
        "novelty": (len(novel) / len(unique) if unique else math.nan) if train is not None else None,
        "best": ranked[0] if ranked else math.nan, "best_smiles": best,
        "top10": float(np.mean(ranked[:10])) if ranked else math.nan,
        "improvement": (ranked[0] - start_value) if ranked else math.nan,
        "start_smiles": start, "start_value": start_value,
        "similarity_to_start": [None if not np.isfinite(x) else round(float(x), 4) for x in sim],
        "mean_similarity_to_start": float(np.nanmean(sim)) if np.isfinite(sim).any() else math.nan,
    }


def design(mm: MoleculeModel, prop: str, start: str, steps: int = 20, method: str = "gradient", seed: int = 0,
           step_size: float = 0.5, train: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """Optimise ``prop`` from the molecule ``start`` in ``mm``'s latent space; every candidate scored by RDKit.

    Returns:
        {"method", "property", "steps", "path": [{"step", "smiles", "value", "head", "similarity"}, ...],
         and the numbers of :func:`summarise`}
    """
    key = check_property(prop)
    if method not in METHODS:
        raise ConfigError(f"unknown design method {method!r}; choose one of {', '.join(METHODS)}.")
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}.")
    if not step_size > 0:
        raise ConfigError(f"the step size must be > 0, got {step_size}.")
    z, (canon,) = encode_smiles(mm, [start])                      # (1, D); DataError for an invalid SMILES
    start_value = float(property_values([canon], key)[0])
    torch.manual_seed(seed)
    if method == "gradient":
        zs, head = gradient_path(mm.model, z[0], key, steps, step_size)
        smiles = decode_codes(mm.model, mm.tokenizer, zs)
        values = list(property_values(smiles, key))
    else:
        zs, smiles, values = bo_path(mm, z[0], key, steps, seed=seed)
        head = [None] * len(smiles)
    res = summarise(canon, start_value, smiles[1:], values[1:], train)
    sims = tanimoto_to(canon, [s or "" for s in smiles])
    res.update(method=method, property=key, steps=steps, seed=seed, path=[
        {"step": i, "smiles": s, "value": None if not np.isfinite(v) else float(v),
         "head": None if h is None else float(h), "similarity": None if not np.isfinite(m) else float(m),
         "z_shift": float((zs[i] - zs[0]).norm())}
        for i, (s, v, h, m) in enumerate(zip(smiles, values, head, sims))])
    return res


def start_molecules(data_smiles_test: Sequence[str], n: int) -> list[str]:
    """The first n test molecules (``--from-test N``), with a clear error when there are fewer."""
    if n < 1 or n > len(data_smiles_test):
        raise DataError(f"--from-test takes 1..{len(data_smiles_test)} (the run's test molecules), got {n}.")
    return list(data_smiles_test[:n])


def _mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean over start molecules with a normal 95 % interval (mean +- 1.96 standard errors); n = finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return {"mean": float(v.mean()), "lo": float(v.mean() - half), "hi": float(v.mean() + half), "n": int(len(v))}


SUMMARY_KEYS = ("best", "top10", "improvement", "validity", "uniqueness", "novelty", "mean_similarity_to_start")


def design_table(models: dict[str, MoleculeModel], starts: Sequence[str], prop: str, steps: int = 20,
                 methods: Sequence[str] = METHODS, seed: int = 0, train: set[str] | frozenset[str] | None = None
                 ) -> dict[str, Any]:
    """Design from each start molecule with each model and method: per (model, method) the mean over starts of
    every :data:`SUMMARY_KEYS` number with its 95 % interval, plus the runs themselves.

    A method a model cannot run (gradient without a head for ``prop``) is recorded as {"error": message}.
    """
    out: dict[str, Any] = {"property": check_property(prop), "steps": steps, "starts": list(starts), "models": {}}
    for name, mm in models.items():
        out["models"][name] = {}
        for method in methods:
            try:
                runs = [design(mm, prop, s, steps=steps, method=method, seed=seed + i, train=train)
                        for i, s in enumerate(starts)]
            except ConfigError as e:
                out["models"][name][method] = {"error": str(e)}
                continue
            out["models"][name][method] = {"summary": {k: _mean_ci([r[k] for r in runs]) for k in SUMMARY_KEYS},
                                           "runs": runs}
    out["answer"] = design_answer(out)
    return out


def design_answer(table: dict[str, Any], a: str = "ae", b: str = "vae") -> str:
    """Whether b's latent served design better than a's: per method, the paired difference (same start molecules)
    of the improvement over the start, mean and 95 % interval; "better"/"worse" only when the interval excludes 0."""
    models = table.get("models", {})
    if a not in models or b not in models:
        return ""
    parts = []
    for method in METHODS:
        ra, rb = models[a].get(method, {}).get("runs"), models[b].get(method, {}).get("runs")
        if not ra or not rb:
            continue
        diff = _mean_ci([y["improvement"] - x["improvement"] for x, y in zip(ra, rb)])
        if diff["n"] < 2 or not np.isfinite(diff["lo"]):
            parts.append(f"{method}: too few start molecules to call a difference")
            continue
        verdict = ("the VAE's latent served design better" if diff["lo"] > 0 else
                   "the AE's latent served design better" if diff["hi"] < 0 else "no difference called")
        parts.append(f"{method}: improvement VAE − AE {diff['mean']:+.3f} [{diff['lo']:+.3f}, {diff['hi']:+.3f}] "
                     f"over {diff['n']} starts: {verdict}")
    return "; ".join(parts) + "." if parts else ""
