"""Configuration: frozen dataclasses, the one source of every option; serialised to JSON by name.

    DataSpec       which data, which split                    (--dataset, --classes, --split-seed, ...)
    ModelConfig    what a model is: enough to rebuild it from config.json
    TrainConfig    how it is trained: one protocol for the whole family
    EvalConfig     how it is measured (samples, importance samples, samplers)
    SampleConfig   `vaelab sample`
    CompareConfig  one comparison: it HOLDS a DataSpec, a ModelConfig (the shared architecture), a
                   TrainConfig and an EvalConfig, plus what only a comparison has (models, seeds, threads)

Each field carries its command-line option in its metadata (``opt``: help text, option name, range,
choices); ``vaelab.options`` turns the fields into argparse options for every command, and each
config checks its ranges in ``__post_init__``, so a Python caller and the CLI get the same message.
Overrides use ``dataclasses.replace``; nothing mutates a config.

Why a small generator over argparse and not tyro or jsonargparse (both build CLIs from nested
dataclasses and install from PyPI): importing them costs 155 ms (tyro 1.0.16) and 163 ms
(jsonargparse 4.53.0) against 3 ms for argparse (``python -X importtime -c "import tyro"`` on this
machine), a third of the 0.5 s the CLI may take for ``--help``; both name nested fields by their path
(``--model.n-latent``), while the README and docs use flat names (``--latent-dim``) that must keep
working; and neither gives the one-line error (exit 2) that every vaelab command prints. The generator
(``vaelab/options.py``) is about 150 lines.

Size defaults: a comparison leaves some fields to the image size (``SIZE_DEFAULTS``, the one table)
and some to the model name (``vaelab.models.MODEL_DEFAULTS``: beta-vae's beta, iwae's k). Which ones
are still open is ``CompareConfig.auto``; in JSON an open field is written as null.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Any

from vaelab.errors import ConfigError, OutputError
from vaelab.molecules import defaults as MD

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian")
BINARIZE = ("none", "dynamic", "static")
KL_SCHEDULES = ("constant", "linear", "cyclical", "sigmoid")
BACKBONES = ("mlp", "conv")
PRIORS = ("gaussian", "uniform", "laplace", "mog", "vamp")   # vaelab.models.priors
BACKWARDS = ("auto", "autograd")
PRECISIONS = ("fp32", "bf16")
ON_NAN = ("stop", "retry")
SAMPLERS = ("prior", "gmm", "gaussian-fit", "uniform-cdf", "uniform-box")   # vaelab.density.SAMPLERS
DEFAULT_SAMPLERS = ("prior", "gmm")
PRIOR_SWAP_SAMPLERS = SAMPLERS        # decoded by the Gaussian-prior VAE of `compare --priors` (the prior swap)
SAMPLER_HELP = ("prior (z ~ the model's prior, N(0, I) by default), gmm (a 10-component Gaussian mixture fitted to the "
                "training codes: ex-post density, Ghosh et al. 2020), gaussian-fit (one full-covariance Gaussian "
                "fitted to them), uniform-cdf (uniform noise through the normal's inverse CDF: N(0, I) again), "
                "uniform-box (U(-sqrt 3, sqrt 3)^d: the prior's moments, a uniform's shape)")
MODEL_NAMES = ("ae", "dae", "vae", "beta-vae", "cvae", "iwae", "rae")   # == tuple(vaelab.models.MODELS) (tested)
DEFAULT_MODELS = MODEL_NAMES
STOCHASTIC_MODELS = ("vae", "beta-vae", "cvae", "iwae")   # the VAE family: a posterior and a prior (tested)


def split_model_name(name: str) -> tuple[str, str | None]:
    """"vae-uniform" -> ("vae", "uniform") (a model of a --priors comparison); "beta-vae" -> ("beta-vae", None)."""
    for p in PRIORS:
        if name.endswith(f"-{p}") and name[: -len(p) - 1] in STOCHASTIC_MODELS:
            return name[: -len(p) - 1], p
    return name, None

# Upper bounds: no option passes an absurd number down to torch or numpy. Finer memory checks (a budget
# from the machine's memory) are the data layer's; these only refuse what cannot be meant.
MAX_SEED = 2**63 - 1          # torch.manual_seed takes a signed 64-bit integer, numpy's SeedSequence more
MAX_WIDTH = 65_536            # hidden layer width / conv channels
MAX_LATENT = 4096
MAX_LAYERS = 64
MAX_COUNT = 10**9             # epochs, steps, images: anything counted


def opt(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
        aliases: tuple[str, ...] = (), lo: float | None = None, hi: float | None = None, lo_open: bool = False,
        hi_open: bool = False, choices: tuple[str, ...] | None = None, cli: bool = True,
        metavar: str | None = None, max_len: int | None = None) -> Any:
    """A dataclass field with its command-line option: help text, option name (default --field-name), range.

    ``lo``/``hi`` bound the value (each element of a tuple), inclusive unless ``lo_open``/``hi_open``;
    ``cli=False`` keeps a field off the command line (it is derived, e.g. the input shape from the data).
    """
    md = {"help": help, "flag": flag, "aliases": aliases, "lo": lo, "hi": hi, "lo_open": lo_open,
          "hi_open": hi_open, "choices": choices, "cli": cli, "metavar": metavar, "max_len": max_len}
    return field(default=default, metadata=md)


def flag_of(f: dataclasses.Field) -> str:
    """The command-line name of a config field: its metadata's ``flag`` or --field-name."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


