"""`vaelab` command line: thin wrappers over the Python API (the same functions: vaelab.fit, vaelab.compare, ...).

Every command is a plain function ``<name>_cmd(args) -> int`` registered in ``COMMANDS`` with the
function that adds its options. The options of the config fields are generated from vaelab.config by
vaelab.options (one place: name, type, default, help, range); only a command's own options (--out,
--quiet, ...) are written here. ``main`` builds the options of the chosen command alone and every
heavy module (torch, numpy, the models) is imported inside the commands, so ``vaelab --help`` and
``vaelab COMMAND --help`` answer at once. Expected failures raise VaelabError: ``main`` prints the
message and exits non-zero, never with a traceback.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from vaelab.config import (AUTO, MAX_SEED, MODEL_NAMES, SIZE_DEFAULTS, CompareConfig, DataSpec, EvalConfig, ExecutorConfig,
                           data_defaults,
                           ModelConfig, SampleConfig, ScoreConfig, SweepConfig, TrainConfig, config_diff,
                           refuse_resume_differences)
from vaelab.errors import ConfigError, OutputError, VaelabError
from vaelab.molecules import cli as mol_cli   # imports no RDKit and no torch: the commands do, when run
from vaelab.molecules import design_cmd as mol_design
from vaelab.options import add_options, bounded, build, given

SECTIONS = {"data": DataSpec, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


# -- configs from the options: the functions every command (and the every-option test) uses ----------
def data_spec(args: argparse.Namespace) -> DataSpec:
    return build(args, DataSpec, "data")


def load_data(spec: DataSpec) -> Any:
    from vaelab.data import load_dataset

    return load_dataset(spec.dataset, **spec.load_kwargs())


def model_config_for(name: str, args: argparse.Namespace, shape: tuple[int, ...], n_classes: int = 0,
                     **fixed: Any) -> ModelConfig:
    """The ModelConfig of model ``name`` from the given model options (the name's defaults for the rest)."""
    from vaelab.models import MODELS, model_config

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}.")
    g = given(args, "model")
    shaped = data_defaults(tuple(shape), g.get("backbone", ModelConfig.backbone), g, g.get("likelihood"))
    return model_config(name, input_shape=tuple(shape), n_classes=n_classes if MODELS[name].is_conditional else 0,
                        **{**shaped, **g, **fixed})


def compare_config(args: argparse.Namespace) -> CompareConfig:
    """The CompareConfig of `vaelab compare`: the held configs from their options; what was not given stays open."""
    g = {s: given(args, s) for s in SECTIONS}
    auto = tuple(a for a in AUTO if a.split(".")[1] not in g[a.split(".")[0]])
    return CompareConfig(**{s: cls(**g[s]) for s, cls in SECTIONS.items()}, **given(args, "compare"), auto=auto,
                         executor=build(args, ExecutorConfig, "executor"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.split(":", 1)[-1]).stem if ":" in text else text).strip("-")


def default_out(cfg: CompareConfig) -> Path:
    name = f"compare-{_slug(cfg.data.dataset)}"
    if cfg.data.classes:
        name += "-classes-" + "-".join(map(str, cfg.data.classes))
    if cfg.inliers:
        name += "-inliers-" + "-".join(map(str, cfg.inliers))
    return Path("runs") / name


def _run_args(p: argparse.ArgumentParser, what: str, resume: str | None = None) -> None:
    p.add_argument("--out", default=None, help=f"{what} to write")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    if resume:
        p.add_argument("--resume", action="store_true", help=resume)


def _mlflow(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                   help="also log the finished run to MLflow (vaelab.tracking): the config as parameters, per-epoch loss "
                        "terms, the final metrics, figures, report and model folders; one run per model nested under "
                        "the comparison's. URI: a tracking URI or a .db file; without one a local SQLite store "
                        "mlflow.db beside the run folder (runs/mlflow.db for the default --out; `mlflow ui "
                        "--backend-store-uri sqlite:///runs/mlflow.db` shows it). Needs pip install 'vaelab[tracking]'")


