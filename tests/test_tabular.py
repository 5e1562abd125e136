"""csv:FILE and 2-D npz: tabular vectors read, standardised with training statistics, refused when bad; models and
metrics on vectors (no clipping, RMSE, Gaussian only); a comparison end to end on a generated table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.data import corrupt, corruptions_for, load_dataset, standardize
from vaelab.data.csv import csv_raw
from vaelab.errors import ConfigError, DataError


def make_table(n: int = 240, d: int = 4, n_classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters in d features, with very different scales per feature."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, d)) + 3.0 * y[:, None]
    return x * (10.0 ** np.arange(d)) + 100.0 * np.arange(d), y


def write_csv(path: Path, x: np.ndarray, y: np.ndarray | None = None, labels=("low", "mid", "high"),
              header: list[str] | None = None, sep: str = ",") -> Path:
    cols = header or [f"f{j}" for j in range(x.shape[1])]
    with open(path, "w") as f:
        f.write(sep.join(cols + (["kind"] if y is not None else [])) + "\n")
        for i, row in enumerate(x):
            cells = [repr(float(v)) for v in row] + ([labels[y[i]]] if y is not None else [])
            f.write(sep.join(cells) + "\n")
    return path


def test_csv_reads_every_value_and_the_label_column(tmp_path):
    x, y = make_table()
    raw = csv_raw(str(write_csv(tmp_path / "t.csv", x, y)), "kind")
    assert raw.x.shape == (240, 1, 1, 4) and np.array_equal(raw.x[:, 0, 0], x)      # repr(float) round-trips exactly
    assert raw.class_names == ("high", "low", "mid")                                 # sorted names
    assert np.array_equal(raw.y, np.array([{"low": 1, "mid": 2, "high": 0}[("low", "mid", "high")[c]] for c in y]))
    assert raw.feature_names == ("f0", "f1", "f2", "f3")


def test_semicolon_tab_and_numeric_labels(tmp_path):
    x, y = make_table(n=30)
    raw = csv_raw(str(write_csv(tmp_path / "t.tsv", x, y, labels=("10", "2", "2.0"), sep="\t")), "kind")
    assert raw.x.shape == (30, 1, 1, 4)
    assert raw.class_names == ("2", "10")                       # numeric order; "2" and "2.0" are one class
    raw = csv_raw(str(write_csv(tmp_path / "s.csv", x, None, sep=";")))
    assert raw.y is None and raw.x.shape == (30, 1, 1, 4)


def test_standardised_with_training_statistics(tmp_path):
    x, y = make_table()
    d = load_dataset(f"csv:{write_csv(tmp_path / 't.csv', x, y)}", label_column="kind", seed=3)
    assert d.domain == "vectors" and d.shape == (1, 1, 4) and d.n_classes == 3
    xt = d.x_train.double().reshape(len(d.x_train), -1)
    assert torch.allclose(xt.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(xt.std(0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-5)
    st = d.standardization
    # the test split uses the training statistics (not its own): undo them and get the file's rows back
    back = d.x_test.double().reshape(len(d.x_test), -1).numpy() * np.array(st["std"]) + np.array(st["mean"])
    nearest = np.abs(back[:, None, :] - x[None]).max(-1).min(1)          # (n_test,) distance to the closest row
    assert nearest.max() < 1e-6 * np.abs(x).max() * 10                   # float32 rounding of standardised values
    assert not np.allclose(d.x_test.double().reshape(len(d.x_test), -1).mean(0).numpy(), 0, atol=1e-6)
    s = d.summary()
    assert s["domain"] == "vectors" and s["feature_names"] == ["f0", "f1", "f2", "f3"] and s["standardization"] == st
    again = standardize(x[:, None, None, :], st)
    assert again.dtype == np.float32 and again.shape == (240, 1, 1, 4)


def test_npz_with_2d_x_is_vectors(tmp_path):
    x, y = make_table()
    np.savez(tmp_path / "t.npz", x=x, y=y)
    d = load_dataset(f"npz:{tmp_path / 't.npz'}")
    assert d.domain == "vectors" and d.shape == (1, 1, 4) and d.n_classes == 3 and d.feature_names[0] == "x0"
    np.savez(tmp_path / "s.npz", x=x.astype(np.float32), x_test=x[:10].astype(np.float32)[:, :3])
    with pytest.raises(DataError, match="x_test 3 features but x has 4"):
        load_dataset(f"npz:{tmp_path / 's.npz'}")


@pytest.mark.parametrize("cell, phrase", [
    ("", "column 'f2' has a missing value at row 5 \\(line 6\\)"),
    ("NA", "column 'f2' has a missing value at row 5"),
    ("abc", "column 'f2' holds 'abc' at row 5 \\(line 6\\), not a number"),
    ("inf", "column 'f2' has an infinite value \\(inf\\) at row 5"),
    ("nan", "column 'f2' has a missing value at row 5"),
])
def test_bad_cells_name_the_column_and_row(tmp_path, cell, phrase):
    x, _ = make_table(n=20)
    p = write_csv(tmp_path / "t.csv", x)
    lines = p.read_text().splitlines()
    cells = lines[5].split(",")
    cells[2] = cell
    lines[5] = ",".join(cells)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=phrase):
        load_dataset(f"csv:{p}")


def test_bad_tables(tmp_path):
    x, y = make_table(n=20)
    x[:, 1] = 7.0
    with pytest.raises(DataError, match="column 'f1' is constant \\(every value is 7\\)"):
        load_dataset(f"csv:{write_csv(tmp_path / 'c.csv', x)}")
    x, y = make_table(n=20)
    p = write_csv(tmp_path / "t.csv", x, y)
    with pytest.raises(DataError, match="no column named 'label' \\(--label-column\\); its columns are f0, f1, f2, f3, kind"):
        load_dataset(f"csv:{p}", label_column="label")
    with pytest.raises(DataError, match="column 'kind' holds 'low'.*pass --label-column kind"):
        load_dataset(f"csv:{p}")
    with pytest.raises(ConfigError, match="--label-column applies to tables"):
        load_dataset("digits", label_column="kind")
    (tmp_path / "h.csv").write_text("1,2,3\n4,5,6\n7,8,9\n")
    with pytest.raises(DataError, match="first row holds numbers"):
        load_dataset(f"csv:{tmp_path / 'h.csv'}")
    (tmp_path / "r.csv").write_text("a,b\n1,2\n3\n4,5\n")
    with pytest.raises(DataError, match="row 2 \\(line 3\\) has 1 fields but the header has 2 columns"):
        load_dataset(f"csv:{tmp_path / 'r.csv'}")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_dataset(f"csv:{tmp_path / 'e.csv'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"csv:{tmp_path / 'nope.csv'}")


def test_csv_reading_is_bounded(tmp_path):
    from vaelab import budget
    from vaelab.errors import MemoryBudgetError

    x, _ = make_table(n=2000)
    p = write_csv(tmp_path / "t.csv", x)
    budget.set_max_memory("100k")
    try:
        with pytest.raises(MemoryBudgetError, match="2000 rows x 4 numeric columns"):
            load_dataset(f"csv:{p}")
    finally:
        budget.set_max_memory(None)


def test_vector_corruptions_are_not_clipped():
    x = torch.randn(64, 1, 1, 10, generator=torch.Generator().manual_seed(0)) * 3
    g = corrupt(x, "gaussian", 0.3, generator=torch.Generator().manual_seed(1))
    assert float(g.max()) > 1 and float(g.min()) < 0                  # no [0, 1] clip on standardised data
    m = corrupt(x, "masking", 0.25, generator=torch.Generator().manual_seed(1))
    hit = m != x
    assert torch.all(m[hit] == 0) and 0.15 < float(hit.double().mean()) < 0.35   # each feature masked on its own
    with pytest.raises(ConfigError, match="salt-and-pepper corruption .* no meaning for standardised"):
        corrupt(x, "salt-and-pepper", 0.2)
    assert list(corruptions_for((1, 1, 10))) == ["gaussian", "masking"]
    assert len(corruptions_for((1, 8, 8))) == 3


def test_models_on_vectors_gaussian_unclipped_and_bernoulli_refused():
    from vaelab.models import build_model, model_config

    cfg = model_config("vae", input_shape=(1, 1, 6), hidden=(16,), n_latent=2, likelihood="gaussian",
                       learn_sigma=True)
    model = build_model(cfg)
    assert tuple(model.likelihood.log_sigma.shape) == (1, 1, 6)         # one learned sigma per feature
    big = torch.full((3, 1, 1, 6), 5.0)
    assert torch.equal(model.likelihood.mean(big), big)                 # no [0, 1] clamp on vectors
    with pytest.raises(ConfigError, match="bernoulli likelihood models values in \\[0, 1\\].*--likelihood gaussian"):
        build_model(model_config("vae", input_shape=(1, 1, 6), hidden=(16,), n_latent=2))
    with pytest.raises(ConfigError, match="conv backbone is for images.*--backbone mlp"):
        build_model(model_config("vae", input_shape=(1, 1, 6), backbone="conv", likelihood="gaussian"))


def test_likelihood_kind_of_vectors():
    from vaelab.metrics import likelihood_kind
    from vaelab.models import model_config

    kind, note = likelihood_kind(model_config("vae", input_shape=(1, 1, 6), likelihood="gaussian", learn_sigma=True))
    assert kind == "nll" and "standardised continuous features (learned per-feature sigma)" in note


@pytest.mark.slow
def test_compare_on_a_generated_table_end_to_end(tmp_path, monkeypatch):
    """The library's compare on vectors: trains, evaluates with vector metrics, omits image figures and says rows, not
    images, in the answer, the report and the terminal table; an outside table of the same columns is scored; redraws."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    from vaelab.compare import compare
    from vaelab.config import CompareConfig, DataSpec, EvalConfig, ModelConfig, TrainConfig
    from vaelab.report.html import write_report

    x, y = make_table(n=300, d=5)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    np.savez(tmp_path / "outside.npz", x=x[::-1][:, [4, 3, 2, 1, 0]] * 1.5 + 50.0,
             feature_names=np.array(["x4", "x3", "x2", "x1", "x0"]))         # same columns, another order and scale
    torch.set_num_threads(1)
    cfg = CompareConfig(data=DataSpec(dataset=f"npz:{tmp_path / 't.npz'}"), models=("ae", "vae"),
                        model=ModelConfig(likelihood="gaussian", hidden=(32, 16), n_latent=3), train=TrainConfig(epochs=4),
                        eval=EvalConfig(n_samples=200, iw_k=4, n_interp_pairs=20), use_pair_2d=False, inliers=(0, 1),
                        ood_dataset=f"npz:{tmp_path / 'outside.npz'}")
    doc = compare(cfg, tmp_path / "run", progress=False)
    det = doc["test_time"]["detection"]["held-out classes"]                # class 2 is the anomaly: scores per model
    assert set(det["vae"]) >= {"recon_error", "neg_elbo", "iw_nll"} and "complexity_corrected" not in det["vae"]
    outside = doc["test_time"]["detection"][f"outside: npz:{tmp_path / 'outside.npz'}"]
    assert outside["vae"]["recon_error"]["auroc"]["value"] > 0.9       # 50 units off in the file's scale: far out
    assert doc["dataset"]["domain"] == "vectors" and len(doc["dataset"]["standardization"]["std"]) == 5
    for name in ("ae", "vae"):
        m = doc["models"][name]
        assert m["status"] == "ok", m
        rec = m["reconstruction"]["mean_z"]
        assert rec["bce"] is None and rec["psnr"] is None and rec["rmse"] > 0 and len(rec["rmse_per_feature"]) == 5
        # per-feature RMSE is in the file's units: feature j was scaled by 10^j
        assert rec["rmse_per_feature"][4] > 100 * rec["rmse_per_feature"][0]
        assert set(m["denoising_rmse"]) == {"gaussian", "masking"} and m["denoising"]["masking"] is None
        assert m["generation"]["prior"]["fd"] is not None          # judge features of vectors
        assert m["latent"]["linear_probe"] > 0.8                    # three separated clusters
    assert doc["models"]["vae"]["likelihood"]["kind"] == "nll"
    figs = {p.name for p in (tmp_path / "run" / "figures").iterdir()}
    assert "rmse_per_feature.png" in figs and "latent_scatter.png" in figs
    assert not figs & {"reconstructions.png", "samples_prior.png", "manifold_2d.png", "holes_map.png", "denoising.png",
                       "novelty.png", "test_time_sure.png"}
    assert "test_time_histograms.png" in figs
    html = (tmp_path / "run" / "report.html").read_text()
    assert "a Bernoulli is a distribution on {0, 1}" in html and "RMSE per example" in html
    _says_rows_not_images(doc, html)
    saved = json.loads((tmp_path / "run" / "models" / "vae" / "config.json").read_text())
    assert saved["data"]["standardization"] == doc["dataset"]["standardization"]
    before = (tmp_path / "run" / "figures" / "rmse_per_feature.png").read_bytes()
    write_report(tmp_path / "run", redraw=True)          # the report redraws from files alone, byte for byte
    assert (tmp_path / "run" / "figures" / "rmse_per_feature.png").read_bytes() == before


