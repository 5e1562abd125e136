"""The bad-input matrix (tests/bad_inputs.py) through the CLI: one clear message, non-zero exit, no traceback,
nothing that existed before altered, and the message is the one docs/errors.md lists."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bad_inputs as B

DOC = B.ROOT / "docs" / "errors.md"


def _doc_rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines() if DOC.exists() else []:
        if line.startswith("| ") and "(`" in line:
            rows[line.split("(`", 1)[1].split("`)", 1)[0]] = line
    return rows


@pytest.mark.parametrize("case", B.CASES, ids=[c.id for c in B.CASES])
def test_bad_input(case: B.Case, tmp_path: Path) -> None:
    if case.needs():
        pytest.skip(case.needs())
    try:
        argv, res, before, after = B.run_case(case, tmp_path)
    except RuntimeError as e:                      # the tmpfs mount of the read-only / full-disk cases
        pytest.skip(str(e))
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.code == case.code != 0, (res.code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == case.lines, res.stderr
    assert lines[-1].startswith("vaelab") and ": error: " in lines[-1], lines[-1]
    assert case.phrase in lines[-1], (case.phrase, lines[-1])
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"files that existed before were altered or removed: {changed}"
    new = sorted(set(after) - set(before))
    assert case.new_files or not new, f"new files: {new}"
    assert not (tmp_path / "UNPICKLED").exists(), "something unpickled the file"
    assert B.table_row(case, argv, res, tmp_path) == _doc_rows().get(case.id), \
        "docs/errors.md is out of date: run python scripts/error_table.py"


def test_doc_lists_every_case() -> None:
    assert list(_doc_rows()) == [c.id for c in B.CASES], "docs/errors.md is out of date: run python scripts/error_table.py"


def test_diverged_run_keeps_checkpoint_and_says_so(tmp_path: Path) -> None:
    """The divergence case leaves config.json saying "diverged" with the reason (nothing else was written)."""
    import json

    case = next(c for c in B.CASES if c.id == "diverged")
    _, res, _, after = B.run_case(case, tmp_path)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["training"]["status"] == "diverged" and "'recon' term became NaN/inf" in cfg["training"]["error"]
    assert sorted(after) == ["run/config.json"]


@pytest.mark.parametrize("case_id", ["missing-folder", "pickle-checkpoint"])
def test_real_process(case_id: str, tmp_path: Path) -> None:
    """The same through `python -m vaelab`: exit code, one line, no traceback (the in-process runner is faithful)."""
    case = next(c for c in B.CASES if c.id == case_id)
    argv = case.setup(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(B.ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "vaelab", *argv], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == case.code
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1 and case.phrase in r.stderr
    assert not (tmp_path / "UNPICKLED").exists()


def test_file_size_limit_is_a_clean_error(tmp_path: Path) -> None:
    """Full-disk fallback that needs no root: RLIMIT_FSIZE makes the checkpoint write fail with EFBIG."""
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # fail the write() instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    (tmp_path / "keep.txt").write_text("before")
    argv = ["train", "vae", "--hidden", "256", "--latent-dim", "2", "--epochs", "1", "--quiet", "--device", "cpu",
            "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(B.ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "vaelab", *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "could not write" in r.stderr and "File too large" in r.stderr
    assert (tmp_path / "keep.txt").read_text() == "before"
    assert not list((tmp_path / "run").glob(".*.tmp")) and not (tmp_path / "run" / "weights.safetensors").exists()
