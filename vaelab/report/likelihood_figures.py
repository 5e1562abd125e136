"""Likelihood figures for the report: the ELBO <= IWAE-K <= log p(x) curve and the KL schedule.

One function per PNG, each taking plain JSON-able inputs (what metrics.json / config.json hold), so the
report can re-render them without a model (``vaelab.report.figures.plan`` lists them with the others).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from vaelab.config import flat_config
from vaelab.report.png import pyplot, save_png


def _save(fig: Any, path: str | Path) -> Path:
    return save_png(fig, path, dpi=120)


def plot_iw_curve(curves: dict[str, dict[str, Any]], path: str | Path, kind: str = "nll", per: str = "image") -> Path:
    """NLL vs K (log axis) per model, with +-1 SE bars and the model's -ELBO as a dashed line.

    Args:
        curves: model name -> {"k": [K...], "nll": [...], "se": [...], "neg_elbo": float (optional)}, the
            output of ``importance_weighted_curve`` (+ negative_elbo's value)
        kind: "nll" or "training objective" (``likelihood_kind``), written in the axis label
        per: what one example is ("image", or "row" of a table), written in the axis label
    """
    fig, ax = pyplot().subplots(figsize=(5.5, 3.6))
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i}"
        ax.errorbar(c["k"], c["nll"], yerr=c.get("se"), marker="o", ms=4, capsize=3, color=color,
                    label=f"{name}: IW-NLL(K)")
        if c.get("neg_elbo") is not None:
            ax.axhline(c["neg_elbo"], color=color, ls="--", lw=1, label=f"{name}: -ELBO")
        ax.annotate(f"{c['nll'][-1]:.2f}", (c["k"][-1], c["nll"][-1]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8, color=color)
    ax.set_xscale("log")
    ax.set_xlabel("importance samples K")
    what = "NLL" if kind == "nll" else "training objective (not an NLL)"
    ax.set_ylabel(f"{what}, nats per {per}")
    ax.set_title("-ELBO >= IW-NLL(K) >= -log p(x): the bound tightens with K", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_kl_schedule(train_cfg: dict[str, Any], n_steps: int, path: str | Path,
                     history: Sequence[dict[str, Any]] = (), free_bits: float = 0.0) -> Path:
    """The KL weight against the optimiser step (the schedule), with each epoch's recorded weight as a dot.

    Args:
        train_cfg: TrainConfig.to_dict() (kl_schedule, kl_warmup_steps, kl_cycle_steps); n_steps: steps trained
        history: the train_log records ({"step", "kl_weight"}), optional
        free_bits: the models' per-dimension KL floor in nats (ModelConfig.free_bits), named in the title
    """
    from vaelab.config import TrainConfig
    from vaelab.schedules import kl_weight

    cfg = TrainConfig.from_dict(dict(train_cfg))
    steps = list(range(0, max(n_steps, 1) + 1, max(1, n_steps // 500)))
    fig, ax = pyplot().subplots(figsize=(5.5, 2.6))
    ax.plot(steps, [kl_weight(cfg, s) for s in steps], lw=1.5, label=f"{cfg.kl_schedule} schedule")
    if history:
        ax.plot([r["step"] for r in history], [r["kl_weight"] for r in history], "o", ms=3, label="end of epoch")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("KL weight (x beta)")
    ax.set_ylim(-0.05, 1.05)
    fb = f"free bits {free_bits:g} nats/dim" if free_bits else "no free bits"
    ax.set_title(f"KL schedule: {cfg.kl_schedule}, warm-up {cfg.kl_warmup_steps} steps; {fb}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_kl_per_dim(kl_per_dim: dict[str, Sequence[float]], path: str | Path, threshold: float = 0.01,
                    free_bits: float = 0.0) -> Path:
    """Sorted KL per latent dimension per model (nats): collapsed units sit at the bottom.

    ``free_bits`` > 0 draws the free-bits floor (nats per dimension) as a dashed line."""
    fig, ax = pyplot().subplots(figsize=(5.5, 3.0))
    for i, (name, kl) in enumerate(kl_per_dim.items()):
        vals = sorted(kl, reverse=True)
        ax.plot(range(1, len(vals) + 1), vals, marker=".", color=f"C{i}", label=name)
    ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"{threshold} nats")
    if free_bits:
        ax.axhline(free_bits, color="grey", ls="--", lw=1, label=f"free bits {free_bits:g} nats")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("latent dimension (sorted)")
    ax.set_ylabel("KL(q(z_d|x) || N(0,1)), nats")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# -- the report's likelihood figures, from metrics.json alone -------------------------------------------
LIKELIHOOD_FIGURES = ("likelihood_curve", "kl_schedule", "kl_per_dim")


def _ok_models(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: m for n, m in (doc.get("models") or {}).items() if isinstance(m, dict) and m.get("status") == "ok"}


def metrics_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """Which likelihood figures a metrics.json dict can draw, each as a zero-argument-but-path drawer.

    Returns {name: draw(path)} for the figures that apply: ``likelihood_curve`` (models whose likelihood
    has an ``iw_curve``: never an AE), ``kl_schedule`` (the run's ``kl_schedule`` block) and ``kl_per_dim``
    (models with ``latent.kl_per_dim``: the stochastic ones).
    """
    models = _ok_models(doc)
    plan: dict[str, Any] = {}
    curves, kinds = {}, set()
    for n, m in models.items():
        lik = m.get("likelihood")
        if isinstance(lik, dict) and isinstance(lik.get("iw_curve"), dict) and lik["iw_curve"].get("k"):
            c = lik["iw_curve"]
            curves[n] = {"k": c["k"], "nll": c["nll"],
                         "se": [0.0 if v is None else v for v in (c.get("se") or [None] * len(c["k"]))],
                         "neg_elbo": lik.get("neg_elbo")}
            kinds.add(lik.get("kind"))
    if curves:
        kind = "nll" if kinds == {"nll"} else "training objective"
        from vaelab.report.words import doc_words

        per = doc_words(doc).one
        plan["likelihood_curve"] = lambda p: plot_iw_curve(curves, p, kind, per)
    sched = doc.get("kl_schedule")
    if isinstance(sched, dict) and sched.get("train"):
        plan["kl_schedule"] = lambda p: plot_kl_schedule(sched["train"], int(sched.get("n_steps") or 0), p,
                                                         sched.get("history") or (), sched.get("free_bits") or 0.0)
    kl = {n: m["latent"]["kl_per_dim"] for n, m in models.items()
          if isinstance(m.get("latent"), dict) and m["latent"].get("kl_per_dim")}
    if kl:
        fb = float(flat_config(doc.get("config")).get("free_bits") or 0.0)
        plan["kl_per_dim"] = lambda p: plot_kl_per_dim(kl, p, free_bits=fb)
    return plan
