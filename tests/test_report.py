"""The report: re-rendering from metrics.json, the answer written from the numbers, the headline table,
and the page in a real browser (headless Chromium: no broken image, no JavaScript error)."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.report.answer import make_answer
from vaelab.report.html import render
from vaelab.report.table import table_rows

CHROMIUM = os.environ.get("VAELAB_CHROMIUM", "/usr/bin/chromium")


def _model(psnr, fd_prior, fd_gmm, probe, knn, nmi, conf_mid, fd_mid, stochastic, iw=None):
    return {"model": "x", "status": "ok", "error": None, "is_stochastic": stochastic, "n_latent": 8,
            "reconstruction": {"mean_z": {"bce": 20.0, "mse": 0.02, "psnr": psnr}, "sampled_z": None},
            "likelihood": ({"neg_elbo": iw + 1, "iw_nll": iw, "iw_nll_se": 0.1, "iw_k": 100, "bits_per_dim": 0.5,
                            "kind": "training objective", "note": "grey pixels"} if iw else None),
            "generation": {"prior": {"fd": fd_prior, "precision": 0.5, "recall": 0.5, "confidence": 0.8,
                                     "coverage": 2.2, "coverage_max": 2.3},
                           "gmm": {"fd": fd_gmm, "precision": 0.6, "recall": 0.5, "confidence": 0.85,
                                   "coverage": 2.2, "coverage_max": 2.3}},
            "interpolation": {"fd_midpoints": fd_mid, "confidence_midpoints": conf_mid},
            "latent": {"linear_probe": probe, "knn": knn, "kmeans_nmi": nmi, "kmeans_ari": 0.5, "silhouette": 0.1,
                       "active_units": 8, "n_latent": 8},
            "denoising": {"gaussian": 18.0, "salt-and-pepper": 15.0, "masking": 16.0},
            "train": {"seconds": 3.0, "n_params": 1000, "epochs_done": 60, "best_epoch": 58}}


def _doc(ae: dict, vae: dict, n_classes: int = 10) -> dict:
    names = ["3", "5"] if n_classes == 2 else [str(i) for i in range(n_classes)]
    return {"schema_version": 1, "created": "2026-01-01T00:00:00", "versions": {"vaelab": "0.1.0"},
            "dataset": {"name": "digits", "n_classes": n_classes, "class_names": names, "n_test": 360,
                        "shape": [1, 8, 8]},
            "config": {"seeds": [0], "n_samples": 2000, "iw_k": 100},
            "judge": {"test_accuracy": 0.97, "arch": "mlp"},
            "reference": {"train_vs_test": {"fd": 1.0, "precision": 0.8, "recall": 0.8},
                          "uniform_noise": {"fd": 300.0, "precision": 0.0, "recall": 0.0}},
            "models": {"ae": ae, "vae": vae},
            "pairs_2d": {"ae-2d": {"grid_prior": {"frac_confident": 0.30, "threshold": 0.9}},
                         "vae-2d": {"grid_prior": {"frac_confident": 0.85, "threshold": 0.9}}},
            "figures": [], "timings": {"total": 60.0}}


# AE: sharp, holes in its prior, same clusters; VAE: blurrier, good prior samples, filled midpoints
AE = _model(psnr=22.0, fd_prior=80.0, fd_gmm=20.0, probe=0.95, knn=0.96, nmi=0.80, conf_mid=0.60, fd_mid=50.0,
            stochastic=False)
VAE = _model(psnr=19.0, fd_prior=15.0, fd_gmm=14.0, probe=0.95, knn=0.955, nmi=0.805, conf_mid=0.85, fd_mid=20.0,
             stochastic=True, iw=25.0)


def test_the_answer_follows_the_numbers():
    a = make_answer(_doc(AE, VAE))
    assert "prior samples are better than the AE's (FD 15.00 vs 80.00)" in a["short"]
    assert "worse than its own GMM samples (FD 20.00): holes" in a["short"]
    assert "about as separable" in a["short"]
    assert "blurrier (PSNR 19.00 vs 22.00 dB)" in a["short"]
    assert any("85 % of the grid for the 2-D VAE and on 30 %" in p["text"] for p in a["points"])

    # swap the generation numbers and make the VAE's clusters clearly better: the text changes with them
    ae, vae = copy.deepcopy(AE), copy.deepcopy(VAE)
    ae["generation"]["prior"]["fd"], vae["generation"]["prior"]["fd"] = 15.0, 80.0
    ae["generation"]["gmm"]["fd"] = 16.0
    vae["latent"].update(linear_probe=0.99, knn=0.99, kmeans_nmi=0.95)
    b = make_answer(_doc(ae, vae))
    assert "prior samples are worse than the AE's (FD 80.00 vs 15.00)" in b["short"]
    assert "holes" not in b["short"]
    assert "more separable" in b["short"]
    assert a["short"] != b["short"]


def test_two_classes_answer_the_founding_question():
    a = make_answer(_doc(AE, VAE, n_classes=2))
    assert "two classes (3 vs 5)" in a["question"]
    assert a["short"].startswith("On digits (3 vs 5)")
    assert "The two clusters: " in a["short"]
    assert "Between the clusters: midpoints decode to more recognisable images for the VAE" in a["short"]


def test_seeds_make_small_differences_count_as_similar():
    ae, vae = copy.deepcopy(AE), copy.deepcopy(VAE)
    vae["latent"].update(linear_probe=0.90, knn=0.90, kmeans_nmi=0.75)     # 5 points below the AE ...
    doc = _doc(ae, vae)
    assert "less separable" in make_answer(doc)["short"]
    doc["config"]["seeds"] = [0, 1, 2]                                     # ... but within the seeds' noise
    for m in ("ae", "vae"):
        doc["models"][m]["sd"] = {"latent": {"linear_probe": 0.08, "knn": 0.08, "kmeans_nmi": 0.08}}
    assert "about as separable" in make_answer(doc)["short"]


def test_table_marks_the_best_value_per_row():
    names, rows = table_rows(_doc(AE, VAE))
    assert names == ["ae", "vae"]
    by = {r.label: r for r in rows}
    fd = by["FD prior samples (judge features)"]
    assert [c.is_best for c in fd.cells] == [False, True] and "train 1.00" in fd.reference
    psnr = by["PSNR, mean z (dB)"]
    assert [c.is_best for c in psnr.cells] == [True, False]
    nll = by["IW bound on −log p(x) (nats)"]
    assert nll.cells[0].text == "n/a" and not any(c.is_best for c in nll.cells)   # one value: nothing to beat
    html = render(_doc(AE, VAE), Path("/nonexistent"))
    assert html.count('class="best"') == sum(c.is_best for r in rows for c in r.cells)


def test_report_rerenders_from_metrics_and_figures(compare_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(compare_run, run)
    original = (run / "report.html").read_text(encoding="utf-8")
    pngs = {p.name: p.read_bytes() for p in (run / "figures").glob("*.png")}
    (run / "report.html").unlink()
    shutil.rmtree(run / "models")                       # no models needed: metrics.json + arrays/ only
    shutil.rmtree(run / "figures")                      # every figure is redrawn from those files
    assert main(["report", str(run)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (run / "report.html").read_text(encoding="utf-8") == original       # byte for byte
    assert {p.name: p.read_bytes() for p in (run / "figures").glob("*.png")} == pngs
    assert len(pngs) == len(json.loads((run / "metrics.json").read_text(encoding="utf-8"))["figures"]) >= 14
    # the numbers drive the page: change one in metrics.json and the re-render shows it
    doc = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    doc["models"]["vae"]["latent"]["linear_probe"] = 0.123456
    (run / "metrics.json").write_text(json.dumps(doc), encoding="utf-8")
    assert main(["report", str(run), "--markdown", str(tmp_path / "example.md")]) == 0
    assert "0.123" in (run / "report.html").read_text(encoding="utf-8")
    md = (tmp_path / "example.md").read_text(encoding="utf-8")
    assert "| Latent: linear probe accuracy ↑ |" in md and "0.123" in md and "**" in md
    assert md.count("\n|") == len(table_rows(doc)[1]) + 2          # header, rule, one line per headline row


def test_report_redraws_missing_likelihood_figures_from_metrics(compare_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(compare_run, run)
    shutil.rmtree(run / "models")
    names = ("likelihood_curve", "kl_schedule", "kl_per_dim")
    for n in names:
        (run / "figures" / f"{n}.png").unlink()
    # an older metrics.json that does not list them: the report still adds what the numbers can draw
    doc = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    doc["figures"] = [f for f in doc["figures"] if f["file"][:-4] not in names]
    (run / "metrics.json").write_text(json.dumps(doc), encoding="utf-8")
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    for n in names:
        assert (run / "figures" / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'id="fig-{n}"><h3>' in html
    assert "is missing from figures/" not in html
    assert html.count('src="data:image/png;base64,') == len(doc["figures"]) + len(names)


def test_report_of_a_run_without_arrays_keeps_its_figures(compare_run, tmp_path):
    """A run folder written before arrays/ existed: its PNGs stay, the page renders, nothing needs a model."""
    run = tmp_path / "copy"
    shutil.copytree(compare_run, run)
    shutil.rmtree(run / "models")
    shutil.rmtree(run / "arrays")
    before = {p.name: p.read_bytes() for p in (run / "figures").glob("*.png")}
    assert main(["report", str(run)]) == 0
    assert {p.name: p.read_bytes() for p in (run / "figures").glob("*.png")} == before
    assert (run / "report.html").read_text(encoding="utf-8") == (compare_run / "report.html").read_text(encoding="utf-8")


def test_report_on_a_folder_without_metrics_is_one_message(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "no metrics.json" in err and "Traceback" not in err


# -- the page in a real browser ----------------------------------------------------------------------
PROBE = """<script>
window.__errs = [];
window.addEventListener('error', function (e) {
  window.__errs.push(String(e.message || ('failed to load ' + (e.target && e.target.tagName))));
}, true);
window.addEventListener('load', function () {
  var imgs = [].slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.documentElement.setAttribute('data-vaelab-check',
      JSON.stringify({images: imgs.length, broken: bad, errors: window.__errs}));
});
</script>"""


def browser_check(html: str, tmp: Path) -> dict:
    """Open ``html`` in headless Chromium (offline) and return {"images", "broken", "errors"}."""
    page = tmp / "page.html"
    # the probe goes first in <head> so it sees every error of the page's own scripts and images
    page.write_text(html.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'data-vaelab-check="([^"]*)"', res.stdout)
    assert m, f"chromium gave no result (rc {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} not found: install Debian's chromium package to run the "
                                           "browser test (CI installs it)")


@needs_chromium
@pytest.mark.browser
def test_report_opens_in_chromium_without_broken_images_or_errors(compare_run, tmp_path):
    html = (compare_run / "report.html").read_text(encoding="utf-8")
    res = browser_check(html, tmp_path)
    n_figs = len(json.loads((compare_run / "metrics.json").read_text())["figures"])
    assert res == {"images": n_figs, "broken": 0, "errors": []}


@needs_chromium
@pytest.mark.browser
def test_browser_check_catches_a_broken_image_and_a_script_error(compare_run, tmp_path):
    html = (compare_run / "report.html").read_text(encoding="utf-8")
    broken = re.sub(r'src="data:image/png;base64,[^"]+"', 'src="data:image/png;base64,AAAA"', html, count=1)
    broken = broken.replace("</body>", "<script>noSuchFunction()</script></body>")
    res = browser_check(broken, tmp_path)
    assert res["broken"] == 1
    assert any("noSuchFunction" in e for e in res["errors"])


def test_unlabelled_data_say_why_judge_metrics_are_missing():
    ae, vae = copy.deepcopy(AE), copy.deepcopy(VAE)
    for m in (ae, vae):
        m["generation"] = {"prior": dict.fromkeys(m["generation"]["prior"]), "gmm": dict.fromkeys(m["generation"]["gmm"])}
        m["interpolation"] = {"fd_midpoints": None, "confidence_midpoints": None}
        m["latent"].update(linear_probe=None, knn=None, kmeans_nmi=None, silhouette=None)
    doc = _doc(ae, vae, n_classes=0)
    doc["judge"], doc["pairs_2d"] = None, {}
    a = make_answer(doc)
    assert "no labels" in a["short"] and "FD" not in a["short"] and "PSNR 19.00 vs 22.00" in a["short"]
    names, rows = table_rows(doc)
    assert not any(r.section in ("Generation", "Interpolation") for r in rows)
