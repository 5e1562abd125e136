"""Sequence autoencoders over token ids (molecules as SELFIES/SMILES): GRU encoder, autoregressive GRU decoder.

The same family and protocol as the image models (Gómez-Bombarelli et al. 2018; Bowman et al. 2016):

    encode(x)                -> Normal(mu, std) (seq-vae, seq-beta-vae) or PointMass(z) (seq-ae, seq-rae)
    logits(z, x)             -> (B, L-1, V) teacher-forced next-token logits of p(x|z)
    recon_nll(z, x)          -> (B,) -log p(x|z): token cross-entropy summed over positions, padding masked
    decode(z, temperature)   -> (N, L) generated ids: <bos> ... <eos> <pad>...  (0 = greedy, > 0 = sampled)
    loss(x, y, kl_weight)    -> LossTerms, composing vaelab.losses

``x`` is a LongTensor (B, L) = <bos> tokens <eos> <pad>... as made by vaelab.molecules.tokenizers; the
vocabulary (token strings in id order) is part of :class:`SeqModelConfig`, so a checkpoint's config.json
says exactly which token each embedding row means. Nothing here imports RDKit: the models are plain
sequence models; chemistry lives in vaelab.molecules.

Unlike the image models, ``decode`` returns token ids, not likelihood parameters: an autoregressive
p(x|z) has per-position parameters only given a prefix (that is ``logits(z, x)``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal

from vaelab import losses
from vaelab.errors import ConfigError
from vaelab.models.base import LossTerms, PointMass

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")   # ids 0..3, as vaelab.molecules.tokenizers.Vocabulary
PAD, BOS, EOS, UNK = 0, 1, 2, 3
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


@dataclass(frozen=True)
class SeqModelConfig:
    """What a sequence model is: enough to rebuild it (and its tokeniser's vocabulary) from config.json."""

    model: str = "seq-vae"                  # a key of vaelab.models.MODELS starting with "seq-"
    tokenizer: str = "selfies"              # "selfies" | "smiles": how strings become the tokens below
    vocab: tuple[str, ...] = SPECIAL_TOKENS  # token strings in id order; ids 0..3 are <pad> <bos> <eos> <unk>
    max_len: int = 64                       # L: padded length incl. <bos> and <eos>; also the generation limit
    n_latent: int = 64
    embed_dim: int = 64                     # token embedding width (encoder and decoder each have their own)
    hidden: int = 256                       # GRU width
    n_layers: int = 1                       # GRU layers (encoder and decoder)
    beta: float = 1.0                       # KL weight; seq-beta-vae defaults to 4
    free_bits: float = 0.0                  # per-dimension KL floor in nats (Kingma et al. 2016); 0 = off
    rae_gamma: float = 1.0                  # seq-rae: weight of 0.5*||z||^2
    rae_lambda: float = 1e-4                # seq-rae: weight of the decoder's squared L2 norm

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocab", tuple(str(t) for t in self.vocab))
        if tuple(self.vocab[:4]) != SPECIAL_TOKENS:
            raise ConfigError(f"a sequence model's vocabulary must start with {', '.join(SPECIAL_TOKENS)}; got "
                              f"{list(self.vocab[:4])}. Build it with vaelab.molecules.tokenizers.")
        if len(set(self.vocab)) != len(self.vocab):
            raise ConfigError("the vocabulary has duplicate tokens; it was edited by hand?")
        if self.max_len < 3:
            raise ConfigError(f"max_len must be >= 3 (<bos>, a token, <eos>), got {self.max_len}.")
        for name in ("n_latent", "embed_dim", "hidden", "n_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.beta < 0 or self.free_bits < 0:
            raise ConfigError(f"beta and free bits must be >= 0, got beta={self.beta}, free_bits={self.free_bits}.")

    # what the trainer and checkpoint code read of any model config
    @property
    def input_shape(self) -> tuple[int]:
        return (self.max_len,)

    @property
    def backbone(self) -> str:
        return "gru"

    @property
    def binarize(self) -> str:
        return "none"               # tokens are modelled as they are (vaelab.preprocess)

    @property
    def dequantize(self) -> int:
        return 0

    @property
    def n_vocab(self) -> int:
        return len(self.vocab)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SeqModelConfig":
        from vaelab.config import dataclass_from_dict

        return dataclass_from_dict(cls, d)


class GRUEncoder(nn.Module):
    """x (B, L) ids -> features (B, hidden): the GRU's output at each sequence's <eos>.

    The GRU is causal, so its output at the <eos> position has seen exactly the molecule's tokens
    and none of the padding after it (no packing needed).
    """

    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.n_vocab, cfg.embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(cfg.embed_dim, cfg.hidden, cfg.n_layers, batch_first=True)
        self.n_features = cfg.hidden

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.gru(self.embed(x))                            # (B, L, H)
        last = (x != PAD).sum(1).clamp(min=1) - 1                 # (B,) index of <eos>
        return h[torch.arange(x.shape[0], device=x.device), last]  # (B, H)


class GRUDecoder(nn.Module):
    """p(x|z) = prod_t p(x_t | x_<t, z): z sets the initial state and is fed at every step (Bowman et al. 2016)."""

    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        self.n_layers, self.hidden = cfg.n_layers, cfg.hidden
        self.z_to_h = nn.Linear(cfg.n_latent, cfg.hidden * cfg.n_layers)
        self.embed = nn.Embedding(cfg.n_vocab, cfg.embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(cfg.embed_dim + cfg.n_latent, cfg.hidden, cfg.n_layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, cfg.n_vocab)

    def init_state(self, z: Tensor) -> Tensor:
        h0 = torch.tanh(self.z_to_h(z))                           # (N, H * layers)
        return h0.reshape(z.shape[0], self.n_layers, self.hidden).transpose(0, 1).contiguous()  # (layers, N, H)

    def forward(self, z: Tensor, x_in: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits of the next token after each of x_in: z (N, D), x_in (N, T) -> ((N, T, V), state)."""
        h = self.init_state(z) if h is None else h
        zs = z[:, None, :].expand(-1, x_in.shape[1], -1)          # (N, T, D)
        o, h = self.gru(torch.cat([self.embed(x_in), zs], dim=-1), h)
        return self.out(o), h


class SeqAutoencoder(nn.Module):
    """Deterministic sequence AE: z = g(x), trained on the token cross-entropy -log p(x|z) alone."""

    config_class: ClassVar[type] = SeqModelConfig
    is_stochastic: ClassVar[bool] = False
    is_conditional: ClassVar[bool] = False
    has_likelihood: ClassVar[bool] = False
    is_sequence: ClassVar[bool] = True        # x is (B, L) token ids, decode gives ids

    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = GRUEncoder(cfg)
        self.head = nn.Linear(cfg.hidden, cfg.n_latent * (2 if self.is_stochastic else 1))
        self.decoder = GRUDecoder(cfg)

    def encode(self, x: Tensor, y: Tensor | None = None) -> PointMass | Normal:
        """q(z|x). Args: x (B, L) int64 token ids (<bos> ... <eos> <pad>...)."""
        return PointMass(self.head(self.encoder(x)))

    def logits(self, z: Tensor, x: Tensor) -> Tensor:
        """Teacher forcing: z (N, D), x (N, L) -> next-token logits (N, L-1, V) for targets x[:, 1:]."""
        return self.decoder(z, x[:, :-1])[0]

    def recon_nll(self, z: Tensor, x: Tensor) -> Tensor:
        """-log p(x|z) per sequence: z (..., D), x (B, L) with z's last batch dim B -> (...,) nats."""
        lead = z.shape[:-1]
        z2 = z.reshape(-1, z.shape[-1])                           # (N, D), N = prod(lead)
        x2 = x.expand(*lead, x.shape[-1]).reshape(-1, x.shape[-1])  # (N, L)
        return losses.token_nll(self.logits(z2, x2), x2[:, 1:], PAD).reshape(lead)

    @torch.no_grad()
    def decode(self, z: Tensor, y: Tensor | None = None, temperature: float = 0.0,
               generator: torch.Generator | None = None, max_len: int | None = None) -> Tensor:
        """Generate ids autoregressively from codes, batched.

        Args:
            z: (N, D) codes.
            temperature: 0 = greedy (argmax); > 0 samples softmax(logits / temperature).
            generator: a CPU torch.Generator for the sampled tokens (reproducible), or None.
            max_len: length limit incl. <bos>/<eos> (default cfg.max_len).
        Returns:
            (N, max_len) int64: <bos> tokens <eos> <pad>...; a row that hits the limit has no <eos>.
        """
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        L = max_len or self.cfg.max_len
        n = z.shape[0]
        out = torch.full((n, L), PAD, dtype=torch.long, device=z.device)
        out[:, 0] = BOS
        tok = out[:, 0].clone()
        done = torch.zeros(n, dtype=torch.bool, device=z.device)
        h = self.decoder.init_state(z)
        never = torch.tensor([PAD, BOS, UNK], device=z.device)    # never targets in training: never generated
        for t in range(1, L):
            logits, h = self.decoder(z, tok[:, None], h)          # (N, 1, V)
            logits = logits[:, 0].index_fill(1, never, float("-inf"))
            if temperature == 0:
                tok = logits.argmax(-1)
            else:
                p = torch.softmax(logits.float() / temperature, -1).cpu()
                tok = torch.multinomial(p, 1, generator=generator)[:, 0].to(z.device)
            tok = tok.masked_fill(done, PAD)
            out[:, t] = tok
            done |= tok == EOS
            if bool(done.all()):
                break
        return out

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q = self.encode(x)
        z = q.rsample()
        return self.logits(z, x), z

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        """Mean over the batch of -log p(x|g(x)) (token cross-entropy summed over positions)."""
        recon = self.recon_nll(self.encode(x).mean, x).mean()
        return LossTerms(recon, {"recon": recon.detach()})

    def reconstruct(self, x: Tensor, y: Tensor | None = None, use_mean: bool = True) -> Tensor:
        """x (B, L) -> greedy decode of the posterior mean (or a sample): (B, L) ids."""
        q = self.encode(x)
        return self.decode(q.mean if use_mean else q.rsample())


class SeqVAE(SeqAutoencoder):
    """Sequence VAE (Bowman et al. 2016; Gómez-Bombarelli et al. 2018): -log p(x|z) + beta * KL, z ~ q(z|x)."""

    is_stochastic = True
    has_likelihood = True

    def encode(self, x: Tensor, y: Tensor | None = None) -> Normal:
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=-1)  # (B, D) each
        return Normal(mu, torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)))

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        q = self.encode(x)
        mu, logvar = q.loc, 2 * q.scale.log()
        recon = self.recon_nll(q.rsample(), x)                    # (B,) reparameterised sample
        kl = losses.gaussian_kl(mu, logvar)                       # (B,)
        kl_opt = losses.free_bits_kl(mu, logvar, self.cfg.free_bits) if self.cfg.free_bits > 0 else kl
        total = recon.mean() + self.cfg.beta * kl_weight * kl_opt.mean()
        return LossTerms(total, {"recon": recon.mean().detach(), "kl": kl.mean().detach(),
                                 "neg_elbo": (recon + kl).mean().detach()})

    def log_weights(self, x: Tensor, y: Tensor | None = None, k: int = 1) -> Tensor:
        """log p(x|z_k) + log p(z_k) - log q(z_k|x) for z_k ~ q(z|x): (K, B) importance log-weights."""
        q = self.encode(x)
        mu, logvar = q.loc, 2 * q.scale.log()
        z = q.rsample((k,))                                       # (K, B, D)
        return -self.recon_nll(z, x) + losses.log_standard_normal(z) - losses.log_normal(z, mu, logvar)


class SeqRAE(SeqAutoencoder):
    """RAE-L2 (Ghosh et al. 2020) on sequences: recon + gamma * 0.5||z||^2 + lambda * ||theta_dec||^2."""

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        z = self.encode(x).mean
        recon = self.recon_nll(z, x).mean()
        z_l2 = losses.rae_z_penalty(z).mean()
        dec_l2 = losses.l2_norm_squared([p for p in self.decoder.parameters()])
        total = recon + self.cfg.rae_gamma * z_l2 + self.cfg.rae_lambda * dec_l2
        return LossTerms(total, {"recon": recon.detach(), "z_l2": z_l2.detach(), "dec_l2": dec_l2.detach()})
