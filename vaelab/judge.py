"""The judge: a small classifier whose penultimate features score generated samples.

vaelab trains it once per dataset (training split; the validation split selects the best epoch)
and caches it by dataset fingerprint at ``$VAELAB_CACHE/judge/<fingerprint>/`` (default cache
``~/.cache/vaelab``) as ``config.json`` + ``weights.safetensors``. Its features are the space of
the sample-quality metrics (FD in judge features, precision/recall); its softmax gives judge
confidence and class coverage. It is not Inception: call the metric "FD (judge features)".

Architecture (chosen by image size, recorded in config.json with its version):
    cnn  (min(H, W) >= 16), version 2: [conv5x5(32) stride 2, BN, ReLU] -> [conv3x3(64) stride 2, BN, ReLU]
                            -> dense 128 ReLU (features) -> dropout 0.3 -> linear n_classes;
                            AdamW with a one-cycle learning rate over a budget of pixels seen (about 5
                            epochs of Fashion-MNIST; more epochs for smaller sets, fewer for larger images).
                            Version 1 (conv3x3 + maxpool twice, 12 epochs of Adam) took about 19 minutes
                            on Fashion-MNIST here; benchmarks/README.md has the new judge's time.
    mlp  (smaller, e.g. 8x8 digits), version 1: flatten -> dense 256 ReLU -> dense 128 ReLU (features)
                            -> dropout 0.3 -> linear n_classes
A cached judge of another architecture version is retrained (with a warning).
The cache key is the dataset fingerprint alone (one judge per dataset, so metrics from separate
runs are comparable); ``seed`` only matters when the judge is (re)trained.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaelab.checkpoint import load_tensors, save_tensors, versions
from vaelab.io import atomic_write_json, cache_root

FORMAT = "vaelab-judge"
FORMAT_VERSION = 1
CNN_MIN_SIDE = 16
N_FEATURES = 128
ARCH_VERSIONS = {"cnn": 2, "mlp": 1}   # config.json without "arch_version" is version 1
CNN_PIXEL_BUDGET = 5 * 54_000 * 784    # pixels a cnn judge trains on: 5 epochs of Fashion-MNIST's training split
CNN_EPOCHS = (2, 30)                   # ... within these bounds


def judge_dir(fingerprint: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "judge" / fingerprint


def _arch_for(shape: tuple[int, int, int]) -> str:
    return "cnn" if min(shape[1], shape[2]) >= CNN_MIN_SIDE else "mlp"


class Judge(nn.Module):
    """A small classifier. ``body`` maps x (B, C, H, W) to penultimate features (B, 128); ``out`` to logits.

    Attributes:
        n_classes: number of classes; arch: "cnn" | "mlp"; input_shape: (C, H, W).
        test_accuracy: accuracy on the dataset's test split (set after training / read from the cache).
        fingerprint: the dataset fingerprint it was trained on.
    """

    def __init__(self, arch: str, input_shape: tuple[int, int, int], n_classes: int, fingerprint: str = "",
                 test_accuracy: float = float("nan")) -> None:
        super().__init__()
        c, h, w = (int(v) for v in input_shape)
        if arch == "cnn":
            # strided convolutions instead of conv + max-pool: a quarter of the activations to write and read
            h2, w2 = (h + 1) // 2, (w + 1) // 2
            self.body = nn.Sequential(
                nn.Conv2d(c, 32, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),  # (B, 32, H/2, W/2)
                nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),  # (B, 64, H/4, W/4)
                nn.Flatten(), nn.Linear(64 * ((h2 + 1) // 2) * ((w2 + 1) // 2), N_FEATURES), nn.ReLU())
        elif arch == "mlp":
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 256), nn.ReLU(),
                                      nn.Linear(256, N_FEATURES), nn.ReLU())
        else:
            raise ValueError(f"unknown judge architecture {arch!r}")
        self.dropout = nn.Dropout(0.3)
        self.out = nn.Linear(N_FEATURES, n_classes)
        self.arch, self.input_shape, self.n_classes = arch, (c, h, w), int(n_classes)
        self.fingerprint, self.test_accuracy = fingerprint, float(test_accuracy)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [0, 1] -> logits (B, n_classes)."""
        return self.out(self.dropout(self.body(x)))

    @torch.inference_mode()
    def _batched(self, x: Tensor, fn, batch_size: int) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"the judge takes images of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            outs = [fn(x[i:i + batch_size].to(device, torch.float32)).float().cpu()
                    for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(outs) if outs else torch.empty(0, 0)

    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Penultimate features: x (N, C, H, W) in [0, 1] -> (N, 128) CPU float32."""
        return self._batched(x, self.body, batch_size)

    def predict_proba(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Softmax class probabilities: x (N, C, H, W) -> (N, n_classes) CPU float32."""
        return self._batched(x, lambda xb: F.softmax(self(xb), dim=1), batch_size)

    def accuracy(self, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
        """Fraction of x (N, C, H, W) whose arg-max class equals y (N,)."""
        if len(x) == 0:
            return float("nan")
        return float((self.predict_proba(x, batch_size).argmax(1) == y.cpu()).double().mean())


# -- training ------------------------------------------------------------------------------------
def _train(data: Any, seed: int, progress: bool, device: torch.device) -> tuple[Judge, dict[str, Any]]:
    """Train a judge on data.x_train; select the epoch with the best validation accuracy."""
    arch = _arch_for(data.shape)
    if arch == "cnn":   # a budget of pixels seen, in one cycle of the learning rate (validation picks the epoch)
        epochs = min(max(round(CNN_PIXEL_BUDGET / (len(data.x_train) * math.prod(data.shape))), CNN_EPOCHS[0]),
                     CNN_EPOCHS[1])
        patience, batch_size, lr = epochs, 256, 3e-3
    else:               # MLP (tiny images): many cheap epochs
        epochs, patience, batch_size, lr = 60, 15, 128, 2e-3
    n_threads = torch.get_num_threads()
    if arch == "mlp" and device.type == "cpu":
        # Tiny matmuls gain nothing from threads, and on a loaded machine the thread hand-off dominates.
        torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):          # seeded without disturbing the caller's RNG
        torch.manual_seed(seed)
        judge = Judge(arch, data.shape, data.n_classes, data.fingerprint).to(device)
        if arch == "cnn":
            judge.to(memory_format=torch.channels_last)
            opt: torch.optim.Optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, pct_start=0.2,
                                                        total_steps=epochs * math.ceil(len(data.x_train) / batch_size))
        else:
            opt, sched = torch.optim.Adam(judge.parameters(), lr=lr), None
        gen = torch.Generator().manual_seed(seed)
        x, y = data.x_train.to(device), data.y_train.to(device)
        has_val = len(data.x_val) > 0
        best_acc, best_epoch, best_state, bad = -1.0, 0, None, 0
        t0, cpu0 = time.perf_counter(), time.process_time()
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=epochs, desc=f"judge ({arch}, {data.name})", unit="epoch", leave=False)
        try:
            for epoch in range(1, epochs + 1):
                judge.train()
                perm = torch.randperm(len(x), generator=gen).to(device)
                for i in range(0, len(x), batch_size):
                    idx = perm[i:i + batch_size]
                    loss = F.cross_entropy(judge(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                acc = judge.accuracy(data.x_val, data.y_val) if has_val else float(epoch)
                if acc > best_acc:
                    best_acc, best_epoch, bad = acc, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in judge.state_dict().items()}
                else:
                    bad += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(val_acc=f"{acc:.4f}" if has_val else "n/a")
                if has_val and bad >= patience:
                    break
        finally:
            torch.set_num_threads(n_threads)
            if bar is not None:
                bar.close()
    judge.load_state_dict(best_state)
    judge.eval()
    judge.test_accuracy = judge.accuracy(data.x_test, data.y_test)
    info = {"epochs_run": epoch, "best_epoch": best_epoch, "val_accuracy": best_acc if has_val else None,
            "train_seconds": time.perf_counter() - t0, "train_cpu_seconds": time.process_time() - cpu0, "seed": seed, "batch_size": batch_size, "lr": lr}
    return judge, info


# -- cache ---------------------------------------------------------------------------------------
def _save(judge: Judge, folder: Path, info: dict[str, Any]) -> None:
    """Weights first, then config.json: a folder with a config always has its weights (both atomic)."""
    meta = {"format": FORMAT, "fingerprint": judge.fingerprint, "arch": judge.arch}
    save_tensors(folder / "weights.safetensors", dict(judge.state_dict()), meta)
    atomic_write_json(folder / "config.json", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": judge.arch,
        "arch_version": ARCH_VERSIONS[judge.arch],
        "input_shape": list(judge.input_shape), "n_classes": judge.n_classes, "fingerprint": judge.fingerprint,
        "test_accuracy": judge.test_accuracy, "training": info, "versions": versions()})


