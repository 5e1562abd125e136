"""One trainer for every model in the family: ``fit(model, data, cfg, out) -> Run``.

One readable loop (nanoGPT-style), no callbacks; its named pieces live beside it:
  * the training split lives as tensors on the device; each epoch is one ``randperm`` and
    index-select batches (no per-sample Python, no DataLoader);
  * AdamW (fused on CPU/CUDA where this torch has it), optional gradient clipping;
  * the plain MLP models' objectives and gradients in one hand-derived pass (vaelab.models.fused), autograd
    for every other model (and with ``--backward autograd``);
  * no host-device sync per step: loss terms accumulate on the device and are read every
    ``log_every`` steps, where the NaN/inf guard (vaelab.guard) is read too;
  * under torchrun, DistributedDataParallel with per-rank slices of each global batch (vaelab.distributed);
  * validation every epoch; the model folder (vaelab.rundir): ``weights.safetensors`` = best,
    ``last.safetensors`` = the resume point, written atomically after each epoch; early stopping;
  * seeded: the same seed on the CPU gives bit-identical weights, and a resumed run ends with the
    same weights as an uninterrupted one (the resume point is taken at epoch boundaries).
Retries on a NaN (vaelab.retry) and per-epoch diagnostics (``on_epoch``) belong to the callers.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from vaelab import budget, distributed, preprocess, rundir
from vaelab.config import ModelConfig, TrainConfig
from vaelab.errors import ConfigError
from vaelab.budget import flush_denormals
from vaelab.guard import CtrlC, NanGuard
from vaelab.guard import diverged_term as _diverged_term  # noqa: F401  (its old import path)
from vaelab.models import Autoencoder, build_model, count_params
from vaelab.models.fused import FusedStep, fused_step
from vaelab.schedules import kl_weight  # noqa: F401  (re-exported: vaelab.train.kl_weight)


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


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused where this torch supports it for the device (one kernel for all parameters)."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


class AdamWKernel:
    """``opt.step()`` for a fused AdamW on the CPU whose parameters keep their gradient tensors from step to step
    (the hand-derived step writes into ``p.grad``): the kernel torch's AdamW calls, on lists built once, without
    the optimiser's Python wrapper (hooks, profiler record, state checks, grouping by device and dtype). Measured
    on the 1.08 M parameters of the MLP VAE, one thread: 0.86 against 1.07 CPU ms a step; the same numbers bit for
    bit (tests/test_fused.py). The first call is ``opt.step()`` itself (it makes the state); so is every call
    where the step would not be exactly torch's: another optimiser, hooks, amsgrad, a tensor lr, a missing or
    replaced gradient. Build one per epoch: a resume or a rollback between epochs may replace the state's tensors.
    """

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt
        self.lists: tuple[list[Tensor], ...] | None = None
        g = opt.param_groups[0]
        self.usable = (type(opt) is torch.optim.AdamW and len(opt.param_groups) == 1 and bool(g.get("fused"))
                       and g.get("decoupled_weight_decay", True) and not (g["amsgrad"] or g["maximize"]
                       or g["capturable"] or g["differentiable"] or isinstance(g["lr"], Tensor))
                       and all(p.device.type == "cpu" for p in g["params"]))

    def __call__(self) -> None:
        from torch.optim import optimizer as torch_optimizer

        opt = self.opt
        if self.lists is None or opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks \
                or torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks \
                or any(p.grad is not gr for p, gr in zip(self.lists[0], self.lists[1])):
            opt.step()
            self.lists = self._lists() if self.usable else None
            return
        params, grads, exp_avgs, exp_avg_sqs, steps = self.lists
        g = opt.param_groups[0]
        torch._foreach_add_(steps, 1)
        torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=g["lr"], beta1=g["betas"][0],
                            beta2=g["betas"][1], weight_decay=g["weight_decay"], eps=g["eps"], amsgrad=False,
                            maximize=False)

    def _lists(self) -> tuple[list[Tensor], ...] | None:
        params = [p for p in self.opt.param_groups[0]["params"]]
        if any(p.grad is None or p not in self.opt.state for p in params):
            return None
        st = [self.opt.state[p] for p in params]
        return (params, [p.grad for p in params], [s["exp_avg"] for s in st], [s["exp_avg_sq"] for s in st],
                [s["step"] for s in st])


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


@dataclass
class _Loop:
    """What the loop needs, prepared once by ``_prepare``: the model on its device, the splits as modelled, the
    optimiser, the objective (DDP/compile-wrapped), the global batches and the run folder (None: in memory)."""

    model: Autoencoder
    cfg: TrainConfig
    dctx: Any
    device: torch.device
    splits: tuple[Tensor, ...]       # x_train, y_train, x_static, x_val, x_test (see _splits_as_modelled)
    opt: torch.optim.Optimizer
    objective: torch.nn.Module
    fused: FusedStep | None           # the hand-derived step (vaelab.models.fused), or None: autograd
    bounds: list[tuple[int, int]]     # global batches [b0, b1) of one epoch
    shuffle_gen: torch.Generator
    folder: rundir.RunDir | None
    training_info: dict[str, Any]


def fit(model: Autoencoder | ModelConfig, data: Any, cfg: TrainConfig = TrainConfig(), out: str | Path | None = None,
        *, resume: bool = False, overwrite: bool = False, progress: bool = True,
        data_meta: dict[str, Any] | None = None, training_info: dict[str, Any] | None = None,
        on_epoch: Callable[[Autoencoder, Tensor, Tensor | None, dict[str, Any]], None] | None = None) -> Run:
    """Train ``model`` on ``data.x_train`` (validating on ``data.x_val``) under ``cfg``.

    Under torchrun (WORLD_SIZE > 1) ``cfg.batch_size`` is the per-rank batch and only rank 0 validates and
    writes (vaelab.distributed, docs/distributed.md).

    Args:
        model: a model, or a ModelConfig to build one (its initialisation then seeded by cfg.seed too)
        data: a vaelab.data.Dataset (x_train (N, C, H, W) in [0, 1], y_train (N,) or None, x_val, y_val)
        out: model folder (config.json, weights.safetensors = best, last.safetensors, train_log.jsonl)
        resume: continue from out/last.safetensors (model, optimiser, RNG, epoch, history)
        data_meta / training_info: extra JSON under "data" / "training" in config.json
        on_epoch: called on rank 0 after each validation as on_epoch(model, x_val, y_val, record); may add keys
    Returns:
        Run with the best weights loaded. Raises DivergenceError on a NaN/inf (the last good checkpoint is kept).
    """
    out = Path(out) if out is not None else None
    flush_denormals()
    lp, s = _prepare(model, data, cfg, out, resume, overwrite, data_meta, training_info)
    model, cfg, dctx = lp.model, lp.cfg, lp.dctx
    guard = NanGuard(model, model.cfg.model, cfg.lr, out)
    bar = _progress(total=cfg.epochs * len(lp.bounds), initial=s.epoch * len(lp.bounds), desc=model.cfg.model,
                    enabled=progress and dctx.is_main)
    t_start, status, best_state, ctrl_c = time.perf_counter(), "completed", None, CtrlC()
    try:
        for epoch in range(s.epoch + 1, cfg.epochs + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            train_terms = _train_epoch(lp, s, guard, bar, epoch, ctrl_c)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            val_terms, val = _validate(lp, data, train_terms)
            guard.check_val(val_terms, val, epoch, s.step)    # this epoch's checkpoints are not written
            record = {"epoch": epoch, "step": s.step, "seconds": round(seconds, 4), "cpu_seconds": round(cpu_seconds, 4),
                      "images_per_s": round(lp.bounds[-1][1] / seconds, 1), "kl_weight": kl_weight(cfg, s.step),
                      "train": train_terms, "val": val_terms}
            if on_epoch is not None and dctx.is_main:
                on_epoch(model, lp.splits[3], data.y_val, record)
            improved = s.end_epoch(record, val)
            good_state = guard.passed_epoch()
            if lp.folder:
                lp.folder.save_epoch(lp.opt, lp.shuffle_gen, s, improved)
            elif improved:
                best_state = good_state
            if dctx.is_distributed:   # the other ranks wait until rank 0 has written the epoch (a kill leaves one state)
                distributed.barrier()
            if cfg.patience and s.bad_epochs >= cfg.patience:
                status = "early-stopped"
                break
    except KeyboardInterrupt:
        # The resume point of the last completed epoch is already on disk (written atomically).
        raise rundir.interrupted(out, s.history, cfg.epochs) from None
    finally:
        ctrl_c.restore()
        bar.close()
    return _finish(lp, s, data, status, best_state, time.perf_counter() - t_start, out)


def _prepare(model: Autoencoder | ModelConfig, data: Any, cfg: TrainConfig, out: Path | None, resume: bool,
             overwrite: bool, data_meta: dict[str, Any] | None,
             training_info: dict[str, Any] | None) -> tuple[_Loop, rundir.LoopState]:
    """Device, model (built under cfg.seed), splits, capped batch, optimiser, run folder (started or resumed)."""
    dctx = distributed.setup(resolve_device(cfg.device).type)
    device = distributed.local_device(resolve_device(cfg.device), dctx)
    torch.manual_seed(cfg.seed)
    n_params = sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else count_params(model)
    budget.check_training(getattr(model, "cfg", model), n_params, min(cfg.batch_size, len(data.x_train)))
    if not isinstance(model, torch.nn.Module):   # a ModelConfig (or SeqModelConfig)
        model = build_model(model)
    model.to(device)
    splits = _splits_as_modelled(model, data, device)
    n = splits[0].shape[0]
    batch_size, note = capped_batch_size(cfg.batch_size, n, dctx.world_size)
    training_info = dict(training_info or {})
    if note:
        cfg = replace(cfg, batch_size=batch_size)
        training_info["notes"] = [note]
        if dctx.is_main:
            print(f"vaelab: {note}", file=sys.stderr)
    # channels-last: oneDNN (CPU) and cuDNN (GPU) convolutions run faster on NHWC (benchmarks/README.md)
    if model.cfg.backbone == "conv":
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    fused = _fused_step(model, cfg, dctx)
    training_info["backward"] = "fused" if fused is not None else "autograd"
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    folder = rundir.RunDir(out, model, cfg, data, data_meta, dctx.is_main) if out is not None else None
    s = (folder.start(opt, shuffle_gen, resume, overwrite, {"status": "running", "world_size": dctx.world_size,
                                                            **training_info})
         if folder else rundir.LoopState())
    # the objective as a module, so DistributedDataParallel (which hooks forward) can average gradients
    objective = distributed.wrap(_Objective(model), dctx, device)
    if cfg.compile:
        objective = torch.compile(objective)
    return _Loop(model, cfg, dctx, device, splits, opt, objective, fused,
                 distributed.global_batches(n, cfg.batch_size, dctx), shuffle_gen, folder, training_info), s


def _train_epoch(lp: _Loop, s: rundir.LoopState, guard: NanGuard, bar: Any, epoch: int, ctrl_c: CtrlC) -> dict[str, float]:
    """One epoch of optimiser steps; returns the mean training terms (over all ranks' images).

    No host-device sync per step: the terms accumulate on the device and are read (with the NaN guard's flag,
    one all-reduce under DDP) every ``log_every`` steps and at the epoch's end.
    """
    model, cfg, dctx, device = lp.model, lp.cfg, lp.dctx, lp.device
    x_grey, y, x_static = lp.splits[:3]
    n = x_grey.shape[0]
    channels_last = model.cfg.backbone == "conv"
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    xbuf = torch.empty((cfg.batch_size + 1, *x_grey.shape[1:]), dtype=x_grey.dtype, device=device)  # +1: uneven last batch
    params = list(model.parameters())
    opt_step = AdamWKernel(lp.opt) if lp.fused is not None else lp.opt.step   # gradients kept in place: no wrapper
    model.train()
    if dctx.is_distributed:     # independent noise per rank, and a resume point at every epoch
        torch.manual_seed(cfg.seed + 1_000_003 * epoch + 7919 * dctx.rank)
    t0, names = time.perf_counter(), []
    sums = torch.zeros(0, device=device)   # (1 + n_terms,) running sum of terms x images, on the device
    guard.start_epoch(device)
    x = preprocess.training_view(x_grey, model.cfg, cfg.seed, epoch, x_static)
    perm = torch.randperm(n, generator=lp.shuffle_gen).to(device)
    for j, (b0, b1) in enumerate(lp.bounds):
        if ctrl_c.requested:        # checked between steps: never inside a write or a kernel
            raise KeyboardInterrupt
        lo, hi = distributed.rank_slice(b0, b1, dctx)
        m = hi - lo
        xb = torch.index_select(x, 0, perm[lo:hi], out=xbuf[:m])
        if channels_last and xb.shape[1] > 1:      # one channel: NCHW already is NHWC
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[perm[lo:hi]] if y is not None else None
        # DDP averages gradients over ranks: weight each rank by its share of the global batch
        scale = m * dctx.world_size / (b1 - b0)
        if lp.fused is not None:    # objective and gradients in one hand-derived pass (vaelab.models.fused)
            lt = lp.fused(xb, kl_weight(cfg, s.step), scale)
        else:
            with amp:
                lt = lp.objective(xb, yb, kl_weight(cfg, s.step))
            lp.opt.zero_grad(set_to_none=True)
            (lt.total if scale == 1 else lt.total * scale).backward()
        grad_norm = _clip_grad_norm(params, cfg.grad_clip)
        opt_step()
        s.step += 1
        vals = torch.stack([lt.total.detach(), *lt.terms.values(), grad_norm]).double()  # (1 + T + 1,)
        if not names:
            names = ["loss", *lt.terms]
            sums = torch.zeros(len(names), device=device, dtype=torch.float64)
        sums.add_(vals[:-1], alpha=m)
        guard.observe(vals, s.step)
        # progress and the guard's check on a stride. Checkpoints are written only after an epoch passed the check.
        last = j == len(lp.bounds) - 1
        if s.step % cfg.log_every == 0 or last:
            tot = distributed.all_reduce_sum(torch.cat([sums, guard.flag()]), dctx).tolist()
            guard.check(tot[-1], names, epoch, s.step, dctx.world_size, s.history)
            bar.set_postfix(epoch=f"{epoch}/{cfg.epochs}", **{k: f"{v / b1:.2f}" for k, v in zip(names, tot)},
                            img_s=f"{b1 / (time.perf_counter() - t0):.0f}", refresh=False)
            if last:
                sums = torch.tensor(tot[:-1], dtype=torch.float64)
        bar.update(1)
    return {k: v / lp.bounds[-1][1] for k, v in zip(names, sums.tolist())}


def _validate(lp: _Loop, data: Any, train_terms: dict[str, float]) -> tuple[dict[str, float], float]:
    """Rank 0's validation terms (the training terms when there is no validation split) and the loss that decides
    best weights and early stopping (broadcast to every rank under DDP)."""
    x_val = lp.splits[3]
    if not lp.dctx.is_main:
        val_terms: dict[str, float] = {}
    else:
        val_terms = evaluate_loss(lp.model, x_val, data.y_val) if x_val.shape[0] else train_terms
    if lp.dctx.is_distributed:
        return val_terms, distributed.broadcast_floats([val_terms.get("loss", 0.0)], lp.dctx, lp.device)[0]
    return val_terms, val_terms.get("loss", 0.0)


def _finish(lp: _Loop, s: rundir.LoopState, data: Any, status: str, best_state: Any, seconds: float,
            out: Path | None) -> Run:
    """Hand back the best weights and their test loss; close the run folder."""
    model, x_test = lp.model, lp.splits[4]
    if lp.folder:
        lp.folder.load_best()
    elif s.best_epoch:
        model.load_state_dict(best_state)
    model.eval()
    test = evaluate_loss(model, x_test, data.y_test) if x_test.shape[0] and lp.dctx.is_main else {}
    if lp.folder:
        lp.folder.finish({**lp.training_info, "status": status, "best_epoch": s.best_epoch, "best_val_loss": s.best_val,
                          "epochs_done": s.epoch, "steps": s.step, "world_size": lp.dctx.world_size,
                          "images_per_s_last_epoch": s.history[-1]["images_per_s"] if s.history else None}, test)
    distributed.barrier()
    return Run(model, s.history, s.best_epoch, s.best_val, status, seconds, out, test)


def capped_batch_size(batch_size: int, n: int, world_size: int = 1) -> tuple[int, str | None]:
    """The per-rank batch size that fits ``n`` training images, and a one-line note when it was capped.

    A batch larger than the training split is capped at it (small data trains on the defaults); only a
    split too small to train on at all (fewer than 2 images, or fewer than one per rank) is an error.
    """
    if n < max(2, world_size):
        raise ConfigError(f"the training split has {n} image{'s' if n != 1 else ''}; training needs at least "
                          f"{max(2, world_size)}. Give a larger dataset (or a smaller --val-fraction).")
    if batch_size * world_size <= n:
        return batch_size, None
    capped = n // world_size
    return capped, (f"batch size {batch_size}{f' x {world_size} ranks' if world_size > 1 else ''} is larger than "
                    f"the {n} training images; using batch size {capped}.")


def _splits_as_modelled(model: Autoencoder, data: Any, device: torch.device) -> tuple[Tensor, ...]:
    """The splits as the likelihood models them (vaelab.preprocess): binarised / dequantised; val/test a fixed draw.

    Returns:
        x_train (N, C, H, W) on the device as given, y_train (N,) or None, the static binarisation of x_train
        (or None), x_val, x_test as modelled
    """
    mcfg = model.cfg
    if tuple(data.x_train.shape[1:]) != mcfg.input_shape:
        raise ConfigError(f"the model was built for images of shape {mcfg.input_shape} but the data has "
                          f"{tuple(data.x_train.shape[1:])}.")
    if model.is_conditional and data.y_train is None:
        raise ConfigError(f"{mcfg.model} needs labels, and {data.name} has none.")
    x_grey, y = data.x_train.to(device), (data.y_train.to(device) if data.y_train is not None else None)
    if mcfg.dequantize:
        preprocess.check_levels(x_grey, mcfg.dequantize)
    x_static = preprocess.modelled(x_grey, mcfg, "train") if mcfg.binarize == "static" else None
    x_val, x_test = preprocess.modelled(data.x_val, mcfg, "val"), preprocess.modelled(data.x_test, mcfg, "test")
    return x_grey, y, x_static, x_val, x_test


def _fused_step(model: Autoencoder, cfg: TrainConfig, dctx: Any) -> FusedStep | None:
    """The hand-derived step when ``cfg.backward`` is auto and it applies (one process: DDP hooks autograd; fp32;
    not compiled), else None."""
    if cfg.backward != "auto" or dctx.is_distributed or cfg.precision != "fp32" or cfg.compile:
        return None
    return fused_step(model)


def _clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> Tensor:
    """The gradient's total norm (the NaN guard's view of the gradient), clipped to ``max_norm`` when > 0; no sync."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True)


class _Objective(torch.nn.Module):
    """``forward`` = the model's training objective, so DDP and torch.compile see the whole step's graph."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor | None, kl_weight: float) -> Any:
        return self.model.loss(x, y, kl_weight=kl_weight)


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
