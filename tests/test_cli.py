"""The command line end to end on digits, and its error behaviour."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vaelab

from vaelab.cli import COMMANDS, build_parser, main


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(COMMANDS) <= set(sub.choices)
    for name, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, f"{name} {action.option_strings or action.dest}"


def test_train_sample_end_to_end(tmp_path, capsys):
    out = tmp_path / "vae"
    rc = main(["train", "vae", "--epochs", "2", "--latent-dim", "4", "--hidden", "64,32", "--batch-size", "64",
               "--out", str(out), "--quiet"])
    assert rc == 0
    assert {"config.json", "weights.safetensors", "last.safetensors", "train_log.jsonl"} <= {p.name for p in out.iterdir()}
    assert "test (best weights)" in capsys.readouterr().out
    assert main(["sample", str(out), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sample", str(out), "--n", "10", "--sampler", "gmm", "--out", str(tmp_path / "s.npy")]) == 0
    x = np.load(tmp_path / "s.npy", allow_pickle=False)
    assert x.shape == (10, 1, 8, 8) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    # the same command again refuses to overwrite the trained model
    rc = main(["train", "vae", "--epochs", "2", "--out", str(out), "--quiet"])
    assert rc != 0 and "--resume" in capsys.readouterr().err
    # resume to more epochs continues the run
    assert main(["train", "vae", "--epochs", "3", "--latent-dim", "4", "--hidden", "64,32", "--batch-size", "64",
                 "--out", str(out), "--quiet", "--resume"]) == 0
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("argv,phrase", [
    (["train", "gan"], "unknown model 'gan'"),
    (["train", "vae", "--latent-dim", "0"], "latent size must be a positive integer"),
    (["train", "vae", "--hidden", "512,x"], "--hidden must be comma-separated integers"),
    (["train", "cvae", "--classes", "3"], "at least two distinct labels"),
    (["train", "vae", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], "dataset-fashion-mnist"),
    (["sample", "/nonexistent", "--out", "x.png"], "does not exist"),
    (["train", "vae", "--device", "cuda"], "no CUDA GPU"),
])
def test_errors_are_one_clear_line(argv, phrase, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(argv + (["--quiet"] if argv[0] == "train" else []))
    err = capsys.readouterr().err
    assert rc != 0 and phrase in err and "Traceback" not in err


def test_datasets_command(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "fashion-mnist" in out


def test_console_entry_point_runs_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(vaelab.__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "vaelab", "sample", str(tmp_path), "--out", "a.png"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 2 and "no config.json" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "vaelab", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "train" in r.stdout
