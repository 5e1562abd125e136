"""The explorer's JSON API: every endpoint against the models it serves, and every kind of bad request."""
from __future__ import annotations

import base64
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")

from fastapi.testclient import TestClient  # noqa: E402

from _explore_run import LogisticJudge, make_run  # noqa: E402
from vaelab.checkpoint import load_model  # noqa: E402
from vaelab.density import StandardNormalPrior  # noqa: E402
from vaelab.explore import create_app  # noqa: E402
from vaelab.explore.explorer import ExploreError, find_model_folders, to_bytes  # noqa: E402
from vaelab.measure.batched import encode_means  # noqa: E402
from vaelab.sampling import reload_dataset  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("explore-run"))


@pytest.fixture(scope="module")
def client(run):
    return TestClient(create_app(run, judge_loader=None))


@pytest.fixture(scope="module")
def models(run):
    return {n: load_model(run / "models" / n).model for n in ("ae-2d", "vae-2d", "vae-5", "cvae-3")}


@pytest.fixture(scope="module")
def data(run):
    return reload_dataset(load_model(run / "models" / "vae-2d").config)


def images(resp: dict) -> np.ndarray:
    """Decode the API's base64 raw bytes to uint8 (N, H, W, C)."""
    c, h, w = resp["shape"]
    return np.stack([np.frombuffer(base64.b64decode(s), np.uint8).reshape(h, w, c) for s in resp["images"]])


def expected(model, z, y=None) -> np.ndarray:
    with torch.inference_mode():
        return to_bytes(model.x_mean(model.decode(torch.as_tensor(z, dtype=torch.float32), y)))


# -- listing and the map ----------------------------------------------------------------------------
def test_models_lists_the_run_with_the_2d_pair_first(client):
    r = client.get("/api/models").json()
    assert [m["name"] for m in r["models"]] == ["ae-2d", "vae-2d", "cvae-3", "vae-5"]
    assert r["default"] == ["ae-2d", "vae-2d"] and r["has_2d"] and r["messages"] == []
    vae5 = r["models"][3]
    assert vae5 == {**vae5, "ok": True, "model": "vae", "n_latent": 5, "input_shape": [1, 8, 8],
                    "is_stochastic": True, "has_labels": True, "dataset": "digits"}


def test_map_of_a_2d_model_is_its_latent_plane(client, models, data):
    r = client.get("/api/models/vae-2d/map").json()
    z = encode_means(models["vae-2d"], data.x_test).numpy()
    assert r["projection"]["kind"] == "identity" and r["n_test"] == len(z) == len(r["coords"])
    np.testing.assert_allclose(r["coords"], z, atol=1e-4)
    assert r["labels"] == data.y_test.tolist() and len(r["class_names"]) == 10
    (u0, u1), (v0, v1) = r["bounds"]["u"], r["bounds"]["v"]
    assert u1 - u0 == pytest.approx(v1 - v0)            # equal scales on both axes
    inside = (z[:, 0] > u0) & (z[:, 0] < u1) & (z[:, 1] > v0) & (z[:, 1] < v1)
    assert inside.mean() >= 0.99


def test_map_of_a_larger_latent_is_its_pca_plane(client, models, data):
    r = client.get("/api/models/vae-5/map").json()
    p = r["projection"]
    c, mean = np.array(p["components"]), np.array(p["mean"])
    z = encode_means(models["vae-5"], data.x_test).double().numpy()
    assert p["kind"] == "pca" and c.shape == (2, 5)
    np.testing.assert_allclose(c @ c.T, np.eye(2), atol=1e-9)
    np.testing.assert_allclose(mean, z.mean(0), atol=1e-5)
    np.testing.assert_allclose(r["coords"], (z - mean) @ c.T, atol=1e-3)
    # the first principal component carries the most variance of any direction: compare with sklearn
    from sklearn.decomposition import PCA

    ref = PCA(2).fit(z)
    np.testing.assert_allclose(np.abs(c), np.abs(ref.components_), atol=1e-5)
    np.testing.assert_allclose(p["explained_variance_ratio"], ref.explained_variance_ratio_, atol=1e-6)
    assert any("principal components" in m for m in r["messages"])


# -- decoding -------------------------------------------------------------------------------------------
def test_decode_returns_the_models_mean_images_as_raw_bytes(client, models):
    z = [[0.0, 0.0], [1.5, -0.5], [-2.0, 2.0]]
    r = client.post("/api/models/ae-2d/decode", json={"z": z}).json()
    assert r["shape"] == [1, 8, 8]
    np.testing.assert_array_equal(images(r), expected(models["ae-2d"], z))
    assert len({im.tobytes() for im in images(r)}) == 3


