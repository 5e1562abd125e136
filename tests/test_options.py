"""Every option of every command reaches the config that the command uses; every argument is range-checked.

The walk is over the parsers themselves (every generated option, so a new config field is covered the
day it is added); the end-to-end runs check that the values land in config.json / run_config.json /
metrics.json, i.e. in what was actually trained and measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import vaelab
from vaelab import cli
from vaelab.config import (CompareConfig, DataSpec, DesignConfig, EvalConfig, ModelConfig, MoleculeCompareConfig, SampleConfig,
                           ExecutorConfig, ScoreConfig, SweepConfig, TrainConfig, flag_of, options_summary)
from vaelab.options import cli_fields

ROOT = Path(__file__).resolve().parents[1]
POSITIONALS = {"train": ["vae"], "evaluate": ["CKPT", "--out", "x.json"], "sample": ["CKPT", "--out", "x.png"],
               "compare": [], "sweep": [], "compare-molecules": [], "score": ["RUN", "--dataset", "digits", "--out", "s.csv"],
               "design": ["RUN"]}
CLASSES = {"data": DataSpec, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig, "compare": CompareConfig,
           "sample": SampleConfig, "sweep": SweepConfig, "mol": MoleculeCompareConfig, "score": ScoreConfig,
           "executor": ExecutorConfig, "design": DesignConfig}
# options that need a companion to be valid, and values where "default + 1" is not one
COMPANIONS = {"kl_cycle_steps": ["--kl-schedule", "cyclical", "--kl-warmup-steps", "10"],
              "kl_schedule": ["--kl-warmup-steps", "10"], "learn_sigma": ["--likelihood", "gaussian"]}
VALUES = {"dataset": "npz:x.npz", "data_dir": "/data/elsewhere", "classes": (3, 5), "device": "cpu",
          "corruption": "masking:0.25", "dequantize": 256, "models": ("ae", "rae"), "samplers": ("gmm",),
          "betas": (0.5, 2.0), "kl_cycle_steps": 30, "hidden": (48, 24), "channels": (8, 16), "label": 1,
          "max_train": 300, "sampler": "gmm", "sigmas": (0.2, 2.0), "beta": 2.0, "subset": 500,
          "image_size": 16, "image_channels": 3, "inliers": (0, 1, 2), "ood_dataset": "fashion-mnist",
          "ray_address": "10.0.0.1:6379", "ray_shared_dir": "/shared/runs", "priors": ("gaussian", "uniform"),
          "label_column": "kind", "properties": ("qed",), "start": "CCO", "from_test": 3, "methods": ("bo",)}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = cli.build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _field(dest: str) -> tuple[str, dataclasses.Field]:
    section, name = dest.split(".")
    return section, next(f for f in dataclasses.fields(CLASSES[section]) if f.name == name)


def _non_default(f: dataclasses.Field, action: argparse.Action) -> tuple[list[str], object]:
    """(argv tokens, expected field value) for a value of ``f`` other than its default."""
    flag = action.option_strings[0]
    if isinstance(action, argparse._StoreConstAction):
        return [flag, *COMPANIONS.get(f.name, [])], action.const
    if f.name in VALUES and (f.default is None or type(VALUES[f.name]) is type(f.default)):
        v = VALUES[f.name]
    elif action.choices:
        v = next(c for c in action.choices if c != f.default)
    elif isinstance(f.default, bool) or f.default is None:
        raise AssertionError(f"no test value for {f.name}")
    elif isinstance(f.default, int):
        v = f.default + 1
    elif isinstance(f.default, float):
        v = f.default * 2 if f.default else 0.5
    else:
        raise AssertionError(f"no test value for {f.name}")
    text = ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
    return [flag, text, *COMPANIONS.get(f.name, [])], v


DATA = SimpleNamespace(shape=(1, 8, 8), n_classes=10)


def _used_configs(command: str, args: argparse.Namespace) -> dict[str, object]:
    """The configs the command builds from ``args``, through the same functions the command calls."""
    if command == "train":
        return {"data": cli.data_spec(args), "train": cli.build(args, TrainConfig, "train"),
                "model": cli.model_config_for("vae", args, DATA.shape, DATA.n_classes)}
    if command == "sweep":
        return {"data": cli.data_spec(args), "train": cli.build(args, TrainConfig, "train"),
                "sweep": cli.build(args, SweepConfig, "sweep"), "executor": cli.build(args, ExecutorConfig, "executor"),
                "model": cli.sweep_model_config(args, DATA.shape)}
    if command == "compare":
        from vaelab.compare import model_cfg, train_cfg

        cfg = cli.compare_config(args).resolved(DATA.shape)
        # the configs of the units compare trains: beta is beta-vae's, k matters for iwae
        name = {"beta": "beta-vae", "k": "iwae"}
        return {"data": cfg.data, "eval": cfg.eval, "compare": cfg, "executor": cfg.executor,
                "train": train_cfg(cfg, cfg.train.seed),
                "model": lambda field: model_cfg(cfg, name.get(field, "vae"), DATA)}
    if command == "compare-molecules":
        mol = cli.mol_cli.compare_config(args)
        return {"mol": mol, "executor": mol.executor}
    if command == "score":
        return {"score": cli.build(args, ScoreConfig, "score")}
    if command == "design":
        return {"design": cli.build(args, DesignConfig, "design")}
    return {"eval": cli.build(args, EvalConfig, "eval"), "sample": cli.build(args, SampleConfig, "sample")}


def _cases() -> list[tuple[str, str]]:
    return [(c, a.dest) for c in POSITIONALS for a in _subparser(c)._actions if "." in (a.dest or "")]


@pytest.mark.parametrize("command,dest", _cases())
def test_every_option_reaches_the_config_used(command, dest):
    section, f = _field(dest)
    action = next(a for a in _subparser(command)._actions if a.dest == dest)
    tokens, expected = _non_default(f, action)
    assert expected != f.default
    args = cli.build_parser([command]).parse_args([command, *POSITIONALS[command], *tokens])
    used = _used_configs(command, args)[section]
    cfg = used(f.name) if callable(used) else used
    assert getattr(cfg, f.name) == expected, (command, flag_of(f))


def test_every_config_field_is_an_option_somewhere():
    offered = {d for c in POSITIONALS for a in _subparser(c)._actions if "." in (d := a.dest or "")}
    for section, cls in CLASSES.items():
        for f in cli_fields(cls):
            assert f"{section}.{f.name}" in offered, f"{cls.__name__}.{f.name} is offered by no command"


def test_options_that_do_not_apply_are_not_offered():
    sweep = {o for a in _subparser("sweep")._actions for o in a.option_strings}
    assert "--k" not in sweep and "--corruption" not in sweep       # a sweep trains beta-VAEs (k = 1) and the AE
    evaluate = {o for a in _subparser("evaluate")._actions for o in a.option_strings}
    assert "--epochs" not in evaluate and "--latent-dim" not in evaluate
    sample = {o for a in _subparser("sample")._actions for o in a.option_strings}
    assert "--n-samples" not in sample and "--lr" not in sample


def test_documented_options_exist():
    """Every `vaelab COMMAND ... --option` in README.md and docs/ is an option of that command."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    missing = []
    for path in texts:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "unrecognized arguments" in line:      # docs/errors.md shows a misspelt option on purpose
                continue
            for m in re.finditer(r"vaelab ([a-z-]+)((?: +[^ `|;&#]+)*)", line):
                command = m.group(1)
                if command not in cli.COMMANDS:
                    continue
                command = cli.mol_cli.route_compare([command, *m.group(2).split()])[0]
                opts = {o for a in _subparser(command)._actions for o in a.option_strings}
                for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(2)):
                    if opt not in opts:
                        missing.append(f"{path.name}: vaelab {command} {opt}")
    assert not missing, missing


