"""One trainer for every model in the family: ``fit(model, data, cfg, out) -> Run``.

One readable loop (nanoGPT-style), no callbacks:
  * the training split lives as tensors on the device; each epoch is one ``randperm`` and
    index-select batches (no per-sample Python, no DataLoader);
  * AdamW (fused on CPU/CUDA where this torch has it), optional gradient clipping;
  * no host-device sync per step: loss terms accumulate on the device and are read every
    ``log_every`` steps; the NaN/inf guard checks those running sums on the same stride (a non-finite
    value sticks in a sum), names the diverged term, puts the last epoch's weights back and keeps the
    last good checkpoint (checkpoints are written only after an epoch passed the check);
  * under torchrun, DistributedDataParallel with per-rank slices of each global batch (vaelab.distributed);
  * validation every epoch, ``weights.safetensors`` = best, ``last.safetensors`` = the resume point
    (weights + optimiser + RNG + history in one atomic file), early stopping;
  * seeded: the same seed on the CPU gives bit-identical weights, and a resumed run ends with the
    same weights as an uninterrupted one (the resume point is taken at epoch boundaries).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaelab import checkpoint as ckpt
from vaelab import distributed, preprocess
from vaelab.config import ModelConfig, TrainConfig
from vaelab.errors import CheckpointError, ConfigError, DivergenceError, Interrupted, OutputError
from vaelab.io import atomic_write_json, atomic_write_text
from vaelab.models import Autoencoder, build_model

LAST_NAME = "last.safetensors"
LOG_NAME = "train_log.jsonl"
OWNED_FILES = (ckpt.CONFIG_NAME, ckpt.WEIGHTS_NAME, LAST_NAME, LOG_NAME)


@dataclass
class Run:
    """What ``fit`` returns: the trained model (best weights loaded) and its history."""

    model: Autoencoder
    history: list[dict[str, Any]]
    best_epoch: int
    best_val: float
    status: str                      # "completed" | "early-stopped"
    seconds: float
    path: Path | None = None
    test: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but this torch sees no CUDA GPU; use --device cpu.")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu or cuda.")
    return dev


def kl_weight(cfg: TrainConfig, step: int) -> float:
    """Multiplier of beta at optimiser step ``step`` (the KL schedule), in [0, 1].

    W = kl_warmup_steps, t = step:
      constant  1
      linear    min(1, t / W)
      sigmoid   logistic ramp rescaled to be exactly 0 at t = 0 and 1 at t >= W:
                (s(10 (t/W - 1/2)) - s(-5)) / (s(5) - s(-5)), s the logistic function
      cyclical  Fu et al. 2019 ("Cyclical annealing"): within each period P = kl_cycle_steps
                (default 2 W, their R = 0.5) the weight ramps linearly 0 -> 1 over W steps, then
                holds 1; the period repeats for the whole run.
    """
    w = cfg.kl_warmup_steps
    if cfg.kl_schedule == "constant" or w <= 0:
        return 1.0
    if cfg.kl_schedule == "cyclical":
        step = step % (cfg.kl_cycle_steps or 2 * w)
    r = min(1.0, step / w)
    if cfg.kl_schedule == "sigmoid":
        lo, hi = 1 / (1 + math.exp(5.0)), 1 / (1 + math.exp(-5.0))
        return (1 / (1 + math.exp(-10.0 * (r - 0.5))) - lo) / (hi - lo)
    return r


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused where this torch supports it for the device (one kernel for all parameters)."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


@torch.inference_mode()
def evaluate_loss(model: Autoencoder, x: Tensor, y: Tensor | None = None, batch_size: int = 2048) -> dict[str, float]:
    """Mean loss terms over a split (kl_weight 1: the model's full objective), plus "loss" = the total.

    Large batches under inference mode; the sums stay on the device and are read once at the end.

    Args:
        x: (N, C, H, W) in [0, 1]; y: (N,) labels or None
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    names: list[str] = []
    sums = torch.zeros(0, dtype=torch.float64, device=device)
    n = x.shape[0]
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        yb = y[i:i + batch_size].to(device, non_blocking=True) if y is not None else None
        lt = model.loss(xb, yb)
        if not names:
            names = ["loss", *lt.terms]
            sums = torch.zeros(len(names), dtype=torch.float64, device=device)
        sums += torch.stack([lt.total, *lt.terms.values()]).double() * xb.shape[0]
    model.train(was_training)
    return {k: v / n for k, v in zip(names, sums.tolist())}


def _diverged_term(names: list[str], nonfinite: list[bool]) -> str:
    """The name of the first non-finite quantity of a step: a named term, else the total, else the gradient.

    Args:
        names: ["loss", term, ...]; nonfinite: (len(names) + 1,) flags, the last one the gradient norm's
    """
    for name, bad in [*zip(names[1:], nonfinite[1:]), (names[0], nonfinite[0])]:
        if bad:
            return name
    return "gradient"


def _state_tensors(model: Autoencoder, opt: torch.optim.Optimizer, shuffle_gen: torch.Generator) -> dict[str, Tensor]:
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


def _restore_state(tensors: dict[str, Tensor], model: Autoencoder, opt: torch.optim.Optimizer,
                   shuffle_gen: torch.Generator) -> None:
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


def _prepare_out(out: Path, resume: bool, overwrite: bool, mutate: bool = True) -> None:
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


def fit(model: Autoencoder | ModelConfig, data: Any, cfg: TrainConfig = TrainConfig(), out: str | Path | None = None,
        *, resume: bool = False, overwrite: bool = False, progress: bool = True,
        data_meta: dict[str, Any] | None = None, training_info: dict[str, Any] | None = None) -> Run:
    """Train ``model`` on ``data.x_train`` (validating on ``data.x_val``) under ``cfg``.

    Under torchrun (WORLD_SIZE > 1) this is data-parallel: ``cfg.batch_size`` is the per-rank batch,
    the global batch is batch_size x world size, and only rank 0 validates and writes
    (see vaelab.distributed and docs/distributed.md).

    Args:
        model: a model, or a ModelConfig to build one (then its initialisation is seeded by cfg.seed too)
        data: a vaelab.data.Dataset (x_train (N, C, H, W) in [0, 1], y_train (N,) or None, x_val, y_val)
        out: model folder for config.json, weights.safetensors (best), last.safetensors, train_log.jsonl
        resume: continue from out/last.safetensors (model, optimiser, RNG, epoch, history)
        data_meta: extra JSON written under "data" in config.json (how to reload the dataset)
        training_info: extra JSON written under "training" in config.json (e.g. the retries of fit_with_retries)
    Returns:
        Run with the best weights loaded into ``run.model``.
    Raises:
        DivergenceError when a loss term or the gradient becomes NaN/inf (the last good checkpoint is kept).
    """
    dctx = distributed.setup(resolve_device(cfg.device).type)
    device = resolve_device(cfg.device)
    if dctx.is_distributed and device.type == "cuda":
        device = torch.device("cuda", dctx.local_rank)
    torch.manual_seed(cfg.seed)
    if not isinstance(model, torch.nn.Module):   # a ModelConfig (or SeqModelConfig)
        model = build_model(model)
    model.to(device)
    mcfg: ModelConfig = model.cfg
    if tuple(data.x_train.shape[1:]) != mcfg.input_shape:
        raise ConfigError(f"the model was built for images of shape {mcfg.input_shape} but the data has "
                          f"{tuple(data.x_train.shape[1:])}.")
    if model.is_conditional and data.y_train is None:
        raise ConfigError(f"{mcfg.model} needs labels, and {data.name} has none.")
    x_grey, y = data.x_train.to(device), (data.y_train.to(device) if data.y_train is not None else None)
    # the data as the likelihood models it (vaelab.preprocess): binarised / dequantised; val/test a fixed draw
    if mcfg.dequantize:
        preprocess.check_levels(x_grey, mcfg.dequantize)
    x_static = preprocess.modelled(x_grey, mcfg, "train") if mcfg.binarize == "static" else None
    x_val, x_test = preprocess.modelled(data.x_val, mcfg, "val"), preprocess.modelled(data.x_test, mcfg, "test")
    n = x_grey.shape[0]
    global_batch = cfg.batch_size * dctx.world_size
    if global_batch > n:
        raise ConfigError(f"batch size {global_batch} is larger than the {n} training images; use --batch-size "
                          f"{min(128, n // dctx.world_size)} or less.")
    # channels-last: oneDNN (CPU) and cuDNN (GPU) convolutions run faster on NHWC (benchmarks/README.md)
    channels_last = mcfg.backbone == "conv"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    params = [p for p in model.parameters()]
    out_path = Path(out) if out is not None else None
    writes = out_path is not None and dctx.is_main   # rank 0 writes; every rank reads (resume)

    history: list[dict[str, Any]] = []
    start_epoch, step, best_val, best_epoch, bad_epochs = 1, 0, math.inf, 0, 0
    if out_path is not None:
        _prepare_out(out_path, resume, overwrite, mutate=dctx.is_main)
        distributed.barrier()
        if resume and (out_path / LAST_NAME).exists():
            tensors, meta = ckpt.load_tensors(out_path / LAST_NAME)
            saved_cfg = json.loads(meta.get("model_config", "{}"))
            if saved_cfg != json.loads(json.dumps(mcfg.to_dict())):
                raise CheckpointError(f"cannot resume {out_path}: it was trained as a different model "
                                      f"({ckpt._diff(json.loads(json.dumps(mcfg.to_dict())), saved_cfg)}). "
                                      "Use --overwrite to start again.")
            _restore_state(tensors, model, opt, shuffle_gen)
            st = json.loads(meta["state"])
            history, step = st["history"], st["step"]
            best_val, best_epoch, bad_epochs = st["best_val"], st["best_epoch"], st["bad_epochs"]
            start_epoch = st["epoch"] + 1
        if writes:
            extra = {"train": cfg.to_dict(), "data": {**data.summary(), **(data_meta or {})},
                     "training": {"status": "running", "world_size": dctx.world_size, **(training_info or {})}}
            ckpt.write_config(out_path, mcfg, extra)
    # the objective as a module, so DistributedDataParallel (which hooks forward) can average gradients
    objective: torch.nn.Module = _Objective(model)
    if dctx.is_distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        objective = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None,
                        broadcast_buffers=False)
    if cfg.compile:
        objective = torch.compile(objective)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    good_state = _snapshot(model)           # the rollback point when a NaN is found (last epoch's weights)

    # global batches [b0, b1); in DDP a last global batch smaller than the world is dropped (no rank may be empty)
    bounds = [(i, min(i + global_batch, n)) for i in range(0, n, global_batch)]
    if dctx.is_distributed and bounds[-1][1] - bounds[-1][0] < dctx.world_size:
        bounds.pop()
    n_epoch = bounds[-1][1]                 # images per epoch (all ranks together)
    xbuf = torch.empty((cfg.batch_size + 1, *x_grey.shape[1:]), dtype=x_grey.dtype, device=device)  # +1: uneven last batch
    bar = _progress(total=cfg.epochs * len(bounds), initial=(start_epoch - 1) * len(bounds),
                    desc=mcfg.model, enabled=progress and dctx.is_main)
    t_start = time.perf_counter()
    status = "completed"
    ctrl_c = _CtrlC()
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            if dctx.is_distributed:         # independent noise per rank, and a resume point at every epoch
                torch.manual_seed(cfg.seed + 1_000_003 * epoch + 7919 * dctx.rank)
            t0, c0 = time.perf_counter(), time.process_time()
            names: list[str] = []
            sums = torch.zeros(0, device=device)   # (1 + n_terms,) running sum of terms x images, on the device
            first_bad = torch.full((), -1, dtype=torch.long, device=device)   # first step with a NaN/inf, or -1
            bad_mask = torch.zeros(0, dtype=torch.bool, device=device)
            x = preprocess.training_view(x_grey, mcfg, cfg.seed, epoch, x_static)
            perm = torch.randperm(n, generator=shuffle_gen).to(device)
            for j, (b0, b1) in enumerate(bounds):
                if ctrl_c.requested:        # checked between steps: never inside a write or a kernel
                    raise KeyboardInterrupt
                lo, hi = distributed.rank_slice(b0, b1, dctx)
                m = hi - lo
                xb = torch.index_select(x, 0, perm[lo:hi], out=xbuf[:m])
                if channels_last and xb.shape[1] > 1:      # one channel: NCHW already is NHWC
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = y[perm[lo:hi]] if y is not None else None
                with amp:
                    lt = objective(xb, yb, kl_weight(cfg, step))
                # DDP averages gradients over ranks: weight each rank by its share of the global batch
                scale = m * dctx.world_size / (b1 - b0)
                opt.zero_grad(set_to_none=True)
                (lt.total if scale == 1 else lt.total * scale).backward()
                # the gradient norm is the NaN guard's view of the gradient (clipping reuses it); no sync here
                grad_norm = (torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True) if cfg.grad_clip > 0
                             else torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None],
                                                                foreach=True))
                opt.step()
                step += 1
                vals = torch.stack([lt.total.detach(), *lt.terms.values(), grad_norm]).double()  # (1 + T + 1,)
                if not names:
                    names = ["loss", *lt.terms]
                    sums = torch.zeros(len(names), device=device, dtype=torch.float64)
                    bad_mask = torch.zeros(len(vals), dtype=torch.bool, device=device)
                sums.add_(vals[:-1], alpha=m)
                # NaN guard without a sync: remember, on the device, the first step with a non-finite value
                # and which values they were; it is read on the log stride below.
                nonfinite = ~torch.isfinite(vals)
                hit = nonfinite.any() & (first_bad < 0)
                first_bad = torch.where(hit, step, first_bad)
                bad_mask = torch.where(hit, nonfinite, bad_mask)
                # progress and the guard's check on a stride: one device sync (and one all-reduce in DDP)
                # per log_every steps. Checkpoints are written only after an epoch passed the check.
                last = j == len(bounds) - 1
                if step % cfg.log_every == 0 or last:
                    tot = distributed.all_reduce_sum(torch.cat([sums, first_bad.double().clamp(min=0).reshape(1)]),
                                                     dctx).tolist()
                    if tot[-1] > 0:             # some rank saw a non-finite value
                        fb = int(first_bad)
                        bad = _diverged_term(names, bad_mask.tolist()) if fb >= 0 else "gradient"
                        where = f"step {fb}" if fb >= 0 else f"step {int(tot[-1]) // dctx.world_size} (on another rank)"
                        _rollback(model, good_state)
                        kept = (f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept in {out_path}"
                                if out_path is not None and history else "no checkpoint had been written yet")
                        raise DivergenceError(
                            f"{mcfg.model}: the {bad!r} term became NaN/inf at epoch {epoch}, {where}; {kept}. "
                            f"Try a lower --lr (now {cfg.lr}), --grad-clip 10, --on-nan retry, or a Gaussian "
                            "likelihood with larger sigma.", term=bad, epoch=epoch, step=fb if fb >= 0 else step)
                    done = b1
                    bar.set_postfix(epoch=f"{epoch}/{cfg.epochs}",
                                    **{k: f"{v / done:.2f}" for k, v in zip(names, tot)},
                                    img_s=f"{done / (time.perf_counter() - t0):.0f}", refresh=False)
                    if last:
                        sums = torch.tensor(tot[:-1], dtype=torch.float64)
                bar.update(1)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            train_terms = {k: v / n_epoch for k, v in zip(names, sums.tolist())}
            if dctx.is_main:
                val_terms = evaluate_loss(model, x_val, data.y_val) if x_val.shape[0] else train_terms
            else:
                val_terms = {}
            val = distributed.broadcast_floats([val_terms.get("loss", 0.0)], dctx, device)[0]
            bad_val = next((k for k, v in val_terms.items() if not math.isfinite(v)), None)
            if bad_val is not None or not math.isfinite(val):   # this epoch's checkpoints are not written
                _rollback(model, good_state)
                raise DivergenceError(f"{mcfg.model}: the validation {bad_val or 'loss'!r} term became NaN/inf at epoch "
                                      f"{epoch}. Try a lower --lr (now {cfg.lr}), --grad-clip 10 or --on-nan retry.",
                                      term=f"val.{bad_val or 'loss'}", epoch=epoch, step=step)
            record = {"epoch": epoch, "step": step, "seconds": round(seconds, 4), "cpu_seconds": round(cpu_seconds, 4),
                      "images_per_s": round(n_epoch / seconds, 1), "kl_weight": kl_weight(cfg, step),
                      "train": train_terms, "val": val_terms}
            if dctx.is_main and model.is_stochastic and x_val.shape[0] >= 2:
                from vaelab.metrics import collapse                # lazy: sklearn is not needed to train
                record["diagnostics"] = collapse.epoch_diagnostics(model, x_val, data.y_val, epoch=epoch)
            history.append(record)
            improved = val < best_val
            if improved:
                best_val, best_epoch, bad_epochs = val, epoch, 0
            else:
                bad_epochs += 1
            good_state = _snapshot(model)
            if writes:
                if improved:
                    ckpt.save_weights(out_path, model, epoch=epoch, val_loss=val)
                state = {"epoch": epoch, "step": step, "best_val": best_val, "best_epoch": best_epoch,
                         "bad_epochs": bad_epochs, "history": history}
                ckpt.save_tensors(out_path / LAST_NAME, _state_tensors(model, opt, shuffle_gen),
                                  {**ckpt.weights_metadata(mcfg), "state": json.dumps(state)})
                atomic_write_text(out_path / LOG_NAME, "".join(json.dumps(r) + "\n" for r in history))
            elif out_path is None and improved:
                best_state = good_state
            distributed.barrier()
            if cfg.patience and bad_epochs >= cfg.patience:
                status = "early-stopped"
                break
    except KeyboardInterrupt:
        # The resume point of the last completed epoch is already on disk (written atomically).
        done = history[-1]["epoch"] if history else 0
        if out_path is not None and done:
            saved = f"the checkpoint of epoch {done} is saved in {out_path}. Continue with the same command plus --resume."
        elif out_path is not None:
            saved = "no epoch had completed, so nothing was saved. Run the same command again to start over."
        else:
            saved = "nothing was saved (no output folder)."
        raise Interrupted(f"training interrupted (Ctrl-C) after {done} of {cfg.epochs} epochs; {saved}") from None
    finally:
        ctrl_c.restore()
        bar.close()
    if history and history[-1].get("diagnostics"):   # say it loudly once, about the model as trained
        from vaelab.metrics import collapse

        collapse.warn_collapse(mcfg.model, history[-1]["diagnostics"], history[-1]["epoch"])
    seconds = time.perf_counter() - t_start

    # hand back the best weights
    if out_path is not None and (out_path / ckpt.WEIGHTS_NAME).exists():
        tensors, _ = ckpt.load_tensors(out_path / ckpt.WEIGHTS_NAME)
        model.load_state_dict(tensors)
    elif out_path is None and best_epoch:
        model.load_state_dict(best_state)
    model.eval()
    test = evaluate_loss(model, x_test, data.y_test) if x_test.shape[0] and dctx.is_main else {}
    run = Run(model, history, best_epoch, best_val, status, seconds, out_path, test)
    if writes:
        extra = {"train": cfg.to_dict(), "data": {**data.summary(), **(data_meta or {})},
                 "training": {**(training_info or {}), "status": status, "best_epoch": best_epoch, "best_val_loss": best_val,
                              "epochs_done": history[-1]["epoch"] if history else 0, "steps": step,
                              "world_size": dctx.world_size,
                              "images_per_s_last_epoch": history[-1]["images_per_s"] if history else None},
                 "test": test}
        ckpt.write_config(out_path, mcfg, extra)
    distributed.barrier()
    return run


class _Objective(torch.nn.Module):
    """``forward`` = the model's training objective, so DDP and torch.compile see the whole step's graph."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor | None, kl_weight: float) -> Any:
        return self.model.loss(x, y, kl_weight=kl_weight)


def _snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rollback(model: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Put the last good (epoch-boundary) weights back, so a caller holding ``model`` never sees NaN weights."""
    model.load_state_dict(state)


ON_NAN = ("stop", "retry")


def fit_with_retries(model: Autoencoder | ModelConfig, data: Any, cfg: TrainConfig = TrainConfig(),
                     out: str | Path | None = None, *, on_nan: str = "stop", max_retries: int = 2,
                     resume: bool = False, overwrite: bool = False, progress: bool = True,
                     data_meta: dict[str, Any] | None = None) -> Run:
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
                       data_meta=data_meta, training_info={"retries": retries} if retries else None)
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


class _CtrlC:
    """SIGINT (Ctrl-C) as a flag that the loop checks between steps, so a stop never lands inside a write, a
    kernel or a finaliser (where Python can swallow a KeyboardInterrupt). A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class _NullBar:
    def set_postfix(self, *a: Any, **k: Any) -> None: ...
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"{desc:>9}", unit="step", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, leave=True)
