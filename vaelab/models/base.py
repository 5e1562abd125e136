"""The one protocol every model in the family follows.

    encode(x, y=None)       -> posterior   Normal(mu, std) for VAEs, PointMass(z) for AEs
    decode(z, y=None, x=None) -> x_params  images (..., C, H, W): logits (Bernoulli) or means (Gaussian);
                                           sequences (..., L-1, V): next-token logits of x (teacher forcing)
    recon_nll(x_params, x)  -> (...,)      -log p(x|z) by the likelihood object (vaelab.models.likelihoods)
    loss(x, y=None)         -> LossTerms   the weighted total the optimiser minimises + raw named terms
    forward(x, y)           -> Output      x_params, z, mu, logvar
    generate(z, y=None)     -> ids         sequences only: autoregressive decoding (greedy or sampled)

Backbones (vaelab.models.nets) and the likelihood are shared; a model only adds its head and its
objective, a few lines composing vaelab.losses, and runs on images and token sequences alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaelab import losses
from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.likelihoods import make_likelihood
from vaelab.models.nets import PropertyHead, make_decoder, make_encoder
from vaelab.models.seq import SeqModelConfig


@dataclass(frozen=True)
class LossTerms:
    """What one step optimises (``total``) and every term raw (batch means, nats per image)."""

    total: Tensor                 # scalar
    terms: dict[str, Tensor]      # name -> scalar, unweighted


@dataclass(frozen=True)
class Output:
    x_params: Tensor              # (B, C, H, W) logits or means; (B, L-1, V) token logits
    z: Tensor                     # (B, D) the code that was decoded (a sample for VAEs)
    mu: Tensor                    # (B, D) posterior mean (== z for AEs)
    logvar: Tensor | None         # (B, D) for VAEs, None for AEs


class PointMass:
    """The 'posterior' of a deterministic encoder: all mass on one code.

    Mirrors the parts of torch.distributions.Normal that vaelab uses, so metrics can treat every
    model alike: ``mean``, ``stddev``, ``variance``, ``rsample``/``sample``.
    """

    def __init__(self, z: Tensor):
        self.mean = z

    @property
    def stddev(self) -> Tensor:
        return torch.zeros_like(self.mean)

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.mean)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return self.mean.expand(*sample_shape, *self.mean.shape)

    sample = rsample


class Autoencoder(nn.Module):
    """Deterministic autoencoder: z = g(x), x_hat = f(z), trained on -log p(x|z) alone.

    One class for every domain: the backbone (cfg.backbone: mlp, conv for images; gru for token
    sequences) and the likelihood object (cfg.likelihood) are chosen by the config, the objective is
    written once.
    """

    is_stochastic: ClassVar[bool] = False     # encoder outputs a distribution
    is_conditional: ClassVar[bool] = False    # encoder and decoder see the label
    has_likelihood: ClassVar[bool] = False    # a bound on log p(x) exists (VAE family)
    has_property_loss: ClassVar[bool] = True  # loss() adds the joint property head's term (cfg.properties)

    def __init__(self, cfg: ModelConfig | SeqModelConfig):
        super().__init__()
        if self.is_conditional and cfg.n_classes < 2:
            raise ConfigError(f"{cfg.model} is label-conditioned and needs a labelled dataset with at least 2 classes "
                              f"(n_classes={cfg.n_classes}). Use a dataset with labels, e.g. digits or fashion-mnist.")
        if not self.is_stochastic and cfg.prior != "gaussian":
            raise ConfigError(f"--prior {cfg.prior} applies to the VAE family (vae, beta-vae, cvae, iwae); {cfg.model} is "
                              "deterministic: it has no prior and generates through the ex-post GMM of its codes. "
                              "Drop --prior for it.")
        self.cfg = cfg
        self.n_cond = cfg.n_classes if self.is_conditional else 0
        # Registered first: a learned sigma stays the model's first parameter (the optimiser's order, as in v1).
        self.likelihood = make_likelihood(cfg)
        n_head = cfg.n_latent * (2 if self.is_stochastic else 1)
        self.encoder = make_encoder(cfg)
        if self.is_sequence:
            # sequence models have built their head before the decoder since v1: the order of construction
            # fixes a seed's initial weights, so molecule runs stay reproducible
            self.head = nn.Linear(self.encoder.n_features + self.n_cond, n_head)
            self.decoder = make_decoder(cfg, cfg.n_latent + self.n_cond)
        else:
            self.decoder = make_decoder(cfg, cfg.n_latent + self.n_cond)
            self.head = nn.Linear(self.encoder.n_features + self.n_cond, n_head)
        self.property_head = None
        if getattr(cfg, "properties", ()):
            if not self.has_property_loss or self.is_conditional:
                raise ConfigError(f"a property head trains jointly with the ae and vae objectives; {cfg.model} "
                                  "does not support it. Use --models ae,vae, or drop the properties.")
            self.property_head = PropertyHead(cfg)        # registered last: models without it are unchanged

    @property
    def is_sequence(self) -> bool:
        """x is (B, L) token ids and the decoder is autoregressive (the gru backbone)."""
        return self.cfg.backbone == "gru"

    # -- the protocol -------------------------------------------------------------------------
    def _onehot(self, y: Tensor | None, n: int) -> Tensor | None:
        if not self.is_conditional:
            return None
        if y is None:
            raise ConfigError(f"{self.cfg.model} needs labels y for every input (it is label-conditioned).")
        if y.dim() != 1 or y.shape[0] != n:
            raise ConfigError(f"labels must have shape ({n},), got {tuple(y.shape)}.")
        return F.one_hot(y.long(), self.cfg.n_classes).to(self.head.weight.dtype)

    def _head(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.encoder(x)                                       # (B, F)
        onehot = self._onehot(y, x.shape[0])
        if onehot is not None:
            h = torch.cat([h, onehot], dim=1)                     # (B, F + n_classes)
        return self.head(h)

    def _decoder_input(self, z: Tensor, y: Tensor | None) -> Tensor:
        """z (..., D) -> (N, D [+ n_classes]): flattened codes, with the one-hot label for conditional models."""
        lead = z.shape[:-1]
        z2 = z.reshape(-1, z.shape[-1])                           # (N, D)
        if self.is_conditional:
            if y is None:
                raise ConfigError(f"{self.cfg.model} needs a label y to decode.")
            y2 = y.expand(*lead) if y.dim() < len(lead) else y
            z2 = torch.cat([z2, self._onehot(y2.reshape(-1), z2.shape[0])], dim=1)
        return z2

    def encode(self, x: Tensor, y: Tensor | None = None) -> PointMass | torch.distributions.Normal:
        """q(z|x). Args: x (B, C, H, W) in [0, 1], or (B, L) int64 token ids; y (B,) int64 labels (cvae)."""
        return PointMass(self._head(x, y))

    def decode(self, z: Tensor, y: Tensor | None = None, x: Tensor | None = None) -> Tensor:
        """Likelihood parameters of p(x|z) from codes z (..., D).

        Images: (..., C, H, W) logits or means; ``x`` is ignored. Token sequences (an autoregressive
        decoder, whose per-position parameters exist only given a prefix): the next-token logits
        (..., L-1, V) of x (B, L) under teacher forcing, so ``x`` is required (``generate`` decodes ids).
        """
        lead = z.shape[:-1]
        z2 = self._decoder_input(z, y)
        if not self.is_sequence:
            return self.decoder(z2).reshape(*lead, *self.cfg.input_shape)
        if x is None:
            raise ConfigError("an autoregressive decoder has likelihood parameters only given the sequence: pass x "
                              "(teacher forcing), or use generate(z) to decode token ids.")
        x2 = x.expand(*lead, x.shape[-1]).reshape(-1, x.shape[-1])  # (N, L)
        logits = self.decoder(z2, x2)                             # (N, L-1, V)
        return logits.reshape(*lead, *logits.shape[1:])

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor | None = None, temperature: float = 0.0,
                 generator: torch.Generator | None = None, max_len: int | None = None) -> Tensor:
        """Token ids decoded autoregressively from codes, batched (sequence models).

        Args:
            z: (N, D) codes; y: (N,) labels for conditional models.
            temperature: 0 = greedy (argmax); > 0 samples softmax(logits / temperature).
            generator: a CPU torch.Generator for the sampled tokens (reproducible), or None.
            max_len: length limit incl. <bos>/<eos> (default cfg.max_len).
        Returns:
            (N, max_len) int64: <bos> tokens <eos> <pad>...; a row that hits the limit has no <eos>.
        """
        if not self.is_sequence:
            raise ConfigError(f"generate() decodes token sequences; {self.cfg.model} on {self.cfg.backbone} decodes "
                              "images: use x_mean(decode(z)).")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        return self.decoder.generate(self._decoder_input(z, y), temperature, generator, max_len)

    def x_mean(self, x_params: Tensor) -> Tensor:
        """The likelihood's mean (what a person looks at): images in [0, 1]; token probabilities for sequences."""
        return self.likelihood.mean(x_params)

    def recon_nll(self, x_params: Tensor, x: Tensor) -> Tensor:
        """-log p(x|z) per example (summed over pixels / tokens): params (..., *) from ``decode`` -> (...,)."""
        return self.likelihood.nll(x_params, x)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Output:
        q = self.encode(x, y)
        z = q.rsample()
        return Output(self.decode(z, y, x), z, q.mean, _logvar(q))

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        """Deterministic AE objective: mean over the batch of -log p(x|g(x)) (+ the property term, if any)."""
        out = self(x, y)
        recon = self.recon_nll(out.x_params, x).mean()
        return self.with_property_term(LossTerms(recon, {"recon": recon.detach()}), out.z, y)

    def with_property_term(self, lt: LossTerms, z: Tensor, y: Tensor | None) -> LossTerms:
        """``lt`` plus property_weight * mean_b sum_p (f_p(z_b) - y_bp)^2 when the model has a property head.

        z: (B, D) the decoded code; y: (B, P) standardised property targets (the dataset's y of a property model).
        """
        if self.property_head is None:
            return lt
        if y is None or y.dim() != 2 or y.shape[1] != len(self.cfg.properties):
            raise ConfigError(f"a model with a property head needs (B, {len(self.cfg.properties)}) property targets "
                              "as y: load the data with vaelab.molecules.properties.with_properties.")
        err = losses.property_sq_error(self.property_head(z), y.to(z.dtype)).mean()
        return LossTerms(lt.total + self.cfg.property_weight * err, {**lt.terms, "property": err.detach()})

    def reconstruct(self, x: Tensor, y: Tensor | None = None, use_mean: bool = True) -> Tensor:
        """x -> its reconstruction through the posterior mean (or a sample): images in [0, 1] (B, C, H, W),
        or for token sequences the greedy decode (B, L) ids."""
        q = self.encode(x, y)
        z = q.mean if use_mean else q.rsample()
        if self.is_sequence:
            return self.generate(z, y)
        return self.x_mean(self.decode(z, y))


def _logvar(q: PointMass | torch.distributions.Normal) -> Tensor | None:
    if isinstance(q, PointMass):
        return None
    # the log-variance of q(z|x): exact for a Gaussian posterior, else (Laplace, Kumaraswamy) from its variance
    return 2 * q.scale.log() if isinstance(q, torch.distributions.Normal) else q.variance.log()
