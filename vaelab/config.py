"""Configuration: frozen dataclasses, serialised to JSON by name (never by class or pickle).

`ModelConfig` says what a model is (enough to rebuild it from `config.json`); `TrainConfig` says
how it was trained. Overrides use `dataclasses.replace`; nothing mutates a config.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from vaelab.errors import ConfigError

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian")
BINARIZE = ("none", "dynamic", "static")
KL_SCHEDULES = ("constant", "linear", "cyclical", "sigmoid")
BACKBONES = ("mlp", "conv")
PRIORS = ("gaussian", "uniform", "laplace", "mog", "vamp")   # vaelab.models.priors


@dataclass(frozen=True)
class ModelConfig:
    """What a model is. Everything needed to rebuild its modules from JSON."""

    model: str = "vae"                          # a key of vaelab.models.MODELS
    input_shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W) of the data it was built for
    n_latent: int = 16
    backbone: str = "mlp"                       # "mlp" | "conv": shared by every model in the family
    hidden: tuple[int, ...] = (512, 256)        # MLP widths; for conv, the width of the dense layer is hidden[-1]
    channels: tuple[int, ...] = (32, 64)        # conv only: channels of each stride-2 stage
    likelihood: str = "bernoulli"               # p(x|z): "bernoulli" | "continuous-bernoulli" (decoder gives logits) |
                                                # "gaussian" (decoder gives means)
    sigma: float = 0.1                          # gaussian only: std of p(x|z) in pixel units (the initial value if learned)
    learn_sigma: bool = False                   # gaussian only: learn a per-pixel log-sigma (init log(sigma))
    # The data as modelled (vaelab.preprocess); part of what the model *is*, so the checkpoint records it.
    binarize: str = "none"                      # "none" | "dynamic" (fresh Bernoulli draw of the grey levels each
                                                # epoch) | "static" (one fixed seeded draw); eval splits: a fixed draw
    dequantize: int = 0                         # grey levels L of the data (256 for 8-bit); > 0 models
                                                # y = (v + U(0,1)) / L for pixel value v = x * (L - 1); 0 = off
    beta: float = 1.0                           # weight of the KL term; 1 is the ELBO, beta-vae defaults to 4
    free_bits: float = 0.0                      # per-dimension KL floor in nats (Kingma et al. 2016); 0 = off
    k: int = 1                                  # importance samples in the training objective (iwae)
    n_classes: int = 0                          # > 0 for label-conditioned models (cvae)
    corruption: str = "gaussian:0.3"            # dae only: the noise applied to inputs during training
    rae_gamma: float = 1.0                      # rae only: weight of 0.5*||z||^2 (Ghosh et al. 2020, eq. 11)
    rae_lambda: float = 1e-4                    # rae only: weight of the decoder's squared L2 norm
    prior: str = "gaussian"                     # p(z) of the VAE family (vaelab.models.priors): "gaussian" N(0, I) |
                                                # "uniform" U(0,1)^d | "laplace" | "mog" (learned mixture) | "vamp"
    prior_components: int = 10                  # mog: mixture components; vamp: pseudo-inputs (Tomczak & Welling 2018)

    def __post_init__(self) -> None:
        _check_types(self)
        check_prior(self.prior, self.prior_components)
        # JSON gives lists; keep tuples so the config stays hashable and frozen.
        for name in ("input_shape", "hidden", "channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.n_latent < 1:
            raise ConfigError(f"latent size must be a positive integer, got {self.n_latent}. Use e.g. --latent-dim 16.")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}.")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"unknown likelihood {self.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}.")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, got {self.input_shape}.")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden sizes must be positive integers, e.g. --hidden 512,256; got {self.hidden}.")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"conv channels must be positive integers, got {self.channels}.")
        if self.binarize not in BINARIZE:
            raise ConfigError(f"unknown binarisation {self.binarize!r}; choose one of {', '.join(BINARIZE)}.")
        if self.binarize != "none" and self.likelihood != "bernoulli":
            raise ConfigError(f"binarised data is modelled with the bernoulli likelihood, not {self.likelihood!r}; "
                              "use --likelihood bernoulli or --binarize none.")
        if self.binarize != "none" and self.dequantize:
            raise ConfigError("choose either --binarize (binary data) or --dequantize (grey levels), not both.")
        if self.dequantize < 0 or self.dequantize == 1:
            raise ConfigError(f"--dequantize takes the number of grey levels (e.g. 256 for 8-bit images) or 0 = off; "
                              f"got {self.dequantize}.")
        if self.learn_sigma and self.likelihood != "gaussian":
            raise ConfigError("a learned sigma belongs to the gaussian likelihood; add --likelihood gaussian.")
        if self.sigma <= 0:
            raise ConfigError(f"the Gaussian likelihood's sigma must be > 0, got {self.sigma}.")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}.")
        if self.free_bits < 0:
            raise ConfigError(f"free bits must be >= 0 nats, got {self.free_bits}.")
        if self.k < 1:
            raise ConfigError(f"the number of importance samples k must be >= 1, got {self.k}.")
        if self.n_classes < 0:
            raise ConfigError(f"n_classes must be >= 0, got {self.n_classes}.")

    @property
    def n_pixels(self) -> int:
        c, h, w = self.input_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, d)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: one protocol for the whole family."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0        # AdamW's decoupled weight decay
    grad_clip: float = 0.0           # max global gradient norm; 0 = no clipping
    seed: int = 0                    # fixes init, shuffling, reparameterisation noise and corruptions
    device: str = "auto"             # "auto" = cuda when available, else cpu
    patience: int = 0                # early stopping: epochs without val improvement; 0 = off
    kl_schedule: str = "constant"    # KL weight schedule (train.kl_weight): "constant" | "linear" | "sigmoid" (0 -> 1
                                     # over kl_warmup_steps) | "cyclical" (Fu et al. 2019: that ramp, then 1, repeated)
    kl_warmup_steps: int = 0         # steps of the 0 -> 1 ramp
    kl_cycle_steps: int = 0          # cyclical only: period in steps; 0 = 2 * kl_warmup_steps (Fu et al.'s R = 0.5)
    log_every: int = 25              # steps between progress-bar updates and NaN checks (each one syncs the device)
    compile: bool = False            # torch.compile the objective (pays on GPU / long runs; see benchmarks/README.md)
    precision: str = "fp32"          # "fp32" | "bf16" (autocast; for GPUs with bf16 tensor cores)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}.")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr}.")
        if (self.weight_decay < 0 or self.grad_clip < 0 or self.patience < 0 or self.kl_warmup_steps < 0
                or self.kl_cycle_steps < 0):
            raise ConfigError("weight decay, gradient clip, patience, warm-up and cycle steps must be >= 0.")
        if self.kl_schedule not in KL_SCHEDULES:
            raise ConfigError(f"unknown KL schedule {self.kl_schedule!r}; choose one of {', '.join(KL_SCHEDULES)}.")
        if self.kl_schedule != "constant" and self.kl_warmup_steps == 0:
            raise ConfigError(f"the {self.kl_schedule} KL schedule needs its ramp length: add --kl-warmup-steps N "
                              "(optimiser steps), or use --kl-schedule constant.")
        if self.kl_schedule == "cyclical" and self.kl_cycle_steps and self.kl_cycle_steps < self.kl_warmup_steps:
            raise ConfigError(f"a KL cycle ({self.kl_cycle_steps} steps) cannot be shorter than its ramp "
                              f"({self.kl_warmup_steps} steps).")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}.")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"unknown precision {self.precision!r}; choose fp32 or bf16.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, d)


def check_prior(prior: str, n_components: int) -> None:
    """The prior options, one clear message each (shared by the image and the sequence model configs)."""
    if prior not in PRIORS:
        raise ConfigError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}.")
    if prior in ("mog", "vamp") and n_components < 1:
        raise ConfigError(f"the {prior} prior needs at least one component (--prior-components N, N >= 1), "
                          f"got {n_components}.")


def _check_types(cfg: Any) -> None:
    """Each field has its default's type (ints integral, floats finite, tuples of ints): a config from an edited
    JSON file or a Python caller fails here with a message, not later inside torch. Normalises numbers in place."""
    for f in dataclasses.fields(cfg):
        v, default = getattr(cfg, f.name), f.default
        if isinstance(default, bool):
            ok, kind = isinstance(v, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(v, numbers.Integral) and not isinstance(v, bool), "an integer"
            v = int(v) if ok else v
        elif isinstance(default, float):
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            kind, v = "a finite number", (float(v) if ok else v)
        elif isinstance(default, str):
            ok, kind = isinstance(v, str), "a string"
        elif isinstance(default, tuple):
            ok = (isinstance(v, (list, tuple))
                  and all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in v))
            kind = "a list of integers"
        else:
            continue
        if not ok:
            raise ConfigError(f"{type(cfg).__name__}: {f.name} must be {kind}, got {v!r}.")
        object.__setattr__(cfg, f.name, v)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(d).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has unknown fields {unknown}; it was written by another version of vaelab "
                          "or edited by hand.")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"invalid {cls.__name__}: {e}") from None


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256) with a clear error for anything else."""
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers like 512,256; got {text!r}.") from None
    if not vals or min(vals) < 1:
        raise ConfigError(f"{what} must be positive integers like 512,256; got {text!r}.")
    return vals
