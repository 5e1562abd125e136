"""The memory budget: every size-driven allocation is estimated first and refused with one message.

A size a user or a file chooses (a header's declared dims, a label value, ``--hidden``, ``--latent-dim``,
``--n``, a folder's image count) drives an allocation. Before it happens, the caller estimates the bytes
and calls :func:`check`; when the estimate exceeds the available memory, a
:class:`~vaelab.errors.MemoryBudgetError` says how much, what drives it, and the option that fixes it,
instead of a ``DefaultCPUAllocator`` traceback or the kernel's OOM killer.

The available memory is, in this order: ``--max-memory`` (:func:`set_max_memory`), the environment
variable ``VAELAB_MAX_MEMORY``, else ``MemAvailable`` of ``/proc/meminfo`` capped by the cgroup's
``memory.max`` (a container's limit). Sizes are written like ``512M``, ``8G``, ``1.5GB`` or bytes.

Estimates are upper-ish bounds, not exact: parameters are exact (counted on the meta device), training
adds a gradient and AdamW's two moments per parameter (4 x fp32 in all), activations are
``batch x (widths summed) x 4 bytes x 3`` (forward output, saved input, gradient).
"""
from __future__ import annotations

import math
import os
import re

from vaelab.errors import ConfigError, MemoryBudgetError

FP32 = 4                              # bytes per float32
TRAIN_STATE_FACTOR = 4                # parameter + gradient + AdamW exp_avg + exp_avg_sq
ACTIVATION_FACTOR = 3                 # each activation: its value, the saved input of the next op, its gradient
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}
_max_memory: int | None = None        # set by --max-memory (one process, one budget)


def parse_size(text: str | int | float) -> int:
    """'512M' -> 512_000_000, '8GiB' -> 8 * 2**30, 1e9 -> 1_000_000_000 (bytes, >= 1)."""
    if isinstance(text, bool):
        raise ConfigError(f"--max-memory takes a size like 512M, 8G or 1.5GB (or bytes), got {text!r}.")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"--max-memory takes a size like 512M, 8G or 1.5GB (or bytes), got {text!r}.")
        value, unit = float(m.group(1)), m.group(2).lower()
    n = value * _UNITS[unit]
    if not math.isfinite(n) or n < 1:
        raise ConfigError(f"--max-memory must be a positive size like 512M or 8G, got {text!r}.")
    return int(n)


def set_max_memory(size: str | int | None) -> None:
    """Cap the budget of this process (``--max-memory``); None restores the default (the machine's memory)."""
    global _max_memory
    _max_memory = None if size is None else parse_size(size)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        return None


def available() -> tuple[int | None, str]:
    """(bytes this process may still allocate, where that number comes from); None = unknown (no check)."""
    if _max_memory is not None:
        return _max_memory, "--max-memory"
    env = os.environ.get("VAELAB_MAX_MEMORY", "").strip()
    if env:
        return parse_size(env), "VAELAB_MAX_MEMORY"
    found = [(v, src) for v, src in ((_meminfo_available(), "MemAvailable in /proc/meminfo"),
                                      (_cgroup_available(), "the cgroup's memory.max")) if v is not None]
    return min(found) if found else (None, "unknown")


def fmt_bytes(n: float) -> str:
    """1.5e9 -> '1.5 GB' (decimal units, as --max-memory reads them)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def check(n_bytes: float, what: str, driver: str, fix: str) -> None:
    """Refuse ``what`` when its estimated ``n_bytes`` exceed the available memory.

    Args:
        n_bytes: the estimate, in bytes.
        what: the operation, e.g. "training vae" or "reading FILE".
        driver: what makes it that big, e.g. "--hidden 65536,65536: 4.3e9 parameters".
        fix: the option or action that fixes it.
    """
    limit, source = available()
    if limit is None or n_bytes <= limit:
        return
    raise MemoryBudgetError(f"{what} needs about {fmt_bytes(n_bytes)} of memory ({driver}), but only "
                            f"{fmt_bytes(limit)} is available ({source}). {fix}")


def param_bytes(n_params: int, training: bool = False) -> int:
    """fp32 parameters, with a gradient and AdamW's two moments each when ``training``."""
    return n_params * FP32 * (TRAIN_STATE_FACTOR if training else 1)


