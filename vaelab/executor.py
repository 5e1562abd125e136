"""Executors: run the independent units of a comparison (one (model, seed) each) in-process, in local
worker processes, or as Ray tasks, and hand their results back in submission order.

    results = make_executor("local", n_workers=2).run(units)      # {unit.key: result dict}

A ``Unit`` names an importable function (``"module:function"``) and its JSON arguments; the
function writes the unit's model folder and returns a JSON document. Only JSON crosses a process
boundary (strings over the pool's pipe, the same strings to Ray), so a unit computes the same
numbers wherever it runs: every random draw of a unit is seeded from its own (model, seed), never
from state another unit left behind, and the results are assembled by key, not by finishing order.

Executors:
  * ``InProcess``: one unit after the other in this process (``--workers 1``).
  * ``LocalProcesses(n)``: a pool of ``n`` worker processes, forked from a fork server that imported the
    units' modules once (spawned fresh interpreters where there is no fork server; never a fork of the driver's
    torch thread pools). Each worker sets its own thread count (one thread for small images). A
    worker that dies (killed, out of memory) breaks the pool: the pool is rebuilt and the units that
    had not returned are run again, resuming from their last epoch checkpoint; finished units are kept.
    Workers exit when the driver dies (a kill -9 of ``vaelab compare`` leaves no orphan writing).
  * ``RayExecutor(address)``: each unit is a Ray task with its CPU/GPU request. The task writes the
    unit's folder in a temporary folder on its node and returns its files, which the driver writes
    into its own run folder (or, with ``shared_dir``, into that folder, visible to every node).

Progress: an overall bar (units done of all) and, for local units, one bar per running unit whose
position is the number of epochs its ``train_log.jsonl`` holds (read by the driver, so workers need
no channel back).
"""
from __future__ import annotations

import base64
import concurrent.futures as cf
import importlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelab.budget import flush_denormals
from vaelab.errors import ConfigError, VaelabError

EXECUTORS = ("local", "ray")
LOG_NAME = "train_log.jsonl"      # what a unit's folder grows by one line per epoch (vaelab.train.LOG_NAME)
MAX_RETRIES = 2                   # times a unit whose worker died is run again before the run stops


class ExecutorError(VaelabError):
    """A unit could not be run (its worker kept dying, Ray is missing or unreachable)."""


@dataclass(frozen=True)
class Unit:
    """One independent piece of work.

    Attributes:
        key: unique name, e.g. "vae/seed-1" (results are keyed by it)
        func: "module:function"; called as function(spec) -> JSON-able dict in the worker
        spec: the function's JSON arguments; ``spec["folder"]`` (when present) is the folder it writes
        n_epochs: epochs the unit trains (the length of its progress bar; 0 = no bar)
        n_cpus, n_gpus: what the unit asks of a Ray node
        work: its expected cost relative to the others (any unit); executors start the costliest first, so that
            no long unit is left to run alone at the end (longest-processing-time order)
    """

    key: str
    func: str
    spec: dict[str, Any]
    n_epochs: int = 0
    n_cpus: float = 1.0
    n_gpus: float = 0.0
    work: float = 1.0

    @property
    def folder(self) -> Path | None:
        f = self.spec.get("folder")
        return Path(f) if f else None


def longest_first(units: Sequence[Unit]) -> list[Unit]:
    """The order an executor starts ``units`` in: the largest ``work`` first, ties in the given order."""
    return sorted(units, key=lambda u: -u.work)


def call(func: str, spec_json: str) -> str:
    """The worker entry point: run ``func`` on the decoded spec, return its result as strict JSON."""
    mod, name = func.split(":")
    fn = getattr(importlib.import_module(mod), name)
    return json.dumps(fn(json.loads(spec_json)), allow_nan=False)


