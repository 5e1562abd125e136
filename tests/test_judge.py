"""The judge: trains on digits to a known accuracy, caches by fingerprint, survives a corrupt cache."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from vaelab import judge as judge_mod
from vaelab.data import load_dataset
from vaelab.judge import Judge, judge_dir, load_or_train_judge


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """One judge trained (seed 0) into a module-level cache: (cache folder, judge)."""
    root = tmp_path_factory.mktemp("judge_cache")
    return root, load_or_train_judge(digits, cache_dir=root, progress=False, seed=0)


@pytest.fixture
def cache(tmp_path, monkeypatch, trained):
    """$VAELAB_CACHE pointing at a private copy of the trained cache."""
    shutil.copytree(trained[0], tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path))
    return tmp_path


def test_trains_caches_and_hits(digits, cache, trained, monkeypatch):
    j = trained[1]
    assert isinstance(j, Judge) and j.arch == "mlp" and j.n_classes == 10
    assert j.fingerprint == digits.fingerprint
    assert j.test_accuracy >= 0.95                     # brief: >= 0.95 on 8x8 digits
    assert j.accuracy(digits.x_test, digits.y_test) == pytest.approx(j.test_accuracy)
    folder = cache / "judge" / digits.fingerprint
    assert folder == judge_dir(digits.fingerprint)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["test_accuracy"] == pytest.approx(j.test_accuracy) and cfg["arch"] == "mlp"
    assert (folder / "weights.safetensors").exists()

    feats, probs = j.features(digits.x_test), j.predict_proba(digits.x_test)
    assert feats.shape == (len(digits.x_test), 128) and feats.dtype == torch.float32
    assert probs.shape == (len(digits.x_test), 10)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)

    def no_training(*a, **k):
        raise AssertionError("a cache hit must not train")

    monkeypatch.setattr(judge_mod, "_train", no_training)
    j2 = load_or_train_judge(digits, progress=False)
    assert j2.test_accuracy == j.test_accuracy
    assert torch.equal(j2.predict_proba(digits.x_test), probs)
    assert torch.equal(j2.features(digits.x_test), feats)


@pytest.mark.parametrize("damage", ["flip_weights", "garbage_config", "missing_weights"])
def test_corrupt_cache_is_retrained_with_a_warning(digits, cache, trained, damage):
    probs = trained[1].predict_proba(digits.x_test)
    folder = cache / "judge" / digits.fingerprint
    w = folder / "weights.safetensors"
    if damage == "flip_weights":
        b = bytearray(w.read_bytes())
        b[-5] ^= 0xFF                                   # a flipped bit in the tensor bytes
        w.write_bytes(bytes(b))
    elif damage == "garbage_config":
        (folder / "config.json").write_text("{not json")
    else:
        w.unlink()
    with pytest.warns(RuntimeWarning, match="retraining"):
        j2 = load_or_train_judge(digits, progress=False, seed=0)
    # seeded: the retrained judge is the same judge
    assert torch.equal(j2.predict_proba(digits.x_test), probs)
    load_or_train_judge(digits, progress=False)        # and the cache is whole again (no warning)


def test_training_is_seeded_and_leaves_the_global_rng_alone(digits, tmp_path, trained):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    b = load_or_train_judge(digits, cache_dir=tmp_path, progress=False, seed=0, retrain=True)
    after = torch.rand(3)
    assert torch.equal(before, after)
    assert torch.equal(trained[1].features(digits.x_test[:50]), b.features(digits.x_test[:50]))


def test_no_labels_no_judge(digits, cache):
    unlabelled = dataclasses.replace(digits, y_train=None, y_val=None, y_test=None, n_classes=0, class_names=())
    assert load_or_train_judge(unlabelled, progress=False) is None


def test_cnn_for_larger_images():
    j = Judge("cnn", (1, 28, 28), 10)
    x = torch.rand(5, 1, 28, 28)
    assert j.features(x).shape == (5, 128) and j.predict_proba(x).shape == (5, 10)
    with pytest.raises(ValueError, match="shape"):
        j.features(torch.rand(2, 1, 8, 8))


def test_cnn_judge_scales_its_epochs_to_the_data_and_an_old_cached_version_is_retrained(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = rng.integers(0, 80, size=(300, 16, 16))
    for c in range(3):                       # a bright band per class: an easy task
        x[y == c, 5 * c:5 * c + 4, :] += 170
    np.savez(tmp_path / "bands.npz", x=x.astype(np.uint8), y=y)
    data = load_dataset(f"npz:{tmp_path / 'bands.npz'}", seed=0)
    j = load_or_train_judge(data, cache_dir=tmp_path / "c", progress=False, seed=0)
    assert j.arch == "cnn" and j.test_accuracy > 0.9
    cfg = json.loads((judge_dir(data.fingerprint, tmp_path / "c") / "config.json").read_text())
    assert cfg["arch_version"] == judge_mod.ARCH_VERSIONS["cnn"] == 2
    assert cfg["training"]["epochs_run"] <= judge_mod.CNN_EPOCHS[1] and cfg["training"]["batch_size"] == 256
    cfg["arch_version"] = 1                  # a judge cached by an older vaelab: retrained, not mixed in
    (judge_dir(data.fingerprint, tmp_path / "c") / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(RuntimeWarning, match="version 1"):
        load_or_train_judge(data, cache_dir=tmp_path / "c", progress=False, seed=0)
