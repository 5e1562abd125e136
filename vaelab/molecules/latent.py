"""Moving between molecules and the latent space of a sequence model: encode, decode, neighbours, interpolate.

Every function takes a trained sequence model (the gru backbone of vaelab.models) and works in batches. Decoding a
code is greedy (deterministic: the molecule a code *means*) unless a temperature > 0 is given.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from vaelab.errors import CheckpointError, ConfigError, DataError
from vaelab.measure.batched import encode_means
from vaelab.molecules.data import canonical_smiles, clean_smiles, quiet_rdkit

log = logging.getLogger("vaelab.molecules")


@dataclass(frozen=True)
class MoleculeModel:
    """A loaded sequence model with its tokeniser (rebuilt from the vocabulary in config.json)."""

    model: torch.nn.Module
    tokenizer: object
    config: dict
    path: Path | None = None


def tokenizer_of(model: torch.nn.Module):
    """The fitted tokeniser a sequence model was trained with (its config holds the vocabulary)."""
    from vaelab.molecules.tokenizers import tokenizer_from_dict

    return tokenizer_from_dict({"name": model.cfg.tokenizer, "tokens": list(model.cfg.vocab)})


def load_molecule_model(path: str | Path, device: str = "cpu") -> MoleculeModel:
    """Load a sequence-model checkpoint (config.json + weights.safetensors) through vaelab.checkpoint."""
    from vaelab.checkpoint import load_model

    ck = load_model(path, device=device)
    if not getattr(ck.model, "is_sequence", False):
        raise CheckpointError(f"{path} holds an image model ({ck.model.cfg.model}); encode/decode/neighbours take "
                              "a molecule model (a model of token sequences), e.g. one written by "
                              "`vaelab compare --dataset moses` under runs/<name>/models/.")
    return MoleculeModel(ck.model, tokenizer_of(ck.model), ck.config, ck.path)


def smiles_to_ids(tokenizer, model: torch.nn.Module, smiles: Sequence[str]) -> tuple[Tensor, list[str]]:
    """Canonicalise and tokenise SMILES for ``model``: ((N, L) ids, the N canonical SMILES).

    Raises DataError naming the molecule when one is invalid, uses a token the model never saw,
    or is longer than the model's max_len (a model cannot encode what it has no embedding for).
    """
    L = model.cfg.max_len
    canon, n_bad = clean_smiles(smiles, "input")
    if n_bad:
        with quiet_rdkit():
            bad = [s for s in smiles if canonical_smiles(s) is None]
        raise DataError(f"{n_bad} of {len(smiles)} SMILES are invalid (RDKit cannot parse them), e.g. {bad[0]!r}. "
                        "Check the string, e.g. balanced ring-closure digits and brackets.")
    vocab = tokenizer.vocab
    for s in canon:
        toks = tokenizer.tokenize(s)
        unknown = sorted({t for t in toks if t not in vocab.stoi})
        if unknown:
            raise DataError(f"{s}: tokens {unknown[:5]} are not in this model's vocabulary (it never saw them in "
                            "training), so it cannot encode this molecule.")
        if len(toks) + 2 > L:
            raise DataError(f"{s} needs {len(toks) + 2} tokens; this model takes at most {L}.")
    return tokenizer.encode(canon, max_len=L), canon


@torch.inference_mode()
def encode_smiles(mm: MoleculeModel, smiles: Sequence[str], batch_size: int = 1024) -> tuple[Tensor, list[str]]:
    """Posterior means of SMILES: ((N, D) float32 codes, canonical SMILES)."""
    ids, canon = smiles_to_ids(mm.tokenizer, mm.model, smiles)
    return encode_ids(mm.model, ids, batch_size), canon


def encode_ids(model: torch.nn.Module, ids: Tensor, batch_size: int = 1024) -> Tensor:
    """(N, L) ids -> (N, D) posterior means on the CPU."""
    return encode_means(model, ids, None, batch_size)


@torch.inference_mode()
def decode_codes(model: torch.nn.Module, tokenizer, z: Tensor, temperature: float = 0.0, seed: int = 0,
                 batch_size: int = 1024) -> list[str]:
    """(N, D) codes -> N SMILES strings (not checked: invalid ones stay, so validity can be measured)."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out: list[str] = []
    for i in range(0, z.shape[0], batch_size):
        ids = model.generate(z[i:i + batch_size].to(device), temperature=temperature, generator=gen)
        out += tokenizer.decode(ids.cpu())
    return out


def tanimoto_to(query: str, smiles: Sequence[str]) -> np.ndarray:
    """Tanimoto similarity (Morgan r=2, 1024 bits, as MOSES) of each SMILES to ``query``; NaN where invalid."""
    from vaelab.molecules.metrics import fingerprints

    with quiet_rdkit():
        canon = [canonical_smiles(s) for s in smiles]
    ok = [i for i, c in enumerate(canon) if c is not None]
    out = np.full(len(smiles), np.nan)
    if ok:
        q = fingerprints([query]).astype(np.float32)[0]
        f = fingerprints([canon[i] for i in ok]).astype(np.float32)
        inter = f @ q
        union = f.sum(1) + q.sum() - inter
        out[ok] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def neighbours(mm: MoleculeModel, smiles: str, sigmas: Sequence[float], n: int = 100, seed: int = 0,
               temperature: float = 0.0) -> dict:
    """Decode n codes z + sigma * eps around a molecule's code, for each sigma.

    Returns:
        {"smiles": canonical query, "z_norm": ||z||, "sigmas": {sigma: {"valid", "unique", "same",
        "tanimoto", "decodes"}}} where valid = fraction RDKit-valid, unique = distinct valid / valid,
        same = fraction decoding to the query itself, tanimoto = mean similarity of the valid decodes to
        the query, decodes = the n decoded SMILES.
    """
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}.")
    if any(s < 0 for s in sigmas):
        raise ConfigError(f"sigmas must be >= 0, got {list(sigmas)}.")
    z, (query,) = encode_smiles(mm, [smiles])
    gen = torch.Generator().manual_seed(seed)
    out = {"smiles": query, "z_norm": float(z.norm()), "sigmas": {}}
    for sigma in sigmas:
        eps = torch.randn(n, z.shape[1], generator=gen)
        decodes = decode_codes(mm.model, mm.tokenizer, z + sigma * eps, temperature=temperature, seed=seed)
        out["sigmas"][float(sigma)] = neighbourhood_stats(query, decodes)
    return out


def neighbourhood_stats(query: str, decodes: Sequence[str]) -> dict:
    """Validity, uniqueness, identity with the query and mean Tanimoto to it of a set of decodes."""
    with quiet_rdkit():
        canon = [canonical_smiles(s) for s in decodes]
    valid = [c for c in canon if c is not None]
    sim = tanimoto_to(query, valid) if valid else np.array([])
    return {"valid": len(valid) / len(decodes), "unique": len(set(valid)) / len(valid) if valid else float("nan"),
            "same": sum(c == query for c in valid) / len(decodes),
            "tanimoto": float(sim.mean()) if len(sim) else float("nan"), "decodes": list(decodes)}


def interpolate(mm: MoleculeModel, a: str, b: str, n_steps: int = 8) -> list[str]:
    """Greedy decodes of n_steps codes on the straight line from a's code to b's (both ends included)."""
    z, _ = encode_smiles(mm, [a, b])
    t = torch.linspace(0, 1, n_steps)[:, None]                    # (S, 1)
    return decode_codes(mm.model, mm.tokenizer, (1 - t) * z[0] + t * z[1])
