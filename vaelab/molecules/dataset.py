"""A molecule dataset the one trainer (``vaelab.train.fit``) takes: token-id tensors with fixed splits.

``load_molecules("moses", subset=N)`` samples N molecules of the MOSES train split (seeded) and cuts
them into train / validation; the test split is a seeded sample of MOSES's own test split.
``load_molecules("smiles:FILE")`` reads a user's .smi/.csv(.gz) and cuts train / val / test from it.
Invalid SMILES are counted and skipped with one summary line (never a crash); test molecules the
fitted tokeniser cannot represent (an unseen token, or longer than the longest training molecule)
are counted and skipped the same way.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaelab.errors import DataError
from vaelab.molecules.data import clean_smiles, load_moses, read_smiles_file
from vaelab.molecules.tokenizers import UNK, Vocabulary, make_tokenizer, tokenizer_from_dict

log = logging.getLogger("vaelab.molecules")

DEFAULT_SUBSET = 20000       # molecules from MOSES train for train+val: sized for ~15 min on 2 CPU cores
DEFAULT_N_TEST = 2000        # molecules from MOSES test


@dataclass
class MoleculeDataset:
    """Molecules as padded token ids, with the SMILES they came from.

    Attributes:
        x_train, x_val, x_test: (N, L) int64 ids <bos> tokens <eos> <pad>... (L = longest training molecule)
        smiles_train, smiles_val, smiles_test: the canonical SMILES of each row
        tokenizer: the fitted tokeniser (its vocabulary fixes the ids)
        y_*: None (unlabelled); n_classes 0
        skipped: {"invalid": n, "untokenizable": n} molecules dropped, with a reason each
    """

    name: str
    x_train: Tensor
    x_val: Tensor
    x_test: Tensor
    smiles_train: list[str]
    smiles_val: list[str]
    smiles_test: list[str]
    tokenizer: Any
    source: str
    fingerprint: str
    skipped: dict[str, int] = field(default_factory=dict)
    y_train: None = None
    y_val: None = None
    y_test: None = None
    n_classes: int = 0
    class_names: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int]:
        return (int(self.x_train.shape[1]),)

    @property
    def has_labels(self) -> bool:
        return False

    def summary(self) -> dict:
        """JSON-able description (goes into config.json's "data" and metrics.json's "dataset")."""
        return {"name": self.name, "source": self.source, "shape": list(self.shape),
                "n_train": len(self.smiles_train), "n_val": len(self.smiles_val), "n_test": len(self.smiles_test),
                "n_classes": 0, "class_names": [], "tokenizer": self.tokenizer.name,
                "n_vocab": len(self.tokenizer.vocab), "max_len": self.shape[0], "skipped": dict(self.skipped),
                "fingerprint": self.fingerprint}

    def __repr__(self) -> str:
        s = self.summary()
        return (f"MoleculeDataset({s['name']!r}, tokenizer={s['tokenizer']}, max_len={s['max_len']}, "
                f"n_train={s['n_train']}, n_val={s['n_val']}, n_test={s['n_test']}, fingerprint={s['fingerprint']!r})")


def _tokenize_all(tokenizer, smiles: list[str]) -> list[list[str] | None]:
    """Each molecule's tokens (None where the tokeniser refuses it). SELFIES encoding is the slow part: once only."""
    out: list[list[str] | None] = []
    for s in smiles:
        try:
            out.append(tokenizer.tokenize(s))
        except DataError:
            out.append(None)
    return out


def _ids(vocab: Vocabulary, seqs: list[list[str]], max_len: int) -> Tensor:
    """Token lists -> (N, max_len) ids <bos> ... <eos> <pad>... (as the tokeniser's encode, without re-tokenising)."""
    ids = torch.full((len(seqs), max_len), vocab.pad, dtype=torch.long)  # (N, L)
    for i, q in enumerate(seqs):
        row = [vocab.bos] + [vocab.stoi[t] for t in q] + [vocab.eos]
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return ids


