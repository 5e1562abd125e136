"""MLflow tracking: a comparison (or one training) as MLflow runs, readable offline with ``mlflow ui``.

    tracker = start_run(uri, "compare-digits", config=cfg.to_dict())      # the comparison's run
    child = tracker.child("vae", config=mcfg.to_dict())                   # one run per model, nested under it
    fit(..., on_epoch=chain(collapse.record_epoch, child.on_epoch))        # per-epoch loss terms (step = epoch)
    child.log_metrics(metrics["models"]["vae"]); child.log_artifacts("runs/x/models/vae", "model"); child.end()
    tracker.log_artifacts("runs/x/report.html"); tracker.end()

What is logged: the whole config as parameters (nested keys joined with "."), every numeric per-epoch
record entry (train.loss, val.recon, kl_weight, ...) at step = epoch, the final metrics flattened the same
way (booleans as 0/1, lists of numbers by index, strings and nulls skipped), and files or folders as artifacts
(figures, report.html, the model folders). Nesting is MLflow's own: a child run carries the tag
``mlflow.parentRunId``, so the UI shows the models under their comparison.

The default URI is ``sqlite:///<abs path>/runs/mlflow.db`` with artifacts in ``runs/mlflow-artifacts/``: a local
store that needs no server or network (MLflow 3 keeps its file store in maintenance mode and refuses it by
default, so the default is SQLite). ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`` shows it.
MLflow is the optional extra ``vaelab[tracking]``; without it :func:`require_mlflow` says how to install it.
The client API (``MlflowClient``) is used throughout, never MLflow's process-global active run, so nested
runs and several trackers in one process cannot step on each other.
"""
from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from vaelab.errors import ConfigError

MLFLOW_PIN = "mlflow==3.17.2"              # constraints.txt; the extra vaelab[tracking]
DEFAULT_ROOT = "runs"
DEFAULT_EXPERIMENT = "vaelab"
MAX_PARAM_CHARS = 6000                     # MLflow's limit on one parameter value
MAX_LIST = 64                              # list metrics longer than this are left out (e.g. a KL per dimension)
_BAD_KEY = re.compile(r"[^0-9A-Za-z_\-. /]")


def require_mlflow() -> Any:
    """The mlflow module, or a ConfigError saying how to install it (the option is refused, never ignored)."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"--mlflow needs MLflow, which is not installed: pip install 'vaelab[tracking]' (or "
                          f"pip install {MLFLOW_PIN}), or drop --mlflow.") from None
    return mlflow


def default_uri(root: str | os.PathLike = DEFAULT_ROOT) -> str:
    """The local store: ``sqlite:///<abs root>/mlflow.db`` (works offline, no server)."""
    return f"sqlite:///{Path(root).absolute() / 'mlflow.db'}"


def resolve_uri(uri: str | None, root: str | os.PathLike = DEFAULT_ROOT) -> str:
    """None or "" -> :func:`default_uri`; a bare path to a ``.db`` file -> its sqlite URI; else the URI as given."""
    if uri is None or not str(uri).strip():
        return default_uri(root)
    text = str(uri).strip()
    if "://" not in text and text.endswith(".db"):
        return f"sqlite:///{Path(text).expanduser().absolute()}"
    if "://" not in text and not text.startswith(("databricks", "file:")):
        raise ConfigError(f"--mlflow takes a tracking URI (sqlite:///PATH.db, http://HOST:PORT, ...) or a path to a "
                          f".db file, got {text!r}. Without a value it uses {default_uri(root)}.")
    return text


def _key(k: str) -> str:
    return _BAD_KEY.sub("_", k)[:250]


