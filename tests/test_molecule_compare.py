"""The molecule compare runs through the compare loop's units: --workers gives the same numbers as one after
the other, and a run killed with SIGKILL finishes under --resume with the numbers of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from test_executor import numbers
from test_molecule_models import smiles_file  # noqa: F401  (the 300-molecule smiles:FILE fixture)

pytestmark = pytest.mark.slow
EPOCHS = 3


def _args(smiles_file, out) -> list[str]:
    return [sys.executable, "-m", "vaelab", "compare", "--dataset", f"smiles:{smiles_file}", "--models", "ae,vae",
            "--epochs", str(EPOCHS), "--n-test", "40", "--n-samples", "40", "--latent-dim", "8", "--hidden", "32",
            "--embed-dim", "16", "--sigmas", "0.5", "--design-starts", "0", "--quiet", "--out", str(out)]


def test_a_killed_molecule_compare_resumes_to_the_uninterrupted_numbers(smiles_file, tmp_path, judge_cache):  # noqa: F811
    pytest.importorskip("fcd_torch")
    whole = subprocess.run(_args(smiles_file, tmp_path / "whole") + ["--workers", "2"], capture_output=True,
                           text=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "killed"
    # in this process, on one thread as in the workers: on some CPUs (AVX-512) training's float sums differ in
    # the last bits between one and two threads, and ae is trained here and kept
    p = subprocess.Popen(_args(smiles_file, out) + ["--workers", "1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    ae_cfg, vae_log = out / "models" / "ae" / "config.json", out / "models" / "vae" / "train_log.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:     # ae finished, vae part-way through its epochs
        if ae_cfg.exists() and '"completed"' in ae_cfg.read_text() and vae_log.exists() \
                and 0 < vae_log.read_bytes().count(b"\n") < EPOCHS:
            break
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "metrics.json").exists()
    # resumed with the workers of the uninterrupted run: a unit's thread count follows the executor (one thread
    # per worker), and ChemNet's float sums (FCD) differ in the last bits between thread counts
    again = subprocess.run(_args(smiles_file, out) + ["--resume", "--workers", "2"], capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["models"]["ae"]["reused"] is True and doc["models"]["vae"]["reused"] is False
    ref = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    a, b = numbers(ref, ("models", "reference")), numbers(doc, ("models", "reference"))
    assert len(a) > 50 and a == b
    # a different protocol is refused, not mixed into the run
    r = subprocess.run(_args(smiles_file, out) + ["--resume", "--lr", "0.01"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "lr" in r.stderr and "Traceback" not in r.stderr


def test_the_gpu_preset_sets_the_full_moses_protocol_and_options_override_it():
    from vaelab import cli
    from vaelab.molecules import defaults

    def config(*argv):
        args = cli.build_parser(["compare-molecules"]).parse_args(["compare-molecules", *argv])
        return cli.mol_cli.compare_config(args)

    cpu, gpu = config(), config("--preset", "gpu")
    assert (cpu.subset, cpu.hidden, cpu.epochs) == (defaults.SUBSET, defaults.HIDDEN, defaults.EPOCHS)
    assert gpu.subset is None and gpu.max_smiles_len is None and gpu.n_ref is None       # all of MOSES
    assert (gpu.hidden, gpu.latent_dim, gpu.batch_size, gpu.lr, gpu.epochs, gpu.n_samples, gpu.device) == \
        (512, 128, 512, 3e-4, 100, 30_000, "cuda")
    mixed = config("--preset", "gpu", "--epochs", "3", "--subset", "2000")
    assert (mixed.epochs, mixed.subset, mixed.hidden) == (3, 2000, 512)     # what the user typed wins


def test_the_gpu_preset_without_a_gpu_is_one_clear_message(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    r = subprocess.run([sys.executable, "-m", "vaelab", "compare", "--dataset", "moses", "--preset", "gpu", "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--preset gpu" in r.stderr and "needs a CUDA GPU" in r.stderr and "--device cpu" in r.stderr
    assert not (tmp_path / "run").exists()
