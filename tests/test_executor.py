"""vaelab.executor and `vaelab compare --workers N`: parallel units give the same metrics.json as one after
the other, a killed worker's unit is redone, and a kill -9 of the whole run resumes to the same numbers."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaelab.executor import (ExecutorError, InProcess, LocalProcesses, Unit, longest_first, pack_folder,
                             unpack_folder)

SKIP = {"timings", "folder", "reused", "train_wall_seconds", "eval_seconds", "seconds"}


def numbers(doc, sections=("models", "reference", "pairs_2d", "differences")):
    """Every value of ``sections`` as {path: value}, timings and paths left out."""
    out = {}

    def walk(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                if k not in SKIP and not k.endswith("seconds"):
                    walk(v, f"{path}/{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]")
        else:
            out[path] = x

    for s in sections:
        walk(doc.get(s), s)
    return out


@pytest.fixture(autouse=True)
def importable_units(monkeypatch):
    """Spawned workers import the unit functions of tests/executor_units.py by name."""
    here = str(Path(__file__).parent)
    monkeypatch.syspath_prepend(here)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))


def test_units_run_in_processes_and_come_back_by_key(tmp_path):
    units = [Unit(f"u{i}", "executor_units:square", {"x": i, "folder": str(tmp_path / f"u{i}")}) for i in range(5)]
    par = LocalProcesses(n_workers=2).run(units)
    seq = InProcess().run(units)
    assert set(par) == {u.key for u in units}
    assert {k: v["y"] for k, v in par.items()} == {k: v["y"] for k, v in seq.items()} == {f"u{i}": i * i for i in range(5)}
    pids = {v["pid"] for v in par.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2        # spawned workers, at most two
    assert (tmp_path / "u3" / "out.txt").read_text() == "9"


def test_the_costliest_units_start_first(tmp_path):
    """Longest-processing-time order: a long unit started last would run alone at the end (the IWAE of a compare)."""
    log = tmp_path / "order.txt"
    works = {"a": 1.0, "b": 3.0, "c": 1.0, "d": 2.0}
    units = [Unit(k, "executor_units:stamp", {"key": k, "log": str(log)}, work=w) for k, w in works.items()]
    assert [u.key for u in longest_first(units)] == ["b", "d", "a", "c"]     # ties keep the given order
    res = LocalProcesses(n_workers=1).run(units)
    assert set(res) == set(works) and log.read_text().split() == ["b", "d", "a", "c"]


def test_iwae_units_weigh_by_their_importance_samples():
    from vaelab.compare import unit_work
    from vaelab.config import CompareConfig, ModelConfig

    cfg = CompareConfig()
    assert unit_work(cfg, "vae") == unit_work(cfg, "ae") == unit_work(cfg, "vae-uniform") == 1.0
    assert unit_work(cfg, "iwae") == 3.0                                     # k = 5 by default
    assert unit_work(dataclasses.replace(cfg, model=ModelConfig(k=9), auto=()), "iwae") == 5.0


def test_a_killed_worker_s_unit_is_redone_and_finished_units_are_kept(tmp_path):
    units = [Unit("a", "executor_units:square", {"x": 3}),
             Unit("b", "executor_units:die_once", {"x": 4, "marker": str(tmp_path / "died")})]

    def again(u):
        return dataclasses.replace(u, spec={**u.spec, "resume": True})

    res = LocalProcesses(n_workers=2, on_retry=again).run(units)
    assert res["a"]["y"] == 9 and res["b"] == {"x": 4, "resumed": True}
    # a unit whose worker dies every time stops the run with a message, not a hang
    always = Unit("c", "executor_units:always_die", {})
    with pytest.raises(ExecutorError, match="died"):
        LocalProcesses(n_workers=2).run([always])


def test_pack_and_unpack_a_folder_and_refuse_paths_outside(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(bytes(range(256)))
    (src / "sub" / "b.txt").write_text("b")
    files = pack_folder(src)
    unpack_folder(files, tmp_path / "dst")
    assert (tmp_path / "dst" / "a.bin").read_bytes() == bytes(range(256))
    assert (tmp_path / "dst" / "sub" / "b.txt").read_text() == "b"
    with pytest.raises(ExecutorError, match="outside"):
        unpack_folder({"../evil.txt": files["a.bin"]}, tmp_path / "dst2")
    assert not (tmp_path / "evil.txt").exists()


# -- the digits comparison --------------------------------------------------------------------------
ARGS = ["--models", "ae,vae", "--seeds", "2", "--epochs", "12", "--n-samples", "100", "--iw-k", "5", "--quiet"]


def _compare(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab", "compare", *ARGS, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def sequential(judge_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "run"
    r = _compare(out, "--workers", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_workers_give_the_same_metrics_as_one_after_the_other(sequential, tmp_path):
    r = _compare(tmp_path / "par", "--workers", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    seq = json.loads((sequential / "metrics.json").read_text())
    par = json.loads((tmp_path / "par" / "metrics.json").read_text())
    assert par["config"]["workers"] == 2 and seq["config"]["workers"] == 1
    assert par["config"]["torch_threads"] == seq["config"]["torch_threads"] == 1     # per unit: small images
    a, b = numbers(seq), numbers(par)
    assert len(a) > 500 and a == b
    # the figures, drawn in the workers (one unit each), are the same list and the same PNG bytes
    assert par["figures"] == seq["figures"] and len(seq["figures"]) >= 12
    for fig in seq["figures"]:
        drawn = (tmp_path / "par" / "figures" / fig["file"]).read_bytes()
        assert drawn == (sequential / "figures" / fig["file"]).read_bytes(), fig["file"]
    # the multi-seed layout, with one folder per (model, seed)
    for name in ("ae", "vae"):
        for s in (0, 1):
            assert (tmp_path / "par" / "models" / name / f"seed-{s}" / "weights.safetensors").is_file()


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the workers are children of a fork server, itself a child of the driver)."""
    parents = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [c for c, pp in parents.items() if pp == parent]
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return st != "Z"