def test_decode_map_identity_and_pca_inverse(client, models, data):
    r = client.post("/api/models/vae-2d/decode_map", json={"points": [[0.25, -1.0]]}).json()
    assert r["z"] == [[0.25, -1.0]]
    np.testing.assert_array_equal(images(r), expected(models["vae-2d"], r["z"]))

    m = client.get("/api/models/vae-5/map").json()["projection"]
    c, mean = np.array(m["components"]), np.array(m["mean"])
    base = 7
    zb = encode_means(models["vae-5"], data.x_test[base:base + 1]).double().numpy()[0]
    uv = np.array([[0.3, -0.2], [1.0, 0.5]])
    r = client.post("/api/models/vae-5/decode_map", json={"points": uv.tolist(), "base_index": base}).json()
    z = np.array(r["z"])
    np.testing.assert_allclose((z - mean) @ c.T, uv, atol=1e-4)                  # lands on the clicked point
    off_plane = lambda v: v - (v @ c.T) @ c                                     # noqa: E731
    np.testing.assert_allclose(off_plane(z - mean), off_plane(zb - mean)[None].repeat(2, 0), atol=1e-4)
    np.testing.assert_array_equal(images(r), expected(models["vae-5"], r["z"]))


def test_example_is_the_test_image_its_code_and_reconstruction(client, models, data):
    r = client.get("/api/models/vae-5/example/11").json()
    z = encode_means(models["vae-5"], data.x_test[11:12])
    np.testing.assert_allclose(r["z"], z[0].numpy(), atol=1e-6)
    assert r["label"] == int(data.y_test[11])
    x = np.frombuffer(base64.b64decode(r["image"]), np.uint8)
    np.testing.assert_array_equal(x, to_bytes(data.x_test[11:12]).ravel())
    rec = np.frombuffer(base64.b64decode(r["recon"]), np.uint8)
    np.testing.assert_array_equal(rec, expected(models["vae-5"], z).ravel())


def test_traverse_moves_one_dimension(client):
    r = client.post("/api/models/vae-5/traverse", json={"z": [0.1, 0.2, 0.3, 0.4, 0.5], "dim": 3, "lo": -2,
                                                         "hi": 2, "n": 5}).json()
    z = np.array(r["z"])
    np.testing.assert_allclose(z[:, 3], [-2, -1, 0, 1, 2], atol=1e-6)
    np.testing.assert_allclose(np.delete(z, 3, axis=1), [[0.1, 0.2, 0.3, 0.5]] * 5, atol=1e-6)
    assert len(r["images"]) == 5


def test_interpolate_is_linear_between_the_end_points(client, models):
    za, zb = [-2.0, 1.0], [2.0, -1.0]
    r = client.post("/api/models/ae-2d/interpolate", json={"z_a": za, "z_b": zb, "n": 5}).json()
    np.testing.assert_allclose(r["z"], [[-2, 1], [-1, 0.5], [0, 0], [1, -0.5], [2, -1]], atol=1e-6)
    np.testing.assert_allclose(r["coords"], r["z"], atol=1e-6)
    np.testing.assert_array_equal(images(r), expected(models["ae-2d"], r["z"]))


def test_sample_prior_and_gmm(client, models):
    r = client.post("/api/models/vae-5/sample", json={"sampler": "prior", "n": 6, "seed": 3}).json()
    np.testing.assert_allclose(r["z"], StandardNormalPrior(5).sample(6, seed=3).numpy(), atol=1e-6)
    np.testing.assert_array_equal(images(r), expected(models["vae-5"], r["z"]))
    g1 = client.post("/api/models/ae-2d/sample", json={"sampler": "gmm", "n": 4, "seed": 1}).json()
    g2 = client.post("/api/models/ae-2d/sample", json={"sampler": "gmm", "n": 4, "seed": 1}).json()
    g3 = client.post("/api/models/ae-2d/sample", json={"sampler": "gmm", "n": 4, "seed": 2}).json()
    assert g1["z"] == g2["z"] != g3["z"] and g1["coords"] == g1["z"]


