"""Crash safety: `kill -9` at random moments, then `vaelab train --resume`, ends bit-identical to an uninterrupted run.

Each test starts `python -m vaelab train vae` on digits (a small model) in a subprocess, waits until
training has begun (config.json is rewritten at the start of fit), sleeps a seeded random part of
the training time, sends SIGKILL, checks that every checkpoint on disk still loads, and resumes;
after the kills one last `--resume` runs to the end. The final weights.safetensors and
last.safetensors (weights, optimiser moments, RNG states) must equal the uninterrupted run's bit
for bit, and so must every logged loss.

    pytest tests/test_crash_safety.py                          # 1 and 3 kills, plus Ctrl-C
    VAELAB_KILL_REPEATS=20 pytest tests/test_crash_safety.py   # also 20 seeded runs of 3 kills each
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "vae", "--epochs", "12", "--hidden", "64", "--latent-dim", "4", "--batch-size", "32", "--quiet",
        "--device", "cpu", "--seed", "3"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}   # one thread: same kernels in every run
REPEATS = int(os.environ.get("VAELAB_KILL_REPEATS", "0"))


def start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaelab", *ARGS, "--out", str(out), *extra], env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_fit(p: subprocess.Popen, out: Path, since: float, timeout: float = 300) -> float:
    """Block until fit has (re)written config.json after ``since``, or the process ended; returns that time."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            if (out / "config.json").stat().st_mtime > since:
                return time.time()
        except FileNotFoundError:
            pass
        if p.poll() is not None:
            return time.time()
        time.sleep(0.01)
    p.kill()
    raise TimeoutError("training did not start")


def finish(p: subprocess.Popen, timeout: float = 600) -> str:
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return err


def tensors(path: Path) -> dict[str, torch.Tensor]:
    from vaelab.checkpoint import load_tensors

    return load_tensors(path)[0]


def losses(out: Path) -> list[dict]:
    """The logged losses per epoch, without the timings."""
    from vaelab.io import read_jsonl

    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds", "images_per_s")} for r in read_jsonl(out / "train_log.jsonl")]


def check_loadable(out: Path) -> None:
    """Whatever a kill left must load: the resume point and the best weights (verified against config.json)."""
    from vaelab.checkpoint import load_model

    if (out / "last.safetensors").exists():
        tensors(out / "last.safetensors")
    if (out / "weights.safetensors").exists():
        load_model(out)


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("weights.safetensors", "last.safetensors"):
        ta, tb = tensors(a / name), tensors(b / name)
        assert ta.keys() == tb.keys()
        diff = [k for k in ta if not torch.equal(ta[k], tb[k])]
        assert not diff, f"{name}: tensors differ from the uninterrupted run: {diff[:5]}"
    assert losses(a) == losses(b)
    ca, cb = (json.loads((p / "config.json").read_text()) for p in (a, b))
    assert ca["test"] == cb["test"]
    for k in ("status", "best_epoch", "best_val_loss", "epochs_done", "steps"):
        assert ca["training"][k] == cb["training"][k], k
    assert not list(a.glob(".*.tmp")), "temporary files left behind"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The uninterrupted run and how long its training took (from fit's start to exit)."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    t0 = time.time()
    p = start(out)
    t_fit = wait_for_fit(p, out, t0 - 1)
    finish(p)
    return out, time.time() - t_fit


EPOCHS = int(ARGS[ARGS.index("--epochs") + 1])


def wait_for_epochs(p: subprocess.Popen, out: Path, target: int, since: float, timeout: float = 600) -> float | None:
    """Block until ``target`` epochs are logged (or the process ended); return the last observed epoch's duration."""
    t_end = time.monotonic() + timeout
    n, t_last, duration = len(losses(out)), since, None
    while time.monotonic() < t_end and n < target and p.poll() is None:
        time.sleep(0.01)
        m = len(losses(out))
        if m > n:
            now = time.time()
            duration, t_last, n = (now - t_last) / (m - n), now, m
    return duration


def kill_and_resume(baseline: tuple[Path, float], tmp_path: Path, n_kills: int, seed: int) -> None:
    """Kill each run during a seeded random epoch of those it has left (never the last one), at a seeded random
    moment of that epoch. The moment is scaled by an epoch's duration measured in the same run, so a kill lands
    before the end whatever the machine's load (a fixed delay did not: a run on a quieter machine finished first)."""
    ref, train_seconds = baseline
    rng = random.Random(seed)
    out = tmp_path / "run"
    killed = 0
    for i in range(n_kills):
        done = len(losses(out))
        if done >= EPOCHS - 1:
            break
        t0 = time.time()
        p = start(out, *(["--resume"] if i else []))
        t_fit = wait_for_fit(p, out, t0 - 0.01 if i else t0 - 1)
        target = rng.randrange(done, EPOCHS - 1)          # epochs to let finish first; >= 1 whole epoch stays
        observed = wait_for_epochs(p, out, target, since=t_fit)
        epoch_seconds = min(observed or math.inf, train_seconds / EPOCHS)
        time.sleep(rng.uniform(0.0, 0.9) * epoch_seconds)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait(timeout=60)
        check_loadable(out)
    finish(start(out, "--resume"))
    assert killed >= 1, "every run finished before its kill: the test did not test anything"
    assert_same_run(out, ref)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(baseline, tmp_path: Path) -> None:
    """Three kills at seeded points, each resumed (the first is a kill of a fresh run: the one-kill case)."""
    kill_and_resume(baseline, tmp_path, 3, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(REPEATS))
def test_sigkill_repeated(baseline, tmp_path: Path, repeat: int) -> None:
    """VAELAB_KILL_REPEATS=20: twenty more seeded runs of three kills each."""
    kill_and_resume(baseline, tmp_path, 3, seed=1000 + repeat)


@pytest.mark.slow
def test_ctrl_c_saves_and_says_how_to_resume(baseline, tmp_path: Path) -> None:
    """SIGINT after two epochs: exit 130, one line naming --resume, the checkpoint loads, the resume matches."""
    ref, _ = baseline
    out = tmp_path / "run"
    p = start(out)
    t_end = time.monotonic() + 300
    while time.monotonic() < t_end and len(losses(out)) < 2 and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "interrupted" in err and "same command plus --resume" in err, err
    check_loadable(out)
    done = json.loads(tensors_meta(out / "last.safetensors")["state"])["epoch"]
    assert f"checkpoint of epoch {done} is saved" in err
    finish(start(out, "--resume"))
    assert_same_run(out, ref)


def tensors_meta(path: Path) -> dict[str, str]:
    from vaelab.checkpoint import load_tensors

    return load_tensors(path)[1]


def test_stale_temporaries_are_removed_on_resume(tmp_path: Path) -> None:
    """A kill during an atomic write leaves .NAME.*.tmp; the next run of the trainer removes its own."""
    from vaelab.config import TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import model_config
    from vaelab.train import fit

    data = load_dataset("digits", max_train=200)
    mcfg = model_config("vae", input_shape=data.shape, n_latent=2, hidden=(16,))
    out = tmp_path / "run"
    fit(mcfg, data, TrainConfig(epochs=1, device="cpu"), out, progress=False)
    stale = out / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    other = out / ".notes.txt.tmp"                 # not the trainer's: left alone
    other.write_bytes(b"mine")
    fit(mcfg, data, TrainConfig(epochs=2, device="cpu"), out, resume=True, progress=False)
    assert not stale.exists() and other.exists()