def flatten(d: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts/lists as {"a.b.0": float}: bools -> 0/1; strings, None, NaN/inf skipped.

    Keys starting with "_" (private arrays) are skipped; lists longer than MAX_LIST are left out.
    """
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if str(k).startswith("_"):
                continue
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, (list, tuple)):
        if len(d) <= MAX_LIST:
            for i, v in enumerate(d):
                out.update(flatten(v, f"{prefix}.{i}"))
    elif isinstance(d, bool):
        out[_key(prefix)] = float(d)
    elif isinstance(d, numbers.Real) and math.isfinite(float(d)):
        out[_key(prefix)] = float(d)
    return out


def flatten_params(d: Any, prefix: str = "") -> dict[str, str]:
    """Every leaf of a nested config as {"train.lr": "0.001"}; lists and tuples are one comma-joined value."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten_params(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        text = ",".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d)
        out[_key(prefix)] = text[:MAX_PARAM_CHARS]
    return out


def chain(*hooks: Callable[..., None] | None) -> Callable[..., None]:
    """One ``fit(on_epoch=...)`` hook calling each given hook in order (None entries are skipped)."""
    live = [h for h in hooks if h is not None]

    def hook(*args: Any) -> None:
        for h in live:
            h(*args)
    return hook


class Tracker:
    """One MLflow run. Create with :func:`start_run` (a top-level run) or :meth:`child` (nested under this one)."""

    def __init__(self, client: Any, run_id: str, experiment_id: str, uri: str) -> None:
        self.client, self.run_id, self.experiment_id, self.uri = client, run_id, experiment_id, uri
        self.is_ended = False

    def log_params(self, config: dict[str, Any]) -> None:
        """The whole config as parameters (nested keys joined with ".")."""
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten_params(config).items()]
        for i in range(0, len(params), 100):            # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None, prefix: str = "") -> int:
        """The numeric leaves of ``metrics`` (``flatten``) at ``step``; returns how many were logged."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        flat = flatten(metrics, prefix)
        items = [Metric(k, v, now, int(step or 0)) for k, v in flat.items()]
        for i in range(0, len(items), 1000):           # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])
        return len(items)

    def on_epoch(self, model: Any, x_val: Any, y_val: Any, record: dict[str, Any]) -> None:
        """``vaelab.train.fit``'s per-epoch hook: the epoch record's numbers (loss terms, kl_weight, ...) at
        step = epoch."""
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record.get("epoch", 0)))

    def log_artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A file or a whole folder as artifacts (under ``artifact_path`` in the run's artifact root)."""
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        elif p.is_file():
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, _key(str(k)), str(v)[:5000])

    def child(self, run_name: str, config: dict[str, Any] | None = None) -> Tracker:
        """A run nested under this one (MLflow's ``mlflow.parentRunId`` tag), e.g. one model of a comparison."""
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={"mlflow.parentRunId": self.run_id, "vaelab.kind": "model"})
        t = Tracker(self.client, run.info.run_id, self.experiment_id, self.uri)
        if config:
            t.log_params(config)
        return t

    def end(self, status: str = "FINISHED") -> None:
        """Close the run ("FINISHED", "FAILED" or "KILLED"); a second call does nothing."""
        if not self.is_ended:
            self.client.set_terminated(self.run_id, status=status)
            self.is_ended = True

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        self.end("FINISHED" if kind is None else ("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"))


def start_run(uri: str | None, run_name: str, *, config: dict[str, Any] | None = None,
              experiment: str = DEFAULT_EXPERIMENT, root: str | os.PathLike = DEFAULT_ROOT,
              tags: dict[str, Any] | None = None) -> Tracker:
    """Open a top-level MLflow run in ``experiment`` (created when missing) of the store at ``uri``.

    Args:
        uri: a tracking URI, a path to a .db file, or None for the local default (``default_uri(root)``).
        run_name: the run's name in the UI (e.g. the run folder's name); config: logged as parameters.
        root: the folder of the default store and of its artifacts (``root/mlflow-artifacts``).
    """
    require_mlflow()
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)     # MLflow's "creating tables" INFO lines
    resolved = resolve_uri(uri, root)
    client = MlflowClient(tracking_uri=resolved)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        experiment_id = exp.experiment_id
    else:
        local = resolved == default_uri(root) or resolved.startswith("sqlite:")
        location = (Path(root).absolute() / "mlflow-artifacts").as_uri() if local else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    run = client.create_run(experiment_id, run_name=run_name, tags={"vaelab.kind": "run", **(tags or {})})
    t = Tracker(client, run.info.run_id, experiment_id, resolved)
    if config:
        t.log_params(config)
    return t


