"""The autoencoder family. ``MODELS`` is the one name -> class lookup (used by the CLI and checkpoints).

Every model runs on images (ModelConfig: mlp/conv backbone) and on token sequences (SeqModelConfig:
gru backbone, categorical token likelihood): the config's fields decide the domain, the name the objective.
"""
from __future__ import annotations

import dataclasses

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.ae import AE, DenoisingAE, RegularizedAE
from vaelab.models.base import Autoencoder, LossTerms, Output, PointMass
from vaelab.models.seq import SeqModelConfig
from vaelab.models.vae import IWAE, VAE, ConditionalVAE

MODELS: dict[str, type[Autoencoder]] = {
    "ae": AE,
    "dae": DenoisingAE,
    "vae": VAE,
    "beta-vae": VAE,          # the same class: beta is a loss weight (default 4 below)
    "cvae": ConditionalVAE,
    "iwae": IWAE,
    "rae": RegularizedAE,
}

# The names of the sequence models of the first version: the same objectives on token sequences. Kept so
# their checkpoints (config.json "model": "seq-vae", ...) load, and old scripts keep working.
ALIASES: dict[str, str] = {"seq-ae": "ae", "seq-vae": "vae", "seq-beta-vae": "beta-vae", "seq-rae": "rae"}
ALL_MODELS: dict[str, type[Autoencoder]] = {**MODELS, **{a: MODELS[n] for a, n in ALIASES.items()}}

# What a name means beyond its class: applied unless the user sets the field explicitly.
MODEL_DEFAULTS: dict[str, dict] = {
    "beta-vae": {"beta": 4.0},
    "iwae": {"k": 5},
    "seq-beta-vae": {"beta": 4.0},
}

DESCRIPTIONS: dict[str, str] = {
    "ae": "deterministic autoencoder, z = g(x)",
    "dae": "denoising autoencoder: reconstructs clean x from a corrupted copy",
    "vae": "variational autoencoder, q(z|x) = N(mu, sigma^2), ELBO",
    "beta-vae": "VAE with KL weight beta (default 4)",
    "cvae": "label-conditioned VAE: q(z|x,y), p(x|z,y)",
    "iwae": "importance-weighted autoencoder (K-sample bound, default K=5)",
    "rae": "regularised deterministic AE (Ghosh et al. 2020), generates via an ex-post GMM",
}

# Fields only a sequence model has: a config naming any of them (or an alias) is a SeqModelConfig.
SEQUENCE_FIELDS = frozenset(f.name for f in dataclasses.fields(SeqModelConfig)) - frozenset(
    f.name for f in dataclasses.fields(ModelConfig))


def config_class(name: str, fields: object = ()) -> type:
    """The config dataclass of model ``name`` with these field names: SeqModelConfig (token sequences: the
    fields include the vocabulary, or the name is a seq-* alias) or ModelConfig (images)."""
    if name not in ALL_MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}.")
    return SeqModelConfig if name in ALIASES or SEQUENCE_FIELDS & set(fields) else ModelConfig


def model_config(name: str, **fields) -> ModelConfig | SeqModelConfig:
    """A config for model ``name``: the name's defaults, then the caller's fields (None = unset)."""
    merged = {**MODEL_DEFAULTS.get(name, {}), **{k: v for k, v in fields.items() if v is not None}}
    return config_class(name, merged)(model=name, **merged)


def config_from_dict(d: dict) -> ModelConfig | SeqModelConfig:
    """Rebuild a model config from its JSON (config.json's "model"), choosing the class by its fields."""
    if not isinstance(d, dict):
        raise ConfigError(f"a model config must be a JSON object, got {type(d).__name__}.")
    return config_class(str(d.get("model", "vae")), d).from_dict(d)


def build_model(cfg: ModelConfig | SeqModelConfig) -> Autoencoder:
    if cfg.model not in ALL_MODELS:
        raise ConfigError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}.")
    return ALL_MODELS[cfg.model](cfg)


def upgrade_state_dict(tensors: dict) -> dict:
    """Weights saved by an older vaelab, renamed to today's parameter names (a learned Gaussian sigma was
    ``log_sigma`` before the likelihood became an object: now ``likelihood.log_sigma``)."""
    if "log_sigma" in tensors and "likelihood.log_sigma" not in tensors:
        tensors = {("likelihood.log_sigma" if k == "log_sigma" else k): v for k, v in tensors.items()}
    return tensors


__all__ = ["MODELS", "ALIASES", "ALL_MODELS", "MODEL_DEFAULTS", "DESCRIPTIONS", "model_config", "config_from_dict",
           "build_model", "upgrade_state_dict", "SeqModelConfig", "Autoencoder", "AE", "DenoisingAE",
           "RegularizedAE", "VAE", "ConditionalVAE", "IWAE", "LossTerms", "Output", "PointMass"]