def _says_rows_not_images(doc: dict, html: str) -> None:
    """The answer, the report page, the terminal table and the Markdown name a table's examples rows, never images;
    the image-only metrics (PSNR, BCE) and sections are absent; only the note on what is left out names images."""
    import html as html_lib
    import re

    from vaelab.report.answer import make_answer
    from vaelab.report.table import VECTORS_NOTE, headline_table, markdown_report
    from vaelab.report.figures import FIGURES

    answer = make_answer(doc)
    said = " ".join([answer["question"], answer["short"], *(p["text"] for p in answer["points"])])
    assert "test rows" in said and "nats per row" in said and not re.search(r"\bimages?\b|pixel|PSNR|dB\b", said)
    assert any(p["topic"] == "reconstruction" and "RMSE" in p["text"] for p in answer["points"])
    assert any(p["topic"] == "denoising" and "RMSE against the clean row" in p["text"] for p in answer["points"])
    text = re.sub(r"<style.*?</style>|data:image/png;base64,[A-Za-z0-9+/=]+", "", html, flags=re.S)
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", text))
    assert VECTORS_NOTE in text
    for note in (VECTORS_NOTE, FIGURES["rmse_per_feature"][1]):       # the notes say which image metrics are left out
        text = text.replace(note, "")
    assert "test rows" in text and "mean row" in text and "N(0, I) noise" in text and "uniform noise" not in text
    assert not re.search(r"\bimages?\b|pixel|PSNR|BCE|\bdB\b", text), re.findall(r".{40}\bimages?\b.{20}", text)
    for fig in ("reconstructions", "samples_prior", "interpolations", "denoising", "manifold_2d", "holes_map"):
        assert f'id="fig-{fig}"' not in html
    table = headline_table(doc)                                     # the terminal's table after `vaelab compare`
    assert "test rows" in table.title and VECTORS_NOTE in table.caption
    md = markdown_report(doc)
    assert "test rows" in md and VECTORS_NOTE in md