def _check_mlflow(args: argparse.Namespace, out: Path) -> None:
    """Refuse --mlflow before any training when MLflow is missing or the URI is malformed."""
    if getattr(args, "mlflow", None) is not None:
        from vaelab import tracking

        tracking.require_mlflow()
        tracking.resolve_uri(args.mlflow or None, out.parent)


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars (cannot change a result)")


# -- train ---------------------------------------------------------------------------------------
def train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help=f"one of {', '.join(MODEL_NAMES)}")
    _run_args(p, "model folder (default runs/MODEL-DATASET)",
              "continue the run in --out from its last checkpoint (optimiser, RNG and epoch restored); only --epochs "
              "may differ from the run being resumed")
    add_options(p, DataSpec, "data")
    add_options(p, ModelConfig, "model", defaults={"beta": "default 1; 4 for beta-vae", "k": "default 1; 5 for iwae"})
    add_options(p, TrainConfig, "train", title="training")
    _mlflow(p)
    _quiet(p)


TRAIN_RESUME_FREE = {"train.epochs": "a resumed run trains on to the new number of epochs"}   # --quiet: not recorded


def check_train_resume(out: Path, mcfg: ModelConfig, tcfg: TrainConfig, spec: DataSpec) -> None:
    """Refuse `train --resume` when any option differs from the run in ``out`` (all differences listed)."""
    try:
        conf = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        raise OutputError(f"cannot --resume {out}: its config.json is unreadable ({e}). Use --overwrite.") from None
    old_train = dict(conf.get("train") or {})
    retries = (conf.get("training") or {}).get("retries") or []
    if retries and isinstance(retries[0], dict) and "lr_before" in retries[0]:
        old_train["lr"] = retries[0]["lr_before"]   # --on-nan retry halved it; the run was asked for this one
    old = {"model": conf.get("model") or {}, "train": {**TrainConfig().to_dict(), **old_train},
           "data": {k: (conf.get("data") or {}).get(k) for k in spec.meta()}}
    new = {"model": json.loads(json.dumps(mcfg.to_dict())), "train": tcfg.to_dict(), "data": spec.meta()}
    # a different --epochs is what resuming is for: allowed without a note
    diffs = [d for d in config_diff(old, new) if d[0] not in TRAIN_RESUME_FREE]
    refuse_resume_differences(out, diffs, TRAIN_RESUME_FREE)


def train_cmd(args: argparse.Namespace) -> int:
    from vaelab import lock
    from vaelab.metrics import collapse
    from vaelab.retry import fit_with_retries

    spec, tcfg = data_spec(args), build(args, TrainConfig, "train")   # bad options fail before the data loads
    data = load_data(spec)
    mcfg = model_config_for(args.model, args, data.shape, data.n_classes)
    out = Path(args.out or f"runs/{args.model}-{_slug(spec.dataset)}")
    _check_mlflow(args, out)
    if args.resume and not args.overwrite:
        check_train_resume(out, mcfg, tcfg, spec)
    with lock.hold(out, "train"):
        run = fit_with_retries(mcfg, data, tcfg, out, on_nan=tcfg.on_nan, max_retries=tcfg.max_retries,
                               resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                               data_meta=spec.meta(), on_epoch=collapse.record_epoch)
    collapse.warn_history(mcfg.model, run.history)
    from vaelab.distributed import is_main

    if is_main():           # under torchrun only rank 0 reports (and writes)
        _print_run(run, data)
        if args.mlflow is not None:
            from vaelab import tracking

            t = tracking.log_model_dir(None, out, out.name, uri=args.mlflow or None, root=out.parent,
                                       metrics={"test": run.test})
            print(f"MLflow: run {t.run_id} in {t.uri}")
    return 0


def _print_run(run, data) -> None:
    from rich.console import Console
    from rich.table import Table

    from vaelab.config import words

    last = run.history[-1] if run.history else None
    w = words(data.domain)
    t = Table(title=f"{run.model.cfg.model} on {data.name}: best epoch {run.best_epoch}, {run.status}",
              caption=f"nats per {w.one} (summed over {w.parts} / latent dims, mean over {w.many})")
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
        con.print(f"{last['images_per_s']:.0f} {w.many}/s in the last epoch; {run.seconds:.1f} s in all. "
                  f"Model folder: {run.path}")