def log_files(tracker: Tracker, files: Iterable[tuple[str | os.PathLike, str | None]]) -> None:
    """Log each (path, artifact folder) that exists; missing paths are skipped (a failed model has no folder)."""
    for path, where in files:
        tracker.log_artifacts(path, where)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def log_history(tracker: Tracker, model_dir: str | os.PathLike) -> int:
    """The per-epoch records of ``model_dir/train_log.jsonl`` (the trainer's log) at step = epoch; returns epochs."""
    import json

    path = Path(model_dir) / "train_log.jsonl"
    n = 0
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue                               # a line cut by a kill: the epochs before it still count
            if isinstance(record, dict) and "epoch" in record:
                tracker.on_epoch(None, None, None, record)
                n += 1
    return n


def log_model_dir(parent: Tracker | None, model_dir: str | os.PathLike, name: str, *, uri: str | None = None,
                  metrics: dict[str, Any] | None = None, root: str | os.PathLike = DEFAULT_ROOT) -> Tracker:
    """One trained model folder as an MLflow run: its config.json as parameters, its training log per epoch,
    ``metrics`` (flattened) and the folder as the "model" artifact. Nested under ``parent`` when given, else a
    top-level run in the store at ``uri``. Returns the (ended) run's Tracker."""
    folder = Path(model_dir)
    config = _read_json(folder / "config.json")
    params = {k: config[k] for k in ("model", "train", "data") if k in config}
    t = parent.child(name, params) if parent is not None else start_run(uri, name, config=params, root=root)
    try:
        log_history(t, folder)
        if metrics:
            t.log_metrics(metrics)
        t.log_artifacts(folder, "model")
    except BaseException:
        t.end("FAILED")
        raise
    t.end("FINISHED" if (metrics or {}).get("status", "ok") == "ok" else "FAILED")
    return t


def log_run(run_dir: str | os.PathLike, uri: str | None = None, *, root: str | os.PathLike | None = None,
            experiment: str = DEFAULT_EXPERIMENT) -> Tracker:
    """A finished comparison (or sweep) folder as MLflow runs: the comparison's run (its config as parameters,
    the reference rows and timings as metrics, report.html, metrics.json and figures/ as artifacts) with one
    nested run per model folder under ``models/`` (see :func:`log_model_dir`, metrics from metrics.json).

    Args:
        run_dir: the run folder `vaelab compare` wrote; uri: as :func:`resolve_uri` (None: the local store under
            ``root``, default the run folder's parent, e.g. runs/).
    Returns the comparison's (ended) Tracker; ``tracker.run_id`` finds it with ``MlflowClient.get_run``.
    """
    run = Path(run_dir)
    doc = _read_json(run / "metrics.json")
    root = Path(root) if root is not None else run.absolute().parent
    t = start_run(uri, run.name, config={"config": doc.get("config") or {}, "dataset": doc.get("dataset") or {}},
                  experiment=experiment, root=root, tags={"vaelab.run_dir": str(run.absolute())})
    try:
        t.log_metrics({"reference": doc.get("reference") or {}, "timings": doc.get("timings") or {}})
        models = doc.get("models") or {}
        for folder in sorted(p for p in (run / "models").glob("*") if (p / "config.json").is_file()):
            log_model_dir(t, folder, folder.name, metrics=models.get(folder.name) or {})
        log_files(t, [(run / "report.html", None), (run / "metrics.json", None), (run / "figures", "figures")])
    except BaseException:
        t.end("FAILED")
        raise
    t.end()
    return t