def test_score_new_rows_with_the_training_standardisation(tmp_path, monkeypatch):
    """`score` on a new table applies the trained model's saved statistics, not the new file's own."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    from vaelab.config import TrainConfig
    from vaelab.models import model_config
    from vaelab.sampling import reload_dataset
    from vaelab.score import rows_to_score, applicable_scores, score_run
    from vaelab.train import fit

    torch.set_num_threads(1)
    x, y = make_table(n=200)
    spec = f"csv:{write_csv(tmp_path / 'train.csv', x, y)}"
    data = load_dataset(spec, label_column="kind")
    cfg = model_config("vae", input_shape=data.shape, hidden=(16,), n_latent=2, likelihood="gaussian", learn_sigma=True)
    run = fit(cfg, data, TrainConfig(epochs=2), out=tmp_path / "vae", progress=False,
              data_meta={"spec": spec, "split_seed": 0, "val_fraction": 0.1})
    saved = json.loads((tmp_path / "vae" / "config.json").read_text())["data"]
    assert saved["label_column"] == "kind" and saved["standardization"] == data.standardization
    assert reload_dataset({"data": saved}).fingerprint == data.fingerprint        # reloads with its label column
    new = x[:40] * 2.0 + 5.0                                                      # other units: other own statistics
    new_spec = f"csv:{write_csv(tmp_path / 'new.csv', new, y[:40])}"
    xs, ys, _, _ = rows_to_score(new_spec, None, "all", saved)
    want = standardize(new[:, None, None, :], data.standardization)
    got = np.sort(xs.numpy().reshape(len(xs), -1), axis=0)
    assert np.allclose(got, np.sort(want.reshape(40, -1), axis=0), atol=1e-5) and ys is not None
    assert "complexity_corrected" not in applicable_scores(run.model)              # PNG bits apply to images only
    info = score_run(tmp_path / "vae", new_spec, tmp_path / "s.csv", progress=False)
    assert "vae:iw_nll" in (tmp_path / "s.csv").read_text().splitlines()[0] and info["models"]["vae"]["scores"]


def test_new_tables_are_read_by_column_name_with_the_training_statistics(tmp_path):
    """load_new_data: columns matched by name (any order, label column optional), the training mean and std; other
    columns, and a table for image models (or images for table models), are refused with one message."""
    from vaelab.data import load_new_data

    x, y = make_table(n=120)
    trained = load_dataset(f"csv:{write_csv(tmp_path / 'train.csv', x, y)}", label_column="kind").summary()
    new = x[:30] * 3.0 - 7.0                                        # other units: its own statistics would differ
    order = [2, 0, 3, 1]                                            # the file's columns in another order, no labels
    shuffled = write_csv(tmp_path / "shuffled.csv", new[:, order], header=[f"f{j}" for j in order])
    d = load_new_data(f"csv:{shuffled}", trained)
    assert d.feature_names == ("f0", "f1", "f2", "f3") and d.y_train is None
    got = np.sort(torch.cat([d.x_train, d.x_val, d.x_test]).numpy().reshape(-1, 4), axis=0)
    want = np.sort(standardize(new[:, None, None, :], trained["standardization"]).reshape(-1, 4), axis=0)
    assert np.allclose(got, want, atol=1e-5)
    labelled = load_new_data(f"csv:{write_csv(tmp_path / 'l.csv', new, y[:30])}", trained)
    assert labelled.has_labels                                      # the training label column, when the file has it
    other = write_csv(tmp_path / "other.csv", new, header=["f0", "f1", "g2", "f3"])
    with pytest.raises(DataError, match=r"other.csv does not have the columns the model was trained on \(missing "
                                        r"'f2'; extra 'g2'\)\. Give a table with exactly the training columns"):
        load_new_data(f"csv:{other}", trained)
    np.savez(tmp_path / "n.npz", x=new[:, :3])
    with pytest.raises(DataError, match=r"missing 'f0', 'f1', 'f2', 'f3'; extra 'x0', 'x1', 'x2'"):
        load_new_data(f"npz:{tmp_path / 'n.npz'}", trained)
    with pytest.raises(DataError, match="--ood-dataset digits holds images, but the model was trained on a table of 4"):
        load_new_data("digits", trained, what="--ood-dataset")
    with pytest.raises(DataError, match=r"--dataset csv:\S+ is a table, but the model was trained on images \(1x8x8\)"):
        load_new_data(f"csv:{shuffled}", load_dataset("digits").summary())


def test_anomaly_sets_of_a_table_use_the_inliers_training_statistics(tmp_path):
    """--inliers and --ood-dataset on tables: the held-out classes and the outside table are standardised with the
    statistics of the inliers' training split, so the inliers' test rows are exactly the models' test split."""
    from vaelab import test_time
    from vaelab.config import DataSpec

    x, y = make_table(n=240)
    spec = f"csv:{write_csv(tmp_path / 'a.csv', x, y)}"
    ds = DataSpec(dataset=spec, label_column="kind", classes=(0, 1))
    data = load_dataset(spec, **ds.load_kwargs())
    outside = x[:50] + 1000.0
    ood = f"csv:{write_csv(tmp_path / 'b.csv', outside[:, [3, 1, 0, 2]], header=['f3', 'f1', 'f0', 'f2'])}"
    sets = test_time.anomaly_sets(data, spec=spec, load_kwargs=ds.load_kwargs(), inliers=(0, 1), ood_dataset=ood)
    held = sets["held-out classes"]
    assert held["source"] == "test rows of the classes not trained on: mid" and len(held["x"]) == 16
    back = held["x"].double().numpy().reshape(-1, 4) * data.standardization["std"] + data.standardization["mean"]
    assert np.abs(back[:, None, :] - x[None]).max(-1).min(1).max() < 1e-2      # the file's rows, training statistics
    full = load_dataset(spec, label_column="kind", standardization=data.standardization)
    inl = torch.from_numpy(np.isin(full.y_test.numpy(), [0, 1]))
    assert torch.equal(full.x_test[inl], data.x_test)
    out = sets[f"outside: {ood}"]["x"].numpy().reshape(-1, 4)
    want = standardize(outside[:, None, None, :], data.standardization).reshape(-1, 4)
    assert np.abs(out[:, None, :] - want[None]).max(-1).min(1).max() < 1e-5    # each row is a standardised outside row
