"""The configuration of a model of token sequences (molecules as SELFIES/SMILES).

A sequence model is one of the family (vaelab.models.MODELS: ae, dae, vae, beta-vae, cvae, iwae, rae)
with the ``gru`` backbone (vaelab.models.nets) and the categorical token likelihood
(vaelab.models.likelihoods); this config says what it is. ``x`` is a LongTensor (B, L) =
<bos> tokens <eos> <pad>... as made by vaelab.molecules.tokenizers; the vocabulary (token strings in
id order) is part of :class:`SeqModelConfig`, so a checkpoint's config.json says exactly which token
each embedding row means. Nothing here imports RDKit: chemistry lives in vaelab.molecules.

The names seq-ae, seq-vae, seq-beta-vae and seq-rae of the first version are aliases of ae, vae,
beta-vae and rae (vaelab.models.ALIASES): their checkpoints load unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vaelab.errors import ConfigError

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")   # ids 0..3, as vaelab.molecules.tokenizers.Vocabulary
PAD, BOS, EOS, UNK = 0, 1, 2, 3


@dataclass(frozen=True)
class SeqModelConfig:
    """What a sequence model is: enough to rebuild it (and its tokeniser's vocabulary) from config.json."""

    model: str = "vae"                      # a key of vaelab.models.MODELS (or a v1 alias: seq-vae, ...)
    tokenizer: str = "selfies"              # "selfies" | "smiles": how strings become the tokens below
    vocab: tuple[str, ...] = SPECIAL_TOKENS  # token strings in id order; ids 0..3 are <pad> <bos> <eos> <unk>
    max_len: int = 64                       # L: padded length incl. <bos> and <eos>; also the generation limit
    n_latent: int = 64
    embed_dim: int = 64                     # token embedding width (encoder and decoder each have their own)
    hidden: int = 256                       # GRU width
    n_layers: int = 1                       # GRU layers (encoder and decoder)
    bidirectional: bool = False             # encoder reads both ways: the code also sees the molecule's start
                                            # through few steps (the decoder emits the start first)
    beta: float = 1.0                       # KL weight; seq-beta-vae defaults to 4
    free_bits: float = 0.0                  # per-dimension KL floor in nats (Kingma et al. 2016); 0 = off
    k: int = 1                              # importance samples in the training objective (iwae)
    n_classes: int = 0                      # > 0 for label-conditioned models (cvae)
    corruption: str = "unk:0.1"             # dae only: each token replaced by <unk> with this probability
    rae_gamma: float = 1.0                  # rae: weight of 0.5*||z||^2
    rae_lambda: float = 1e-4                # rae: weight of the decoder's squared L2 norm
    prior: str = "gaussian"                 # p(z) of the VAE family: as ModelConfig.prior
    prior_components: int = 10              # mog components / vamp pseudo-inputs
    # joint property head on z (Gomez-Bombarelli et al. 2018): an MLP z -> standardised properties, trained with
    # property_weight * sum_p (f_p(z) - y_p)^2; the dataset's y holds the standardised targets (molecules.properties)
    properties: tuple[str, ...] = ()        # property names, e.g. ("QED", "logP", "SA"); () = no head
    property_mean: tuple[float, ...] = ()   # the standardisation of each property (training split): y = (p - mean) / std
    property_std: tuple[float, ...] = ()
    property_weight: float = 1.0
    property_hidden: int = 64               # width of the head's hidden layer

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
        if self.k < 1 or self.n_classes < 0:
            raise ConfigError(f"k must be >= 1 and n_classes >= 0, got k={self.k}, n_classes={self.n_classes}.")
        token_dropout(self.corruption)      # validates
        for name in ("properties", "property_mean", "property_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        n_p = len(self.properties)
        if len(self.property_mean) != n_p or len(self.property_std) != n_p:
            raise ConfigError(f"a property head needs a mean and a std per property: {n_p} properties, "
                              f"{len(self.property_mean)} means, {len(self.property_std)} stds.")
        if any(not s > 0 for s in self.property_std) or self.property_weight < 0 or self.property_hidden < 1:
            raise ConfigError("property stds must be > 0, property_weight >= 0 and property_hidden >= 1.")
        from vaelab.config import check_prior

        check_prior(self.prior, self.prior_components)

    # what the trainer and checkpoint code read of any model config
    @property
    def input_shape(self) -> tuple[int]:
        return (self.max_len,)

    @property
    def backbone(self) -> str:
        return "gru"

    @property
    def likelihood(self) -> str:
        return "categorical"        # vaelab.models.likelihoods.Categorical over the vocabulary

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


def token_dropout(corruption: str) -> float:
    """'unk:0.1' -> 0.1, with a clear error for anything else."""
    kind, _, level = corruption.partition(":")
    try:
        p = float(level)
    except ValueError:
        p = -1.0
    if kind != "unk" or not 0.0 <= p < 1.0:
        raise ConfigError(f"a sequence dae's corruption is 'unk:P' (each token replaced by <unk> with probability "
                          f"0 <= P < 1), got {corruption!r}.")
    return p
