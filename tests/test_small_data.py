"""Small data that works: a 120-image .npz trains and compares on the defaults (the batch is capped, with a note)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vaelab.cli import main
from vaelab.errors import ConfigError
from vaelab.train import capped_batch_size


def _npz(tmp_path: Path, n: int = 120) -> str:
    """n 28x28 grey images of 3 classes (bright rows per class, plus noise), uint8: batch 128 by default."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 28, 28))
    for c in range(3):
        x[y == c, 8 * c + 2:8 * c + 6, :] += 180
    path = tmp_path / "small.npz"
    np.savez(path, x=x.astype(np.uint8), y=y)
    return f"npz:{path}"


def test_capped_batch_size_caps_with_a_note_and_refuses_only_the_impossible():
    assert capped_batch_size(128, 1000) == (128, None)
    size, note = capped_batch_size(128, 86)
    assert size == 86 and "batch size 128 is larger than the 86 training images; using batch size 86" in note
    assert capped_batch_size(128, 86, world_size=2)[0] == 43
    assert capped_batch_size(128, 2)[0] == 2
    for n in (0, 1):
        with pytest.raises(ConfigError, match="training needs at least 2"):
            capped_batch_size(128, n)


def test_train_on_a_120_image_npz_with_the_defaults(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "vae", "--dataset", _npz(tmp_path), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("batch size 128 is larger than the 86 training images") == 1
    conf = json.loads((out / "config.json").read_text())
    assert conf["train"]["batch_size"] == 86 and conf["training"]["status"] == "completed"
    assert conf["training"]["notes"] == ["batch size 128 is larger than the 86 training images; using batch size 86."]
    assert (out / "weights.safetensors").exists()


def test_compare_on_a_120_image_npz(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--dataset", _npz(tmp_path), "--models", "ae,vae", "--epochs", "2", "--n-samples", "200",
               "--iw-k", "10", "--no-pair", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "batch size 128 is larger than the 86 training images" in capsys.readouterr().err
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["config"]["train"]["batch_size"] == 86 and "86 training images" in doc["config"]["batch_note"]
    assert all(doc["models"][m]["status"] != "failed" for m in ("ae", "vae")), doc["models"]
    assert (out / "report.html").exists()
