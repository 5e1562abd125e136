"""torchrun data parallelism: 2 CPU processes (gloo) must train what 1 process trains with the same global batch.

Each test launches ``torchrun --standalone --nproc-per-node 2 -m vaelab train ...`` on digits and
compares with an in-process ``fit`` whose batch size is the global batch (2 x per-rank batch).

* ``ae`` is deterministic, so the two runs take the same optimiser steps on the same images. They are
  not bit-exact: DDP sums two half-batch gradients where one process sums one full batch, a different
  float32 summation order (~1e-7 relative per step), which Adam amplifies a little over ~60 steps.
  Tolerance: weights within 2e-3 absolute (weights are O(0.1)); a bug in the gradient averaging
  (sum instead of mean, a rank training on the wrong slice, a missing sync) moves them by ~1e-2 or more.
* ``vae`` draws its reparameterisation noise per rank (independent streams), so the runs see different
  noise: their test losses agree within the seed-to-seed noise, checked at 2 %.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from vaelab.checkpoint import load_tensors
from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.models import model_config
from vaelab.train import fit

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, PER_RANK_BATCH, WORLD = 3, 32, 2

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="no gloo backend")]


def _torchrun(model: str, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
           "-m", "vaelab", "train", model, "--dataset", "digits", "--epochs", str(EPOCHS),
           "--batch-size", str(PER_RANK_BATCH), "--seed", "0", "--device", "cpu", "--quiet", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _one_process(model: str, out: Path):
    data = load_dataset("digits", seed=0)
    mcfg = model_config(model, input_shape=data.shape)
    tcfg = TrainConfig(epochs=EPOCHS, batch_size=PER_RANK_BATCH * WORLD, seed=0, device="cpu")
    return fit(mcfg, data, tcfg, out, progress=False)


def test_two_ranks_match_one_process_ae(tmp_path: Path) -> None:
    _torchrun("ae", tmp_path / "two")
    one = _one_process("ae", tmp_path / "one")
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["training"]["world_size"] == WORLD
    assert cfg["training"]["steps"] == one.history[-1]["step"]          # same number of global steps
    w2, _ = load_tensors(tmp_path / "two" / "last.safetensors")
    w1, _ = load_tensors(tmp_path / "one" / "last.safetensors")
    names = [k for k in w1 if k.startswith("model.")]
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in names)
    moved = max(float((w1[k] - load_tensors(tmp_path / "one" / "weights.safetensors")[0][k[6:]]).abs().max())
                for k in names[:1])
    assert diff < 2e-3, f"2-rank weights differ from the 1-process run by {diff:.2e}"
    assert moved >= 0.0
    assert abs(cfg["test"]["loss"] - one.test["loss"]) < 1e-3 * abs(one.test["loss"])


def test_two_ranks_match_one_process_vae(tmp_path: Path) -> None:
    _torchrun("vae", tmp_path / "two")
    one = _one_process("vae", tmp_path / "one")
    two = json.loads((tmp_path / "two" / "config.json").read_text())
    assert two["training"]["world_size"] == WORLD and two["training"]["status"] == "completed"
    rel = abs(two["test"]["loss"] - one.test["loss"]) / abs(one.test["loss"])
    assert rel < 0.02, f"test loss {two['test']['loss']:.3f} (2 ranks) vs {one.test['loss']:.3f} (1 process)"
    # the log was written once (by rank 0), one line per epoch
    assert len((tmp_path / "two" / "train_log.jsonl").read_text().splitlines()) == EPOCHS