# -- sample / evaluate / datasets ------------------------------------------------------------------
def sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", metavar="CKPT", help="a model folder written by `vaelab train`")
    p.add_argument("--out", required=True, help="FILE.png (an image grid) or FILE.npy (float32 (N,C,H,W) in [0,1])")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_options(p, SampleConfig, "sample", title="sampling")


def sample_cmd(args: argparse.Namespace) -> int:
    scfg = build(args, SampleConfig, "sample")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"--out must end in .png or .npy, got {out.name!r}.")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it or choose another --out.")
    from vaelab import budget
    from vaelab.imaging import save_grid_png, save_npy
    from vaelab.sampling import SAMPLE_BLOCK, sample_images, sample_to_npy

    if out.suffix.lower() == ".npy" and scfg.n > SAMPLE_BLOCK:   # stream: memory of one block, whatever --n is
        sample_to_npy(args.ckpt, out, scfg.n, sampler=scfg.sampler, seed=scfg.seed, label=scfg.label)
    else:
        if out.suffix.lower() == ".png":   # one grid image holds every sample: bounded by the budget
            from vaelab.checkpoint import load_model

            shape = load_model(args.ckpt).model.cfg.input_shape
            budget.check(budget.array_bytes((scfg.n, *shape)) * 40, f"a PNG grid of {scfg.n} samples",
                         f"--n {scfg.n} images of shape {tuple(shape)}, drawn into one picture",
                         "Lower --n, or write --out FILE.npy, which streams any --n in blocks.")
        x = sample_images(args.ckpt, scfg.n, sampler=scfg.sampler, seed=scfg.seed, label=scfg.label)
        (save_grid_png if out.suffix.lower() == ".png" else save_npy)(x, out)
    print(f"wrote {scfg.n} {scfg.sampler} samples to {out}")
    return 0


def evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", metavar="CKPT", help="a model folder written by `vaelab train` (config.json + weights)")
    p.add_argument("--out", required=True, help="FILE.json to write: every metric, the reference rows and settings")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_options(p, EvalConfig, "eval", title="evaluation", skip=("n_interp_pairs",))
    p.add_argument("--seed", type=bounded(int, 0, MAX_SEED), default=0,
                   help="seed of every random draw in the evaluation (default 0)")
    _quiet(p)


def evaluate_cmd(args: argparse.Namespace) -> int:
    from vaelab import lock
    from vaelab.evaluate import evaluate_checkpoint, print_summary

    e = build(args, EvalConfig, "eval")
    with lock.hold(args.out, "evaluate", is_file=True):
        doc = evaluate_checkpoint(args.ckpt, args.out, n_samples=e.n_samples, iw_k=e.iw_k, samplers=e.samplers,
                                  seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    print_summary(doc)
    print(f"wrote {args.out}")
    return 0


def datasets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="also look for Fashion-MNIST IDX files in this folder")


def datasets_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from vaelab.data.catalog import list_datasets

    t = Table(title="datasets vaelab can read (nothing is downloaded)")
    for col in ("name", "available", "read from", "detail"):
        t.add_column(col, overflow="fold")
    for d in list_datasets(args.data_dir):
        t.add_row(str(d.get("name")), "yes" if d.get("available") else "no", str(d.get("source", "")),
                  str(d.get("detail", "")))
    Console().print(t)
    return 0


# -- sweep -----------------------------------------------------------------------------------------
SWEEP_SKIPS = ("beta", "k", "corruption", "rae_gamma", "rae_lambda")   # a sweep trains beta-VAEs (k = 1) and the AE


# A sweep's default KL warm-up: without it short sweeps collapse (digits, --beta 0.5,1,2 --epochs 10: rates 0.74,
# 0.11, 0.02 nats; with a 100-step linear warm-up 6.49, 6.03, 4.50). Free bits would floor every rate at D * lambda
# and bend the rate-distortion plane; a warm-up ends at the true objective.
SWEEP_TRAIN_DEFAULTS = {"kl_schedule": "linear", "kl_warmup_steps": 100}


