"""`vaelab` command line: thin wrappers over the Python API.

Every command is a plain function ``<name>_cmd(args) -> int`` registered in ``COMMANDS`` with the
function that adds its options. Expected failures raise VaelabError: ``main`` prints the message
and exits non-zero, never with a traceback.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

from vaelab import score                       # imports no torch: its commands do, when run
from vaelab.errors import ConfigError, VaelabError
from vaelab.molecules import cli as mol_cli   # imports no RDKit: the commands do, when run

MODEL_NAMES = ("ae", "dae", "vae", "beta-vae", "cvae", "iwae", "rae")


# -- shared option groups ----------------------------------------------------------------------
def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits",
                   help="digits (embedded, default), fashion-mnist, idx:FOLDER (MNIST-format IDX files, gz or raw) "
                        "or npz:FILE (array x of (N,H,W) or (N,C,H,W) images, optional y labels)")
    g.add_argument("--data-dir", default=None,
                   help="folder with the Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist, "
                        "from the Debian package dataset-fashion-mnist)")
    g.add_argument("--classes", default=None,
                   help="keep only these labels, e.g. 3,5 (relabelled 0..k-1 in this order)")
    g.add_argument("--max-train", type=int, default=None, help="keep a seeded subset of this many training images")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of the training split held out for validation (default 0.1)")
    g.add_argument("--split-seed", type=int, default=0,
                   help="seed of the train/val/test split; fixed apart from --seed so runs share one test set")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--latent-dim", type=int, default=16, help="size of the latent code z (default 16)")
    g.add_argument("--backbone", choices=("mlp", "conv"), default="mlp",
                   help="encoder/decoder architecture shared by every model (default mlp)")
    g.add_argument("--hidden", default="512,256",
                   help="MLP hidden widths, comma-separated (default 512,256); conv uses the last as its dense layer")
    g.add_argument("--channels", default="32,64", help="conv only: channels per stride-2 stage (default 32,64)")
    g.add_argument("--likelihood", choices=("bernoulli", "continuous-bernoulli", "gaussian"), default="bernoulli",
                   help="p(x|z): bernoulli (a likelihood on binary pixels: add --binarize; on grey pixels its loss is "
                        "a cross-entropy, not a likelihood), continuous-bernoulli (a density on [0,1], with its "
                        "normaliser) or gaussian with --sigma (fixed or --learn-sigma). Densities are likelihoods "
                        "of the 8-bit data only with --dequantize 256 (default bernoulli)")
    g.add_argument("--sigma", type=float, default=None,
                   help="gaussian likelihood: std in pixel units, fixed, or the initial value with --learn-sigma "
                        "(default 0.1)")
    g.add_argument("--learn-sigma", action="store_true", default=None,
                   help="gaussian likelihood: learn a per-pixel std (initialised at --sigma)")
    g.add_argument("--binarize", choices=("none", "dynamic", "static"), default=None,
                   help="model binary pixels with the bernoulli likelihood: dynamic = a fresh Bernoulli draw of the "
                        "grey levels each epoch, static = one fixed seeded draw; validation/test are always one fixed "
                        "draw, the same for every model (default none)")
    g.add_argument("--dequantize", type=int, default=None, metavar="LEVELS",
                   help="model dequantised pixels (v + U(0,1)) / LEVELS (256 for 8-bit images, 17 for digits), so a "
                        "gaussian or continuous-bernoulli density gives a true NLL of the discrete data (default 0 = off)")
    g.add_argument("--beta", type=float, default=None,
                   help="weight of the KL term (default 1; 4 for beta-vae). A plain weight: no dataset-size factor")
    g.add_argument("--free-bits", type=float, default=None,
                   help="free bits: per-dimension KL floor in nats (Kingma et al. 2016), the batch-mean KL of each "
                        "latent unit counts at least this much, so nothing is gained by collapsing it; default 0 = off")
    g.add_argument("--k", type=int, default=None, help="iwae: importance samples in the training bound (default 5)")
    g.add_argument("--corruption", default=None,
                   help="dae: training noise, gaussian:SIGMA, salt-and-pepper:P or masking:FRACTION (default gaussian:0.3)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    g.add_argument("--batch-size", type=int, default=128, help="minibatch size (default 128)")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay (default 0)")
    g.add_argument("--grad-clip", type=float, default=0.0, help="clip the global gradient norm to this; 0 = off")
    g.add_argument("--patience", type=int, default=0,
                   help="early stopping: stop after this many epochs without validation improvement; 0 = off")
    g.add_argument("--kl-schedule", choices=("constant", "linear", "cyclical", "sigmoid"), default="constant",
                   help="KL weight schedule (multiplies beta): constant; linear or sigmoid warm-up from 0 to 1 over "
                        "--kl-warmup-steps; cyclical (Fu et al. 2019): that linear ramp then 1, repeated every "
                        "--kl-cycle-steps (default constant)")
    g.add_argument("--kl-warmup-steps", type=int, default=0, help="optimiser steps of the KL ramp (default 0)")
    g.add_argument("--kl-cycle-steps", type=int, default=0,
                   help="cyclical schedule: period in optimiser steps (default 0 = 2 x --kl-warmup-steps)")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and sampling (default 0)")
    g.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the training objective: ~1.2x per step on a CPU after a compile of minutes, so "
                        "it pays only for long runs (see benchmarks/README.md)")
    g.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32, or bf16 autocast for GPUs with bf16 units (default fp32)")
    g.add_argument("--on-nan", choices=("stop", "retry"), default="stop",
                   help="when a loss term or the gradient becomes NaN/inf: stop (keep the last good checkpoint, exit 3) "
                        "or retry from the last good checkpoint with half the learning rate (default stop)")
    g.add_argument("--max-retries", type=int, default=2, help="--on-nan retry: give up after this many retries (default 2)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--classes takes comma-separated integer labels like 3,5; got {text!r}.") from None
    if len(vals) < 2 or len(set(vals)) != len(vals):
        raise ConfigError(f"--classes needs at least two distinct labels, e.g. 3,5; got {text!r}.")
    return vals


def load_data_from_args(args: argparse.Namespace):
    from vaelab.data import load_dataset

    if not 0 <= args.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {args.val_fraction}.")
    return load_dataset(args.dataset, data_dir=args.data_dir, seed=args.split_seed, val_fraction=args.val_fraction,
                        classes=parse_classes(args.classes), max_train=args.max_train)


def data_meta_from_args(args: argparse.Namespace) -> dict:
    """How to reload exactly this dataset later (sample --sampler gmm, evaluate)."""
    return {"spec": args.dataset, "data_dir": args.data_dir, "split_seed": args.split_seed,
            "val_fraction": args.val_fraction, "classes": parse_classes(args.classes), "max_train": args.max_train}


def model_config_from_args(name: str, args: argparse.Namespace, data):
    from vaelab.config import parse_ints
    from vaelab.models import MODELS, model_config

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}.")
    return model_config(name, input_shape=data.shape, n_latent=args.latent_dim, backbone=args.backbone,
                        hidden=parse_ints(args.hidden, "--hidden"), channels=parse_ints(args.channels, "--channels"),
                        likelihood=args.likelihood, sigma=args.sigma, learn_sigma=args.learn_sigma,
                        binarize=args.binarize, dequantize=args.dequantize, beta=args.beta, free_bits=args.free_bits,
                        k=args.k, corruption=args.corruption,
                        n_classes=data.n_classes if MODELS[name].is_conditional else 0)


def train_config_from_args(args: argparse.Namespace):
    from vaelab.config import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       grad_clip=args.grad_clip, seed=args.seed, device=args.device, patience=args.patience,
                       kl_schedule=args.kl_schedule, kl_warmup_steps=args.kl_warmup_steps,
                       kl_cycle_steps=args.kl_cycle_steps,
                       compile=args.compile, precision=args.precision)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.split(":", 1)[-1]).stem if ":" in text else text).strip("-")


# -- commands ----------------------------------------------------------------------------------
def train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help=f"one of {', '.join(MODEL_NAMES)}")
    p.add_argument("--out", default=None, help="model folder to write (default runs/MODEL-DATASET)")
    p.add_argument("--overwrite", action="store_true", help="replace a trained model already in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (optimiser, RNG and epoch restored)")
    add_data_args(p)
    add_model_args(p)
    add_train_args(p)


def train_cmd(args: argparse.Namespace) -> int:
    from vaelab.train import fit_with_retries

    data = load_data_from_args(args)
    mcfg = model_config_from_args(args.model, args, data)
    tcfg = train_config_from_args(args)
    out = Path(args.out or f"runs/{args.model}-{_slug(args.dataset)}")
    run = fit_with_retries(mcfg, data, tcfg, out, on_nan=args.on_nan, max_retries=args.max_retries,
                           resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                           data_meta=data_meta_from_args(args))
    from vaelab.distributed import is_main

    if is_main():           # under torchrun only rank 0 reports (and writes)
        _print_run(run, data)
    return 0


def _print_run(run, data) -> None:
    from rich.console import Console
    from rich.table import Table

    last = run.history[-1] if run.history else None
    t = Table(title=f"{run.model.cfg.model} on {data.name}: best epoch {run.best_epoch}, {run.status}",
              caption="nats per image (summed over pixels / latent dims, mean over images)")
    t.add_column("term")
    for split in ("train (last epoch)", "val (last epoch)", "test (best weights)"):
        t.add_column(split, justify="right")
    names = list(run.test or (last["val"] if last else {}))
    for k in names:
        row = [last["train"].get(k) if last else None, last["val"].get(k) if last else None, run.test.get(k)]
        t.add_row(k, *[f"{v:.3f}" if v is not None else "" for v in row])
    con = Console(stderr=False)
    con.print(t)
    if last:
        con.print(f"{last['images_per_s']:.0f} images/s in the last epoch; {run.seconds:.1f} s in all. "
                  f"Model folder: {run.path}")


def sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", metavar="CKPT", help="a model folder written by `vaelab train`")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--sampler", default="prior",
                   help="prior: decode z ~ N(0, I); gmm: decode z from a 10-component Gaussian mixture fitted to the "
                        "model's training codes (ex-post density, Ghosh et al. 2020). Default prior")
    p.add_argument("--label", type=int, default=None, help="cvae: decode every sample with this label (default: cycle)")
    p.add_argument("--out", required=True, help="FILE.png (an image grid) or FILE.npy (float32 (N,C,H,W) in [0,1])")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def sample_cmd(args: argparse.Namespace) -> int:
    from vaelab.imaging import save_grid_png, save_npy
    from vaelab.sampling import sample_images

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"--out must end in .png or .npy, got {out.name!r}.")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it or choose another --out.")
    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}.")
    x = sample_images(args.ckpt, args.n, sampler=args.sampler, seed=args.seed, label=args.label)
    (save_grid_png if out.suffix.lower() == ".png" else save_npy)(x, out)
    print(f"wrote {args.n} {args.sampler} samples to {out}")
    return 0


def evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", metavar="CKPT", help="a model folder written by `vaelab train` (config.json + weights)")
    p.add_argument("--out", required=True, help="FILE.json to write: every metric, the reference rows and settings")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--n-samples", type=int, default=10000,
                   help="generated images per sampler for FD / precision / recall (default 10000)")
    p.add_argument("--iw-samples", type=int, default=100,
                   help="importance samples K per test image for the IW-NLL bound (VAEs; default 100)")
    p.add_argument("--samplers", default="prior,gmm",
                   help="comma-separated samplers to score: prior (z ~ N(0, I)) and/or gmm (ex-post mixture fitted "
                        "to the training codes). Default prior,gmm")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw in the evaluation (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def evaluate_cmd(args: argparse.Namespace) -> int:
    from vaelab.evaluate import evaluate_checkpoint, print_summary

    samplers = tuple(s.strip() for s in args.samplers.split(",") if s.strip())
    doc = evaluate_checkpoint(args.ckpt, args.out, n_samples=args.n_samples, iw_k=args.iw_samples,
                              samplers=samplers, seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    print_summary(doc)
    print(f"wrote {args.out}")
    return 0


def datasets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="also look for Fashion-MNIST IDX files in this folder")


def datasets_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from vaelab.data import list_datasets

    t = Table(title="datasets vaelab can read (nothing is downloaded)")
    for col in ("name", "available", "read from", "detail"):
        t.add_column(col, overflow="fold")
    for d in list_datasets(args.data_dir):
        t.add_row(str(d.get("name")), "yes" if d.get("available") else "no", str(d.get("source", "")),
                  str(d.get("detail", "")))
    Console().print(t)
    return 0


def sweep_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_model_args(p)
    add_train_args(p)
    for action in p._actions:        # the model group's --beta takes one number; here it takes the list
        if "--beta" in action.option_strings:
            action.type, action.default = str, "0.1,0.25,0.5,1,2,4,8"
            action.help = "KL weights of the beta-VAEs to train, comma-separated (default 0.1,0.25,0.5,1,2,4,8)"
    p.add_argument("--no-ae", action="store_true", help="skip the deterministic AE (the zero-noise end of the plot)")
    p.add_argument("--out", default=None, help="sweep folder to write (default runs/sweep-DATASET)")
    p.add_argument("--overwrite", action="store_true", help="replace a sweep already in --out")
    from vaelab.executor import add_executor_args

    add_executor_args(p)


def sweep_cmd(args: argparse.Namespace) -> int:
    from vaelab.compare import resolve_workers
    from vaelab.executor import make_executor
    from vaelab.sweep import parse_betas, sweep
    from vaelab.train import resolve_device

    betas = parse_betas(args.beta)
    if args.k:
        raise ConfigError("--k is for iwae; a sweep trains beta-VAEs (k = 1).")
    data = load_data_from_args(args)
    mcfg = model_config_from_args("beta-vae", argparse.Namespace(**{**vars(args), "beta": 1.0}), data)
    out = Path(args.out or f"runs/sweep-{_slug(args.dataset)}")
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 = the number of cores), got {args.workers}.")
    n_workers = resolve_workers(args.workers, len(betas) + (0 if args.no_ae else 1), resolve_device(args.device), 0)
    executor = make_executor(args.executor, n_workers=n_workers, progress=not args.quiet,
                             ray_address=args.ray_address, shared_dir=args.ray_shared_dir, run_root=str(out))
    result = sweep(data, betas, mcfg, train_config_from_args(args), out, include_ae=not args.no_ae,
                   overwrite=args.overwrite, progress=not args.quiet, data_meta=data_meta_from_args(args),
                   executor=executor)
    print(f"{'beta':>6} {'rate R':>9} {'distortion D':>13} {'D + R':>9}   ({result['kind']}; nats per image, test)")
    for p in result["points"]:
        print(f"{p['beta']:>6g} {p['rate']:>9.2f} {p['distortion']:>13.2f} {p['neg_elbo']:>9.2f}")
    if result["ae"]:
        print(f"{'AE':>6} {'inf':>9} {result['ae']['distortion']:>13.2f}")
    print(f"wrote {out / 'sweep.json'} and {out / 'rate_distortion.png'}")
    return 0


def compare_args(p: argparse.ArgumentParser) -> None:
    from vaelab.compare import add_compare_args

    add_compare_args(p)


def compare_cmd(args: argparse.Namespace) -> int:
    from vaelab.compare import compare_cmd as run

    return run(args)


def report_args(p: argparse.ArgumentParser) -> None:
    from vaelab.report.html import report_args as add

    add(p)


def report_cmd(args: argparse.Namespace) -> int:
    from vaelab.report.html import report_cmd as run

    return run(args)


def explore_args(p: argparse.ArgumentParser) -> None:
    from vaelab.explore import explore_args as add

    add(p)


def explore_cmd(args: argparse.Namespace) -> int:
    from vaelab.explore import explore_cmd as run

    return run(args)


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "train": (train_args, train_cmd, "train one model and write its folder (config.json + weights.safetensors)"),
    "sample": (sample_args, sample_cmd, "decode samples from a trained model's prior or ex-post GMM"),
    "evaluate": (evaluate_args, evaluate_cmd, "compute every metric of a trained model and write them as JSON"),
    "datasets": (datasets_args, datasets_cmd, "list the datasets vaelab can read and where they come from"),
    "sweep": (sweep_args, sweep_cmd, "rate-distortion sweep: train beta-VAEs at several beta (+ the AE) and plot "
                                     "distortion against rate with ELBO iso-lines (Alemi et al. 2018)"),
    "compare": (compare_args, compare_cmd, "train the AE/VAE family under one protocol, measure it, write a run "
                                           "folder with report.html"),
    "report": (report_args, report_cmd, "re-render a run folder's report.html from its metrics.json and figures"),
    "explore": (explore_args, explore_cmd, "open an interactive page that walks the latent spaces of a run's models"),
    "score": (score.score_args, score.score_cmd, "per-image anomaly scores of every model in a run for new data, "
                                                 "thresholded at a false-positive rate on the validation split"),
    "compare-molecules": (mol_cli.compare_args, mol_cli.compare_cmd, "molecules: train sequence AE/VAE on MOSES "
                          "SELFIES, measure them (MOSES metrics), write a run folder (also: compare --dataset moses)"),
    "encode": (mol_cli.encode_args, mol_cli.encode_cmd, "molecules: SMILES -> latent codes of a molecule model"),
    "decode": (mol_cli.decode_args, mol_cli.decode_cmd, "molecules: latent codes (or prior/GMM samples) -> SMILES"),
    "neighbours": (mol_cli.neighbours_args, mol_cli.neighbours_cmd,
                   "molecules: decode the neighbourhood z + sigma*eps of a molecule's code"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (what is wrong + where the options are), not the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help` for the options.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaelab",
        description="Deterministic and variational autoencoders, trained side by side and measured.")
    from vaelab import __version__

    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_args, func, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(func=func, _parser=p)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"vaelab: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _one_line_warning     # e.g. PosteriorCollapseWarning: one line, no source excerpt
    parser = build_parser()
    argv = mol_cli.route_compare(list(sys.argv[1:] if argv is None else argv))  # compare --dataset moses
    args, extra = parser.parse_known_args(argv)
    if extra:   # name the command's own --help, not the top level's
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if _under_torchrun():   # join the process group (gloo on CPU, NCCL on CUDA)
            from vaelab import distributed

            distributed.setup("cpu" if getattr(args, "device", "auto") == "cpu" else None)
        return int(args.func(args) or 0)
    except VaelabError as e:
        print(f"vaelab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("vaelab: interrupted. A training run can be continued with the same command plus --resume.",
              file=sys.stderr)
        return 130
    finally:
        if _under_torchrun():
            from vaelab import distributed

            distributed.teardown()


def _under_torchrun() -> bool:
    import os

    return os.environ.get("WORLD_SIZE", "1") not in ("", "1")


if __name__ == "__main__":
    sys.exit(main())