@dataclass(frozen=True)
class DataSpec:
    """Which data and which split. ``load_kwargs()`` are the arguments of ``vaelab.load_dataset``."""

    dataset: str = opt("digits", "digits (embedded), fashion-mnist, idx:FOLDER (MNIST-format IDX files, "
                                 "gz or raw), npz:FILE (array x of (N,H,W) or (N,C,H,W) images, or (N,D) feature "
                                 "vectors; optional y labels), folder:PATH (image files, one sub-folder per class) or "
                                 "csv:FILE (a table of numeric features with a header row)")
    data_dir: str | None = opt(None, "folder with the Fashion-MNIST IDX files (default "
                                     "/usr/share/datasets/fashion-mnist, from the Debian package dataset-fashion-mnist)")
    classes: tuple[int, ...] | None = opt(None, "keep only these labels, e.g. 3,5 (relabelled 0..k-1 in this order)",
                                          lo=0, hi=MAX_COUNT, max_len=100_000)
    max_train: int | None = opt(None, "keep a seeded subset of this many training images", lo=1, hi=MAX_COUNT)
    val_fraction: float = opt(0.1, "fraction of the training split held out for validation", lo=0, hi=1, hi_open=True)
    split_seed: int = opt(0, "seed of the train/val/test split; fixed apart from --seed so runs share one test set",
                          lo=0, hi=MAX_SEED)
    image_size: int | None = opt(None, "folder: only: make every image S x S (aspect kept by a centre crop, then a "
                                       "Lanczos resize)", lo=1, hi=4096, metavar="S")
    image_channels: int | None = opt(None, "folder: only: 1 (grey) or 3 (RGB); default grey when every image is grey, "
                                           "else RGB", lo=1, hi=3)
    skip_unreadable: bool = opt(False, "folder: only: skip damaged or non-image files (listed in the data's source) "
                                       "instead of refusing them")
    label_column: str | None = opt(None, "csv: only: the column holding the class labels (numbers or names); every "
                                         "other column is a numeric feature", metavar="NAME")

    def __post_init__(self) -> None:
        _check_types(self)
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ConfigError(f"--classes needs at least two distinct labels, e.g. 3,5; got "
                                  f"{','.join(map(str, self.classes))}.")
        if self.image_channels not in (None, 1, 3):
            raise ConfigError(f"--image-channels is 1 (grey) or 3 (RGB), got {self.image_channels}.")
        if self.max_train is not None and self.max_train < 1:
            raise ConfigError(f"max_train must be a positive integer (or None for all images), got {self.max_train}.")
        _check_ranges(self)

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``vaelab.data.load_dataset(spec.dataset, **kwargs)``."""
        return {"data_dir": self.data_dir, "seed": self.split_seed, "val_fraction": self.val_fraction,
                "classes": list(self.classes) if self.classes else None, "max_train": self.max_train,
                **self.image_options(), "label_column": self.label_column}

    def image_options(self) -> dict[str, Any]:
        """The folder: options (vaelab.data.folder)."""
        return {"image_size": self.image_size, "image_channels": self.image_channels,
                "skip_unreadable": self.skip_unreadable}

    def meta(self) -> dict[str, Any]:
        """How to reload exactly this data later (config.json's "data" block: `sample --sampler gmm`, `evaluate`)."""
        return {"spec": self.dataset, "data_dir": self.data_dir, "split_seed": self.split_seed,
                "val_fraction": self.val_fraction, "classes": list(self.classes) if self.classes else None,
                "max_train": self.max_train, **{k: v for k, v in self.image_options().items() if v},
                **({"label_column": self.label_column} if self.label_column else {})}

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return dataclass_from_dict(cls, d)


@dataclass(frozen=True)
class ModelConfig:
    """What a model is. Everything needed to rebuild its modules from JSON."""

    model: str = opt("vae", cli=False)               # a key of vaelab.models.MODELS
    input_shape: tuple[int, int, int] = opt((1, 8, 8), cli=False)   # (C, H, W) of the data it was built for
    n_latent: int = opt(16, "size of the latent code z", flag="--latent-dim", lo=1, hi=MAX_LATENT)
    backbone: str = opt("mlp", "encoder/decoder architecture shared by every model", choices=BACKBONES)
    hidden: tuple[int, ...] = opt((512, 256), "MLP hidden widths, comma-separated; conv uses the last as its dense "
                                              "layer", lo=1, hi=MAX_WIDTH, max_len=MAX_LAYERS)
    channels: tuple[int, ...] = opt((32, 64), "conv only: channels per stride-2 stage", lo=1, hi=MAX_WIDTH,
                                    max_len=MAX_LAYERS)
    likelihood: str = opt("bernoulli", "p(x|z): bernoulli (a likelihood on binary pixels: add --binarize; on grey "
                          "pixels its loss is a cross-entropy, not a likelihood), continuous-bernoulli (a density on "
                          "[0,1], with its normaliser) or gaussian with --sigma (fixed or --learn-sigma). Densities are "
                          "likelihoods of the 8-bit data only with --dequantize 256", choices=LIKELIHOODS)
    sigma: float = opt(0.1, "gaussian likelihood: std in pixel units, fixed, or the initial value with --learn-sigma",
                       lo=0, lo_open=True, hi=1e3)
    learn_sigma: bool = opt(False, "gaussian likelihood: learn a per-pixel std (initialised at --sigma)")
    # The data as modelled (vaelab.preprocess); part of what the model *is*, so the checkpoint records it.
    binarize: str = opt("none", "model binary pixels with the bernoulli likelihood: dynamic = a fresh Bernoulli draw "
                        "of the grey levels each epoch, static = one fixed seeded draw; validation/test are always one "
                        "fixed draw, the same for every model", choices=BINARIZE)
    dequantize: int = opt(0, "model dequantised pixels (v + U(0,1)) / LEVELS (256 for 8-bit images, 17 for digits), "
                          "so a gaussian or continuous-bernoulli density gives a true NLL of the discrete data; 0 = off",
                          lo=0, hi=65_536, metavar="LEVELS")
    beta: float = opt(1.0, "weight of the KL term (1 is the ELBO; beta-vae defaults to 4). A plain weight: no "
                      "dataset-size factor", lo=0)
    free_bits: float = opt(0.0, "free bits: per-dimension KL floor in nats (Kingma et al. 2016), the batch-mean KL of "
                           "each latent unit counts at least this much, so nothing is gained by collapsing it; 0 = off",
                           lo=0)
    k: int = opt(1, "iwae: importance samples in the training bound (iwae defaults to 5)", lo=1, hi=100_000)
    n_classes: int = opt(0, cli=False)               # > 0 for label-conditioned models (cvae), from the data
    corruption: str = opt("gaussian:0.3", "dae: training noise, gaussian:SIGMA, salt-and-pepper:P or masking:FRACTION")
    rae_gamma: float = opt(1.0, "rae: weight of 0.5*||z||^2 (Ghosh et al. 2020, eq. 11)", lo=0)
    rae_lambda: float = opt(1e-4, "rae: weight of the decoder's squared L2 norm", lo=0)
    prior: str = opt("gaussian", "p(z) of the VAE family (vaelab.models.priors): gaussian N(0, I), uniform U(0,1)^d "
                     "(a Kumaraswamy posterior), laplace, mog (a learned Gaussian mixture) or vamp (Tomczak & Welling "
                     "2018). In a comparison it applies to the VAE family; the AEs have none", choices=PRIORS)
    prior_components: int = opt(10, "mog: mixture components; vamp: pseudo-inputs", lo=1, hi=100_000)

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
        _check_ranges(self)

    @property
    def n_pixels(self) -> int:
        c, h, w = self.input_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return dataclass_from_dict(cls, d)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: one protocol for the whole family."""

    epochs: int = opt(20, "training epochs", lo=1, hi=MAX_COUNT)
    batch_size: int = opt(128, "minibatch size", lo=1, hi=2**24)
    lr: float = opt(1e-3, "AdamW learning rate", lo=0, lo_open=True, hi=10)
    weight_decay: float = opt(0.0, "AdamW decoupled weight decay", lo=0)
    grad_clip: float = opt(0.0, "clip the global gradient norm to this; 0 = off", lo=0)
    seed: int = opt(0, "seed of initialisation, shuffling, reparameterisation noise and corruptions", lo=0, hi=MAX_SEED)
    device: str = opt("auto", "auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    patience: int = opt(0, "early stopping: stop after this many epochs without validation improvement; 0 = off",
                        lo=0, hi=MAX_COUNT)
    kl_schedule: str = opt("constant", "KL weight schedule (multiplies beta; vaelab.schedules.kl_weight): constant; "
                           "linear or sigmoid warm-up from 0 to 1 over --kl-warmup-steps; cyclical (Fu et al. 2019): "
                           "that linear ramp then 1, repeated every --kl-cycle-steps", choices=KL_SCHEDULES)
    kl_warmup_steps: int = opt(0, "optimiser steps of the KL ramp", lo=0, hi=MAX_COUNT)
    kl_cycle_steps: int = opt(0, "cyclical schedule: period in optimiser steps; 0 = 2 x --kl-warmup-steps (Fu et al.'s "
                              "R = 0.5)", lo=0, hi=MAX_COUNT)
    log_every: int = opt(25, "steps between progress-bar updates and NaN checks (each one syncs the device)",
                         lo=1, hi=MAX_COUNT)
    compile: bool = opt(False, "torch.compile the training objective: ~1.2x per step on a CPU after a compile of "
                               "minutes, so it pays only for long runs (see benchmarks/README.md)")
    precision: str = opt("fp32", "fp32, or bf16 autocast for GPUs with bf16 units", choices=PRECISIONS)
    backward: str = opt("auto", "auto: the hand-derived training step (vaelab.models.fused) where it applies: mlp "
                        "ae, dae, rae, vae, beta-vae, iwae with the Bernoulli likelihood and the Gaussian prior, fp32, "
                        "one process, not compiled; the same gradients to float rounding, 1.05-1.3x faster per step "
                        "on a CPU (benchmarks/README.md). Elsewhere, and with autograd: torch's autograd",
                        choices=BACKWARDS)
    on_nan: str = opt("stop", "when a loss term or the gradient becomes NaN/inf: stop (keep the last good checkpoint, "
                              "exit 3) or retry from the last good checkpoint with half the learning rate",
                      choices=ON_NAN)
    max_retries: int = opt(2, "--on-nan retry: give up after this many retries", lo=0, hi=100)

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
        if self.kl_cycle_steps and self.kl_schedule != "cyclical":
            raise ConfigError(f"--kl-cycle-steps is the period of the cyclical schedule; add --kl-schedule cyclical "
                              f"(now {self.kl_schedule}) or drop it.")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}.")
        if self.backward not in BACKWARDS:
            raise ConfigError(f"unknown --backward value {self.backward!r}; choose auto or autograd.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose fp32 or bf16.")
        if self.on_nan not in ON_NAN:
            raise ConfigError(f"unknown --on-nan value {self.on_nan!r}; choose stop or retry.")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be an integer >= 0, got {self.max_retries}.")
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return dataclass_from_dict(cls, d)


@dataclass(frozen=True)
class EvalConfig:
    """How a trained model is measured (DESIGN.md "Metric definitions")."""

    n_samples: int = opt(10_000, "generated images per model and sampler for FD / precision / recall",
                         lo=10, hi=10_000_000)
    iw_k: int = opt(100, "importance samples K per test image for the IW-NLL bound (models with a posterior)",
                    flag="--iw-k", aliases=("--iw-samples",), lo=1, hi=1_000_000)
    n_interp_pairs: int = opt(1000, "random pairs of test codes whose decoded midpoints are scored (FD)",
                              lo=1, hi=10_000_000)
    samplers: tuple[str, ...] = opt(DEFAULT_SAMPLERS, "comma-separated samplers to score: " + SAMPLER_HELP,
                                    choices=SAMPLERS)

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "samplers", tuple(self.samplers))
        if not self.samplers or len(set(self.samplers)) != len(self.samplers):
            raise ConfigError(f"--samplers needs distinct samplers from {', '.join(SAMPLERS)}; got "
                              f"{','.join(self.samplers) or 'none'}.")
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalConfig:
        return dataclass_from_dict(cls, d)


@dataclass(frozen=True)
class SampleConfig:
    """`vaelab sample`: which samples to decode from a trained model."""

    n: int = opt(64, "number of samples (a .npy --out streams any number in blocks)", lo=1, hi=MAX_COUNT)
    sampler: str = opt("prior", SAMPLER_HELP, metavar="SAMPLER")
    label: int | None = opt(None, "cvae: decode every sample with this label (default: cycle through the classes)",
                            lo=0, hi=MAX_COUNT)
    seed: int = opt(0, "sampling seed", lo=0, hi=MAX_SEED)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}.")
        _check_ranges(self)


SCORE_NAMES = ("recon_error", "gmm_nll", "neg_elbo", "iw_nll", "posterior_spread", "complexity_corrected")
SCORE_SPLITS = ("all", "train", "val", "test")


@dataclass(frozen=True)
class ScoreConfig:
    """`vaelab score`: per-image anomaly scores of new data (vaelab.score)."""

    split: str = opt("all", "which part of the dataset's seeded split to score: all (train, val, test in turn), train, "
                            "val or test", choices=SCORE_SPLITS)
    fpr: float = opt(0.05, "false-positive rate on each model's validation split that sets its threshold",
                     lo=0, lo_open=True, hi=1, hi_open=True)
    score: str = opt("recon_error", "the score whose threshold gives the 'anomaly' column (recon_error: every model "
                                    "has it)", choices=SCORE_NAMES)
    k: int = opt(32, "importance samples per image for neg_elbo / iw_nll", lo=1, hi=100_000)
    seed: int = opt(0, "seeds the importance samples and the GMM fit", lo=0, hi=MAX_SEED)

    def __post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self)


@dataclass(frozen=True)
class SweepConfig:
    """`vaelab sweep`: the KL weights of the beta-VAEs (Alemi et al. 2018) and whether the AE floor is trained."""

    betas: tuple[float, ...] = opt((0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0), "KL weights of the beta-VAEs to train, "
                                   "comma-separated", flag="--beta", lo=0, lo_open=True, hi=1e6, max_len=1000)
    include_ae: bool = opt(True, "skip the deterministic AE (the zero-noise end of the plot)", flag="--no-ae")

    def __post_init__(self) -> None:
        _check_types(self)
        if not self.betas or len(set(self.betas)) != len(self.betas):
            raise ConfigError(f"--beta needs distinct positive values like 0.1,0.5,1,4; got "
                              f"{','.join(f'{b:g}' for b in self.betas) or 'none'}.")
        _check_ranges(self)
        object.__setattr__(self, "betas", tuple(sorted(self.betas)))


EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorConfig:
    """Where the independent units of a comparison (one model, one seed) run (vaelab.executor).

    None of these can change a number: a unit is seeded by its own (model, seed) and results are
    assembled by name, so ``--resume`` may change them.
    """

    n_workers: int = opt(0, "units (one model for one seed) trained and evaluated at once in worker processes; 1 = "
                            "one after the other in this process; 0 = auto: one per core, capped by memory, when each "
                            "unit trains on at least 1M elements (images x epochs x pixels) so that a worker's start "
                            "pays, else 1. The numbers do not depend on it", flag="--workers", lo=0, hi=4096)
    executor: str = opt("local", "local (this machine: --workers processes) or ray (each unit a Ray task on the "
                                 "cluster of --ray-address; pip install 'vaelab[cluster]'; docs/distributed.md)",
                        choices=EXECUTORS)
    ray_address: str = opt("auto", "--executor ray: the cluster to join, auto (RAY_ADDRESS or the local cluster) or "
                                   "HOST:PORT", metavar="ADDRESS")
    ray_shared_dir: str | None = opt(None, "--executor ray: a folder every node reads and writes (e.g. NFS); units "
                                           "write their model folders there and the driver copies them into --out. "
                                           "Default: the files travel back with each task's result", metavar="DIR")

    def __post_init__(self) -> None:
        _check_types(self)
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown --executor {self.executor!r}; choose from {', '.join(EXECUTORS)}.")
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecutorConfig:
        return dataclass_from_dict(cls, d)


# what --resume may change, because it cannot change a result (besides --quiet, which is not recorded)
EXECUTOR_RESUME_FREE = {f"executor.{f.name}": "where and how many units run at once cannot change a result"
                        for f in dataclasses.fields(ExecutorConfig)}


# what the workers of an image comparison import: its units (vaelab.compare.run_image_unit: scikit-learn and scipy
# alone 2.7 CPU-s) and its figures (vaelab.report.figures, matplotlib 1.4 s). The fork server imports them once for
# every worker (vaelab.executor.worker_context); `vaelab compare` starts it before the driver imports torch. A name
# here, not in vaelab.compare, so that the CLI can read it without that import
COMPARE_PRELOAD = ("vaelab.compare", "vaelab.evaluate", "vaelab.train", "vaelab.metrics", "sklearn.datasets",
                   "sklearn.mixture", "sklearn.neighbors", "scipy.stats", "vaelab.report.figures", "matplotlib.pyplot")


MOLECULE_MODELS = ("ae", "dae", "vae", "beta-vae", "iwae", "rae")
TOKENIZERS = ("selfies", "smiles")
MOLECULE_PROPERTIES = ("qed", "logp", "sa", "mw", "penalized-logp")   # vaelab.molecules.properties.PROPERTIES
DESIGN_PROPERTIES = ("qed", "logp", "penalized-logp")                  # what design raises (vaelab.molecules.design)
DESIGN_METHODS = ("gradient", "bo")


@dataclass(frozen=True)
class MoleculeCompareConfig:
    """One protocol for every model of a molecule comparison (`vaelab compare --dataset moses`).

    In ``subset``, ``n_test`` and ``n_ref`` None means all; on the command line that is 0.
    """

    dataset: str = opt("moses", "moses (PyPI molsets 0.3.1 data) or smiles:FILE (.smi/.csv)")
    subset: int | None = opt(MD.SUBSET, "molecules sampled from (length-limited) MOSES train for train+val (sized for "
                                        "~15 min on 2 CPU cores); 0 = all of them (1.58M without --max-smiles-len: "
                                        "a GPU job)", lo=0, hi=MAX_COUNT)
    n_test: int | None = opt(MD.N_TEST, "MOSES test molecules for reconstruction, probe and smoothness; 0 = all",
                             lo=0, hi=MAX_COUNT)
    n_ref: int | None = opt(10000, "MOSES test molecules (a seeded sample) the MOSES metrics (FCD, SNN, Frag, Scaf) "
                                   "compare against; 0 = the whole test split (176,074: ChemNet over it took 24 min on "
                                   "one core here, once). Statistics are computed by vaelab and cached in "
                                   "$VAELAB_CACHE/moses-ref/ (default ~/.cache/vaelab)", lo=0, hi=MAX_COUNT)
    tokenizer: str = opt("selfies", "selfies (every token string decodes to a molecule) or smiles (validity can "
                                    "fail)", choices=TOKENIZERS)
    models: tuple[str, ...] = opt(("ae", "vae"), "comma-separated molecule models", choices=MOLECULE_MODELS)
    epochs: int = opt(MD.EPOCHS, "training epochs", lo=1, hi=MAX_COUNT)
    batch_size: int = opt(MD.BATCH_SIZE, "minibatch size", lo=1, hi=2**24)
    lr: float = opt(MD.LR, "AdamW learning rate", lo=0, lo_open=True, hi=10)
    latent_dim: int = opt(MD.LATENT_DIM, "latent size", lo=1, hi=MAX_LATENT)
    hidden: int = opt(MD.HIDDEN, "GRU width", lo=1, hi=MAX_WIDTH)
    embed_dim: int = opt(MD.EMBED_DIM, "token embedding width", lo=1, hi=MAX_WIDTH)
    beta: float | None = opt(None, "KL weight (default 1; 4 for beta-vae)", lo=0)
    free_bits: float = opt(MD.FREE_BITS, "VAEs: per-dimension KL floor in nats; 0 = off", lo=0)
    kl_warmup_fraction: float = opt(MD.KL_WARMUP_FRACTION, "share of all steps over which the KL weight rises "
                                    "linearly from 0", lo=0, hi=1)
    max_smiles_len: int | None = opt(MD.MAX_SMILES_LEN, "MOSES: keep only molecules whose SMILES has at most this many "
                                     "characters, in every split and the reference (short molecules learn far faster, "
                                     "docs/molecules.md); 0 = no limit", lo=0, hi=100_000)
    properties: tuple[str, ...] = opt(MD.PROPERTIES, "the joint property head on z: properties it predicts "
                                      "(Gomez-Bombarelli et al. 2018)", choices=MOLECULE_PROPERTIES)
    property_weight: float = opt(MD.PROPERTY_WEIGHT, "weight of the property head's squared error in the loss; "
                                 "0 = no property head", lo=0)
    recon_history_n: int = opt(MD.RECON_HISTORY_N, "validation molecules whose token accuracy and exact "
                               "reconstruction are recorded per epoch; 0 = none", lo=0, hi=MAX_COUNT)
    design_property: str = opt(MD.DESIGN_PROPERTY, "the Design section raises this property",
                               choices=DESIGN_PROPERTIES)
    design_starts: int = opt(MD.DESIGN_STARTS, "test molecules each model designs from; 0 = no Design section",
                             lo=0, hi=10_000)
    design_steps: int = opt(MD.DESIGN_STEPS, "design steps (decoded candidates) per start molecule and method",
                            lo=1, hi=10_000)
    n_samples: int = opt(MD.N_SAMPLES, "generated molecules per model and sampler (prior, gmm) for the MOSES metrics "
                               "(MOSES uses 30000)", lo=1, hi=10_000_000)
    temperature: float = opt(1.0, "decoder sampling temperature for generated molecules (1 as MOSES; 0 = greedy)",
                             lo=0, hi=100)
    sigmas: tuple[float, ...] = opt((0.1, 0.5, 1.0), "smoothness: noise scales around test codes", lo=0,
                                    max_len=100)
    n_smooth: int = opt(20, "smoothness: test molecules whose neighbourhoods are decoded", lo=0, hi=100_000)
    n_neighbours: int = opt(20, "smoothness: decodes per molecule and sigma", lo=1, hi=100_000)
    seed: int = opt(0, "seed of data subset, splits, training and sampling", lo=0, hi=MAX_SEED)
    device: str = opt("auto", "auto (CUDA when available), cpu, cuda or cuda:N")
    n_seeds: int = opt(1, "repeat every model with this many seeds (--seed, --seed+1, ...): mean and sd of every "
                          "number", flag="--seeds", lo=1, hi=10_000)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.executor, ExecutorConfig):
            raise ConfigError(f"MoleculeCompareConfig.executor must be an ExecutorConfig, got {self.executor!r}.")
        _check_types(self)
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "sigmas", tuple(self.sigmas))
        if not self.models:
            raise ConfigError("--models needs at least one model, e.g. ae,vae.")
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoleculeCompareConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"MoleculeCompareConfig must be a JSON object, got {type(d).__name__}.")
        d = dict(d)
        ex = ExecutorConfig.from_dict(d.pop("executor", None) or {})
        return dataclass_from_dict(cls, {**d, "executor": ex})


@dataclass(frozen=True)
class DesignConfig:
    """`vaelab design RUN`: property-guided search in the latent spaces of a molecule run's models."""

    prop: str = opt(MD.DESIGN_PROPERTY, "the property to raise", flag="--property", choices=DESIGN_PROPERTIES)
    start: str | None = opt(None, "the start molecule (default: the run's first --from-test test molecules)",
                            flag="--from", metavar="SMILES")
    from_test: int | None = opt(None, "start from each of the run's first N test molecules (default 1)", lo=1,
                                hi=10_000)
    steps: int = opt(MD.DESIGN_STEPS, "design steps (decoded candidates) per start molecule and method", lo=1,
                     hi=10_000)
    methods: tuple[str, ...] = opt(DESIGN_METHODS, "search methods, comma-separated: gradient (ascent on the property "
                                   "head's prediction) and bo (Bayesian optimisation in z)", flag="--method",
                                   choices=DESIGN_METHODS)
    models: tuple[str, ...] | None = opt(None, "models of the run, comma-separated (default: every trained one)")
    seed: int = opt(0, "seed of BO's random candidates", lo=0, hi=MAX_SEED)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.start is not None and self.from_test is not None:
            raise ConfigError("--from and --from-test exclude each other: give a start molecule or a number of the "
                              "run's test molecules.")
        if not self.methods:
            raise ConfigError(f"--method needs at least one of {', '.join(DESIGN_METHODS)}.")
        _check_ranges(self)


# The one table of size defaults: images with at most SMALL_PIXELS pixels (the embedded 8x8 digits) are "small".
SMALL_PIXELS = 256
SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    # train.* and model.*: the shared training protocol; eval.*: the size of the evaluation
    "small": {"train.epochs": 60, "train.batch_size": 64, "model.hidden": (256, 128), "model.n_latent": 8,
              "eval.n_samples": 2000, "eval.iw_k": 200, "eval.n_interp_pairs": 500},
    "large": {"train.epochs": 20, "train.batch_size": 128, "model.hidden": (512, 256), "model.n_latent": 16,
              "eval.n_samples": 10_000, "eval.iw_k": 100, "eval.n_interp_pairs": 1000},
}
NAME_DEFAULTED = ("model.beta", "model.k", "model.free_bits")   # vaelab.models.MODEL_DEFAULTS: beta-vae's beta and
                                                                 # free bits, iwae's k
