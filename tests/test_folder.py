"""folder:PATH: image folders (class sub-folders, flat, train/test), sizes, channels, damaged files, the cache."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.data import folder as F
from vaelab.data import load_dataset
from vaelab.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))


def write_images(folder: Path, n: int, size=(64, 64), mode="RGB", seed=0, ext=".png", old=True) -> list[Path]:
    """n random images; their mtime is set in the past so that the cache may keep them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        p = folder / f"img{i:03d}{ext}"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(p)
        if old:
            os.utime(p, (time.time() - 60, time.time() - 60))
        paths.append(p)
    return paths


def test_class_folders_give_labels_and_colour(tmp_path):
    for c, n in (("cat", 12), ("dog", 10), ("emu", 8)):
        write_images(tmp_path / "d" / c, n, seed=len(c) + n)
    d = load_dataset(f"folder:{tmp_path / 'd'}", val_fraction=0.1)
    assert d.shape == (3, 64, 64) and d.class_names == ("cat", "dog", "emu") and d.n_classes == 3
    assert d.x_train.shape[0] + d.x_val.shape[0] + d.x_test.shape[0] == 30
    assert sorted(torch.cat([d.y_train, d.y_val, d.y_test]).tolist()) == [0] * 12 + [1] * 10 + [2] * 8
    assert "labelled by sub-folder" in d.source and "RGB 64x64" in d.source
    assert 0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1


def test_pixels_are_the_files_pixels(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    (tmp_path / "d").mkdir()
    for i in range(4):
        Image.fromarray(a if i == 0 else a[::-1].copy()).save(tmp_path / "d" / f"{i}.png")
    raw = F.folder_raw(str(tmp_path / "d"))
    assert raw.y is None and np.array_equal(raw.x[0], a.transpose(2, 0, 1))


def test_flat_grey_folder_is_unlabelled_grey(tmp_path):
    write_images(tmp_path / "flat", 20, size=(28, 28), mode="L")
    d = load_dataset(f"folder:{tmp_path / 'flat'}")
    assert d.shape == (1, 28, 28) and not d.has_labels and d.n_classes == 0
    d3 = load_dataset(f"folder:{tmp_path / 'flat'}", image_channels=3)
    assert d3.shape == (3, 28, 28)
    assert torch.equal(d3.x_test[:, 0], d3.x_test[:, 1])     # grey as RGB: equal channels


def test_image_size_crops_the_centre_and_resizes(tmp_path):
    (tmp_path / "d").mkdir()
    wide = np.zeros((20, 60), np.uint8)
    wide[:, 20:40] = 255                                    # the centre square is white, the sides black
    for i in range(4):
        Image.fromarray(wide).save(tmp_path / "d" / f"{i}.png")
    d = load_dataset(f"folder:{tmp_path / 'd'}", image_size=10, val_fraction=0)
    assert d.shape == (1, 10, 10) and float(d.x_train.min()) > 0.9
    assert "resized to 10x10 (centre crop to a square" in d.source


def test_mixed_sizes_are_resized_never_padded(tmp_path):
    write_images(tmp_path / "d", 6, size=(32, 32), mode="L")
    write_images(tmp_path / "d" / "x", 0)
    (tmp_path / "d" / "x").rmdir()
    Image.fromarray(np.full((40, 20), 255, np.uint8)).save(tmp_path / "d" / "tall.png")
    d = load_dataset(f"folder:{tmp_path / 'd'}", val_fraction=0)
    assert d.shape == (1, 32, 32)
    assert "1 image(s) of other sizes resized to the most common 32x32" in d.source
    allx = torch.cat([d.x_train, d.x_test])
    assert (allx.flatten(1).min(1).values > 0.99).sum() == 1       # the white one: cropped, not padded with 0


def test_train_test_folders_keep_their_split(tmp_path):
    for split, n in (("train", 9), ("test", 4)):
        for c in ("a", "b"):
            write_images(tmp_path / "d" / split / c, n, size=(16, 16), seed=n)
    d = load_dataset(f"folder:{tmp_path / 'd'}", val_fraction=0)
    assert d.x_train.shape[0] == 18 and d.x_test.shape[0] == 8 and d.class_names == ("a", "b")


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".webp"])
def test_other_formats(tmp_path, ext):
    write_images(tmp_path / "d", 4, size=(12, 12), ext=ext)
    assert load_dataset(f"folder:{tmp_path / 'd'}").shape == (3, 12, 12)


def test_damaged_file_is_refused_naming_it_or_skipped(tmp_path):
    write_images(tmp_path / "d" / "a", 5, size=(8, 8))
    write_images(tmp_path / "d" / "b", 5, size=(8, 8), seed=1)
    good = (tmp_path / "d" / "a" / "img000.png").read_bytes()
    (tmp_path / "d" / "a" / "broken.png").write_bytes(good[:40])           # header fine, data cut
    (tmp_path / "d" / "b" / "fake.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"broken\.png is damaged|fake\.jpg is damaged"):
        load_dataset(f"folder:{tmp_path / 'd'}")
    d = load_dataset(f"folder:{tmp_path / 'd'}", skip_unreadable=True, val_fraction=0)
    assert d.x_train.shape[0] + d.x_test.shape[0] == 10
    assert "skipped 2 unreadable file(s)" in d.source and "broken.png" in d.source and "fake.jpg" in d.source


def test_non_image_file_is_refused_and_hidden_files_ignored(tmp_path):
    write_images(tmp_path / "d", 4, size=(8, 8))
    (tmp_path / "d" / ".DS_Store").write_bytes(b"\0\1")
    load_dataset(f"folder:{tmp_path / 'd'}")
    (tmp_path / "d" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt is not an image file"):
        load_dataset(f"folder:{tmp_path / 'd'}")


def test_empty_folder_empty_class_and_mixed_layout(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        load_dataset(f"folder:{tmp_path / 'e'}")
    write_images(tmp_path / "c" / "a", 4, size=(8, 8))
    (tmp_path / "c" / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder .*/c/b holds no images"):
        load_dataset(f"folder:{tmp_path / 'c'}")
    write_images(tmp_path / "m" / "a", 4, size=(8, 8))
    write_images(tmp_path / "m", 2, size=(8, 8))
    with pytest.raises(DataError, match="mixes images at its top level"):
        load_dataset(f"folder:{tmp_path / 'm'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    write_images(tmp_path / "d" / "a", 6, size=(16, 16))
    write_images(tmp_path / "d" / "b", 6, size=(16, 16), seed=1)
    first = load_dataset(f"folder:{tmp_path / 'd'}")
    assert len(list((tmp_path / "cache" / "data").glob("folder-*.npz"))) == 1

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(F, "_decode_all", no_decoding)
    second = load_dataset(f"folder:{tmp_path / 'd'}")
    assert second.fingerprint == first.fingerprint and torch.equal(second.x_train, first.x_train)
    assert second.class_names == first.class_names and torch.equal(second.y_test, first.y_test)
    p = tmp_path / "d" / "a" / "img000.png"                # a changed file changes the key: decoded again
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(p)
    os.utime(p, (time.time() - 30, time.time() - 30))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(f"folder:{tmp_path / 'd'}")


def test_image_options_only_for_folders():
    with pytest.raises(ConfigError, match="--image-size applies to image folders"):
        load_dataset("digits", image_size=16)
    with pytest.raises(ConfigError, match="--image-size must be an integer in"):
        F.folder_raw("/nonexistent", image_size=1)