def set_threads(n_threads: int) -> None:
    """Pin torch and the BLAS pools of this process to ``n_threads`` (0: leave them)."""
    if n_threads > 0:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(n_threads)
        threadpool_limits(n_threads)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(bytes_per_worker: int) -> int:
    """The number of usable cores, capped so that the workers fit in 80 % of the available memory."""
    cores = usable_cores()
    avail = _available_memory()
    if avail is None or bytes_per_worker <= 0:
        return max(1, cores)
    return max(1, min(cores, int(0.8 * avail) // bytes_per_worker))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# -- progress ------------------------------------------------------------------------------------
class Progress:
    """An overall bar over units and one bar per running unit (epochs done, from its train_log.jsonl)."""

    def __init__(self, units: Sequence[Unit], enabled: bool, n_slots: int):
        self.enabled = enabled and len(units) > 0
        self.units = {u.key: u for u in units}
        self.running: dict[str, Any] = {}
        self.free = list(range(1, n_slots + 1))
        self.slot: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.overall = tqdm(total=len(units), desc="units", unit="unit", position=0, file=sys.stderr,
                            dynamic_ncols=True, leave=True)
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def started(self, key: str) -> None:
        u = self.units[key]
        if not self.enabled or not u.n_epochs or u.folder is None:
            return
        with self.lock:
            pos = self.free.pop(0) if self.free else len(self.slot) + 1
            self.slot[key] = pos
            self.running[key] = self._tqdm(total=u.n_epochs, desc=f"{key:>14}", unit="epoch", position=pos,
                                           file=sys.stderr, dynamic_ncols=True, leave=False)

    def finished(self, key: str) -> None:
        if not self.enabled:
            return
        self.abandon(key)
        with self.lock:
            self.overall.update(1)

    def abandon(self, key: str) -> None:
        """A unit whose worker died: close its bar without counting it done."""
        if not self.enabled:
            return
        with self.lock:
            bar = self.running.pop(key, None)
            if bar is not None:
                bar.close()
                self.free.append(self.slot.pop(key))
                self.free.sort()

    def _poll(self) -> None:
        while not self.stop.wait(0.5):
            with self.lock:
                for key, bar in self.running.items():
                    n = _epochs_logged(self.units[key].folder)
                    if n > bar.n:
                        bar.update(min(n, bar.total) - bar.n)

    def close(self) -> None:
        if not self.enabled:
            return
        self.stop.set()
        with self.lock:
            for bar in self.running.values():
                bar.close()
            self.running.clear()
            self.overall.close()


def _epochs_logged(folder: Path | None) -> int:
    try:
        return (folder / LOG_NAME).read_bytes().count(b"\n") if folder is not None else 0
    except OSError:
        return 0


# -- executors -----------------------------------------------------------------------------------
@dataclass
class InProcess:
    """Run the units one after the other in this process."""

    progress: bool = False

    def run(self, units: Sequence[Unit]) -> dict[str, dict[str, Any]]:
        bars = Progress(units, self.progress, 1)
        out: dict[str, dict[str, Any]] = {}
        try:
            for u in units:
                bars.started(u.key)
                out[u.key] = json.loads(call(u.func, json.dumps(u.spec, allow_nan=False)))
                bars.finished(u.key)
        finally:
            bars.close()
        return out


def _worker_init(n_threads: int, driver: int) -> None:
    """A worker: its thread count, and an exit when the driver goes (so no orphan keeps writing).

    The worker's parent is the driver (spawn) or the fork server, which outlives a killed driver for as long as
    its workers do (they hold its liveness pipe): so the worker watches the driver's pid itself."""
    flush_denormals()
    set_threads(n_threads)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if not _running(driver):
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a driver killed by -9 is one until its parent reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True        # no /proc: os.kill said it exists


@dataclass
class LocalProcesses:
    """Run the units in ``n_workers`` worker processes (``worker_context``), each with ``n_threads`` threads."""

    n_workers: int
    n_threads: int = 1
    progress: bool = False
    on_retry: Callable[[Unit], Unit] | None = None    # the unit to run again after its worker died
    preload: Sequence[str] = ()    # modules the fork server imports once for every worker (besides the units')

    def run(self, units: Sequence[Unit]) -> dict[str, dict[str, Any]]:
        if self.n_workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.n_workers}.")
        out: dict[str, dict[str, Any]] = {}
        todo = {u.key: u for u in units}
        tries = {u.key: 0 for u in units}
        bars = Progress(units, self.progress, min(self.n_workers, len(units)))
        try:
            while todo:
                self._round(todo, out, bars)
                for key in list(todo):           # the pool broke: these units are run again
                    tries[key] += 1
                    if tries[key] > MAX_RETRIES:
                        raise ExecutorError(f"the worker running {key} died {tries[key]} times (out of memory? "
                                            "killed?); run again with fewer --workers, or --resume to continue.")
                    if self.on_retry is not None:
                        todo[key] = self.on_retry(todo[key])
        finally:
            bars.close()
        return out

    def _round(self, todo: dict[str, Unit], out: dict[str, dict[str, Any]], bars: Progress) -> None:
        ctx = worker_context(sorted({u.func.split(":")[0] for u in todo.values()} | set(self.preload)))
        n = min(self.n_workers, len(todo))
        pool = cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                                      initargs=(self.n_threads, os.getpid()))
        try:
            futures: dict[cf.Future, str] = {}
            queue = longest_first(list(todo.values()))

            def submit() -> None:    # keep exactly n units in flight, so a bar means a unit that runs
                u = queue.pop(0)
                futures[pool.submit(call, u.func, json.dumps(u.spec, allow_nan=False))] = u.key
                bars.started(u.key)

            for _ in range(min(n, len(queue))):
                submit()
            while futures:
                done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    key = futures.pop(f)
                    try:
                        out[key] = json.loads(f.result())
                    except cf.process.BrokenProcessPool:
                        for k in list(futures.values()) + [key]:
                            bars.abandon(k)
                        return                   # the keys still in todo run in a fresh pool
                    del todo[key]
                    bars.finished(key)
                    if queue:
                        submit()
        finally:     # every result is in: the workers exit while the driver goes on (about 1 s of torch teardown)
            pool.shutdown(wait=False, cancel_futures=True)