def test_kill_9_with_several_workers_then_resume_gives_the_same_numbers(sequential, tmp_path):
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "vaelab", "compare", *ARGS, "--out", str(out), "--workers", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = [out / "models" / n / f"seed-{s}" / "train_log.jsonl" for n in ("ae", "vae") for s in (0, 1)]
    done = [out / "models" / n / f"seed-{s}" / "config.json" for n in ("ae", "vae") for s in (0, 1)]
    deadline = time.time() + 600
    # kill once a unit has finished training and another is part-way (some epochs logged)
    while time.time() < deadline and p.poll() is None:
        finished = [c for c in done if c.exists() and '"completed"' in c.read_text()]
        partial = [lg for lg in logs if lg.exists() and 0 < lg.read_bytes().count(b"\n") < 12]
        if finished and partial:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be killed"
    workers = _children(p.pid)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t0 = time.time()
    while any(_alive(w) for w in workers) and time.time() - t0 < 10:   # workers leave with the driver
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)
    assert not (out / "metrics.json").exists()
    r = _compare(out, "--workers", "2", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "metrics.json").read_text())
    reused = [rec["train"]["reused"] for m in doc["models"].values() for rec in m["per_seed"]]
    assert any(reused) and not all(reused)          # finished units kept, the others (re)done
    assert numbers(doc) == numbers(json.loads((sequential / "metrics.json").read_text()))