def test_sample_prior_is_the_models_own_prior(run, tmp_path):
    """A model trained with --prior uniform samples U(0, 1)^d from the explorer's "prior", not N(0, I)."""
    from vaelab.config import TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import model_config
    from vaelab.train import fit

    cfg = json.loads((run / "models" / "vae-2d" / "config.json").read_text())
    data = load_dataset("digits")
    fit(model_config("vae", input_shape=data.shape, n_latent=2, hidden=(16,), prior="uniform"), data,
        TrainConfig(epochs=1, seed=0, device="cpu"), tmp_path / "models" / "vae-uniform", progress=False,
        data_meta=cfg.get("data"))
    z = np.asarray(TestClient(create_app(tmp_path, judge_loader=None)).post(
        "/api/models/vae-uniform/sample", json={"sampler": "prior", "n": 200, "seed": 3}).json()["z"])
    assert z.shape == (200, 2) and (z > 0).all() and (z < 1).all() and abs(z.mean() - 0.5) < 0.05


def test_conditional_model_decodes_with_a_label(client, models):
    z = [[0.0, 0.0, 0.0]]
    r3 = client.post("/api/models/cvae-3/decode", json={"z": z, "label": 3}).json()
    r7 = client.post("/api/models/cvae-3/decode", json={"z": z, "label": 7}).json()
    np.testing.assert_array_equal(images(r3), expected(models["cvae-3"], z, torch.tensor([3])))
    assert images(r3).tobytes() != images(r7).tobytes()
    s = client.post("/api/models/cvae-3/sample", json={"n": 4}).json()
    assert s["labels"] == [0, 1, 2, 3]


# -- the holes map ----------------------------------------------------------------------------------------
def poll(c, url, seconds=120.0):
    """GET ``url`` until it stops answering 202 (the judge loads in a background thread)."""
    import time

    end = time.monotonic() + seconds
    while True:
        r = c.get(url)
        if r.status_code != 202 or time.monotonic() > end:
            return r
        time.sleep(0.05)


def test_holes_without_a_judge_says_so(client):
    r = client.get("/api/models/vae-2d/holes")
    assert r.status_code == 200 and r.json()["available"] is False and "no judge" in r.json()["message"]


def test_holes_is_judge_confidence_at_each_grid_cell(run, models):
    gate = threading.Event()
    calls = []

    def loader(data):
        gate.wait(10)
        calls.append(1)
        return LogisticJudge(data)

    c = TestClient(create_app(run, judge_loader=loader))
    first = c.get("/api/models/ae-2d/holes?grid=6")
    assert first.status_code == 202 and "judge" in first.json()["message"]     # loading in the background
    gate.set()
    r = poll(c, "/api/models/ae-2d/holes?grid=6")
    h = r.json()
    assert h["available"], h["message"]
    assert h["available"] and h["grid"] == 6 and np.shape(h["confidence"]) == (6, 6)
    judge = c.app.state.explorer._judges[next(iter(c.app.state.explorer._judges))]["judge"]
    (u0, u1), (v0, v1) = h["bounds"]["u"], h["bounds"]["v"]
    row, col = 4, 1                                       # row indexes v (bottom up), column indexes u
    z = [[u0 + (col + 0.5) * (u1 - u0) / 6, v0 + (row + 0.5) * (v1 - v0) / 6]]
    with torch.inference_mode():
        p = judge.predict_proba(models["ae-2d"].x_mean(models["ae-2d"].decode(torch.tensor(z))))
    assert h["confidence"][row][col] == pytest.approx(float(p.max()), abs=1e-3)
    assert h["predicted"][row][col] == int(p.argmax())
    assert c.get("/api/models/vae-2d/holes?grid=6").json()["available"] and calls == [1]   # one judge per dataset


def test_holes_reports_a_failing_judge(run):
    def loader(data):
        raise RuntimeError("disk full")

    c = TestClient(create_app(run, judge_loader=loader))
    r = poll(c, "/api/models/ae-2d/holes")
    assert r.json()["available"] is False and "disk full" in r.json()["message"]


