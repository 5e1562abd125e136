"""One trainer for every model in the family: ``fit(model, data, cfg, out) -> Run``.

One readable loop (nanoGPT-style), no callbacks:
  * the training split lives as tensors on the device; each epoch is one ``randperm`` and
    index-select batches (no per-sample Python, no DataLoader);
  * AdamW (fused on CPU/CUDA where this torch has it), optional gradient clipping;
  * a NaN/inf guard on every step that names the diverged term and keeps the last good checkpoint;
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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaelab import checkpoint as ckpt
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
    """Multiplier of beta at optimiser step ``step`` (the KL schedule)."""
    if cfg.kl_schedule == "linear" and cfg.kl_warmup_steps > 0:
        return min(1.0, step / cfg.kl_warmup_steps)
    return 1.0


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused where this torch supports it for the device (one kernel for all parameters)."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


@torch.inference_mode()
def evaluate_loss(model: Autoencoder, x: Tensor, y: Tensor | None = None, batch_size: int = 1024) -> dict[str, float]:
    """Mean loss terms over a split (kl_weight 1: the model's full objective), plus "loss" = the total.

    Args:
        x: (N, C, H, W) in [0, 1]; y: (N,) labels or None
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    n = x.shape[0]
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size].to(device)
        yb = y[i:i + batch_size].to(device) if y is not None else None
        lt = model.loss(xb, yb)
        for k, v in {"loss": lt.total, **lt.terms}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * xb.shape[0]
    model.train(was_training)
    return {k: v / n for k, v in sums.items()}