def sweep_args(p: argparse.ArgumentParser) -> None:
    add_options(p, SweepConfig, "sweep", title="sweep")
    _run_args(p, "sweep folder (default runs/sweep-DATASET)")
    add_options(p, DataSpec, "data")
    add_options(p, ModelConfig, "model", skip=SWEEP_SKIPS)
    add_options(p, TrainConfig, "train", title="training",
                defaults={"kl_schedule": "default linear for a sweep, so that short sweeps do not collapse",
                          "kl_warmup_steps": f"default {SWEEP_TRAIN_DEFAULTS['kl_warmup_steps']} for a sweep"})
    add_options(p, ExecutorConfig, "executor", title="where the units run")
    _mlflow(p)
    _quiet(p)


def sweep_train_config(args: argparse.Namespace) -> TrainConfig:
    """The sweep's TrainConfig: the given options, the sweep's KL warm-up unless a schedule was given."""
    g = given(args, "train")
    warm = {} if "kl_schedule" in g else {k: v for k, v in SWEEP_TRAIN_DEFAULTS.items() if k not in g}
    return TrainConfig(**{**warm, **g})


def sweep_model_config(args: argparse.Namespace, shape: tuple[int, ...]) -> ModelConfig:
    """The sweep's shared beta-VAE config (its beta is replaced per point): no free bits unless asked for, since
    they would floor every rate at D * lambda and bend the rate-distortion plane."""
    return model_config_for("beta-vae", args, shape, beta=1.0, free_bits=given(args, "model").get("free_bits", 0.0))


def sweep_cmd(args: argparse.Namespace) -> int:
    from vaelab import lock
    from vaelab.compare import resolve_workers, training_work, unit_executor
    from vaelab.sweep import sweep
    from vaelab.train import resolve_device

    scfg, spec, tcfg = build(args, SweepConfig, "sweep"), data_spec(args), sweep_train_config(args)
    data = load_data(spec)
    mcfg = sweep_model_config(args, data.shape)
    out = Path(args.out or f"runs/sweep-{_slug(spec.dataset)}")
    _check_mlflow(args, out)
    ecfg = build(args, ExecutorConfig, "executor")
    n_workers = resolve_workers(ecfg.n_workers, len(scfg.betas) + int(scfg.include_ae), resolve_device(tcfg.device), 0,
                                training_work(len(data.x_train), tcfg.epochs, data.shape))
    executor = unit_executor(ecfg, n_workers, 1, not args.quiet, out, [])
    with lock.hold(out, "sweep"):
        result = sweep(data, scfg.betas, mcfg, tcfg, out, include_ae=scfg.include_ae, overwrite=args.overwrite,
                       progress=not args.quiet, data_meta=spec.meta(), executor=executor)
    print(f"{'beta':>6} {'rate R':>9} {'distortion D':>13} {'D + R':>9}   ({result['kind']}; nats per image, test)")
    for pt in result["points"]:
        print(f"{pt['beta']:>6g} {pt['rate']:>9.2f} {pt['distortion']:>13.2f} {pt['neg_elbo']:>9.2f}")
    if result["ae"]:
        print(f"{'AE':>6} {'inf':>9} {result['ae']['distortion']:>13.2f}")
    print(f"wrote {out / 'sweep.json'} and {out / 'rate_distortion.png'}")
    _log_mlflow(args, out)
    return 0


def _log_mlflow(args: argparse.Namespace, out: Path) -> None:
    if getattr(args, "mlflow", None) is not None:
        from vaelab import tracking

        t = tracking.log_run(out, args.mlflow or None, root=out.parent)
        print(f"MLflow: run {t.run_id} (one nested run per model) in {t.uri}")


# -- compare ---------------------------------------------------------------------------------------
def _size_note(dotted: str) -> str:
    s, large = SIZE_DEFAULTS["small"][dotted], SIZE_DEFAULTS["large"][dotted]
    show = (lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v))
    return f"default {show(s)} for small images such as the embedded digits, {show(large)} otherwise"


