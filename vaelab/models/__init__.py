"""The autoencoder family. ``MODELS`` is the one name -> class lookup (used by the CLI and checkpoints)."""
from __future__ import annotations

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.ae import AE, DenoisingAE, RegularizedAE
from vaelab.models.base import Autoencoder, LossTerms, Output, PointMass
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

# What a name means beyond its class: applied unless the user sets the field explicitly.
MODEL_DEFAULTS: dict[str, dict] = {
    "beta-vae": {"beta": 4.0},
    "iwae": {"k": 5},
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


def model_config(name: str, **fields) -> ModelConfig:
    """A ModelConfig for model ``name``: the name's defaults, then the caller's fields (None = unset)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}.")
    merged = {**MODEL_DEFAULTS.get(name, {}), **{k: v for k, v in fields.items() if v is not None}}
    return ModelConfig(model=name, **merged)


def build_model(cfg: ModelConfig) -> Autoencoder:
    if cfg.model not in MODELS:
        raise ConfigError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}.")
    return MODELS[cfg.model](cfg)


__all__ = ["MODELS", "MODEL_DEFAULTS", "DESCRIPTIONS", "model_config", "build_model", "Autoencoder", "AE",
           "DenoisingAE", "RegularizedAE", "VAE", "ConditionalVAE", "IWAE", "LossTerms", "Output", "PointMass"]
