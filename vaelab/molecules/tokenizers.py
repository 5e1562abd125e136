"""Tokenisers for molecule strings: SELFIES (default) and regex-split SMILES.

A tokeniser is fitted on a list of SMILES into a :class:`Vocabulary` with the special tokens
``<pad>`` (id 0), ``<bos>``, ``<eos>`` and ``<unk>``. It encodes SMILES into a padded LongTensor
``(N, L)`` = ``<bos> tokens <eos> <pad>...`` and decodes ids back to SMILES, stopping at ``<eos>``.
Its state is a JSON-able dict (:meth:`to_dict` / :func:`tokenizer_from_dict`) that goes into a
checkpoint's config.json: never pickle.

SELFIES (Krenn et al. 2020) decode to a valid molecule for any token sequence, so a SELFIES
decoder's validity is ~1 by construction; SMILES keep the classic validity problem.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import torch
from torch import Tensor

from vaelab.errors import ConfigError, DataError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

# SMILES tokens (Schwaller et al. 2019, "Molecular Transformer"): bracket atoms as one token, the
# two-letter organic atoms Cl/Br, ring-bond numbers %NN, then single characters.
SMILES_REGEX = re.compile(
    r"(\[[^\]]+\]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")


class Vocabulary:
    """Token <-> id map; the special tokens come first so that ``<pad>`` is id 0."""

    def __init__(self, tokens: Iterable[str]):
        tokens = [t for t in tokens if t not in SPECIAL_TOKENS]
        self.itos: list[str] = list(SPECIAL_TOKENS) + sorted(set(tokens))
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    pad = property(lambda self: self.stoi[PAD])
    bos = property(lambda self: self.stoi[BOS])
    eos = property(lambda self: self.stoi[EOS])
    unk = property(lambda self: self.stoi[UNK])


class _Tokenizer:
    """Shared fit/encode/decode; subclasses define ``tokenize`` and ``detokenize``."""

    name = ""

    def __init__(self, vocab: Vocabulary | None = None):
        self.vocab = vocab

    def tokenize(self, smiles: str) -> list[str]:
        raise NotImplementedError

    def detokenize(self, tokens: Sequence[str]) -> str:
        raise NotImplementedError

    def fit(self, smiles: Iterable[str]) -> "_Tokenizer":
        """Build the vocabulary from every token of ``smiles``."""
        tokens: set[str] = set()
        for s in smiles:
            tokens.update(self.tokenize(s))
        self.vocab = Vocabulary(tokens)
        return self

    def _check_fitted(self) -> Vocabulary:
        if self.vocab is None:
            raise ConfigError(f"{type(self).__name__} is not fitted: call fit(smiles) first")
        return self.vocab

    def encode(self, smiles: Sequence[str], max_len: int | None = None) -> Tensor:
        """Encode SMILES as ``<bos> tokens <eos>`` ids padded with ``<pad>``.

        Args:
            smiles: N SMILES strings.
            max_len: L, the padded length including <bos> and <eos>; default the longest.
                A molecule that does not fit raises DataError (truncating would change it).
        Returns:
            LongTensor (N, L). Tokens outside the vocabulary become ``<unk>``.
        """
        vocab = self._check_fitted()
        seqs = [[vocab.bos] + [vocab.stoi.get(t, vocab.unk) for t in self.tokenize(s)] + [vocab.eos]
                for s in smiles]
        longest = max((len(q) for q in seqs), default=2)
        L = longest if max_len is None else max_len
        if longest > L:
            n_long = sum(len(q) > L for q in seqs)
            raise DataError(f"{n_long} of {len(seqs)} molecules need more than max_len={L} tokens "
                            f"(longest: {longest}); raise max_len or filter them out")
        ids = torch.full((len(seqs), L), vocab.pad, dtype=torch.long)  # (N, L)
        for i, q in enumerate(seqs):
            ids[i, :len(q)] = torch.tensor(q, dtype=torch.long)
        return ids

    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Decode ids (N, L) to N strings: stop at the first ``<eos>``, skip <bos>/<pad>/<unk>."""
        vocab = self._check_fitted()
        rows = ids.tolist() if isinstance(ids, Tensor) else ids
        out = []
        for row in rows:
            tokens = []
            for i in row:
                if i == vocab.eos:
                    break
                if 0 <= i < len(vocab) and vocab.itos[i] not in SPECIAL_TOKENS:
                    tokens.append(vocab.itos[i])
            out.append(self.detokenize(tokens))
        return out

    def to_dict(self) -> dict:
        """JSON-able state: ``{"name": ..., "tokens": [...]}`` (tokens in id order)."""
        return {"name": self.name, "tokens": list(self._check_fitted().itos)}

    @classmethod
    def from_dict(cls, d: dict) -> "_Tokenizer":
        """Rebuild a fitted tokeniser from :meth:`to_dict` output (see :func:`tokenizer_from_dict`)."""
        return tokenizer_from_dict(d)


class SmilesTokenizer(_Tokenizer):
    """SMILES split by :data:`SMILES_REGEX` (Cl, Br, bracket atoms, %NN ring bonds as one token)."""

    name = "smiles"

    def tokenize(self, smiles: str) -> list[str]:
        tokens = SMILES_REGEX.findall(smiles)
        if "".join(tokens) != smiles:
            raise DataError(f"SMILES {smiles!r} has characters the SMILES tokeniser does not know")
        return tokens

    def detokenize(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)


class SelfiesTokenizer(_Tokenizer):
    """SMILES -> SELFIES (``selfies.encoder``) split into ``[...]`` symbols; decodes back to SMILES."""

    name = "selfies"

    def tokenize(self, smiles: str) -> list[str]:
        import selfies as sf
        try:
            return list(sf.split_selfies(sf.encoder(smiles)))
        except sf.EncoderError as e:
            raise DataError(f"SMILES {smiles!r} cannot be encoded as SELFIES: {e}") from None

    def detokenize(self, tokens: Sequence[str]) -> str:
        import selfies as sf
        try:
            return sf.decoder("".join(tokens))
        except sf.DecoderError:
            return ""  # counted as invalid by the metrics


TOKENIZERS = {"selfies": SelfiesTokenizer, "smiles": SmilesTokenizer}


def make_tokenizer(name: str = "selfies") -> _Tokenizer:
    """An unfitted tokeniser by name: "selfies" (default) or "smiles"."""
    if name not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]()


def tokenizer_from_dict(d: dict) -> _Tokenizer:
    """Rebuild a fitted tokeniser from :meth:`to_dict` output (e.g. read from config.json)."""
    tok = make_tokenizer(d.get("name", ""))
    tokens = list(d.get("tokens", []))
    if tokens[:len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS):
        raise ConfigError("tokenizer dict is not from vaelab: its tokens must start with "
                          f"{', '.join(SPECIAL_TOKENS)}")
    tok.vocab = Vocabulary(tokens)
    if tok.vocab.itos != tokens:
        raise ConfigError("tokenizer dict has duplicate or unsorted tokens; it was edited by hand?")
    return tok