def test_size_and_name_defaults_stay_open_only_when_not_given():
    args = cli.build_parser(["compare"]).parse_args(["compare", "--latent-dim", "16", "--epochs", "20"])
    cfg = cli.compare_config(args)
    assert "model.n_latent" not in cfg.auto and "train.epochs" not in cfg.auto
    r = cfg.resolved((1, 8, 8))
    assert r.model.n_latent == 16 and r.train.epochs == 20       # the class defaults, asked for, are kept
    assert r.train.batch_size == 64 and r.model.hidden == (256, 128)   # the rest: the small-image table
    # from Python: a value other than the class default is the caller's
    assert CompareConfig(model=ModelConfig(n_latent=4)).resolved((1, 8, 8)).model.n_latent == 4
    assert CompareConfig(model=ModelConfig(n_latent=16), auto=()).resolved((1, 8, 8)).model.n_latent == 16
    d = r.to_dict()
    assert d["model"]["beta"] is None and d["model"]["k"] is None      # open: the model name decides
    assert CompareConfig.from_dict(d) == r


def test_options_summary_names_what_differs():
    cfg = CompareConfig(model=ModelConfig(binarize="dynamic"), train=TrainConfig(precision="bf16", on_nan="retry"),
                        use_pair_2d=False)
    s = options_summary(cfg.to_dict())
    assert s == "--binarize dynamic --precision bf16 --on-nan retry --no-pair"
    assert options_summary(CompareConfig().to_dict()) == "all defaults"