# -- bad requests: 4xx with a message, never a 500 -----------------------------------------------------
BAD = [
    ("post", "/api/models/nope/decode", {"z": [[0, 0]]}, 404, "unknown model 'nope'"),
    ("get", "/api/models/nope/map", None, 404, "unknown model"),
    ("get", "/api/models/nope/holes", None, 404, "unknown model"),
    ("post", "/api/models/vae-2d/decode", {"z": [[0, 0, 0]]}, 422, "must have 2 numbers"),
    ("post", "/api/models/vae-2d/decode", {"z": [[0, 0], [1]]}, 422, "must have 2 numbers"),
    ("post", "/api/models/vae-2d/decode", {"z": []}, 422, "at least 1"),
    ("post", "/api/models/vae-2d/decode", {"z": [[1e9, 0]]}, 422, "less than or equal"),
    ("post", "/api/models/vae-2d/decode", {"z": [["a", 0]]}, 422, "z.0.0"),
    ("post", "/api/models/vae-2d/decode", {"z": [[0, 0]] * 1025}, 422, "at most 1024"),
    ("post", "/api/models/vae-2d/decode", {"z": [[0, 0]], "extra": 1}, 422, "extra"),
    ("post", "/api/models/vae-2d/decode", {"z": [[0, 0]], "label": 2}, 422, "label-conditioned"),
    ("post", "/api/models/cvae-3/decode", {"z": [[0, 0, 0]], "label": 10}, 422, "out of range"),
    ("post", "/api/models/vae-5/decode_map", {"points": [[0, 0]], "base_index": 99999}, 404, "out of range"),
    ("post", "/api/models/vae-5/decode_map", {"points": [[0, 0, 0]]}, 422, "points.0"),
    ("post", "/api/models/vae-5/decode_map", {"points": [[0, 0]], "base_index": -1}, 422, "base_index"),
    ("post", "/api/models/vae-5/traverse", {"z": [0] * 5, "dim": 5}, 422, "dimension 5 is out of range"),
    ("post", "/api/models/vae-5/traverse", {"z": [0] * 5, "dim": -1}, 422, "dim"),
    ("post", "/api/models/vae-5/traverse", {"z": [0] * 5, "dim": 0, "lo": 1, "hi": 1}, 422, "lo must be below"),
    ("post", "/api/models/vae-5/traverse", {"z": [0] * 4, "dim": 0}, 422, "must have 5 numbers"),
    ("post", "/api/models/vae-5/interpolate", {"z_a": [0] * 5, "z_b": [0] * 5, "n": 1000}, 422, "n:"),
    ("post", "/api/models/vae-5/interpolate", {"z_a": [0] * 5}, 422, "z_b: Field required"),
    ("post", "/api/models/vae-5/sample", {"sampler": "flow"}, 422, "sampler"),
    ("post", "/api/models/vae-5/sample", {"n": 0}, 422, "n:"),
    ("get", "/api/models/vae-5/example/359000", None, 404, "out of range"),
    ("get", "/api/models/vae-5/example/-1", None, 404, "out of range"),
    ("get", "/api/models/vae-5/example/x", None, 422, "index"),
    ("get", "/api/models/vae-5/holes?grid=1000", None, 422, "grid"),
]


@pytest.mark.parametrize("method,url,body,status,words", BAD, ids=[f"{u} {json.dumps(b)[:40]}" for _, u, b, _, _ in BAD])
def test_bad_requests_get_4xx_with_a_message(client, method, url, body, status, words):
    r = client.post(url, json=body) if method == "post" else client.get(url)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


@pytest.mark.parametrize("text", ["{bad json", "", "[1, 2]", '{"z": [[NaN, 0]]}', '{"z": [[Infinity, 0]]}', "null"])
def test_malformed_bodies_get_422(client, text):
    r = client.post("/api/models/vae-2d/decode", content=text, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"]


def test_concurrent_requests_all_answer_correctly(client, models):
    zs = [[[float(i) / 10, -float(i) / 20]] for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda z: client.post("/api/models/vae-2d/decode", json={"z": z}).json(), zs))
    for z, r in zip(zs, out):
        np.testing.assert_array_equal(images(r), expected(models["vae-2d"], z))


# -- run folders of other shapes, degraded runs ----------------------------------------------------------
def test_bare_folder_single_model_folder_and_empty_folder(run, tmp_path):
    assert list(find_model_folders(run / "models")) == ["ae-2d", "vae-2d", "cvae-3", "vae-5"]
    assert list(find_model_folders(run / "models" / "vae-5")) == ["vae-5"]
    with pytest.raises(ExploreError, match="holds no model folders"):
        find_model_folders(tmp_path)
    with pytest.raises(ExploreError, match="is not a folder"):
        find_model_folders(tmp_path / "missing")