DATA_DEFAULTED = ("model.likelihood", "model.learn_sigma", "model.channels")   # data_defaults: by the data's shape
AUTO = tuple(SIZE_DEFAULTS["small"]) + NAME_DEFAULTED + DATA_DEFAULTED
CONV_AUTO_MIN_SIDE = 32        # images at least this large get conv_channels (two stages would leave >= 8x8)


def is_vector_shape(shape: Any) -> bool:
    """Whether a (C, H, W) shape holds feature vectors (1, 1, D) (tables: csv:FILE, a 2-D npz x), not images,
    which are at least 2x2: vectors travel through the one pipeline as (N, 1, 1, D)."""
    shape = tuple(shape)
    return len(shape) == 3 and int(shape[0]) == 1 and int(shape[1]) == 1


@dataclass(frozen=True)
class Words:
    """What reports and messages call a domain's examples and their parts: images of pixels, or rows of features."""

    one: str             # "image" | "row"
    many: str            # "images" | "rows"
    parts: str           # "pixels" | "features"
    is_vectors: bool


def words(domain: str | None) -> Words:
    """The Words of a domain: ``Dataset.domain`` or metrics.json's dataset "domain" ("vectors" for a table)."""
    if domain == "vectors":
        return Words("row", "rows", "features", True)
    return Words("image", "images", "pixels", False)