def start_fork_server(preload: Sequence[str], n_workers: int) -> bool:
    """Start the fork server of ``worker_context`` now, in the background, when a run may use local workers
    (``n_workers`` > 1, or 0 = auto on a machine of several cores); return whether one runs.

    Its imports (``preload``: torch, scikit-learn, scipy, matplotlib, about 4 s) then overlap the driver's own
    start (its torch import, the data, the judge) instead of delaying the first unit: measured on the default
    digits compare, the workers' first units started 3.1 s after the driver submitted them. Nothing waits here:
    the server loads while the caller goes on, and the first worker asked of it is forked once it has. A run
    that ends up in one process (auto, small units) leaves the server idle: one process's imports, on a core the
    driver does not use. A no-op when the server already runs (its preload is fixed by the first start)."""
    if n_workers == 1 or (n_workers == 0 and usable_cores() < 2) or "forkserver" not in mp.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    worker_context(preload)
    forkserver.ensure_running()
    return True


def worker_context(preload: Sequence[str]) -> Any:
    """The start method of local workers: a fork server where the platform has one, else spawn.

    The fork server imports ``preload`` (torch, scikit-learn, the units' modules) once and forks each worker from
    that clean, single-threaded process: a worker starts in milliseconds instead of importing them itself (about
    4 CPU-s per worker for a compare's units), and the workers share those pages. Spawn (fresh interpreters) where
    there is no fork server. Neither forks the driver, whose torch thread pools may already run.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))     # read when the server starts (once per driver process)
    return ctx


# -- Ray -----------------------------------------------------------------------------------------
def pack_folder(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as {relative path: base64 bytes} (JSON-able; empty when absent)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): base64.b64encode(p.read_bytes()).decode("ascii")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def unpack_folder(files: dict[str, str], folder: Path) -> None:
    """Write ``pack_folder``'s files under ``folder`` (each atomically); paths may not leave it."""
    from vaelab.io import atomic_write_bytes

    root = folder.resolve()
    for rel, b64 in files.items():
        dest = (folder / rel).resolve()
        if root != dest and root not in dest.parents:
            raise ExecutorError(f"a unit returned the file {rel!r}, outside its folder {folder}.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, base64.b64decode(b64))


def ray_task(func: str, spec_json: str, files: dict[str, str], cache_files: dict[str, dict[str, str]],
             shared: bool) -> tuple[str, dict[str, str], dict[str, str]]:
    """One unit on a Ray node: in a temporary folder (or the shared one), then its files back to the driver.

    ``files`` seeds the unit's folder (a partly trained unit resumes from its last checkpoint);
    ``cache_files`` are cache folders (e.g. the judge) written under this node's vaelab cache first.
    The unit's other outputs (``spec["outputs"]``: name -> file, e.g. the arrays of its figures) are
    written in the temporary folder too and come back by name. Returns (result, folder files, outputs).
    """
    from vaelab.judge import cache_root

    spec = json.loads(spec_json)
    flush_denormals()
    set_threads(int(spec.get("n_threads") or 0))
    for rel, fs in cache_files.items():
        if not (cache_root() / rel).exists():
            unpack_folder(fs, cache_root() / rel)
    if shared or not spec.get("folder"):
        return call(func, spec_json), {}, {}
    with tempfile.TemporaryDirectory(prefix="vaelab-unit-") as tmp:
        folder, extra = Path(tmp) / "unit", Path(tmp) / "outputs"
        folder.mkdir()
        unpack_folder(files, folder)
        spec["folder"] = str(folder)
        outputs = {k: extra / k / Path(v).name for k, v in (spec.get("outputs") or {}).items()}
        spec["outputs"] = {k: str(v) for k, v in outputs.items()}
        res = call(func, json.dumps(spec, allow_nan=False))
        back = {k: base64.b64encode(v.read_bytes()).decode("ascii") for k, v in outputs.items() if v.is_file()}
        return res, pack_folder(folder), back


@dataclass
class RayExecutor:
    """Submit each unit as a Ray task (``num_cpus``/``num_gpus`` from the unit) to the cluster at ``address``.

    ``shared_dir``: a folder every node reads and writes; the units write their folders there (same
    layout as the run folder) and the driver copies them into the run folder. Without it the files
    travel back with the task's result. ``cache_dirs``: cache folders (relative to the vaelab cache,
    e.g. the judge's) the driver ships to every task, so no node retrains them.
    """

    address: str | None = "auto"
    progress: bool = False
    shared_dir: str | None = None
    cache_dirs: Sequence[str] = field(default_factory=tuple)
    run_root: str | None = None       # the run folder: unit folders are placed below shared_dir by it

    def run(self, units: Sequence[Unit]) -> dict[str, dict[str, Any]]:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'vaelab[cluster]' (or pip install -c "
                              "constraints.txt ray).") from None
        from vaelab.judge import cache_root

        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ExecutorError(f"cannot reach a Ray cluster at {self.address!r}: {e}. Start one with "
                                    "`ray start --head` (see docs/distributed.md) or pass --ray-address "
                                    "HOST:PORT.") from None
        cache = {rel: pack_folder(cache_root() / rel) for rel in self.cache_dirs}
        cache_ref = ray.put(cache)
        task = ray.remote(max_retries=MAX_RETRIES)(ray_task)
        bars = Progress(units, self.progress, 0)
        refs: dict[Any, Unit] = {}
        out: dict[str, dict[str, Any]] = {}
        try:
            for u in longest_first(units):
                spec, shared_folder = dict(u.spec), None
                if self.shared_dir and u.folder is not None:
                    shared_folder = self._shared(u.folder)
                    if u.folder.is_dir() and not shared_folder.exists():   # resume: the driver's partial folder
                        shutil.copytree(u.folder, shared_folder)
                    spec["folder"] = str(shared_folder)
                    spec["outputs"] = {k: str(self._shared(Path(v))) for k, v in (u.spec.get("outputs") or {}).items()}
                files = {} if (self.shared_dir or u.folder is None) else pack_folder(u.folder)
                ref = task.options(num_cpus=u.n_cpus, num_gpus=u.n_gpus).remote(
                    u.func, json.dumps(spec, allow_nan=False), files, cache_ref, bool(self.shared_dir))
                refs[ref] = u
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                u = refs[done[0]]
                try:
                    res, files, outputs = ray.get(done[0])
                except ray.exceptions.RayError as e:
                    raise ExecutorError(f"the Ray task of {u.key} failed: {e}") from None
                from vaelab.io import atomic_write_bytes

                for name, dest in (u.spec.get("outputs") or {}).items():     # arrays etc., where the driver wants them
                    src = self._shared(Path(dest)) if self.shared_dir else None
                    data = src.read_bytes() if src is not None and src.is_file() else (
                        base64.b64decode(outputs[name]) if name in outputs else None)
                    if data is not None:
                        Path(dest).parent.mkdir(parents=True, exist_ok=True)
                        atomic_write_bytes(dest, data)
                if u.folder is not None:
                    if self.shared_dir:
                        _replace_folder(self._shared(u.folder), u.folder)
                    else:
                        if u.folder.exists():
                            shutil.rmtree(u.folder)
                        unpack_folder(files, u.folder)
                    res = _relocate(json.loads(res), u.folder)
                else:
                    res = json.loads(res)
                out[u.key] = res
                bars.finished(u.key)
        finally:
            bars.close()
        return out

    def _shared(self, folder: Path) -> Path:
        rel = folder.resolve().relative_to(Path(self.run_root).resolve()) if self.run_root else Path(folder.name)
        return Path(self.shared_dir) / rel


def _check_reachable(address: str | None) -> None:
    """A HOST:PORT that nothing listens on fails here in seconds (ray.init would keep retrying for minutes)."""
    import socket

    if not address or address == "auto" or ":" not in address or "://" in address:
        return
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=10):
            pass
    except (OSError, ValueError) as e:
        raise ExecutorError(f"cannot reach a Ray cluster at {address!r} ({e}). Start one with `ray start --head "
                            "--port PORT` (docs/distributed.md), or pass the head's HOST:PORT to --ray-address.") from None


