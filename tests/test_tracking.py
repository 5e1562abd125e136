"""vaelab.tracking against a real local MLflow store (SQLite in tmp_path), read back with mlflow.MlflowClient."""
from __future__ import annotations

import json
import sys

import pytest

from vaelab import tracking
from vaelab.errors import ConfigError


def test_flatten_numbers_only():
    d = {"a": {"b": 1, "c": True, "s": "text", "n": None, "nan": float("nan"), "_private": 3},
         "l": [0.5, 2], "long": list(range(tracking.MAX_LIST + 1)), "x y": 2.0}
    assert tracking.flatten(d) == {"a.b": 1.0, "a.c": 1.0, "l.0": 0.5, "l.1": 2.0, "x y": 2.0}
    assert tracking.flatten_params({"train": {"lr": 0.001, "hidden": (512, 256)}, "m": None}) == \
        {"train.lr": "0.001", "train.hidden": "512,256", "m": "None"}


def test_resolve_uri(tmp_path):
    assert tracking.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.resolve_uri(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert tracking.resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    with pytest.raises(ConfigError, match="--mlflow takes a tracking URI"):
        tracking.resolve_uri("somewhere")


def test_without_mlflow_the_option_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)          # what `import mlflow` sees when it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'vaelab\[tracking\]' \(or pip install mlflow==3.17.2\)"):
        tracking.start_run(None, "x")


@pytest.mark.slow
def test_training_is_tracked_live_and_nested(tmp_path):
    """A parent run, a nested model run fed by fit's on_epoch hook, its folder as artifacts, read back."""
    mlflow = pytest.importorskip("mlflow")
    import torch

    from vaelab.config import TrainConfig
    from vaelab.data import load_dataset
    from vaelab.metrics import collapse
    from vaelab.models import model_config
    from vaelab.train import fit

    torch.set_num_threads(1)
    data = load_dataset("digits", max_train=300)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    parent = tracking.start_run(uri, "cmp", config={"models": ["vae"], "train": {"epochs": 3}}, root=tmp_path)
    mcfg = model_config("vae", input_shape=data.shape, hidden=(32,), n_latent=2)
    child = parent.child("vae", config={"model": mcfg.to_dict()})
    run = fit(mcfg, data, TrainConfig(epochs=3, batch_size=64), out=tmp_path / "m", progress=False,
              on_epoch=tracking.chain(collapse.record_epoch, child.on_epoch))
    child.log_metrics({"likelihood": {"neg_elbo": 12.5}, "latent": {"active_units": 2}})
    child.log_artifacts(tmp_path / "m", "model")
    child.end()
    parent.end()

    client = mlflow.MlflowClient(tracking_uri=uri)
    got = client.get_run(child.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.run_id and got.info.status == "FINISHED"
    assert got.info.run_name == "vae" and got.data.params["model.hidden"] == "32"
    assert got.data.metrics["likelihood.neg_elbo"] == 12.5
    hist = client.get_metric_history(child.run_id, "train.loss")
    assert [m.step for m in hist] == [1, 2, 3]
    assert [m.value for m in hist] == pytest.approx([r["train"]["loss"] for r in run.history])
    assert {m.step for m in client.get_metric_history(child.run_id, "diagnostics.kl")} == {1, 2, 3}
    files = {f.path for f in client.list_artifacts(child.run_id, "model")}
    assert {"model/config.json", "model/weights.safetensors"} <= files
    assert client.get_run(parent.run_id).data.params["train.epochs"] == "3"
    children = client.search_runs([parent.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    assert [r.info.run_id for r in children] == [child.run_id]


def test_a_model_folder_after_the_fact(tmp_path):
    """log_model_dir reads a folder's config.json and train_log.jsonl: the same epochs as the trainer wrote."""
    mlflow = pytest.importorskip("mlflow")
    import torch

    from vaelab.config import TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import model_config
    from vaelab.train import fit

    torch.set_num_threads(1)
    data = load_dataset("digits", max_train=200)
    fit(model_config("ae", input_shape=data.shape, hidden=(16,), n_latent=2), data, TrainConfig(epochs=2),
        out=tmp_path / "ae", progress=False)
    t = tracking.log_model_dir(None, tmp_path / "ae", "ae", uri=str(tmp_path / "s.db"), metrics={"status": "ok",
                               "reconstruction": {"mean_z": {"psnr": 14.0}}})
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 's.db'}")
    got = client.get_run(t.run_id)
    log = [json.loads(line) for line in (tmp_path / "ae" / "train_log.jsonl").read_text().splitlines()]
    assert [m.value for m in client.get_metric_history(t.run_id, "val.loss")] == pytest.approx(
        [r["val"]["loss"] for r in log])
    assert got.data.metrics["reconstruction.mean_z.psnr"] == 14.0 and got.data.params["model.model"] == "ae"
