"""The autoencoder family. ``MODELS`` is the one name -> class lookup (used by the CLI and checkpoints)."""
from __future__ import annotations

import torch

from vaelab import budget
from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.ae import AE, DenoisingAE, RegularizedAE
from vaelab.models.base import Autoencoder, LossTerms, Output, PointMass
from vaelab.models.seq import SeqAutoencoder, SeqModelConfig, SeqRAE, SeqVAE
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

# Sequence models (token ids, e.g. molecules as SELFIES): the same family, configured by SeqModelConfig.
# Kept apart from MODELS, which callers iterate as "the image models"; names resolve through both.
SEQ_MODELS: dict[str, type[SeqAutoencoder]] = {
    "seq-ae": SeqAutoencoder,
    "seq-vae": SeqVAE,
    "seq-beta-vae": SeqVAE,
    "seq-rae": SeqRAE,
}
ALL_MODELS: dict[str, type] = {**MODELS, **SEQ_MODELS}

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
    "seq-ae": "sequence AE: GRU encoder, autoregressive GRU decoder conditioned on z",
    "seq-vae": "sequence VAE (Bowman et al. 2016; Gomez-Bombarelli et al. 2018), ELBO",
    "seq-beta-vae": "sequence VAE with KL weight beta (default 4)",
    "seq-rae": "regularised deterministic sequence AE, generates via an ex-post GMM",
}


def config_class(name: str) -> type:
    """The config dataclass of model ``name``: ModelConfig (images) or SeqModelConfig (token sequences)."""
    if name not in ALL_MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(ALL_MODELS)}.")
    return getattr(ALL_MODELS[name], "config_class", ModelConfig)


def model_config(name: str, **fields) -> ModelConfig | SeqModelConfig:
    """A config for model ``name``: the name's defaults, then the caller's fields (None = unset)."""
    merged = {**MODEL_DEFAULTS.get(name, {}), **{k: v for k, v in fields.items() if v is not None}}
    return config_class(name)(model=name, **merged)


def config_from_dict(d: dict) -> ModelConfig | SeqModelConfig:
    """Rebuild a model config from its JSON (config.json's "model"), choosing the class by the model name."""
    if not isinstance(d, dict):
        raise ConfigError(f"a model config must be a JSON object, got {type(d).__name__}.")
    return config_class(str(d.get("model", "vae"))).from_dict(d)


def count_params(cfg: ModelConfig | SeqModelConfig) -> int:
    """The model's parameter count, from a build on the meta device: nothing is allocated (vaelab.budget)."""
    if cfg.model not in ALL_MODELS:
        raise ConfigError(f"unknown model {cfg.model!r}; choose from {', '.join(ALL_MODELS)}.")
    with torch.device("meta"):
        return sum(p.numel() for p in ALL_MODELS[cfg.model](cfg).parameters())


def build_model(cfg: ModelConfig | SeqModelConfig) -> Autoencoder | SeqAutoencoder:
    if cfg.model not in ALL_MODELS:
        raise ConfigError(f"unknown model {cfg.model!r}; choose from {', '.join(ALL_MODELS)}.")
    n_params = count_params(cfg)
    budget.check(budget.param_bytes(n_params), f"building {cfg.model}",
                 f"{n_params:,} fp32 parameters from {budget.describe_model(cfg)}",
                 "Lower --hidden, --channels or --latent-dim, or raise --max-memory if the memory is there.")
    return ALL_MODELS[cfg.model](cfg)


__all__ = ["MODELS", "SEQ_MODELS", "ALL_MODELS", "MODEL_DEFAULTS", "DESCRIPTIONS", "model_config", "config_from_dict", "build_model", "count_params",
           "SeqAutoencoder", "SeqModelConfig", "SeqVAE", "SeqRAE", "Autoencoder", "AE",
           "DenoisingAE", "RegularizedAE", "VAE", "ConditionalVAE", "IWAE", "LossTerms", "Output", "PointMass"]