def shape_words(shape: Any) -> Words:
    """The Words of data of one example's (C, H, W) shape (``is_vector_shape``: a table's rows)."""
    return words("vectors" if is_vector_shape(shape) else "images")


def conv_channels(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Channels of stride-2 conv stages that take (C, H, W) images down to at most 4x4, doubling from 32 (max 256).

    64x64x3 (CelebA-style) -> (32, 64, 128, 256): 64 -> 32 -> 16 -> 8 -> 4, so the dense layer sees
    256 x 4 x 4 = 4,096 features instead of the 16,384 of two stages; 28x28 -> (32, 64, 128); 8x8 -> (32,).
    """
    _, h, w = (int(v) for v in input_shape)
    n, side = 0, min(h, w)
    while side > 4:
        side, n = (side + 1) // 2, n + 1
    return tuple(min(32 * 2 ** i, 256) for i in range(max(n, 1)))


def data_defaults(shape: tuple[int, ...], backbone: str, given: Any = (), likelihood: str | None = None
                  ) -> dict[str, Any]:
    """The ModelConfig fields the data's shape decides, for the names not in ``given`` (the user's choices):

    - feature vectors (1, 1, D): ``likelihood="gaussian"`` and, with the Gaussian and no ``sigma`` given,
      ``learn_sigma=True`` (a learned sigma per feature; the Bernoulli family is a distribution on [0, 1] and
      standardised features are unbounded: a Bernoulli the user asks for is refused later, not replaced);
    - the conv backbone on images of at least 32x32: ``channels=conv_channels(shape)`` (down to 4x4).
    ``likelihood``: the one in force when ``likelihood`` is given.
    """
    given = set(given)
    out: dict[str, Any] = {}
    if is_vector_shape(shape):
        chosen = likelihood if "likelihood" in given else "gaussian"
        out["likelihood"] = "gaussian"
        if chosen == "gaussian" and "sigma" not in given:
            out["learn_sigma"] = True
    elif backbone == "conv" and len(shape) == 3 and min(shape[1:]) >= CONV_AUTO_MIN_SIDE:
        out["channels"] = conv_channels(shape)
    return {k: v for k, v in out.items() if k not in given}


def size_class(shape: tuple[int, ...]) -> str:
    """"small" for images of at most SMALL_PIXELS pixels (C*H*W), else "large"."""
    return "small" if math.prod(shape) <= SMALL_PIXELS else "large"


@dataclass(frozen=True)
class CompareConfig:
    """One comparison: the data, the shared model architecture, the training and the evaluation protocol
    (held, not copied), and what only a comparison has.

    ``model`` is the architecture every model shares; its ``model``, ``input_shape`` and ``n_classes`` are
    set per model from the name and the data. In a comparison ``model.beta`` is beta-vae's KL weight (the
    vae, cvae and iwae keep beta = 1, so the comparison has a plain VAE). The fields named in ``auto``
    are not decided yet: ``resolved(shape)`` fills the size defaults, the model names fill beta and k.
    A field whose value differs from its class default is the caller's choice and leaves ``auto``;
    pass ``auto=()`` to use every value exactly as given.
    """

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    models: tuple[str, ...] = opt(DEFAULT_MODELS, "comma-separated models to compare", choices=MODEL_NAMES)
    n_seeds: int = opt(1, "repeat everything with this many seeds (--seed, --seed+1, ...) and report mean ± sd of "
                          "every number", flag="--seeds", lo=1, hi=10_000)
    n_threads: int = opt(0, "CPU threads for torch and BLAS; 0 = 1 for small images such as digits (tiny matmuls only "
                            "lose to thread hand-off), else torch's default. Use 1 on a machine shared with other "
                            "jobs", flag="--threads", lo=0, hi=4096)
    use_pair_2d: bool = opt(True, "skip the 2-D-latent AE/VAE pair (no manifold grid or holes map)", flag="--no-pair")
    priors: tuple[str, ...] | None = opt(None, "compare priors: every VAE-family model once per prior (named e.g. "
                                         "vae-uniform), the AEs once; with the default --models, the AE and the VAE",
                                         choices=PRIORS)
    inliers: tuple[int, ...] | None = opt(None, "train on these labels only, e.g. 0,1,2,3,4; the test images of the "
                                          "other classes are the anomalies of the report's test-time section "
                                          "(anomaly detection and uncertainty)", lo=0, hi=MAX_COUNT, max_len=100_000)
    ood_dataset: str | None = opt(None, "an outside data set for the test-time section (digits, fashion-mnist, "
                                        "idx:FOLDER, npz:FILE, folder:PATH, csv:FILE): its test split, resized to the "
                                        "training images' size (a table: the training columns, standardised with the "
                                        "training statistics), is detected as anomalies", metavar="SPEC")
    auto: tuple[str, ...] = opt(AUTO, cli=False)     # fields still open (see the class docstring)

    def __post_init__(self) -> None:
        for name, cls in (("data", DataSpec), ("model", ModelConfig), ("train", TrainConfig), ("eval", EvalConfig),
                          ("executor", ExecutorConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"CompareConfig.{name} must be a {cls.__name__}, got {getattr(self, name)!r}.")
        _check_types(self)
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise ConfigError("--models needs at least one model, e.g. ae,vae.")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"--models names a model twice: {','.join(self.models)}.")
        bad = sorted(set(self.auto) - set(AUTO))
        if bad:
            raise ConfigError(f"CompareConfig.auto names fields that have no automatic default: {', '.join(bad)}.")
        # a value the caller changed from its class default is theirs, not open
        object.__setattr__(self, "auto", tuple(a for a in AUTO if a in self.auto and self._is_default(a)))
        if self.n_threads < 0:
            raise ConfigError(f"--threads must be >= 0 (0 = automatic), got {self.n_threads}.")
        if self.priors is not None:
            object.__setattr__(self, "priors", tuple(self.priors))
            bad = [p for p in self.priors if p not in PRIORS]
            if bad or not self.priors or len(set(self.priors)) != len(self.priors):
                raise ConfigError(f"--priors takes distinct priors from {', '.join(PRIORS)}; got "
                                  f"{','.join(self.priors) or 'none'}.")
            if self.model.prior != "gaussian":
                raise ConfigError("--prior sets one prior for every model and --priors compares several; pass one.")
        if self.inliers is not None:
            object.__setattr__(self, "inliers", tuple(int(c) for c in self.inliers))
            if len(self.inliers) < 2 or len(set(self.inliers)) != len(self.inliers):
                raise ConfigError(f"--inliers takes at least two distinct integer labels, e.g. 0,1,2,3,4; got "
                                  f"{','.join(map(str, self.inliers))}.")
            if self.data.classes:
                raise ConfigError("--inliers and --classes both choose the training classes; pass one of them "
                                  "(--inliers also makes the other test classes the anomalies).")
        _check_ranges(self)

    @property
    def compares_priors(self) -> bool:
        """A --priors comparison of two or more priors (the prior swap and the 2-D maps apply)."""
        return len(self.priors or ()) > 1

    def model_names(self) -> tuple[str, ...]:
        """The models compared: ``models``, and with ``priors`` each VAE-family model once per prior
        ("vae-uniform"; ``split_model_name`` reads it back) and the AEs once (the default models become ae, vae)."""
        if not self.priors:
            return self.models
        models = ("ae", "vae") if self.models == DEFAULT_MODELS else self.models
        out: list[str] = []
        for m in models:
            out += [f"{m}-{p}" for p in self.priors] if m in STOCHASTIC_MODELS else [m]
        return tuple(out)

    def _is_default(self, dotted: str) -> bool:
        section, name = dotted.split(".")
        return getattr(getattr(self, section), name) == _field(type(getattr(self, section)), name).default

    def resolved(self, shape: tuple[int, ...]) -> CompareConfig:
        """Fill every open size field from ``SIZE_DEFAULTS`` for images of ``shape`` (C, H, W)."""
        table = SIZE_DEFAULTS[size_class(shape)]
        parts: dict[str, dict[str, Any]] = {}
        for dotted, v in table.items():
            if dotted in self.auto:
                section, name = dotted.split(".")
                parts.setdefault(section, {})[name] = v
        if len(shape) == 3:
            parts.setdefault("model", {})["input_shape"] = tuple(shape)
            open_fields = {a.split(".")[1] for a in self.auto if a in DATA_DEFAULTED}
            shut = {f for f in ("likelihood", "learn_sigma", "channels") if f not in open_fields}
            if self.model.sigma != _field(ModelConfig, "sigma").default:
                shut.add("sigma")                          # a fixed sigma the caller chose stays fixed
            parts["model"].update(data_defaults(shape, self.model.backbone, shut, self.model.likelihood))
        new = {s: dataclasses.replace(getattr(self, s), **kw) for s, kw in parts.items()}
        return dataclasses.replace(self, **new, auto=tuple(a for a in self.auto if a not in table
                                                           and a not in DATA_DEFAULTED))

    def to_dict(self) -> dict[str, Any]:
        """Nested JSON: {"data": {...}, "model": {...}, "train": {...}, "eval": {...}, "models": [...], ...};
        an open (``auto``) field is null."""
        d = {"data": self.data.to_dict(), "model": _jsonable(self.model.to_dict()), "train": self.train.to_dict(),
             "eval": self.eval.to_dict(), "executor": self.executor.to_dict(), "models": list(self.models),
             "n_seeds": self.n_seeds,
             "n_threads": self.n_threads, "use_pair_2d": self.use_pair_2d,
             "priors": list(self.priors) if self.priors else None,
             "inliers": list(self.inliers) if self.inliers else None, "ood_dataset": self.ood_dataset}
        for dotted in self.auto:
            section, name = dotted.split(".")
            d[section][name] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"CompareConfig must be a JSON object, got {type(d).__name__}.")
        subs = {"data": DataSpec, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig,
                "executor": ExecutorConfig}
        names = {f.name for f in dataclasses.fields(cls)} - {"auto"}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"CompareConfig has unknown fields {unknown}; it was written by another version of "
                              "vaelab or edited by hand.")
        kw: dict[str, Any] = {k: v for k, v in d.items() if k not in subs}
        auto = []
        for section, sub in subs.items():
            part = dict(d.get(section) or {})
            for name in [n for n, v in part.items() if v is None and f"{section}.{n}" in AUTO]:
                del part[name]
                auto.append(f"{section}.{name}")
            kw[section] = sub.from_dict(part)
        for name in ("models", "inliers", "priors"):
            if kw.get(name) is not None:
                kw[name] = tuple(kw[name])
        return cls(**kw, auto=tuple(auto))


def flat_config(c: dict[str, Any] | None) -> dict[str, Any]:
    """metrics.json's "config" as one flat dict (the nested sections merged; older flat files pass through)."""
    c = dict(c or {})
    flat: dict[str, Any] = {}
    for section in ("data", "model", "train", "eval"):
        if isinstance(c.get(section), dict):
            flat.update(c.pop(section))
    flat.pop("model", None)
    return {**flat, **c}