def activation_bytes(n_pixels: int, widths: tuple[int, ...], n_latent: int, batch: int, k: int = 1,
                     n_classes: int = 0) -> int:
    """Activations of one training step of an encoder/decoder pair, fp32.

    Args:
        n_pixels: C*H*W of one input (the input, the decoder's output and its loss: 3 tensors of it).
        widths: every hidden activation's size per example (the encoder's and the decoder's layers).
        n_latent: D (mu, logvar, eps, z: 4 tensors of it).
        batch: B; k: importance samples (the decoder runs k times); n_classes: the one-hot label width.
    """
    per_example = 3 * n_pixels * k + sum(widths) * (1 + k) + 4 * n_latent * k + n_classes
    return batch * per_example * FP32 * ACTIVATION_FACTOR


def array_bytes(shape: tuple[int, ...] | list[int], itemsize: int = FP32) -> int:
    """Bytes of an array of this shape (Python integers: no overflow for absurd declared shapes)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def _widths(cfg: object) -> tuple[int, ...]:
    """Per-example hidden activation sizes of the encoder and the decoder of a model config (duck-typed)."""
    hidden = getattr(cfg, "hidden", ()) or ()
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)          # sequence models: one GRU width
    if getattr(cfg, "backbone", "mlp") == "conv":
        _, h, w = getattr(cfg, "input_shape", (1, 1, 1))
        conv = []
        for ch in getattr(cfg, "channels", ()):
            h, w = (h + 1) // 2, (w + 1) // 2
            conv.append(ch * h * w)
        return tuple(conv) * 2 + hidden[-1:] * 2
    return hidden * 2


def check_training(cfg: object, n_params: int, batch_size: int) -> None:
    """Refuse a training run whose parameters + optimiser state + one step's activations exceed the budget.

    Args:
        cfg: the ModelConfig (input_shape, hidden, channels, backbone, n_latent, k, n_classes are read).
        n_params: the model's parameter count.
        batch_size: the batch actually used (capped at the training-set size).
    """
    shape = getattr(cfg, "input_shape", (1,))
    n_pixels = math.prod(shape) if isinstance(shape, (tuple, list)) else int(shape)   # sequences: a length
    state = param_bytes(n_params, training=True)
    acts = activation_bytes(n_pixels, _widths(cfg), int(getattr(cfg, "n_latent", 0)), batch_size,
                            k=int(getattr(cfg, "k", 1)), n_classes=int(getattr(cfg, "n_classes", 0)))
    check(state + acts, f"training {getattr(cfg, 'model', 'the model')}",
          f"{n_params:,} parameters with gradients and AdamW state: {fmt_bytes(state)}; activations of a batch of "
          f"{batch_size}: {fmt_bytes(acts)}; driven by --hidden {describe_model(cfg).split(', ')[0].removeprefix('--hidden ')}, "
          f"--latent-dim {getattr(cfg, 'n_latent', '?')}, --batch-size {batch_size}",
          "Lower --hidden, --latent-dim or --batch-size, or raise --max-memory if the memory is there.")


def describe_model(cfg: object) -> str:
    """The config fields that size a model, for a budget message."""
    parts = [f"--{name.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
             for name in ("hidden", "channels", "n_latent", "n_classes", "input_shape")
             if (v := getattr(cfg, name, None)) not in (None, 0, ())
             and (name != "channels" or getattr(cfg, "backbone", "") == "conv")]
    return ", ".join(parts).replace("--n-latent", "--latent-dim").replace("--input-shape", "input shape")


def flush_denormals() -> None:
    """Have the CPU treat float results and inputs below the smallest normal number (1.2e-38 in float32) as zero.

    Why: subnormal numbers take a slow microcode path on x86 CPUs, many times the cost of a normal operation, and
    training makes them. AdamW's first moment of a weight whose gradient stays zero (a dead ReLU unit, a pixel
    that is 0 in every image) decays by beta1 = 0.9 a step and is subnormal after about 800 steps: on the MLP VAE
    784-512-256-16 (Fashion-MNIST, 84 steps an epoch, one thread) the last four of 16 epochs took 1.37 CPU s each
    with subnormals kept and 0.83 s with them flushed, the first four 0.83 s either way, the test loss the same
    (benchmarks/README.md, "Subnormal numbers").
    No value vaelab reports depends on numbers that small (losses and likelihoods are computed in log space).
    TensorFlow sets the same mode (flush-to-zero and denormals-are-zero) in its own threads.

    The mode belongs to a thread and a thread starts with its creator's: set before the first parallel torch op,
    it holds in the intra-op threads too; set later, only in the calling thread. So the CLI and each worker set
    it first thing, and fit and evaluate set it for library callers (their own thread at least). It stays set.
    """
    import torch

    torch.set_flush_denormal(True)