def _diverged_term(total: Tensor, terms: dict[str, Tensor], grad_norm: Tensor) -> str | None:
    """The name of the first non-finite quantity of a step (a term, the total, the gradient), or None.

    One device sync per step: all the scalars are checked together; names are looked up only on failure.
    """
    values = [total.detach(), grad_norm, *(v.detach() for v in terms.values())]
    if bool(torch.isfinite(torch.stack([v.float().reshape(()) for v in values])).all()):
        return None
    for name, v in terms.items():
        if not bool(torch.isfinite(v)):
            return name
    return "loss" if not bool(torch.isfinite(total)) else "gradient"


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


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    has_model = any((out / f).exists() for f in (ckpt.WEIGHTS_NAME, LAST_NAME))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another --out.")
    if has_model and not (resume or overwrite):
        raise OutputError(f"{out} already holds a trained model. Pass --resume to continue it, --overwrite to "
                          "replace it, or choose another --out.")
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
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if isinstance(model, ModelConfig):
        model = build_model(model)
    model.to(device)
    mcfg: ModelConfig = model.cfg
    if tuple(data.x_train.shape[1:]) != mcfg.input_shape:
        raise ConfigError(f"the model was built for images of shape {mcfg.input_shape} but the data has "
                          f"{tuple(data.x_train.shape[1:])}.")
    if model.is_conditional and data.y_train is None:
        raise ConfigError(f"{mcfg.model} needs labels, and {data.name} has none.")
    x, y = data.x_train.to(device), (data.y_train.to(device) if data.y_train is not None else None)
    n = x.shape[0]
    if cfg.batch_size > n:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {n} training images; use --batch-size "
                          f"{min(128, n)} or less.")
    opt = make_optimizer(model, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    params = [p for p in model.parameters()]
    out_path = Path(out) if out is not None else None

    history: list[dict[str, Any]] = []
    start_epoch, step, best_val, best_epoch, bad_epochs = 1, 0, math.inf, 0, 0
    if out_path is not None:
        _prepare_out(out_path, resume, overwrite)
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
        extra = {"train": cfg.to_dict(), "data": {**data.summary(), **(data_meta or {})},
                 "training": {"status": "running", **(training_info or {})}}
        ckpt.write_config(out_path, mcfg, extra)

    steps_per_epoch = math.ceil(n / cfg.batch_size)
    bar = _progress(total=cfg.epochs * steps_per_epoch, initial=(start_epoch - 1) * steps_per_epoch,
                    desc=mcfg.model, enabled=progress)
    t_start = time.perf_counter()
    status = "completed"
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            sums: dict[str, Tensor] = {}
            perm = torch.randperm(n, generator=shuffle_gen).to(device)
            for i in range(0, n, cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                xb, yb = x[idx], (y[idx] if y is not None else None)
                lt = model.loss(xb, yb, kl_weight=kl_weight(cfg, step))
                opt.zero_grad(set_to_none=True)
                lt.total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                bad = _diverged_term(lt.total, lt.terms, grad_norm)
                if bad is not None:
                    kept = (f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept in {out_path}"
                            if out_path is not None and history else "no checkpoint had been written yet")
                    raise DivergenceError(
                        f"{mcfg.model}: the {bad!r} term became NaN/inf at epoch {epoch}, step {step + 1}; {kept}. "
                        f"Try a lower --lr (now {cfg.lr}), --grad-clip 10, --on-nan retry, or a Gaussian likelihood "
                        "with larger sigma.", term=bad, epoch=epoch, step=step + 1)
                opt.step()
                step += 1
                for k, v in {"loss": lt.total.detach(), **lt.terms}.items():
                    sums[k] = sums.get(k, 0.0) + v * xb.shape[0]
                if step % cfg.log_every == 0 or i + cfg.batch_size >= n:
                    done = min(i + cfg.batch_size, n)
                    bar.set_postfix(epoch=f"{epoch}/{cfg.epochs}", **{k: f"{float(v) / done:.2f}" for k, v in sums.items()},
                                    img_s=f"{done / (time.perf_counter() - t0):.0f}", refresh=False)
                bar.update(1)
            seconds = time.perf_counter() - t0
            train_terms = {k: float(v) / n for k, v in sums.items()}
            val_terms = evaluate_loss(model, data.x_val, data.y_val) if data.x_val.shape[0] else train_terms
            val = val_terms["loss"]
            bad_val = next((k for k, v in val_terms.items() if not math.isfinite(v)), None)
            if bad_val is not None:   # checkpoints of this epoch are not written: the last good ones stay
                raise DivergenceError(f"{mcfg.model}: the validation {bad_val!r} term became NaN/inf at epoch {epoch}. "
                                      f"Try a lower --lr (now {cfg.lr}), --grad-clip 10 or --on-nan retry.",
                                      term=f"val.{bad_val}", epoch=epoch, step=step)
            record = {"epoch": epoch, "step": step, "seconds": round(seconds, 4), "images_per_s": round(n / seconds, 1),
                      "kl_weight": kl_weight(cfg, step), "train": train_terms, "val": val_terms}
            history.append(record)
            improved = val < best_val
            if improved:
                best_val, best_epoch, bad_epochs = val, epoch, 0
            else:
                bad_epochs += 1
            if out_path is not None:
                if improved:
                    ckpt.save_weights(out_path, model, epoch=epoch, val_loss=val)
                state = {"epoch": epoch, "step": step, "best_val": best_val, "best_epoch": best_epoch,
                         "bad_epochs": bad_epochs, "history": history}
                ckpt.save_tensors(out_path / LAST_NAME, _state_tensors(model, opt, shuffle_gen),
                                  {**ckpt.weights_metadata(mcfg), "state": json.dumps(state)})
                atomic_write_text(out_path / LOG_NAME, "".join(json.dumps(r) + "\n" for r in history))
            elif improved:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
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
        bar.close()
    seconds = time.perf_counter() - t_start

    # hand back the best weights
    if out_path is not None and (out_path / ckpt.WEIGHTS_NAME).exists():
        tensors, _ = ckpt.load_tensors(out_path / ckpt.WEIGHTS_NAME)
        model.load_state_dict(tensors)
    elif out_path is None and best_epoch:
        model.load_state_dict(best_state)
    model.eval()
    test = evaluate_loss(model, data.x_test, data.y_test) if data.x_test.shape[0] else {}
    run = Run(model, history, best_epoch, best_val, status, seconds, out_path, test)
    if out_path is not None:
        extra = {"train": cfg.to_dict(), "data": {**data.summary(), **(data_meta or {})},
                 "training": {**(training_info or {}), "status": status, "best_epoch": best_epoch, "best_val_loss": best_val,
                              "epochs_done": history[-1]["epoch"] if history else 0, "steps": step,
                              "images_per_s_last_epoch": history[-1]["images_per_s"] if history else None},
                 "test": test}
        ckpt.write_config(out_path, mcfg, extra)
    return run


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
    initial = (None if isinstance(model, ModelConfig)
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