def options_summary(c: dict[str, Any] | None) -> str:
    """The options of a comparison that differ from their defaults, as a command line (for the report's protocol).

    ``c`` is metrics.json's "config" (CompareConfig.to_dict() plus run facts); open fields (null) and the
    fields set from the data are not options, so they are left out.
    """
    c = c or {}
    parts = []
    for section, cls in (("data", DataSpec), ("model", ModelConfig), ("train", TrainConfig), ("eval", EvalConfig),
                         (None, CompareConfig)):
        d = c.get(section) if section else c
        if not isinstance(d, dict):
            continue
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli") or f.name not in d or d[f.name] is None:
                continue
            v, default = d[f.name], f.default
            if isinstance(default, tuple):
                v, default = tuple(v) if isinstance(v, list) else v, default
            if v == default:
                continue
            if isinstance(default, bool):
                parts.append(flag_of(f))
            else:
                parts.append(f"{flag_of(f)} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}")
    return " ".join(parts) if parts else "all defaults"


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Every (dotted key, old value, new value) where two JSON configs differ (nested dicts walked)."""
    out: list[tuple[str, Any, Any]] = []
    for k in sorted(set(old) | set(new), key=lambda k: (list(new).index(k) if k in new else len(new), k)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


def refuse_resume_differences(out: Any, diffs: list[tuple[str, Any, Any]], free: dict[str, str]) -> None:
    """`--resume` of the run in ``out``: refuse when any option differs, listing every difference (``diffs`` from
    ``config_diff``); the keys of ``free`` may differ (their value says why) and are only noted on stderr."""
    bad = [d for d in diffs if d[0] not in free]
    allowed = "; ".join(f"{k}: {why}" for k, why in free.items())
    if bad:
        what = ("it was trained as a different model or with other options" if any(k.startswith("model.")
                                                                                   for k, _, _ in bad)
                else "it was started with other options")
        lines = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, a, b in bad)
        raise OutputError(f"cannot --resume {out}: {what}; {len(bad)} option(s) differ from the run being resumed: "
                          f"{lines}. Use the same options, --overwrite, or another --out."
                          + (f" (May differ: {allowed}.)" if free else ""))
    for k, a, b in diffs:
        print(f"vaelab: note: resuming {out} with {k} {a!r} then, {b!r} now ({free[k]}).", file=sys.stderr)


def check_prior(prior: str, n_components: int) -> None:
    """The prior options, one clear message each (shared by the image and the sequence model configs)."""
    if prior not in PRIORS:
        raise ConfigError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}.")
    if prior in ("mog", "vamp") and n_components < 1:
        raise ConfigError(f"the {prior} prior needs at least one component (--prior-components N, N >= 1), "
                          f"got {n_components}.")


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _jsonable(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d


def _check_types(cfg: Any) -> None:
    """Each field has its default's type (ints integral, floats finite, tuples of ints): a config from an edited
    JSON file or a Python caller fails here with a message, not later inside torch. Normalises numbers in place.
    A field whose default is None takes None or the type its option parses (DataSpec.classes, SampleConfig.label)."""
    for f in dataclasses.fields(cfg):
        v, default = getattr(cfg, f.name), f.default
        if v is None and str(f.type).endswith("| None"):
            continue
        if default is None:
            default = {"int | None": 0, "float | None": 0.0, "str | None": "",
                       "tuple[int, ...] | None": (0,), "tuple[str, ...] | None": ("",)}.get(str(f.type))
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
        elif isinstance(default, tuple) and default and isinstance(default[0], str):
            ok, kind = isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v), "a list of names"
            v = tuple(v) if ok else v
        elif isinstance(default, tuple) and default and isinstance(default[0], float):
            ok = (isinstance(v, (list, tuple)) and all(isinstance(i, numbers.Real) and not isinstance(i, bool)
                                                       and math.isfinite(i) for i in v))
            kind, v = "a list of finite numbers", (tuple(float(i) for i in v) if ok else v)
        elif isinstance(default, tuple):
            ok = (isinstance(v, (list, tuple))
                  and all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in v))
            kind = "a list of integers"
        else:
            continue
        if not ok:
            raise ConfigError(f"{type(cfg).__name__}: {f.name} must be {kind}, got {v!r}.")
        object.__setattr__(cfg, f.name, v)


def _check_ranges(cfg: Any) -> None:
    """Every field within the range and choices its ``opt`` metadata declares (each element of a tuple)."""
    for f in dataclasses.fields(cfg):
        md, v = f.metadata, getattr(cfg, f.name)
        if v is None or not md:
            continue
        vals = v if isinstance(v, tuple) else (v,)
        if md.get("max_len") is not None and len(vals) > md["max_len"]:
            raise ConfigError(f"{flag_of(f)} takes at most {md['max_len']} values, got {len(vals)}.")
        if md.get("choices") and isinstance(vals[0] if vals else None, str):
            bad = [x for x in vals if x not in md["choices"]]
            if bad:
                raise ConfigError(f"{flag_of(f)}: unknown value {bad[0]!r}; choose from {', '.join(md['choices'])}.")
        lo, hi = md.get("lo"), md.get("hi")
        if lo is None and hi is None:
            continue
        for x in vals:
            if isinstance(x, bool) or not isinstance(x, numbers.Real):
                continue
            low_bad = lo is not None and (x <= lo if md.get("lo_open") else x < lo)
            high_bad = hi is not None and (x >= hi if md.get("hi_open") else x > hi)
            if low_bad or high_bad:
                if lo is not None and hi is not None:      # interval notation: [0, 1) is 0 <= x < 1
                    what = (f"in {'(' if md.get('lo_open') else '['}{_num(lo)}, {_num(hi)}"
                            f"{')' if md.get('hi_open') else ']'}")
                elif lo is not None:
                    what = f"{'>' if md.get('lo_open') else '>='} {_num(lo)}"
                else:
                    what = f"{'<' if md.get('hi_open') else '<='} {_num(hi)}"
                raise ConfigError(f"{flag_of(f)} must be {what}, got {_num(x)}"
                                  + (" (in --seed and --split-seed numpy and torch take 64-bit seeds)."
                                     if hi == MAX_SEED else "."))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e21 else f"{x:g}"


def dataclass_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """``cls(**d)`` for a config dataclass, refusing unknown fields and wrong types with a ConfigError."""
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


def parse_ints(text: str, what: str, positive: bool = True) -> tuple[int, ...]:
    """'512,256' -> (512, 256) with a clear error for anything else (``positive``: each >= 1)."""
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers like 512,256; got {text!r}.") from None
    if not vals or (positive and min(vals) < 1):
        raise ConfigError(f"{what} must be positive integers like 512,256; got {text!r}.")
    return vals
