"""The trainer's model folder: prepare, resume, per-epoch save, finish (``vaelab.train.fit`` calls these).

A model folder holds
  config.json          model config + train config + data + training status (written at start and end)
  weights.safetensors  the best weights so far (by validation loss)
  last.safetensors     the resume point: weights + optimiser + RNG + loop state + history, one atomic file
  train_log.jsonl      one JSON record per completed epoch
Every file is written atomically (vaelab.io), after the epoch passed the NaN guard, so a kill -9 at
any moment leaves the last completed epoch loadable and resumable; temporaries a kill left behind
are removed on the next start. Resume points are taken at epoch boundaries, which is what makes a
resumed run end with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaelab import checkpoint as ckpt
from vaelab.errors import CheckpointError, Interrupted, OutputError

LAST_NAME = "last.safetensors"
LOG_NAME = "train_log.jsonl"
OWNED_FILES = (ckpt.CONFIG_NAME, ckpt.WEIGHTS_NAME, LAST_NAME, LOG_NAME)


@dataclass
class LoopState:
    """Where the loop stands at an epoch boundary (what a resume restores besides tensors)."""

    epoch: int = 0                   # last completed epoch
    step: int = 0                    # optimiser steps taken
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0              # epochs since the best (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)

    def end_epoch(self, record: dict[str, Any], val: float) -> bool:
        """Record a completed epoch with validation loss ``val``; True when it is the best so far."""
        self.history.append(record)
        self.epoch = record["epoch"]
        improved = val < self.best_val
        if improved:
            self.best_val, self.best_epoch, self.bad_epochs = val, self.epoch, 0
        else:
            self.bad_epochs += 1
        return improved


class RunDir:
    """One model folder as the trainer uses it; every rank reads (resume), only ``is_main`` (rank 0) writes.

    Args:
        out: the folder; model: the model being trained (its ``cfg`` goes into config.json and the resume point)
        cfg: the TrainConfig as used; data: the Dataset (its summary goes into config.json); data_meta: extra "data"
    """

    def __init__(self, out: Path, model: torch.nn.Module, cfg: Any, data: Any, data_meta: dict[str, Any] | None,
                 is_main: bool = True) -> None:
        self.out, self.model, self.cfg, self.data, self.data_meta, self.is_main = out, model, cfg, data, data_meta, is_main

    def start(self, opt: torch.optim.Optimizer, shuffle_gen: torch.Generator, resume: bool, overwrite: bool,
              training: dict[str, Any]) -> LoopState:
        """Prepare the folder, restore the resume point when ``resume``, write config.json as "running"."""
        from vaelab import distributed

        prepare(self.out, resume, overwrite, mutate=self.is_main)
        distributed.barrier()       # rank 0 has created/cleared the folder before any rank reads it
        s = load_resume_point(self.out, self.model, opt, shuffle_gen) if resume else LoopState()
        if self.is_main:
            self.write_config(training)
        return s

    def save_epoch(self, opt: torch.optim.Optimizer, shuffle_gen: torch.Generator, s: LoopState, improved: bool) -> None:
        """After an epoch passed the guard: best weights (if improved), the resume point, the log; each atomic."""
        if self.is_main:
            save_epoch(self.out, self.model, opt, shuffle_gen, s, improved)

    def load_best(self) -> None:
        """Load the best epoch's weights (weights.safetensors) back into the model (every rank)."""
        load_best(self.out, self.model)

    def finish(self, training: dict[str, Any], test: dict[str, float]) -> None:
        """Write the final config.json (status, best epoch, test loss)."""
        if self.is_main:
            self.write_config(training, test)

    def write_config(self, training: dict[str, Any], test: dict[str, float] | None = None) -> None:
        """config.json: model + train config, the data (how to reload it) and the training status."""
        extra: dict[str, Any] = {"train": self.cfg.to_dict(), "data": {**self.data.summary(), **(self.data_meta or {})},
                                 "training": training}
        if test is not None:
            extra["test"] = test
        ckpt.write_config(self.out, self.model.cfg, extra)