# -- every argument in range (issue 15.3): one clear line, exit 2, no traceback -----------------------
BAD = [
    (["train", "vae", "--seed", str(2**64)], "--seed must be"),                     # beyond 64 bits
    (["train", "vae", "--seed", "-1"], "--seed must be in [0,"),
    (["compare", "--split-seed", str(2**63)], "--split-seed must be"),
    (["sample", "CKPT", "--out", "x.png", "--seed", str(10**30)], "--seed must be"),
    (["evaluate", "CKPT", "--out", "x.json", "--seed", str(2**63)], "--seed: must be between"),
    (["train", "vae", "--latent-dim", "100000"], "--latent-dim must be in [1, 4096]"),
    (["train", "vae", "--hidden", "512,10000000"], "--hidden must be in [1, 65536]"),
    (["train", "vae", "--hidden", "512,x"], "--hidden must be comma-separated integers"),
    (["compare", "--channels", "32,0"], "channels must be positive"),
    (["train", "vae", "--epochs", "0"], "epochs must be >= 1"),
    (["train", "vae", "--batch-size", "100000000"], "--batch-size must be"),
    (["sample", "CKPT", "--out", "x.png", "--n", "1000000000000"], "--n must be"),
    (["compare", "--n-samples", "5"], "--n-samples must be in [10,"),
    (["compare", "--iw-k", "0"], "--iw-k must be in [1,"),
    (["compare", "--seeds", "100000"], "--seeds must be"),
    (["train", "vae", "--lr", "0"], "learning rate must be > 0"),
    (["train", "vae", "--lr", "1e9"], "--lr must be in (0, 10]"),
    (["train", "vae", "--lr", "nan"], "finite"),
    (["train", "vae", "--sigma", "-1", "--likelihood", "gaussian"], "sigma must be > 0"),
    (["train", "vae", "--val-fraction", "1"], "--val-fraction must be in [0, 1)"),
    (["train", "vae", "--val-fraction", "-0.1"], "--val-fraction must be in [0, 1)"),
    (["train", "vae", "--free-bits", "-1"], "free bits must be >= 0"),
    (["train", "vae", "--beta", "inf"], "finite"),
    (["sweep", "--beta", "0,1"], "--beta must be in (0,"),
    (["train", "vae", "--epochs", "1x"], "invalid int value"),
    (["train", "vae", "--kl-cycle-steps", "100"], "--kl-schedule cyclical"),
    (["compare", "--models", "ae,gan"], "unknown model 'gan'"),
]