def test_run_without_2d_model_or_with_a_broken_model_degrades_with_messages(run, tmp_path):
    shutil.copytree(run / "models" / "vae-5", tmp_path / "models" / "vae-5")
    shutil.copytree(run / "models" / "vae-5", tmp_path / "models" / "broken")
    (tmp_path / "models" / "broken" / "weights.safetensors").write_bytes(b"\x00" * 64)
    c = TestClient(create_app(tmp_path, judge_loader=None))
    r = c.get("/api/models").json()
    assert not r["has_2d"] and "no 2-D-latent model" in r["messages"][0]
    broken = next(m for m in r["models"] if m["name"] == "broken")
    assert broken["ok"] is False and "cannot be loaded" in broken["error"]
    assert r["default"] == ["vae-5"]
    bad = c.post("/api/models/broken/decode", json={"z": [[0] * 5]})
    assert bad.status_code == 409 and "cannot be loaded" in bad.json()["detail"]
    assert c.get("/api/models/vae-5/map").status_code == 200


def test_unlabelled_dataset_map_has_no_labels_and_says_so(tmp_path):
    from sklearn.datasets import load_digits

    from vaelab.config import TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import model_config
    from vaelab.train import fit

    npz = tmp_path / "unlabelled.npz"
    np.savez(npz, x=load_digits().images[:400].astype(np.float32) / 16.0)
    data = load_dataset(f"npz:{npz}")
    fit(model_config("vae", input_shape=data.shape, n_latent=2, hidden=(16,)), data, TrainConfig(epochs=1),
        out=tmp_path / "run" / "models" / "vae-2d", progress=False, data_meta={"spec": f"npz:{npz}"})
    c = TestClient(create_app(tmp_path / "run", judge_loader=None))
    assert any("no labels" in m for m in c.get("/api/models").json()["messages"])
    m = c.get("/api/models/vae-2d/map").json()
    assert m["labels"] is None and any("no labels" in s for s in m["messages"])
    assert c.get("/api/models/vae-2d/example/0").json()["label"] is None


# -- the page and the command line -------------------------------------------------------------------------
def test_page_and_static_files_are_served_without_external_urls(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.text) > 500
        assert "http://" not in r.text and "https://" not in r.text          # offline: nothing from a CDN
    assert "http" not in page.text.replace('"/static', "")