def _load(folder: Path, data: Any) -> Judge:
    """Load a cached judge; raise (any exception) when it is missing, corrupt or for other data."""
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if cfg.get("format") != FORMAT or cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError("not a vaelab judge config of this version")
    if cfg["fingerprint"] != data.fingerprint or tuple(cfg["input_shape"]) != data.shape \
            or int(cfg["n_classes"]) != data.n_classes:
        raise ValueError("the cached judge was trained on other data")
    if cfg.get("arch_version", 1) != ARCH_VERSIONS.get(cfg["arch"]):
        raise ValueError(f"the cached judge is {cfg['arch']} version {cfg.get('arch_version', 1)}; this vaelab's is "
                         f"version {ARCH_VERSIONS.get(cfg['arch'])}")
    tensors, meta = load_tensors(folder / "weights.safetensors")
    judge = Judge(cfg["arch"], data.shape, data.n_classes, data.fingerprint, float(cfg["test_accuracy"]))
    judge.load_state_dict(tensors, strict=True)
    if not math.isfinite(judge.test_accuracy):
        raise ValueError("the cached judge has no test accuracy")
    return judge.eval()


def load_or_train_judge(data: Any, *, cache_dir: str | os.PathLike | None = None, seed: int = 0,
                        progress: bool = True, retrain: bool = False, device: str = "cpu") -> Judge | None:
    """The judge for ``data``: from the cache when present and intact, else trained (seeded) and cached.

    Args:
        data: a vaelab.data.Dataset (x_* (N, C, H, W) in [0, 1], y_* (N,) labels).
        cache_dir: cache root (default $VAELAB_CACHE or ~/.cache/vaelab); the judge lives in judge/<fingerprint>/.
        seed: seeds initialisation, shuffling and dropout of a (re)training.
        retrain: ignore the cache and train a new judge (it replaces the cached one).
        device: where to train and run it ("cpu", "cuda", "auto").
    Returns:
        the Judge (in eval mode), or None when the data has no labels (or fewer than 2 classes).
    A corrupt or mismatched cache entry is retrained with a warning, never an error.
    """
    from vaelab.train import resolve_device

    if not data.has_labels or data.n_classes < 2:
        return None
    dev = resolve_device(device)
    folder = judge_dir(data.fingerprint, cache_dir)
    if not retrain and (folder / "config.json").exists():
        try:
            return _load(folder, data).to(dev)
        except Exception as e:  # any damage to the cache means "retrain", never a crash
            warnings.warn(f"the cached judge in {folder} is unusable ({type(e).__name__}: {e}); retraining it.",
                          RuntimeWarning, stacklevel=2)
    judge, info = _train(data, seed, progress, dev)
    try:
        _save(judge, folder, info)
    except Exception as e:  # a read-only cache must not stop an evaluation
        warnings.warn(f"could not cache the judge in {folder} ({e}); it will be retrained next time.",
                      RuntimeWarning, stacklevel=2)
    return judge