def compare_args(p: argparse.ArgumentParser) -> None:
    notes = {s: {d.split(".")[1]: _size_note(d) for d in SIZE_DEFAULTS["small"] if d.startswith(s + ".")}
             for s in SECTIONS}
    notes["model"]["beta"] = ("beta-vae's KL weight: default 4; the vae, cvae and iwae keep beta = 1 so the comparison "
                              "still has a plain VAE")
    notes["model"]["k"] = "default 1; 5 for iwae"
    notes["model"]["free_bits"] = "default 0; 0.5 for beta-vae, which collapses on digits without it"
    add_options(p, CompareConfig, "compare", title="comparison")
    _run_args(p, "run folder (default runs/compare-DATASET[-classes-A-B])",
              "continue the run in --out: finished models are reused, unfinished ones resume; only --threads, the "
              "executor options and --quiet may differ from the run being resumed")
    add_options(p, DataSpec, "data", defaults=notes["data"])
    add_options(p, ModelConfig, "model", defaults=notes["model"])
    add_options(p, TrainConfig, "train", title="training", defaults=notes["train"])
    add_options(p, EvalConfig, "eval", title="evaluation", defaults=notes["eval"])
    add_options(p, ExecutorConfig, "executor", title="where the units run")
    _mlflow(p)
    _quiet(p)


def compare_cmd(args: argparse.Namespace) -> int:
    cfg = compare_config(args)
    out = Path(args.out) if args.out else default_out(cfg)
    _check_mlflow(args, out)
    if cfg.executor.executor == "local" and not cfg.train.device.startswith("cuda"):
        from vaelab.config import COMPARE_PRELOAD
        from vaelab.executor import start_fork_server

        start_fork_server(COMPARE_PRELOAD, cfg.executor.n_workers)    # its imports overlap the driver's (torch...)
    from vaelab.budget import flush_denormals

    flush_denormals()
    from vaelab.compare import compare
    from vaelab.report.table import headline_table, wide_console

    command = "vaelab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["compare"] else None
    from vaelab import lock

    with lock.hold(out, "compare"):
        doc = compare(cfg, out, progress=not args.quiet, resume=args.resume, overwrite=args.overwrite, command=command)
    con = wide_console()
    con.print(headline_table(doc))
    for name, m in doc["models"].items():
        if m.get("status") != "ok" or m.get("error"):
            con.print(f"[red]{name} failed[/red]: {m.get('error')}")
    con.print(f"\n[bold]Answer[/bold]: {doc['answer']['short']}\n")
    con.print(f"Report: {out / 'report.html'}   ({doc['timings']['total']:.0f} s in all)")
    _log_mlflow(args, out)
    return 0


# -- score -----------------------------------------------------------------------------------------
def score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder of `vaelab compare` (every model in it) or one model folder")
    p.add_argument("--dataset", required=True, help="the data to score: digits, fashion-mnist, idx:FOLDER, npz:FILE "
                                                    "or folder:PATH (the models' image size), or csv:FILE (the training "
                                                    "table's columns, in any order)")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--out", required=True, help="CSV file to write (one row of scores per example); thresholds go to OUT.json")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_options(p, ScoreConfig, "score", title="scoring")
    _quiet(p)


def score_cmd(args: argparse.Namespace) -> int:
    from vaelab.score import score_run

    c = build(args, ScoreConfig, "score")
    info = score_run(args.run, args.dataset, args.out, data_dir=args.data_dir, split=c.split, fpr=c.fpr,
                     score=c.score, k=c.k, seed=c.seed, progress=not args.quiet, overwrite=args.overwrite)
    for name, m in info["models"].items():
        if "threshold" in m:
            print(f"{name}: {c.score} > {m['threshold']:.4g} flags {m['flagged_fraction']:.1%} of the data "
                  f"({m['val_flagged_fraction']:.1%} of its validation split)")
        else:
            print(f"{name}: {m.get('note')}")
    print(f"wrote {args.out} and {args.out}.json")
    return 0