def _replace_folder(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".incoming")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def _relocate(res: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A Ray unit reports the folder it wrote on its node; the run records where the files are now."""
    train = res.get("train")
    if isinstance(train, dict) and "folder" in train:
        train["folder"] = str(folder)
    return res


def add_executor_args(p: Any) -> None:
    """The executor options of every command that runs units (compare, molecule compare, sweep)."""
    p.add_argument("--workers", type=int, default=0,
                   help="units (a model for one seed) trained and evaluated in parallel worker processes; 0 (default) "
                        "= the number of cores, capped by memory; 1 = one after the other in this process. The "
                        "numbers do not depend on it")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local (this machine: --workers processes) or ray (each unit a Ray task on the cluster of "
                        "--ray-address; pip install 'vaelab[cluster]'; docs/distributed.md)")
    p.add_argument("--ray-address", default="auto",
                   help="--executor ray: the cluster to join, auto (RAY_ADDRESS or the local cluster) or HOST:PORT")
    p.add_argument("--ray-shared-dir", default=None,
                   help="--executor ray: a folder every node reads and writes (e.g. NFS); units write their model "
                        "folders there and the driver copies them into --out. Default: the files travel back "
                        "with each task's result")


def make_executor(kind: str, *, n_workers: int = 1, n_threads: int = 1, progress: bool = False,
                  ray_address: str | None = "auto", shared_dir: str | None = None,
                  cache_dirs: Sequence[str] = (), run_root: str | None = None,
                  on_retry: Callable[[Unit], Unit] | None = None,
                  preload: Sequence[str] = ()) -> InProcess | LocalProcesses | RayExecutor:
    """The executor named ``kind`` ("local" with n_workers == 1 runs in-process)."""
    if kind not in EXECUTORS:
        raise ConfigError(f"unknown --executor {kind!r}; choose from {', '.join(EXECUTORS)}.")
    if kind == "ray":
        return RayExecutor(address=ray_address, progress=progress, shared_dir=shared_dir, cache_dirs=cache_dirs,
                           run_root=run_root)
    if n_workers == 1:     # in-process units draw their own bars (training, evaluation), as before executors
        return InProcess(progress=False)
    return LocalProcesses(n_workers=n_workers, n_threads=n_threads, progress=progress, on_retry=on_retry,
                          preload=preload)
