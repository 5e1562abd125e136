"""Molecular properties by name (RDKit), and datasets whose y holds them for a joint property head.

Names (``PROPERTIES``):
  * ``qed``: quantitative estimate of drug-likeness (Bickerton et al. 2012), rdkit.Chem.QED.qed, in [0, 1];
  * ``logp``: Wildman-Crippen logP (1999), rdkit.Chem.Crippen.MolLogP;
  * ``sa``: synthetic accessibility (Ertl & Schuffenhauer 2009), RDKit Contrib SA_Score, 1 (easy) .. 10 (hard);
  * ``mw``: molecular weight (g/mol), rdkit.Chem.Descriptors.MolWt;
  * ``penalized-logp``: logP - SA - cycle penalty, each term standardised with the ZINC-250k means and standard
    deviations of the junction-tree VAE's code (Jin et al. 2018, github.com/wengong-jin/icml18-jtnn,
    bo/gen_latent.py), the normalisation Gómez-Bombarelli et al. 2018 and JT-VAE's Bayesian optimisation use:
        (logP - 2.4571) / 1.4343 + (-SA + 3.0526) / 0.8335 + (-cycle + 0.0486) / 0.2860,
    cycle = max(0, (largest ring of networkx's cycle basis) - 6).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from vaelab.errors import ConfigError, DataError
from vaelab.molecules.data import get_mol, quiet_rdkit

PROPERTIES = ("qed", "logp", "sa", "mw", "penalized-logp")
# column names of vaelab.molecules.metrics.properties (the post-hoc probe) for the same properties
PROBE_NAMES = {"qed": "QED", "logp": "logP", "sa": "SA", "mw": "MW"}

# Jin et al. 2018 (JT-VAE), bo/gen_latent.py: means and stds over ZINC-250k
LOGP_MEAN, LOGP_STD = 2.4570953396190123, 1.434324401111988
SA_MEAN, SA_STD = -3.0525811293166134, 0.8335207024513095          # of -SA
CYCLE_MEAN, CYCLE_STD = -0.0485696876403053, 0.2860212110245455    # of -cycle


def check_property(name: str) -> str:
    """``name`` lower-cased if it is a known property, else one clear ConfigError."""
    key = str(name).lower()
    if key not in PROPERTIES:
        raise ConfigError(f"unknown property {name!r}; choose one of {', '.join(PROPERTIES)}.")
    return key


def cycle_penalty(mol) -> int:
    """max(0, largest ring size - 6), rings from networkx's cycle basis of the molecular graph (as JT-VAE)."""
    import networkx as nx
    from rdkit.Chem import rdmolops

    cycles = nx.cycle_basis(nx.Graph(rdmolops.GetAdjacencyMatrix(mol)))
    largest = max((len(c) for c in cycles), default=0)
    return max(0, largest - 6)


def _value(mol, key: str) -> float:
    from rdkit.Chem import QED, Crippen, Descriptors

    from vaelab.molecules.metrics import sa_score

    if key == "qed":
        return QED.qed(mol)
    if key == "logp":
        return Crippen.MolLogP(mol)
    if key == "sa":
        return sa_score(mol)
    if key == "mw":
        return Descriptors.MolWt(mol)
    logp, sa, cycle = Crippen.MolLogP(mol), sa_score(mol), cycle_penalty(mol)
    return ((logp - LOGP_MEAN) / LOGP_STD + (-sa - SA_MEAN) / SA_STD + (-cycle - CYCLE_MEAN) / CYCLE_STD)


def property_values(smiles: Sequence[str], name: str) -> np.ndarray:
    """(N,) the RDKit property ``name`` of each SMILES; NaN where a SMILES is invalid or empty."""
    key = check_property(name)
    out = np.full(len(smiles), np.nan)
    with quiet_rdkit():
        for i, s in enumerate(smiles):
            mol = get_mol(s)
            if mol is not None and mol.GetNumAtoms() > 0:
                out[i] = _value(mol, key)
    return out


def property_table(smiles: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """(N, P) the properties ``names`` of each SMILES (NaN where invalid)."""
    return np.stack([property_values(smiles, n) for n in names], axis=1) if names else np.zeros((len(smiles), 0))


def with_properties(data, names: Sequence[str]):
    """A copy of a MoleculeDataset whose y_train / y_val / y_test are (N, P) standardised property targets.

    The standardisation (mean and std over the training split) goes into the model config
    (SeqModelConfig.property_mean / property_std), so a checkpoint predicts properties in their own units.
    Returns:
        (dataset, mean (P,), std (P,))
    """
    keys = tuple(check_property(n) for n in names)
    if not keys:
        raise ConfigError("with_properties needs at least one property name, e.g. qed.")
    raw = {split: property_table(getattr(data, f"smiles_{split}"), keys) for split in ("train", "val", "test")}
    for split, v in raw.items():
        if np.isnan(v).any():   # the dataset holds RDKit-valid canonical SMILES only: this is a bug, not bad input
            raise DataError(f"{int(np.isnan(v).any(1).sum())} {split} molecules have no {', '.join(keys)}.")
    mean, std = raw["train"].mean(0), raw["train"].std(0)
    std = np.where(std > 0, std, 1.0)
    ys = {split: torch.tensor((v - mean) / std, dtype=torch.float32) for split, v in raw.items()}
    return (replace(data, y_train=ys["train"], y_val=ys["val"], y_test=ys["test"]),
            tuple(float(m) for m in mean), tuple(float(s) for s in std))


@torch.inference_mode()
def head_r2(model: torch.nn.Module, z: torch.Tensor, smiles: Sequence[str]) -> dict[str, float]:
    """Test R^2 of a model's joint property head: 1 - sum (p - f(z))^2 / sum (p - mean p)^2 per property.

    z: (N, D) codes (posterior means) of ``smiles``.
    """
    head = getattr(model, "property_head", None)
    if head is None:
        return {}
    names = model.cfg.properties
    truth = property_table(smiles, names)                          # (N, P)
    pred = head.predict(z.to(next(head.parameters()).device)).cpu().double().numpy()   # (N, P)
    out = {}
    for j, name in enumerate(names):
        ok = np.isfinite(truth[:, j])
        ss = ((truth[ok, j] - truth[ok, j].mean()) ** 2).sum()
        out[name] = float(1 - ((truth[ok, j] - pred[ok, j]) ** 2).sum() / ss) if ss > 0 else math.nan
    return out