def test_explorer_and_report_find_the_models_of_a_multi_seed_run(sequential, tmp_path, capsys):
    from vaelab.cli import main
    from vaelab.explore.explorer import Explorer, find_model_folders

    found = find_model_folders(sequential)
    assert set(found) == {"ae-2d", "vae-2d", "ae@seed-0", "ae@seed-1", "vae@seed-0", "vae@seed-1"}
    assert found["vae@seed-1"] == sequential / "models" / "vae" / "seed-1"
    ex = Explorer(sequential, judge_loader=None)
    assert ex.models["vae@seed-1"].path.name == "seed-1"
    html = (sequential / "report.html").read_bytes()
    assert main(["report", str(sequential), "--out", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_bytes() == html
    doc = json.loads((sequential / "metrics.json").read_text())
    assert [r["train"]["folder"] for r in doc["models"]["vae"]["per_seed"]] == [
        str(sequential / "models" / "vae" / f"seed-{s}") for s in (0, 1)]


def test_sweep_units_in_workers_give_the_same_points(tmp_path):
    from vaelab.cli import main

    args = ["sweep", "--beta", "0.5,4", "--epochs", "2", "--latent-dim", "4", "--hidden", "32", "--max-train", "300",
            "--quiet"]
    assert main([*args, "--workers", "1", "--out", str(tmp_path / "w1")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "w2")]) == 0
    a, b = (json.loads((tmp_path / w / "sweep.json").read_text()) for w in ("w1", "w2"))
    assert a["points"] == b["points"] and a["ae"] == b["ae"] and len(a["points"]) == 2
    assert (tmp_path / "w2" / "models" / "beta-4" / "weights.safetensors").is_file()


def test_the_fork_server_starts_in_the_background_only_for_runs_that_may_use_workers(tmp_path):
    from vaelab.executor import start_fork_server

    assert start_fork_server((), 1) is False                  # one process: nothing to start
    assert start_fork_server((), 2) is True                   # returns at once; a no-op when it already runs
    cmdlines = []
    for pid in _children(os.getpid()):
        try:
            cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    assert any("multiprocessing.forkserver" in c for c in cmdlines)
    units = [Unit(f"u{i}", "executor_units:square", {"x": i}) for i in range(3)]
    assert {k: v["y"] for k, v in LocalProcesses(n_workers=2).run(units).items()} == {"u0": 0, "u1": 1, "u2": 4}


def test_auto_workers_use_the_cores_only_for_units_worth_a_worker():
    import torch

    from vaelab.compare import AUTO_MIN_WORK, resolve_workers, training_work
    from vaelab.config import ExecutorConfig
    from vaelab.executor import default_workers

    cpu = torch.device("cpu")
    assert ExecutorConfig().n_workers == 0                                 # the default is auto
    digits_unit = training_work(1294, 60, (1, 8, 8))                      # the default digits compare's unit
    assert digits_unit >= AUTO_MIN_WORK > training_work(300, 2, (1, 8, 8))
    assert resolve_workers(0, 8, cpu, 0, digits_unit) == min(default_workers(600 * 2**20), 8)
    assert resolve_workers(0, 8, cpu, 0, training_work(300, 2, (1, 8, 8))) == 1   # a tiny run stays in-process
    assert resolve_workers(0, 1, cpu, 0, digits_unit) == 1                 # never more workers than units
    assert resolve_workers(0, 8, torch.device("cuda"), 0, digits_unit) == 1   # one GPU: one process
    assert resolve_workers(3, 8, cpu, 0, 10) == 3                          # what the user asked for


SUBNORMALS = """
import sys, torch
{before}
{call}
x = torch.full((1 << 22,), 1000, dtype=torch.int32).view(torch.float32)   # 1.4e-42, subnormal, by its bits
print(int((x * 1.0).count_nonzero()), int((x[:1].clone() * 1.0).count_nonzero()))   # two threads; this one
"""


@pytest.mark.parametrize("before, call", [
    ("", ""),                                                           # IEEE: every subnormal survives
    ("", "from vaelab.budget import flush_denormals; flush_denormals()"),
    ("", "from vaelab.cli import main; assert main(['evaluate', '/nonexistent/model', '--out', '/nonexistent/m.json']) == 2"),  # the CLI, first thing
    ("", "import vaelab; from vaelab.data import load_dataset; from vaelab.config import TrainConfig; "
         "vaelab.fit(vaelab.ModelConfig(model='ae', input_shape=(1, 8, 8), hidden=(16,), n_latent=2), load_dataset('digits', max_train=64), "
         "TrainConfig(epochs=1), progress=False)"),
    ("torch.set_num_threads(2); torch.ones(1 << 22).sum()", "from vaelab.budget import flush_denormals; flush_denormals()"),
])
def test_the_cli_fit_and_flush_denormals_flush_subnormal_numbers_in_every_thread(before, call):
    """Subnormal numbers take a slow path on x86 CPUs (AdamW's moments of dead weights become subnormal after about
    800 steps: 1.6-1.8x slower epochs, benchmarks/README.md). Set before torch's thread pool starts, the mode holds
    in every thread; set after it (the last case), in the calling thread only (documented in flush_denormals)."""
    r = subprocess.run([sys.executable, "-c", SUBNORMALS.format(before=before, call=call)], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr
    left, main_thread_left = map(int, r.stdout.split()[-2:])
    if not call:
        assert (left, main_thread_left) == (1 << 22, 1)
    elif before:
        assert main_thread_left == 0 and 0 < left < 1 << 22    # the other thread's half survives
    else:
        assert (left, main_thread_left) == (0, 0)


def test_workers_flush_subnormal_numbers_in_every_thread():
    units = [Unit(f"u{i}", "executor_units:subnormals_left", {}) for i in range(2)]
    assert {k: v["left"] for k, v in LocalProcesses(n_workers=2).run(units).items()} == {"u0": 0, "u1": 0}
