"""One writer per run folder: two real processes on one --out, a stale lock after kill -9, the lock's rules."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.lock import LOCK_NAME, LockedError, hold

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
HOLDER = ("import sys, time\nfrom vaelab.lock import hold\nwith hold(sys.argv[1], 'train'):\n"
          "    print('held', flush=True)\n    time.sleep(120)\n")


def _holder(folder: Path) -> subprocess.Popen:
    """A real process that takes the folder's lock and sleeps (it prints 'held' once it holds it)."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_two_trains_on_one_out_exactly_one_writes(tmp_path):
    out = tmp_path / "m"
    args = [sys.executable, "-m", "vaelab", "train", "vae", "--epochs", "40", "--hidden", "64", "--latent-dim", "4",
            "--quiet", "--device", "cpu", "--out", str(out)]
    procs = [subprocess.Popen(args, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.pid, p.wait(timeout=600), p.stderr.read()) for p in procs]
    ok = [r for r in results if r[1] == 0]
    refused = [r for r in results if r[1] != 0]
    assert len(ok) == 1 and len(refused) == 1, results
    winner_pid, (_, _, err) = ok[0][0], refused[0]
    assert f"{out} is in use by another vaelab process (PID {winner_pid}, vaelab train)" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    conf = json.loads((out / "config.json").read_text())
    assert conf["training"]["status"] == "completed" and conf["training"]["epochs_done"] == 40
    assert not (out / LOCK_NAME).exists()                       # released and removed on a clean exit


def test_a_second_command_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    p = _holder(run)
    try:
        with pytest.raises(LockedError, match=f"in use by another vaelab process \\(PID {p.pid}, vaelab train\\)"):
            with hold(run, "compare"):
                pass
        # every command that writes the folder is refused with one message and a non-zero exit, files untouched
        (run / "metrics.json").write_text("{}")
        for argv in (["report", str(run)], ["sweep", "--beta", "1", "--epochs", "1", "--out", str(run), "--quiet"],
                     ["compare", "--out", str(run), "--quiet"], ["train", "ae", "--out", str(run), "--quiet"]):
            assert main(argv) != 0
            err = capsys.readouterr().err
            assert f"PID {p.pid}" in err and str(run) in err and "Traceback" not in err, (argv, err)
        assert sorted(f.name for f in run.iterdir()) == sorted([LOCK_NAME, "metrics.json"])
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (run / LOCK_NAME).read_text().split()[0] == str(p.pid)     # the dead holder's file is still there
    with hold(run, "compare"):                                         # ... and is taken over
        assert (run / LOCK_NAME).read_text().split() == [str(os.getpid()), "compare"]
    assert not (run / LOCK_NAME).exists()


def test_evaluate_locks_its_output_file_and_a_folder_made_for_nothing_is_removed(tmp_path):
    target = tmp_path / "sub" / "vae.json"
    with hold(target, "evaluate", is_file=True):
        assert (tmp_path / "sub" / ".vae.json.lock").exists()
        with hold(tmp_path / "sub" / "other.json", "evaluate", is_file=True):   # another file: another lock
            pass
    assert not (tmp_path / "sub").exists()                             # created for the lock only, so removed
    with hold(tmp_path / "absent", "report", create=False):            # report writes only into existing folders
        pass
    assert not (tmp_path / "absent").exists()