def prepare(out: Path, resume: bool, overwrite: bool, mutate: bool = True) -> None:
    """Check ``out`` (every rank, so all raise alike) and, when ``mutate`` (rank 0), clear/create it."""
    has_model = any((out / f).exists() for f in (ckpt.WEIGHTS_NAME, LAST_NAME))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another --out.")
    if has_model and not (resume or overwrite):
        raise OutputError(f"{out} already holds a trained model. Pass --resume to continue it, --overwrite to "
                          "replace it, or choose another --out.")
    if not mutate:
        return
    if overwrite and not resume:
        for f in OWNED_FILES:
            (out / f).unlink(missing_ok=True)
    for f in OWNED_FILES:   # temporaries of atomic writes a kill -9 left behind (io.atomic_path names them so)
        for tmp in out.glob(f".{f}.*.tmp") if out.is_dir() else ():
            tmp.unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror or e}. Choose a writable --out.") from None


def state_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer, shuffle_gen: torch.Generator) -> dict[str, Tensor]:
    """Weights, optimiser state and every RNG state as flat named tensors (safetensors holds no pickles)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for key, v in st.items():
            tensors[f"optim.{i}.{key}"] = v if isinstance(v, Tensor) else torch.tensor(v)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle_gen.get_state()
    if torch.cuda.is_available():
        for j, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{j}"] = s
    return tensors


def restore_state(tensors: dict[str, Tensor], model: torch.nn.Module, opt: torch.optim.Optimizer,
                  shuffle_gen: torch.Generator) -> None:
    """The inverse of :func:`state_tensors`: load weights, optimiser state and RNG states in place."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    sd = opt.state_dict()
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    shuffle_gen.set_state(tensors["rng.shuffle"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def load_resume_point(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, shuffle_gen: torch.Generator) -> LoopState:
    """Restore ``out/last.safetensors`` into model, optimiser and RNGs; a fresh LoopState when there is none."""
    if not (out / LAST_NAME).exists():
        return LoopState()
    tensors, meta = ckpt.load_tensors(out / LAST_NAME)
    saved_cfg = json.loads(meta.get("model_config", "{}"))
    ours = json.loads(json.dumps(model.cfg.to_dict()))
    if saved_cfg != ours:
        raise CheckpointError(f"cannot resume {out}: it was trained as a different model "
                              f"({ckpt.describe_diff(ours, saved_cfg)}). Use --overwrite to start again.")
    restore_state(tensors, model, opt, shuffle_gen)
    st = json.loads(meta["state"])
    return LoopState(st["epoch"], st["step"], st["best_val"], st["best_epoch"], st["bad_epochs"], st["history"])


def save_epoch(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, shuffle_gen: torch.Generator,
               s: LoopState, improved: bool) -> None:
    """After an epoch passed the guard: best weights (if improved), the resume point, the log; each atomic."""
    if improved:
        ckpt.save_weights(out, model, epoch=s.epoch, val_loss=s.best_val)
    state = {"epoch": s.epoch, "step": s.step, "best_val": s.best_val, "best_epoch": s.best_epoch,
             "bad_epochs": s.bad_epochs, "history": s.history}
    ckpt.save_tensors(out / LAST_NAME, state_tensors(model, opt, shuffle_gen),
                      {**ckpt.weights_metadata(model.cfg), "state": json.dumps(state)})
    from vaelab.io import atomic_write_text

    atomic_write_text(out / LOG_NAME, "".join(json.dumps(r) + "\n" for r in s.history))


def load_best(out: Path, model: torch.nn.Module) -> bool:
    """Load ``out/weights.safetensors`` (the best epoch) into ``model``; False when there is none."""
    if not (out / ckpt.WEIGHTS_NAME).exists():
        return False
    tensors, _ = ckpt.load_tensors(out / ckpt.WEIGHTS_NAME)
    model.load_state_dict(tensors)
    return True


def interrupted(out: Path | None, history: list[dict[str, Any]], epochs: int) -> Interrupted:
    """The Ctrl-C message: how far it got and what is on disk (the last completed epoch's resume point)."""
    done = history[-1]["epoch"] if history else 0
    if out is not None and done:
        saved = f"the checkpoint of epoch {done} is saved in {out}. Continue with the same command plus --resume."
    elif out is not None:
        saved = "no epoch had completed, so nothing was saved. Run the same command again to start over."
    else:
        saved = "nothing was saved (no output folder)."
    return Interrupted(f"training interrupted (Ctrl-C) after {done} of {epochs} epochs; {saved}")