@pytest.mark.parametrize("argv,phrase", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_out_of_range_arguments_are_one_line(argv, phrase, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        rc = cli.main(argv)
    except SystemExit as e:        # argparse's own errors (not a number, an unknown choice)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert phrase in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())          # refused before anything was written


def test_python_callers_get_the_same_checks():
    with pytest.raises(vaelab.errors.ConfigError, match="--latent-dim must be"):
        ModelConfig(n_latent=10**6)
    with pytest.raises(vaelab.errors.ConfigError, match="--seed must be"):
        TrainConfig(seed=2**63)
    with pytest.raises(vaelab.errors.ConfigError, match="--samplers: unknown value"):
        EvalConfig(samplers=("prior", "flow"))


# -- the fast CLI (issue 13.1): no torch for --help ------------------------------------------------------
@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in cli.COMMANDS], ["datasets"]])
def test_help_imports_no_heavy_module(argv):
    code = ("import sys, runpy; sys.argv = ['vaelab', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('vaelab', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'matplotlib', 'sklearn', 'scipy') if m in sys.modules]\n"
            "sys.stderr.write('HEAVY=' + ','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert "usage:" in r.stdout or argv == ["datasets"]
    assert r.stderr.strip().endswith("HEAVY="), r.stderr[-500:]


def test_import_vaelab_is_light():
    code = "import sys, vaelab; print(vaelab.CompareConfig.__name__, 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert r.stdout.split() == ["CompareConfig", "False"], r.stderr


# -- end to end: the values land in what was trained and measured ---------------------------------------
TINY = ["--max-train", "200", "--latent-dim", "2", "--hidden", "16", "--epochs", "1", "--quiet"]


def test_train_options_land_in_config_json(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["train", "vae", "--out", str(out), *TINY, "--batch-size", "32", "--lr", "0.002", "--weight-decay",
            "0.01", "--grad-clip", "5", "--seed", "3", "--device", "cpu", "--patience", "4", "--kl-schedule",
            "cyclical", "--kl-warmup-steps", "4", "--kl-cycle-steps", "10", "--log-every", "3", "--on-nan", "retry",
            "--max-retries", "1", "--binarize", "dynamic", "--free-bits", "0.1", "--val-fraction", "0.2",
            "--split-seed", "2", "--classes", "1,2,3", "--precision", "bf16"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    conf = json.loads((out / "config.json").read_text())
    assert conf["train"] | {} == {**conf["train"], "batch_size": 32, "lr": 0.002, "weight_decay": 0.01,
                                  "grad_clip": 5.0, "seed": 3, "device": "cpu", "patience": 4,
                                  "kl_schedule": "cyclical", "kl_warmup_steps": 4, "kl_cycle_steps": 10,
                                  "log_every": 3, "on_nan": "retry", "max_retries": 1, "precision": "bf16"}
    assert conf["model"]["binarize"] == "dynamic" and conf["model"]["free_bits"] == 0.1
    assert conf["model"]["n_latent"] == 2 and conf["model"]["hidden"] == [16] and conf["model"]["n_classes"] == 0
    assert conf["data"]["classes"] == [1, 2, 3] and conf["data"]["split_seed"] == 2
    assert conf["data"]["val_fraction"] == 0.2 and conf["data"]["max_train"] == 200
    # --resume with other options: refused, every difference listed; --epochs may differ
    rc = cli.main(["train", "vae", "--out", str(out), *TINY, "--resume", "--lr", "0.01", "--seed", "4"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    for what in ("train.lr", "train.seed", "train.batch_size", "model.binarize", "data.classes", "data.split_seed"):
        assert what in err, what
    assert "May differ: train.epochs" in err


SEVEN_A = ["--binarize", "dynamic", "--precision", "bf16", "--on-nan", "retry", "--kl-schedule", "cyclical",
           "--kl-warmup-steps", "2", "--kl-cycle-steps", "6"]
SEVEN_B = ["--likelihood", "gaussian", "--learn-sigma", "--dequantize", "17"]
COMPARE_TINY = ["compare", "--models", "ae,vae", "--no-pair", "--n-samples", "20", "--iw-k", "2",
                "--n-interp-pairs", "5", "--samplers", "prior", *TINY]


@pytest.mark.parametrize("options", [SEVEN_A, SEVEN_B], ids=["binarize-bf16-retry-cycle", "learned-sigma-dequantize"])
def test_the_seven_compare_options_change_the_run(options, tmp_path, capsys, judge_cache):
    out = tmp_path / "run"
    assert cli.main([*COMPARE_TINY, "--out", str(out), *options]) == 0, capsys.readouterr().err
    run_cfg = CompareConfig.from_dict(json.loads((out / "run_config.json").read_text()))
    doc = json.loads((out / "metrics.json").read_text())
    expect_model = ({"binarize": "dynamic"} if options is SEVEN_A else
                    {"likelihood": "gaussian", "learn_sigma": True, "dequantize": 17})
    expect_train = ({"precision": "bf16", "on_nan": "retry", "kl_cycle_steps": 6, "kl_schedule": "cyclical"}
                    if options is SEVEN_A else {})
    for name, value in expect_model.items():
        assert getattr(run_cfg.model, name) == value and doc["config"]["model"][name] == value
        for m in ("ae", "vae"):     # the configs the models were trained with
            assert json.loads((out / "models" / m / "config.json").read_text())["model"][name] == value
    for name, value in expect_train.items():
        assert getattr(run_cfg.train, name) == value and doc["config"]["train"][name] == value
        assert json.loads((out / "models" / "vae" / "config.json").read_text())["train"][name] == value
    html = (out / "report.html").read_text(encoding="utf-8")
    for token in options:
        if token.startswith("--"):
            assert token in html, token          # the report's protocol names every option that was set


def test_compare_resume_lists_every_difference(tmp_path, capsys, judge_cache):
    out = tmp_path / "run"
    argv = [*COMPARE_TINY, "--models", "ae", "--out", str(out)]
    assert cli.main(argv) == 0
    capsys.readouterr()
    rc = cli.main([*argv, "--resume", "--lr", "0.01", "--seed", "5", "--binarize", "static", "--threads", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert all(k in err for k in ("train.lr", "train.seed", "model.binarize")) and "3 option(s) differ" in err
    assert "--threads" in err and "cannot change the result" in err
    assert "n_threads" not in err.split("May differ")[0]       # threads is not a difference
    # only --threads differs: resumed, with a note
    assert cli.main([*argv, "--resume", "--threads", "2"]) == 0
    assert "note: resuming" in capsys.readouterr().err


def test_every_config_with_from_dict_round_trips_through_json():
    """What a worker process or a resumed run rebuilds from JSON is the config that was written."""
    for cls in (DataSpec, ModelConfig, TrainConfig, EvalConfig, ExecutorConfig, MoleculeCompareConfig):
        cfg = cls() if cls is not ModelConfig else ModelConfig(model="vae", input_shape=(1, 8, 8))
        assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg, cls.__name__
