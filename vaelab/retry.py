"""Retries on a NaN/inf, a policy of the callers around ``vaelab.train.fit`` (``vaelab train --on-nan retry``).

``fit`` stops at the first non-finite loss term or gradient (vaelab.guard) with the last good epoch on
disk; :func:`fit_with_retries` goes on from there with half the learning rate, at most a few times,
and records every retry in config.json.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from vaelab import checkpoint as ckpt
from vaelab.config import ModelConfig, TrainConfig
from vaelab.errors import ConfigError, DivergenceError
from vaelab.io import atomic_write_json
from vaelab.models import Autoencoder
from vaelab.rundir import LAST_NAME
from vaelab.train import Run, fit

ON_NAN = ("stop", "retry")


def fit_with_retries(model: Autoencoder | ModelConfig, data: Any, cfg: TrainConfig = TrainConfig(),
                     out: str | Path | None = None, *, on_nan: str = "stop", max_retries: int = 2,
                     resume: bool = False, overwrite: bool = False, progress: bool = True,
                     data_meta: dict[str, Any] | None = None,
                     on_epoch: Callable[..., None] | None = None) -> Run:
    """``fit``, and on a NaN/inf (``on_nan="retry"``) go on from the last good checkpoint with half the lr.

    Each retry reloads ``out/last.safetensors`` (the last completed epoch: weights, optimiser, RNG,
    history), halves the learning rate and trains on; at most ``max_retries`` times, then the
    DivergenceError is raised. Without an output folder, or when no epoch had completed, the retry
    starts again from the initial weights. A retry changes the learning rate, so from the resumed
    epoch on the run is a new trajectory, not bit-identical to any run without it: every retry is
    recorded in config.json under "training" -> "retries" (and ``resume`` picks up the halved lr).
    A run that gives up is marked "diverged" in config.json, with the reason; its checkpoints stay.
    """
    if on_nan not in ON_NAN:
        raise ConfigError(f"unknown --on-nan value {on_nan!r}; choose stop or retry.")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"--max-retries must be an integer >= 0, got {max_retries!r}.")
    out_path = Path(out) if out is not None else None
    retries: list[dict[str, Any]] = []
    if resume and out_path is not None:
        retries = _recorded_retries(out_path)
        if retries:   # a retried run continues at the lr it was retried with
            cfg = dataclasses.replace(cfg, lr=retries[-1]["lr_after"])
    initial = (None if not isinstance(model, torch.nn.Module)
               else {k: v.detach().clone() for k, v in model.state_dict().items()})
    while True:
        try:
            return fit(model, data, cfg, out_path, resume=resume, overwrite=overwrite, progress=progress,
                       data_meta=data_meta, training_info={"retries": retries} if retries else None,
                       on_epoch=on_epoch)
        except DivergenceError as e:
            n_done = len(retries)
            if on_nan != "retry" or n_done >= max_retries:
                err = e
                if on_nan == "retry":
                    err = DivergenceError(f"{e} Gave up after {n_done} retr{'y' if n_done == 1 else 'ies'} with a "
                                          f"halved learning rate (--max-retries {max_retries}).",
                                          term=e.term, epoch=e.epoch, step=e.step)
                _mark_diverged(out_path, str(err), retries)
                raise err from None
            has_last = out_path is not None and (out_path / LAST_NAME).exists()
            from_epoch = _last_epoch(out_path) if has_last else 0
            retries.append({"attempt": n_done + 1, "term": e.term, "diverged_epoch": e.epoch, "diverged_step": e.step,
                            "resumed_from_epoch": from_epoch, "lr_before": cfg.lr, "lr_after": cfg.lr / 2,
                            "note": "the learning rate changed: a new trajectory from the resumed epoch on"})
            print(f"vaelab: {e.term!r} became NaN/inf at epoch {e.epoch}; retry {n_done + 1} of {max_retries} from "
                  f"{f'epoch {from_epoch}' if from_epoch else 'the initial weights'} with lr {cfg.lr / 2:g}.",
                  file=sys.stderr)
            cfg = dataclasses.replace(cfg, lr=cfg.lr / 2)
            if has_last:
                resume, overwrite = True, False
            else:
                resume, overwrite = False, True
                if initial is not None:
                    model.load_state_dict(initial)


def _last_epoch(out: Path) -> int:
    _, meta = ckpt.load_tensors(out / LAST_NAME)
    return int(json.loads(meta["state"])["epoch"])


def _recorded_retries(out: Path) -> list[dict[str, Any]]:
    try:
        cfg = json.loads((out / ckpt.CONFIG_NAME).read_text(encoding="utf-8"))
        retries = cfg.get("training", {}).get("retries", [])
        return [r for r in retries if isinstance(r, dict) and isinstance(r.get("lr_after"), (int, float))]
    except (OSError, ValueError, AttributeError):
        return []


def _mark_diverged(out: Path | None, reason: str, retries: list[dict[str, Any]]) -> None:
    """Record in config.json that the run diverged (the checkpoints of the last good epoch stay)."""
    if out is None or not (out / ckpt.CONFIG_NAME).exists():
        return
    try:
        cfg = json.loads((out / ckpt.CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    cfg["training"] = {**cfg.get("training", {}), "status": "diverged", "error": reason,
                       **({"retries": retries} if retries else {})}
    atomic_write_json(out / ckpt.CONFIG_NAME, cfg)