# -- report / explore (their options live with them) --------------------------------------------------
def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder written by `vaelab compare` (holds metrics.json, figures/)")
    p.add_argument("--out", default=None, help="HTML file to write (default RUN/report.html, replaced)")
    p.add_argument("--markdown", default=None, metavar="FILE.md",
                   help="also write the headline table and the answer as Markdown (e.g. for docs/); replaced if it "
                        "exists")


def report_cmd(args: argparse.Namespace) -> int:
    from vaelab.report.html import report_cmd as run

    return run(args)


def explore_args(p: argparse.ArgumentParser) -> None:
    from vaelab.explore import explore_args as add

    add(p)


def explore_cmd(args: argparse.Namespace) -> int:
    from vaelab.explore import explore_cmd as run

    return run(args)


# commands that need no torch (datasets, report) or import it later themselves (compare: after its fork server)
NO_TORCH = ("datasets", "report", "compare")
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
    "score": (score_args, score_cmd, "per-image anomaly scores of every model in a run for new data, thresholded at "
                                     "a false-positive rate on the validation split"),
    "compare-molecules": (mol_cli.compare_args, mol_cli.compare_cmd, "molecules: train sequence AE/VAE on MOSES "
                          "SELFIES, measure them (MOSES metrics), write a run folder (also: compare --dataset moses)"),
    "encode": (mol_cli.encode_args, mol_cli.encode_cmd, "molecules: SMILES -> latent codes of a molecule model"),
    "decode": (mol_cli.decode_args, mol_cli.decode_cmd, "molecules: latent codes (or prior/GMM samples) -> SMILES"),
    "neighbours": (mol_cli.neighbours_args, mol_cli.neighbours_cmd,
                   "molecules: decode the neighbourhood z + sigma*eps of a molecule's code"),
    "design": (mol_design.design_args, mol_design.design_cmd,
               "molecules: raise a property (qed, logp, penalized-logp) from a start molecule in the latent space of "
               "a run's models (gradient ascent on the property head, Bayesian optimisation)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (what is wrong + where the options are), not the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help` for the options.\n")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``commands``, only those get their options (the others just a name)."""
    parser = _Parser(
        prog="vaelab",
        description="Deterministic and variational autoencoders, trained side by side and measured.")
    from vaelab import __version__

    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if commands is None else set(commands)
    for name, (add_args, func, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if wanted is None or name in wanted:
            add_args(p)
            p.add_argument("--max-memory", default=None, metavar="SIZE",
                           help="memory budget, e.g. 8G or 512M: work that would need more is refused with a message "
                                "before it starts (default: MemAvailable of /proc/meminfo, or $VAELAB_MAX_MEMORY)")
        p.set_defaults(func=func, _parser=p)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"vaelab: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _one_line_warning     # e.g. PosteriorCollapseWarning: one line, no source excerpt
    argv = mol_cli.route_compare(list(sys.argv[1:] if argv is None else argv))  # compare --dataset moses
    first = next((a for a in argv if not a.startswith("-")), None)   # the command: build only its options
    parser = build_parser([first] if first in COMMANDS else [])
    try:        # argparse exits for --help (0) and for a bad option (2, one line): main returns the code
        args, extra = parser.parse_known_args(argv)
        if extra:   # name the command's own --help, not the top level's
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:
        return int(e.code or 0)
    except VaelabError as e:    # an option's value that its parser refuses with our own message (--hidden 64,x)
        print(f"vaelab: error: {e}", file=sys.stderr)
        return e.exit_code
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from vaelab import budget

        budget.set_max_memory(getattr(args, "max_memory", None))
        if first not in NO_TORCH:   # before torch's thread pool starts, so that its threads inherit the mode
            from vaelab.budget import flush_denormals

            flush_denormals()
        if _under_torchrun():   # join the process group (gloo on CPU, NCCL on CUDA)
            from vaelab import distributed

            distributed.setup("cpu" if getattr(args, "train.device", "auto") == "cpu" else None)
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
