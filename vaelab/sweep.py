"""Rate-distortion sweep: beta-VAEs at several beta, plus the AE, on one plane (Alemi et al. 2018).

For a VAE the negative ELBO splits into distortion D = E_q[-log p(x|z)] and rate R = KL(q(z|x) || p(z))
(nats per image, test split). Training with weight beta on the rate traces the (R, D) frontier:
small beta buys low distortion with a high rate, large beta the reverse, and every beta = 1 optimum
sits where the frontier touches a line D + R = -ELBO (the ELBO iso-lines, slope -1). The
deterministic AE is the zero-noise end of the family: its encoder has no noise, so its rate is
infinite (KL of a point mass) and only its distortion is drawn, as a floor.

``vaelab sweep --beta 0.1,0.25,0.5,1,2,4,8`` writes
    OUT/models/beta-<b>/   OUT/models/ae/   (model folders)
    OUT/sweep.json         {"schema_version": 1, "points": [{beta, rate, distortion, neg_elbo, ...}], "ae": {...}}
    OUT/rate_distortion.png
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from vaelab import losses, preprocess
from vaelab.config import ModelConfig, TrainConfig
from vaelab.errors import ConfigError, OutputError
from vaelab.io import atomic_path, atomic_write_text
from vaelab.metrics.likelihood import likelihood_kind

SCHEMA_VERSION = 1


@torch.inference_mode()
def rate_distortion(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """Mean rate (analytic KL, nats) and distortion (-log p(x|z), one posterior sample; nats) over x.

    For a deterministic model the rate is infinite and the distortion uses its code. x is the data as modelled.
    """
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    d_sum = r_sum = 0.0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device)
        yb = y[i:i + batch_size].to(device) if y is not None else None
        q = model.encode(xb, yb)
        if model.is_stochastic:
            z = q.loc + q.scale * torch.randn(q.loc.shape, generator=gen).to(q.loc)
            r_sum += float(losses.gaussian_kl(q.loc, 2 * q.scale.log()).sum())
        else:
            z = q.mean
        d_sum += float(model.recon_nll(model.decode(z, yb), xb).sum())
    n = x.shape[0]
    offset = preprocess.nll_offset(model.cfg)
    return {"distortion": d_sum / n + offset, "rate": r_sum / n if model.is_stochastic else math.inf}


def sweep(data: Any, betas: Sequence[float], model_cfg: ModelConfig, train_cfg: TrainConfig, out: str | Path,
          *, include_ae: bool = True, overwrite: bool = False, progress: bool = True,
          data_meta: dict[str, Any] | None = None, executor: Any = None) -> dict[str, Any]:
    """Train one beta-VAE per beta (and the AE), measure (rate, distortion) on the test split, plot them.

    Each beta (and the AE) is an independent unit run by ``executor`` (vaelab.executor: in-process by
    default; local worker processes or Ray tasks need ``data_meta`` so that a worker can reload the data).

    Args:
        data: a vaelab Dataset; model_cfg: the shared architecture/likelihood (model and beta are replaced)
        out: the sweep folder (models/, sweep.json, rate_distortion.png)
    Returns:
        the sweep.json dict
    """
    from vaelab.executor import InProcess, Unit

    out = Path(out)
    if (out / "sweep.json").exists() and not overwrite:
        raise OutputError(f"{out} already holds a sweep; pass --overwrite to replace it or choose another --out.")
    executor = executor or InProcess()
    in_process = isinstance(executor, InProcess)
    if not in_process and data_meta is None:
        raise ConfigError("a sweep in worker processes or on Ray needs data_meta (how a worker reloads the data).")
    base = {"train": train_cfg.to_dict(), "data": data_meta, "overwrite": overwrite, "progress": progress and in_process}
    units = [Unit(f"beta-{beta:g}", "vaelab.sweep:run_sweep_unit",
                  {**base, "model": dataclasses.replace(model_cfg, model="beta-vae", beta=float(beta), k=1).to_dict(),
                   "folder": str(out / "models" / f"beta-{beta:g}"), "rd_seed": train_cfg.seed},
                  n_epochs=train_cfg.epochs) for beta in betas]
    if include_ae:
        units.append(Unit("ae", "vaelab.sweep:run_sweep_unit",
                          {**base, "model": dataclasses.replace(model_cfg, model="ae", beta=1.0, k=1,
                                                                free_bits=0.0).to_dict(),
                           "folder": str(out / "models" / "ae"), "rd_seed": 0}, n_epochs=train_cfg.epochs))
    _INPUTS.clear()
    _INPUTS[json.dumps(data_meta)] = data           # in-process units use the data as given
    res = executor.run(units)
    points = []
    for beta in betas:
        r = res[f"beta-{beta:g}"]
        points.append({"beta": float(beta), **r["rd"], "neg_elbo": r["rd"]["rate"] + r["rd"]["distortion"],
                       "model": f"models/beta-{beta:g}", "best_epoch": r["best_epoch"]})
    ae = ({"distortion": res["ae"]["rd"]["distortion"], "rate": "inf", "model": "models/ae"} if include_ae
          else None)
    kind, note = likelihood_kind(model_cfg, data_meta)
    result = {"schema_version": SCHEMA_VERSION, "dataset": data.summary(), "model_config": model_cfg.to_dict(),
              "train_config": train_cfg.to_dict(), "kind": kind, "note": note, "points": points, "ae": ae,
              "units": "nats per image, test split (rate = KL(q(z|x)||p(z)), distortion = -log p(x|z))"}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(result, indent=1) + "\n")
    plot_rate_distortion(result, out / "rate_distortion.png")
    return result


_INPUTS: dict[str, Any] = {}      # the dataset per data_meta, loaded once per process


def run_sweep_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """One model of a sweep (in any process): train it, measure (rate, distortion) on the test split.

    Only JSON leaves the unit: an AE's infinite rate becomes None (sweep.json writes "inf" for it).
    """
    from vaelab.metrics import collapse
    from vaelab.models import config_from_dict
    from vaelab.train import fit

    key = json.dumps(spec["data"])
    if key not in _INPUTS:           # a worker process: reload the data as the checkpoint records it
        from vaelab.sampling import reload_dataset

        _INPUTS.clear()
        _INPUTS[key] = reload_dataset({"data": spec["data"]})
    data = _INPUTS[key]
    cfg, tcfg = config_from_dict(spec["model"]), TrainConfig.from_dict(spec["train"])
    run = fit(cfg, data, tcfg, spec["folder"], overwrite=spec["overwrite"], progress=spec["progress"],
              data_meta=spec["data"], on_epoch=collapse.record_epoch)
    collapse.warn_history(cfg.model, run.history)
    rd = rate_distortion(run.model, preprocess.modelled(data.x_test, cfg, "test"), seed=spec["rd_seed"])
    rd = {k: (v if math.isfinite(v) else None) for k, v in rd.items()}     # strict JSON: an AE's rate is inf
    return {"rd": rd, "best_epoch": run.best_epoch}


def plot_rate_distortion(result: dict[str, Any], path: str | Path) -> Path:
    """Distortion against rate, each point labelled with its beta, ELBO iso-lines D + R = c, the AE floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted(result["points"], key=lambda p: p["rate"])
    r = [p["rate"] for p in pts]
    d = [p["distortion"] for p in pts]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    r_max = max(r) * 1.15 + 1
    d_all = d + ([result["ae"]["distortion"]] if result.get("ae") else [])
    d_lo, d_hi = min(d_all), max(d_all)
    best = min(p["neg_elbo"] for p in pts)
    # iso-ELBO lines D + R = c: the best -ELBO of the sweep and a few worse ones
    span = max(d_hi - d_lo, 1.0)
    for j, c in enumerate([best + s * span / 4 for s in range(4)]):
        rr = [0, r_max]
        ax.plot(rr, [c - v for v in rr], color="grey", lw=0.8, ls="-" if j == 0 else ":",
                label="-ELBO = D + R iso-lines" if j == 1 else (f"best -ELBO = {best:.1f}" if j == 0 else None))
    ax.plot(r, d, "-o", color="C0", ms=5, label="beta-VAE")
    for p in pts:
        ax.annotate(f"β={p['beta']:g}", (p["rate"], p["distortion"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    if result.get("ae"):
        ax.axhline(result["ae"]["distortion"], color="C3", ls="--", lw=1)
        ax.annotate("AE: zero encoder noise, R = ∞ →", (r_max, result["ae"]["distortion"]), textcoords="offset points",
                    xytext=(-4, 4), ha="right", fontsize=8, color="C3")
    ax.set_xlim(0, r_max)
    ax.set_ylim(d_lo - 0.1 * span, d_hi + 0.15 * span)
    what = "-log p(x|z)" if result.get("kind") == "nll" else "reconstruction objective"
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)), nats per image")
    ax.set_ylabel(f"distortion D = {what}, nats")
    ax.set_title("Rate-distortion (Alemi et al. 2018, 'Fixing a Broken ELBO')", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
