"""CLI commands for molecules: compare (``--dataset moses``), encode, decode, neighbours.

Registered in vaelab.cli.COMMANDS; importing this module needs no RDKit (the commands import it when run).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vaelab.config import MAX_SEED, ExecutorConfig, MoleculeCompareConfig
from vaelab.errors import ConfigError, DataError
from vaelab.options import add_options, bounded, build, given

MOLECULE_DATASETS = ("moses",)


def is_molecule_dataset(spec: str | None) -> bool:
    return spec is not None and (spec in MOLECULE_DATASETS or spec.startswith("smiles:"))


def route_compare(argv: list[str]) -> list[str]:
    """``vaelab compare --dataset moses ...`` -> ``vaelab compare-molecules ...`` (the one dispatch point)."""
    if not argv or argv[0] != "compare":
        return argv
    spec = None
    for i, a in enumerate(argv):
        if a == "--dataset" and i + 1 < len(argv):
            spec = argv[i + 1]
        elif a.startswith("--dataset="):
            spec = a.split("=", 1)[1]
    return ["compare-molecules", *argv[1:]] if is_molecule_dataset(spec) else argv


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"{what} takes comma-separated numbers like 0.1,0.5,1; got {text!r}.") from None
    if not vals:
        raise ConfigError(f"{what} needs at least one number, e.g. 0.1,0.5,1.")
    if not all(0 <= v <= 1e3 for v in vals):      # also refuses nan and inf
        raise ConfigError(f"{what} takes noise scales between 0 and 1000; got {text!r}.")
    return vals


# -- compare -----------------------------------------------------------------------------------
ALL_IS_ZERO = ("subset", "n_test", "n_ref", "max_smiles_len")    # None (= all) in the config is 0 on the command line


def compare_args(p: argparse.ArgumentParser) -> None:
    from vaelab.molecules import defaults

    p.add_argument("--preset", choices=tuple(defaults.PRESETS), default="cpu",
                   help="cpu: the defaults below, sized for ~15 min on 2 CPU cores (length-limited MOSES subset); gpu: "
                        "the full MOSES training for a CUDA GPU (all 1.58M molecules, GRU 512, latent 128, batch 512, "
                        "lr 3e-4, 100 epochs, 30,000 samples, the whole test split as reference: "
                        "vaelab/molecules/defaults.py); options given on the command line override the preset "
                        "(default cpu)")
    add_options(p, MoleculeCompareConfig, "mol", title="molecule comparison")
    add_options(p, ExecutorConfig, "executor", title="where the units run")
    p.add_argument("--out", default=None, help="run folder (default runs/molecules-DATASET)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder's results")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: finished models are reused, unfinished ones resume from their last "
                        "epoch; only the executor options may differ from the run being resumed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def compare_config(args: argparse.Namespace) -> MoleculeCompareConfig:
    """The config of `vaelab compare --dataset moses`: the preset's values (vaelab.molecules.defaults.PRESETS),
    then the options the user gave."""
    from vaelab.molecules.defaults import PRESETS

    g = {k: (None if k in ALL_IS_ZERO and v == 0 else v) for k, v in given(args, "mol").items()}
    return MoleculeCompareConfig(**{**PRESETS[getattr(args, "preset", "cpu")], **g},
                                 executor=build(args, ExecutorConfig, "executor"))


def compare_cmd(args: argparse.Namespace) -> int:
    import logging

    from vaelab.molecules.compare import run_compare
    from vaelab.molecules.report import markdown_table

    cfg = compare_config(args)
    if args.preset == "gpu" and cfg.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--preset gpu trains on all 1.58M MOSES molecules for 100 epochs and needs a CUDA GPU; "
                              "this torch sees none. Run without --preset for the CPU default, or add --device cpu to "
                              "run the GPU preset on the CPU anyway (days on a few cores).")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    slug = cfg.dataset if cfg.dataset == "moses" else Path(cfg.dataset.split(":", 1)[1]).stem
    out = Path(args.out or f"runs/molecules-{slug}")
    from vaelab import lock

    with lock.hold(out, "compare"):
        doc = run_compare(cfg, out, overwrite=args.overwrite, progress=not args.quiet, resume=args.resume)
    print(markdown_table(doc))
    print(f"\nwrote {out}/report.html and {out}/metrics.json ({doc['timings']['total']['wall_s']} s)")
    return 0


# -- encode / decode / neighbours ----------------------------------------------------------------
def encode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", metavar="CKPT", help="a molecule model folder, e.g. runs/molecules-moses/models/vae")
    p.add_argument("smiles", metavar="SMILES", nargs="+", help="one or more SMILES strings")
    p.add_argument("--out", default=None, help="FILE.npy: write the (N, D) float32 codes there instead of printing")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def encode_cmd(args: argparse.Namespace) -> int:
    import numpy as np

    from vaelab.io import atomic_path
    from vaelab.molecules.latent import encode_smiles, load_molecule_model

    mm = load_molecule_model(args.ckpt)
    z, canon = encode_smiles(mm, args.smiles)
    if args.out:
        out = Path(args.out)
        if out.suffix != ".npy":
            raise ConfigError(f"--out must end in .npy, got {out.name!r}.")
        if out.exists() and not args.overwrite:
            raise ConfigError(f"{out} exists; pass --overwrite or choose another --out.")
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, z.numpy().astype(np.float32), allow_pickle=False)
        print(f"wrote {len(canon)} codes of dimension {z.shape[1]} to {out}")
    else:
        for s, zi in zip(canon, z.tolist()):
            print(json.dumps({"smiles": s, "z": [round(v, 5) for v in zi]}))
    return 0


def decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", metavar="CKPT", help="a molecule model folder, e.g. runs/molecules-moses/models/vae")
    p.add_argument("--z", default=None, help="FILE.npy of (N, D) codes (from `vaelab encode --out`) to decode")
    p.add_argument("--sampler", choices=("prior", "gmm"), default="prior",
                   help="without --z: decode --n codes from the prior N(0, I) or from the ex-post GMM saved beside "
                        "the model by compare (density-gmm.json). Default prior")
    p.add_argument("--n", type=bounded(int, 1, 10_000_000), default=10,
                   help="without --z: number of molecules (default 10)")
    p.add_argument("--temperature", type=bounded(float, 0, 100), default=0.0,
                   help="0 = greedy (the molecule a code means; default), > 0 samples the decoder")
    p.add_argument("--seed", type=bounded(int, 0, MAX_SEED), default=0,
                   help="seed of the codes and of sampled tokens (default 0)")


def decode_cmd(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vaelab.density import StandardNormalPrior, density_from_dict
    from vaelab.molecules.data import canonical_smiles, quiet_rdkit
    from vaelab.molecules.latent import decode_codes, load_molecule_model

    mm = load_molecule_model(args.ckpt)
    D = mm.model.cfg.n_latent
    if args.z:
        try:
            z = np.load(args.z, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read codes from {args.z}: {e}. Give a .npy written by `vaelab encode --out`.") from None
        if z.ndim != 2 or z.shape[1] != D:
            raise DataError(f"{args.z} holds an array of shape {z.shape}; this model needs (N, {D}).")
        z = torch.from_numpy(z.astype(np.float32))
    else:
        if args.n < 1:
            raise ConfigError(f"--n must be >= 1, got {args.n}.")
        if args.sampler == "gmm":
            path = Path(args.ckpt) / "density-gmm.json"
            if not path.exists():
                raise ConfigError(f"{path} is missing: the ex-post GMM is written by `vaelab compare --dataset moses`; "
                                  "use --sampler prior for this model.")
            density = density_from_dict(json.loads(path.read_text()))
        else:
            density = StandardNormalPrior(D, seed=args.seed)
        z = density.sample(args.n, seed=args.seed)
    smiles = decode_codes(mm.model, mm.tokenizer, z, temperature=args.temperature, seed=args.seed)
    with quiet_rdkit():
        for s in smiles:
            c = canonical_smiles(s)
            print(c if c is not None else f"{s}\t# invalid")
    return 0


def neighbours_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", metavar="CKPT", help="a molecule model folder, e.g. runs/molecules-moses/models/vae")
    p.add_argument("smiles", metavar="SMILES", help="the centre molecule")
    p.add_argument("--sigma", default="0.1,0.5,1", help="noise scales around its code (default 0.1,0.5,1)")
    p.add_argument("--n", type=bounded(int, 1, 1_000_000), default=100, help="decodes per sigma (default 100)")
    p.add_argument("--seed", type=bounded(int, 0, MAX_SEED), default=0, help="seed of the noise (default 0)")
    p.add_argument("--show", type=bounded(int, 0, 10_000), default=5,
                   help="example decodes printed per sigma (default 5)")
    p.add_argument("--json", default=None, help="FILE.json: also write every decode and statistic there")
    p.add_argument("--png", default=None, help="FILE.png: an RDKit grid of the centre and decodes per sigma")


def neighbours_cmd(args: argparse.Namespace) -> int:
    from vaelab.io import atomic_write_json
    from vaelab.molecules.data import canonical_smiles, quiet_rdkit
    from vaelab.molecules.latent import load_molecule_model, neighbours

    mm = load_molecule_model(args.ckpt)
    res = neighbours(mm, args.smiles, _floats(args.sigma, "--sigma"), n=args.n, seed=args.seed)
    print(f"centre {res['smiles']}  (||z|| = {res['z_norm']:.2f})")
    print(f"{'sigma':>7} {'valid':>6} {'unique':>6} {'same':>6} {'tanimoto':>8}  examples")
    for sigma, st in res["sigmas"].items():
        with quiet_rdkit():
            canon = [canonical_smiles(d) or f"{d} (invalid)" for d in st["decodes"]]
        ex = ", ".join(list(dict.fromkeys(canon))[:args.show])   # distinct, in order
        print(f"{sigma:>7g} {st['valid']:>6.2f} {st['unique']:>6.2f} {st['same']:>6.2f} {st['tanimoto']:>8.3f}  {ex}")
    if args.json:
        atomic_write_json(args.json, res)
    if args.png:
        from vaelab.molecules.report import mol_grid_png

        cells, legends = [], []
        for sigma, st in res["sigmas"].items():
            cells += [res["smiles"]] + st["decodes"][:5]
            legends += [f"centre (sigma={sigma:g})"] + [f"sigma={sigma:g}"] * 5
        mol_grid_png(Path(args.png), cells, legends, per_row=6, size=180)
    return 0
