"""`vaelab compare --inliers` (the test-time section) and `vaelab score` on its run folder."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from vaelab.metrics.detection import auroc


@pytest.fixture(scope="module")
def inlier_run(tmp_path_factory):
    """`vaelab compare --models ae,vae --inliers 0,1,2,3,4 --ood-dataset npz:...` on digits, tiny settings."""
    from vaelab.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        root = tmp_path_factory.mktemp("tt")
        rng = np.random.default_rng(0)
        ood = root / "noise.npz"                       # an outside set of another size: 12x12 blobs
        np.savez(ood, x=(rng.random((120, 12, 12)) ** 3 * 255).astype(np.uint8))
        out = root / "run"
        args = ["compare", "--models", "ae,vae", "--inliers", "0,1,2,3,4", "--ood-dataset", f"npz:{ood}",
                "--epochs", "4", "--n-samples", "100", "--iw-k", "5", "--no-pair", "--quiet", "--out", str(out)]
        assert main(args) == 0
        yield out


def test_report_has_the_detection_table_histograms_uncertainty_and_answer(inlier_run):
    doc = json.loads((inlier_run / "metrics.json").read_text())
    tt = doc["test_time"]
    assert doc["dataset"]["n_classes"] == 5 and set(tt["sets"]) == {"held-out classes", "outside: npz"} or \
        len(tt["sets"]) == 2
    held = tt["detection"]["held-out classes"]
    assert set(held) == {"ae", "vae"}
    assert set(held["ae"]) == {"recon_error", "gmm_nll"}
    assert {"neg_elbo", "iw_nll", "posterior_spread", "complexity_corrected"} <= set(held["vae"])
    for row in held["vae"].values():
        for m in ("auroc", "auprc", "fpr_at_95_tpr"):
            lo, hi = row[m]["ci"]
            assert lo <= row[m]["value"] <= hi
    unc = tt["uncertainty"]["models"]
    assert {"posterior_variance", "recon_spread", "centroid_distance"} == set(unc["vae"]["probe_error_auroc"])
    assert set(unc["ae"]["probe_error_auroc"]) == {"centroid_distance"}
    html = (inlier_run / "report.html").read_text()
    assert 'id="test-time"' in html and "held-out classes" in html and "AUROC for a linear-probe error" in html
    assert {"test_time_histograms.png", "test_time_sure.png"} <= {f["file"] for f in doc["figures"]}
    assert any(p["topic"] == "test time" for p in doc["answer"]["points"])
    assert "best detector here" in html
    assert "resized from 1x12x12 to 1x8x8" in json.dumps(tt["sets"])


def test_report_redraws_the_test_time_figures_from_the_arrays_alone(inlier_run, tmp_path):
    import shutil

    from vaelab.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(inlier_run, copy)
    shutil.rmtree(copy / "models")
    (copy / "figures" / "test_time_histograms.png").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "figures" / "test_time_histograms.png").is_file()
    assert (copy / "report.html").read_text() == (inlier_run / "report.html").read_text()


def test_score_on_the_runs_test_split_reproduces_the_reports_auroc(inlier_run, tmp_path):
    from vaelab.cli import main

    out = tmp_path / "scores.csv"
    assert main(["score", str(inlier_run), "--dataset", "digits", "--split", "test", "--out", str(out),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    labels = np.array([int(r["label"]) for r in rows])
    is_anomaly = ~np.isin(labels, [0, 1, 2, 3, 4])
    doc = json.loads((inlier_run / "metrics.json").read_text())["test_time"]["detection"]["held-out classes"]
    for model, scores in doc.items():
        for score, row in scores.items():
            s = np.array([float(r[f"{model}:{score}"]) for r in rows])
            assert auroc(s[~is_anomaly], s[is_anomaly]) == pytest.approx(row["auroc"]["value"], abs=1e-3), (model, score)
    info = json.loads((tmp_path / "scores.csv.json").read_text())
    assert set(info["models"]) == {"ae", "vae"}
    # the threshold at 5 % of the validation split flags about 5 % of its validation images
    for m in info["models"].values():
        assert 0.0 < m["val_flagged_fraction"] <= 0.05 + 1e-9
    anomaly = np.array([int(r["vae:anomaly"]) for r in rows])
    assert anomaly[is_anomaly].mean() >= anomaly[~is_anomaly].mean()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True, text=True, timeout=300)


def test_score_a_users_npz_and_refuse_a_wrong_size(inlier_run, tmp_path):
    rng = np.random.default_rng(1)
    good = tmp_path / "mine.npz"
    np.savez(good, x=rng.random((30, 8, 8)).astype(np.float32))
    r = _run("score", str(inlier_run / "models" / "vae"), "--dataset", f"npz:{good}", "--out",
             str(tmp_path / "mine.csv"), "--fpr", "0.1", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "mine.csv").open()))
    assert len(rows) == 30 and "vae:iw_nll" in rows[0] and "vae:anomaly" in rows[0]
    big = tmp_path / "big.npz"
    np.savez(big, x=rng.random((30, 28, 28)).astype(np.float32))
    before = (tmp_path / "mine.csv").read_text()
    r = _run("score", str(inlier_run), "--dataset", f"npz:{big}", "--out", str(tmp_path / "mine.csv"), "--overwrite")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "(1, 28, 28)" in r.stderr and "takes (1, 8, 8)" in r.stderr
    assert (tmp_path / "mine.csv").read_text() == before          # the earlier file is intact


def test_bad_test_time_options_are_refused(tmp_path):
    r = _run("compare", "--inliers", "0,1", "--classes", "3,5", "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "--inliers and --classes" in r.stderr and "Traceback" not in r.stderr
    r = _run("compare", "--inliers", ",".join(map(str, range(10))), "--models", "ae", "--epochs", "1", "--no-pair",
             "--out", str(tmp_path / "y"), "--quiet")
    assert r.returncode != 0 and "no class is left" in r.stderr and "Traceback" not in r.stderr
    r = _run("score", str(tmp_path), "--dataset", "digits", "--out", str(tmp_path / "s.csv"))
    assert r.returncode != 0 and "neither a run folder" in r.stderr
