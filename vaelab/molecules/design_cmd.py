"""`vaelab design RUN --property qed|logp|penalized-logp [--from SMILES | --from-test N] --steps S`.

Designs from a start molecule (or the first N test molecules of the run) with every molecule model of a
`vaelab compare --dataset moses` run folder, by both methods of vaelab.molecules.design, and prints the AE vs VAE
table; --json writes every path, --png-dir a molecule grid per model, method and start.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vaelab.config import DesignConfig
from vaelab.errors import ConfigError, DataError
from vaelab.options import add_options, build


def design_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a molecule run folder written by `vaelab compare --dataset moses`")
    add_options(p, DesignConfig, "design", title="design")
    out = p.add_argument_group("output")
    out.add_argument("--json", default=None, metavar="FILE", help="FILE.json: write every path and summary there")
    out.add_argument("--png-dir", default=None, metavar="DIR", help="folder for a molecule grid of each path")


def _run_doc(run: Path) -> dict[str, Any]:
    path = run / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"{run} is not a run folder (no metrics.json); give the folder `vaelab compare --dataset "
                          "moses` wrote, e.g. runs/molecules-moses.")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if doc.get("kind") != "molecules":
        raise ConfigError(f"{run} is not a molecule run (it holds a {doc.get('kind', 'image')} comparison); "
                          "design works on the models of `vaelab compare --dataset moses`.")
    return doc


def test_smiles(doc: dict[str, Any], n: int) -> list[str]:
    """The first n test molecules of a run, reloaded from its data settings (seeded, so the same molecules)."""
    from vaelab.molecules.dataset import load_molecules

    c = doc["config"]
    data = load_molecules(c["dataset"], subset=c.get("subset"), n_test=c.get("n_test"), tokenizer=c["tokenizer"],
                          seed=c["seed"], max_smiles_len=c.get("max_smiles_len"))
    from vaelab.molecules.design import start_molecules

    return start_molecules(data.smiles_test, n)


def design_cmd(args: argparse.Namespace) -> int:
    from vaelab.molecules.design import design_table
    from vaelab.molecules.report import path_grid_png
    from vaelab.molecules.latent import load_molecule_model

    c = build(args, DesignConfig, "design")
    run = Path(args.run)
    doc = _run_doc(run)
    names = list(c.models) if c.models else [m for m, r in doc["models"].items() if r.get("status") == "ok"]
    models = {}
    for name in names:
        if not (run / "models" / name / "config.json").is_file():
            raise ConfigError(f"{run} has no trained model {name!r}; it has {', '.join(doc['models'])}.")
        models[name] = load_molecule_model(run / "models" / name)
    starts = [c.start] if c.start is not None else test_smiles(doc, c.from_test or 1)
    from vaelab.molecules.data import load_moses

    train = frozenset(load_moses("train")) if doc["config"]["dataset"] == "moses" else None
    table = design_table(models, starts, c.prop, steps=c.steps, methods=c.methods, seed=c.seed, train=train)
    print(markdown_design_table(table))
    if args.json:
        from vaelab.io import atomic_write_json, strict_json

        atomic_write_json(args.json, strict_json(table))
    if args.png_dir:
        folder = Path(args.png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, per in table["models"].items():
            for method, res in per.items():
                for i, r in enumerate(res.get("runs", [])):
                    path_grid_png(folder / f"{name}-{method}-{i}.png", r)
    return 0


def markdown_design_table(table: dict[str, Any]) -> str:
    """Rows: model x method; columns: the design numbers (mean over start molecules [95 % interval])."""
    from vaelab.molecules.design import SUMMARY_KEYS
    from vaelab.molecules.report import design_cell

    lines = [f"design of {table['property']}: {len(table['starts'])} start molecule(s), {table['steps']} steps each",
             "", "| model | method | " + " | ".join(SUMMARY_KEYS) + " |", "|---|---|" + "---|" * len(SUMMARY_KEYS)]
    for name, per in table["models"].items():
        for method, res in per.items():
            if "error" in res:
                lines.append(f"| {name} | {method} | " + res["error"] + " |" + " |" * (len(SUMMARY_KEYS) - 1))
            else:
                lines.append(f"| {name} | {method} | " + " | ".join(design_cell(res["summary"][k]) for k in SUMMARY_KEYS) + " |")
    return "\n".join(lines)
