"""The public API: importable from the package root, lazily, and the README's example runs (on tiny settings)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import vaelab
from vaelab import cli

ROOT = Path(__file__).resolve().parents[1]


def test_root_names_are_the_functions_the_cli_calls():
    from vaelab import checkpoint, compare, data, evaluate, train

    assert vaelab.fit is train.fit and vaelab.load is checkpoint.load_model
    assert vaelab.load_dataset is data.load_dataset
    # `vaelab.compare` / `vaelab.evaluate` are also their modules: calling them calls the function
    assert callable(vaelab.compare) and callable(vaelab.evaluate)
    assert vaelab.compare.compare is compare.compare and vaelab.evaluate.evaluate is evaluate.evaluate
    assert set(vaelab.__all__) <= set(dir(vaelab))
    assert cli.compare_cmd.__code__.co_names.count("compare")       # compare_cmd calls vaelab.compare.compare


def test_readme_example_runs(tmp_path, monkeypatch, judge_cache):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- api-example.*?-->\n```python\n(.*?)```", text, re.S).group(1)
    assert "vaelab.fit(" in block and "vaelab.compare(" in block and "vaelab.evaluate(" in block
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block.replace("epochs=5", "epochs=1"), "README.md", "exec"), ns)   # noqa: S102 (our own README)
    assert ns["x_hat"].shape == (8, 1, 8, 8)
    assert ns["metrics"]["likelihood"]["iw_k"] == 20
    doc = json.loads((tmp_path / "runs/api-compare/metrics.json").read_text())
    assert doc["config"]["train"]["epochs"] == 1 and doc["config"]["eval"]["n_samples"] == 500
    assert set(doc["models"]) == {"ae", "vae"} and (tmp_path / "runs/api-compare/report.html").is_file()