def test_cli_explore_help_and_errors(tmp_path, capsys):
    from vaelab.cli import main

    assert main(["explore", "--help"]) == 0        # main returns argparse's exit code (0 for --help)
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "--no-browser" in out and "127.0.0.1" in out
    assert main(["explore", str(tmp_path), "--no-browser"]) == 2
    assert "holds no model folders" in capsys.readouterr().err
    assert main(["explore", str(tmp_path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["explore", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_cli_explore_refuses_a_busy_port(run, capsys):
    import socket

    from vaelab.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["explore", str(run), "--no-browser", "--port", str(port)]) == 2
    assert "pass another --port" in capsys.readouterr().err


# -- colour images and tables ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(colour_and_table_run):
    """A client on a run with a colour-image VAE and a table VAE, and those models."""
    run = colour_and_table_run
    ms = {n: load_model(run / "models" / n) for n in ("colour-vae", "table-vae")}
    return TestClient(create_app(run, judge_loader=LogisticJudge)), ms


def test_a_colour_run_is_served_in_colour(mixed):
    """RGB images go as 3 channels that differ (the discs are red, green, blue), exactly the model's decodes."""
    c, ms = mixed
    info = {m["name"]: m for m in c.get("/api/models").json()["models"]}["colour-vae"]
    assert info["input_shape"] == info["view_shape"] == [3, 16, 16] and info["domain"] == "images"
    data = reload_dataset(ms["colour-vae"].config)
    ex = c.get("/api/models/colour-vae/example/0").json()
    x = np.frombuffer(base64.b64decode(ex["image"]), np.uint8).reshape(16, 16, 3).astype(int)
    np.testing.assert_array_equal(x, to_bytes(data.x_test[:1])[0])
    assert (np.abs(x[..., 0] - x[..., 1]) > 60).mean() > 0.05 or (np.abs(x[..., 1] - x[..., 2]) > 60).mean() > 0.05
    model = ms["colour-vae"].model
    for url, body in (("decode", {"z": [[0.0, 0.0], [1.0, -1.0]]}), ("sample", {"n": 3, "seed": 1}),
                      ("interpolate", {"z_a": [-1.0, 0.0], "z_b": [1.0, 0.5], "n": 4}),
                      ("traverse", {"z": [0.0, 0.0], "dim": 1, "n": 3})):
        r = c.post(f"/api/models/colour-vae/{url}", json=body).json()
        assert r["shape"] == [3, 16, 16] and "rows" not in r
        got = images(r)
        np.testing.assert_array_equal(got, expected(model, r["z"] if "z" in r else body["z"]))
        assert got.shape[-1] == 3 and not (np.array_equal(got[..., 0], got[..., 1])
                                           and np.array_equal(got[..., 1], got[..., 2]))


def test_a_table_run_shows_each_row_as_bars_of_its_features(mixed):
    """A table's rows go as square bar pictures (blue above the training mean, red below) plus the rows themselves;
    every endpoint answers, the holes map included, and the map says how to read the bars."""
    from vaelab.explore.explorer import vector_bars

    c, ms = mixed
    info = {m["name"]: m for m in c.get("/api/models").json()["models"]}["table-vae"]
    assert info["input_shape"] == [1, 1, 5] and info["domain"] == "vectors" and info["feature_names"][0] == "f0"
    s = info["view_shape"][1]
    assert info["view_shape"] == [3, s, s]
    m = c.get("/api/models/table-vae/map").json()
    assert any("one bar per feature (f0, f1, f2, f3, f4)" in t for t in m["messages"])
    data = reload_dataset(ms["table-vae"].config)
    ex = c.get("/api/models/table-vae/example/3").json()
    np.testing.assert_allclose(ex["row"], data.x_test[3].flatten().numpy(), atol=1e-6)
    model = ms["table-vae"].model
    with torch.inference_mode():
        x_hat = model.x_mean(model.decode(torch.tensor([ex["z"]])))
    np.testing.assert_allclose(ex["recon_row"], x_hat.flatten().numpy(), atol=1e-5)
    pic = np.frombuffer(base64.b64decode(ex["image"]), np.uint8).reshape(s, s, 3)
    np.testing.assert_array_equal(pic, to_bytes(vector_bars(data.x_test[3:4]))[0])
    for url, body in (("decode", {"z": [[0.0, 0.0], [2.0, -1.0]]}), ("sample", {"n": 3, "sampler": "gmm"}),
                      ("interpolate", {"z_a": [-1.0, 0.0], "z_b": [1.0, 0.5], "n": 4}),
                      ("decode_map", {"points": [[0.1, 0.2]]}), ("traverse", {"z": [0.0, 0.0], "dim": 0, "n": 3})):
        r = c.post(f"/api/models/table-vae/{url}", json=body)
        assert r.status_code == 200, (url, r.text)
        r = r.json()
        assert r["shape"] == [3, s, s] and len(r["rows"]) == len(r["images"]) and len(r["rows"][0]) == 5
        np.testing.assert_array_equal(images(r), to_bytes(vector_bars(torch.tensor(r["rows"])[:, None, None, :])))
    holes = poll(c, "/api/models/table-vae/holes?grid=8").json()
    assert holes["available"] and np.array(holes["confidence"]).shape == (8, 8)


def test_vector_bars_draw_each_feature_above_or_below_the_mean():
    """Feature j's bar: blue from the middle line up for +v, red down for -v, height v / 3 of the half-picture."""
    from vaelab.explore.explorer import BAR_ABOVE, BAR_BELOW, view_shape, vector_bars

    x = torch.tensor([[[[3.0, -1.5, 0.0, 10.0]]]])                          # (1, 1, 1, 4); 10 is clipped at 3
    pic = vector_bars(x)[0].permute(1, 2, 0).numpy()                       # (S, S, 3)
    s = view_shape((1, 1, 4))[1]
    assert pic.shape == (s, s, 3) and s == 48
    w, mid = s // 4, s // 2
    col = lambda j: pic[:, j * w + w // 2]                                 # noqa: E731 - the bar's middle column
    is_rgb = lambda px, rgb: np.allclose(px, rgb)                          # noqa: E731
    assert all(is_rgb(col(0)[r], BAR_ABOVE) for r in range(0, mid))       # +3 sd: the whole upper half
    assert sum(is_rgb(col(1)[r], BAR_BELOW) for r in range(s)) == mid // 2   # -1.5 sd: half of the lower half
    assert not any(is_rgb(col(2)[r], BAR_ABOVE) or is_rgb(col(2)[r], BAR_BELOW) for r in range(s))
    assert all(is_rgb(col(3)[r], BAR_ABOVE) for r in range(0, mid))       # clipped, not wrapped
    assert view_shape((1, 1, 1000)) == (3, 128, 128) and view_shape((3, 64, 64)) == (3, 64, 64)