def load_molecules(spec: str = "moses", subset: int | None = DEFAULT_SUBSET, n_test: int | None = DEFAULT_N_TEST,
                   tokenizer: str = "selfies", seed: int = 0, val_fraction: float = 0.1,
                   test_fraction: float = 0.1, vocab: dict | None = None, max_len: int | None = None,
                   max_smiles_len: int | None = None) -> MoleculeDataset:
    """Load, clean, split and tokenise molecules.

    Args:
        spec: "moses" or "smiles:FILE" (.smi/.txt/.csv, optionally .gz).
        subset: molecules for train+val (MOSES: sampled from its train split; a file: a sample of the file
            before its test part is cut). None = all.
        n_test: MOSES test molecules (sampled from its test split); None = all 176,074.
        tokenizer: "selfies" (default) or "smiles".
        val_fraction: share of the train+val molecules held out for validation.
        test_fraction: for a file, the share cut off as the test split.
        vocab, max_len: a fitted tokeniser's dict and length (to rebuild a checkpoint's data): then
            molecules that do not fit are skipped instead of fitting a new vocabulary.
        max_smiles_len: MOSES only: keep molecules whose SMILES has at most this many characters, in every
            split, before sampling (short molecules learn far faster: docs/molecules.md). None = no limit.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise DataError(f"val_fraction and test_fraction must be in [0, 1); got {val_fraction}, {test_fraction}.")
    rng = np.random.default_rng(seed)
    if spec == "moses":
        pool, n_bad = clean_smiles(load_moses("train", subset=subset, seed=seed, max_length=max_smiles_len),
                                   "MOSES train")
        test, n_bad_test = clean_smiles(load_moses("test", subset=n_test, seed=seed, max_length=max_smiles_len),
                                        "MOSES test")
        n_bad += n_bad_test
        source = "MOSES (PyPI molsets 0.3.1): train.csv.gz / test.csv.gz" + (
            f", SMILES of at most {max_smiles_len} characters" if max_smiles_len is not None else "")
    elif spec.startswith("smiles:"):
        if max_smiles_len is not None:
            raise DataError("max_smiles_len applies to the MOSES data; filter your own SMILES file before loading it.")
        path = spec.split(":", 1)[1]
        pool, n_bad = clean_smiles(read_smiles_file(path), path)
        pool = [pool[i] for i in rng.permutation(len(pool))]
        n_t = int(round(test_fraction * len(pool)))
        test, pool = pool[:n_t], pool[n_t:]
        if subset is not None:
            pool = pool[:subset]
        source = path
    else:
        raise DataError(f"unknown molecule dataset {spec!r}; use moses or smiles:FILE (one SMILES per line, or a "
                        "CSV with a SMILES column).")
    if len(pool) < 2:
        raise DataError(f"{spec}: only {len(pool)} valid molecules for training; need at least 2.")
    order = rng.permutation(len(pool))
    n_val = int(round(val_fraction * len(pool)))
    val = [pool[i] for i in order[:n_val]]
    train = [pool[i] for i in order[n_val:]]

    tok = tokenizer_from_dict(vocab) if vocab is not None else make_tokenizer(tokenizer)
    tokens = {name: _tokenize_all(tok, smiles) for name, smiles in (("train", train), ("val", val), ("test", test))}
    if vocab is None:
        tok.vocab = Vocabulary(t for q in tokens["train"] if q is not None for t in q)
    if max_len is None:
        max_len = max(len(q) for q in tokens["train"] if q is not None) + 2
    skipped = {"invalid": n_bad, "untokenizable": 0}
    splits: dict[str, list[str]] = {}
    ids: dict[str, Tensor] = {}
    for name, smiles in (("train", train), ("val", val), ("test", test)):
        ok = [i for i, q in enumerate(tokens[name])
              if q is not None and len(q) + 2 <= max_len and all(t in tok.vocab.stoi and t != UNK for t in q)]
        skipped["untokenizable"] += len(smiles) - len(ok)
        splits[name] = [smiles[i] for i in ok]
        ids[name] = _ids(tok.vocab, [tokens[name][i] for i in ok], max_len)
    if skipped["untokenizable"]:
        log.warning("%s: skipped %d molecules the %s tokeniser cannot represent with its training vocabulary "
                    "within %d tokens", spec, skipped["untokenizable"], tok.name, max_len)
    if not splits["train"]:
        raise DataError(f"{spec}: no training molecule could be tokenised with the {tok.name} tokeniser.")
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        h.update(("\n".join(splits[name]) + f"|{name}|").encode())
    h.update(repr(tok.to_dict()).encode())
    return MoleculeDataset(
        name=spec if spec == "moses" else f"smiles:{path}",
        x_train=ids["train"], x_val=ids["val"], x_test=ids["test"], smiles_train=splits["train"], smiles_val=splits["val"],
        smiles_test=splits["test"], tokenizer=tok, source=source, fingerprint=h.hexdigest()[:16], skipped=skipped)
