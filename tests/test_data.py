"""Tests for vaelab.data: loaders, splits, validation messages, corruptions."""
from __future__ import annotations

import gzip
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.data import (CORRUPTIONS, FASHION_MNIST_DIR, Dataset, corrupt, list_datasets, load_dataset,
                         parse_corruption)
from vaelab.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------- helpers

IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def idx_bytes(a: np.ndarray, magic: int | None = None) -> bytes:
    """MNIST-format IDX bytes for a uint8 array of rank 1 (labels) or 3 (images)."""
    magic = magic if magic is not None else (0x801 if a.ndim == 1 else 0x803)
    return struct.pack(">I", magic) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def small_arrays(n_train: int = 20, n_test: int = 10, hw: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"train_x": rng.integers(0, 256, (n_train, hw, hw), dtype=np.uint8),
            "train_y": np.arange(n_train, dtype=np.uint8) % 3,
            "test_x": rng.integers(0, 256, (n_test, hw, hw), dtype=np.uint8),
            "test_y": np.arange(n_test, dtype=np.uint8) % 3}


def write_idx(folder: Path, arrays: dict[str, np.ndarray] | None = None, use_gz: bool = True,
              override: dict[str, bytes] | None = None) -> Path:
    """Write the four IDX files (override[key] replaces one file's final bytes) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = arrays if arrays is not None else small_arrays()
    for key, stem in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if use_gz:
            data = gzip.compress(data)
        if override and key in override:
            data = override[key]
        (folder / (stem + (".gz" if use_gz else ""))).write_bytes(data)
    return folder


def assert_split_tensors(d: Dataset) -> None:
    for split in ("train", "val", "test"):
        x, y = getattr(d, f"x_{split}"), getattr(d, f"y_{split}")
        assert x.dtype == torch.float32 and x.dim() == 4 and tuple(x.shape[1:]) == d.shape
        if x.numel():
            assert 0.0 <= x.min() and x.max() <= 1.0
        if d.has_labels:
            assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
            if y.numel():
                assert 0 <= y.min() and y.max() < d.n_classes
        else:
            assert y is None


def data_error(match_all: list[str], fn, *args, **kwargs) -> str:
    """Call fn expecting a DataError whose message contains every string in match_all (case-insensitive)."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for word in match_all:
        assert word.lower() in msg.lower(), f"{word!r} not in message: {msg}"
    return msg


def save_npz(tmp_path: Path, name: str = "d.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return f"npz:{path}"


# --------------------------------------------------------------------------------------------- digits

def test_digits_shapes_ranges_and_split_sizes():
    d = load_dataset("digits")
    assert d.name == "digits" and d.shape == (1, 8, 8) and d.n_classes == 10 and d.has_labels
    assert d.class_names == tuple(str(i) for i in range(10))
    assert_split_tensors(d)
    n_train, n_val, n_test = len(d.x_train), len(d.x_val), len(d.x_test)
    assert n_train + n_val + n_test == 1797
    assert n_test == round(0.2 * 1797) and n_val == round(0.1 * (1797 - n_test))
    assert d.x_train.max() == 1.0                       # 16 / 16
    # stratified: every class is in every split, in about the overall proportion
    for y in (d.y_train, d.y_val, d.y_test):
        frac = torch.bincount(y, minlength=10).float() / len(y)
        assert (frac - 0.1).abs().max() < 0.03
    assert len(d.fingerprint) == 16 and int(d.fingerprint, 16) >= 0


def test_summary_is_json_and_repr_is_short():
    d = load_dataset("digits")
    s = json.loads(json.dumps(d.summary()))
    assert s["shape"] == [1, 8, 8] and s["n_test"] == len(d.x_test) and s["fingerprint"] == d.fingerprint
    assert set(s) == {"name", "source", "shape", "n_train", "n_val", "n_test", "n_classes", "class_names",
                      "fingerprint"}
    assert "scikit-learn" in s["source"] and len(repr(d)) < 300


def test_splits_are_deterministic_and_seed_dependent():
    a, b, c = load_dataset("digits", seed=1), load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}"))
        assert torch.equal(getattr(a, f"y_{split}"), getattr(b, f"y_{split}"))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not torch.equal(a.x_test, c.x_test)
    assert load_dataset("digits", seed=1, val_fraction=0.2).fingerprint != a.fingerprint


def test_splits_are_disjoint_and_cover_the_data():
    d = load_dataset("digits")
    rows = torch.cat([d.x_train, d.x_val, d.x_test]).flatten(1)
    from sklearn.datasets import load_digits
    ref = torch.from_numpy(load_digits().data / 16).float()
    # same multiset of images: sort rows lexicographically by hashing them to bytes
    key = lambda t: sorted(bytes(r.numpy().tobytes()) for r in t)  # noqa: E731
    assert key(rows) == key(ref)


def test_val_fraction_zero_gives_empty_val():
    d = load_dataset("digits", val_fraction=0.0)
    assert d.x_val.shape == (0, 1, 8, 8) and d.y_val.shape == (0,)


@pytest.mark.parametrize("kwargs", [{"val_fraction": 1.0}, {"val_fraction": -0.1}, {"seed": -1},
                                    {"max_train": 0}, {"seed": 1.5}])
def test_bad_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        load_dataset("digits", **kwargs)


# --------------------------------------------------------------------------------------------- classes, max_train

def test_classes_filter_and_relabel_in_given_order():
    full = load_dataset("digits")
    d = load_dataset("digits", classes=[5, 3])
    assert d.n_classes == 2 and d.class_names == ("5", "3")
    assert_split_tensors(d)
    for split in ("train", "val", "test"):
        y_full, x_full = getattr(full, f"y_{split}"), getattr(full, f"x_{split}")
        keep = (y_full == 5) | (y_full == 3)
        assert torch.equal(getattr(d, f"x_{split}"), x_full[keep])          # same images, same order
        assert torch.equal(getattr(d, f"y_{split}"), (y_full[keep] == 3).long())  # 5 -> 0, 3 -> 1
    assert d.fingerprint != full.fingerprint


def test_max_train_keeps_a_seeded_stratified_subset():
    full = load_dataset("digits")
    d = load_dataset("digits", max_train=100)
    assert len(d.x_train) == 100 and torch.equal(d.x_test, full.x_test) and torch.equal(d.x_val, full.x_val)
    assert torch.bincount(d.y_train, minlength=10).min() >= 9
    full_rows = {r.numpy().tobytes() for r in full.x_train.flatten(1)}
    assert all(r.numpy().tobytes() in full_rows for r in d.x_train.flatten(1))
    assert torch.equal(load_dataset("digits", max_train=100).x_train, d.x_train)
    assert len(load_dataset("digits", max_train=10**6).x_train) == len(full.x_train)


@pytest.mark.parametrize("classes,words", [([10], ["10", "do not exist", "0..9"]), ([], ["empty"]),
                                           ([3, 3], ["repeats"]), (["a"], ["integer"])])
def test_bad_classes(classes, words):
    data_error(words, load_dataset, "digits", classes=classes)


def test_classes_on_unlabelled_set(tmp_path):
    spec = save_npz(tmp_path, x=np.zeros((10, 4, 4), np.uint8))
    data_error(["no labels", "--classes"], load_dataset, spec, classes=[0])


# --------------------------------------------------------------------------------------------- fashion-mnist / idx

@pytest.mark.skipif(not os.path.isfile(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_loads():
    d = load_dataset("fashion-mnist")
    assert d.shape == (1, 28, 28) and d.n_classes == 10 and d.class_names[0] == "T-shirt/top"
    assert d.class_names[9] == "Ankle boot"
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (54000, 6000, 10000)
    assert_split_tensors(d)
    assert "dataset-fashion-mnist" in d.source
    assert torch.bincount(d.y_test).tolist() == [1000] * 10
    assert load_dataset("fashion-mnist").fingerprint == d.fingerprint
    assert any(e["name"] == "fashion-mnist" and e["available"] for e in list_datasets())


def test_fashion_mnist_missing_folder_says_how_to_install(tmp_path):
    data_error(["does not exist", "apt-get install dataset-fashion-mnist", "--data-dir"],
               load_dataset, "fashion-mnist", data_dir=str(tmp_path / "nope"))
    (tmp_path / "partial").mkdir()
    data_error(["lacks", "t10k-labels-idx1-ubyte", "apt-get install"],
               load_dataset, "fashion-mnist", data_dir=str(tmp_path / "partial"))


def test_fashion_mnist_from_data_dir_checks_label_range(tmp_path):
    arrays = small_arrays()
    d = load_dataset("fashion-mnist", data_dir=str(write_idx(tmp_path / "ok", arrays)))
    assert d.class_names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                             "Sneaker", "Bag", "Ankle boot") and "--data-dir" in d.source
    arrays["train_y"][0] = 12
    data_error(["labels go up to 12", "10 classes"], load_dataset, "fashion-mnist",
               data_dir=str(write_idx(tmp_path / "bad", arrays)))


def test_idx_folder_gz_and_raw_give_the_same_data(tmp_path):
    arrays = small_arrays()
    a = load_dataset(f"idx:{write_idx(tmp_path / 'gz', arrays, use_gz=True)}")
    b = load_dataset(f"idx:{write_idx(tmp_path / 'raw', arrays, use_gz=False)}")
    assert a.name == f"idx:{tmp_path / 'gz'}" and a.n_classes == 3 and a.class_names == ("0", "1", "2")
    assert_split_tensors(a)
    assert torch.equal(a.x_test, torch.from_numpy(arrays["test_x"][:, None] / 255).float())
    assert torch.equal(a.x_train, b.x_train) and a.fingerprint == b.fingerprint
    assert len(a.x_train) + len(a.x_val) == 20 and len(a.x_val) == 2


def test_idx_empty_file(tmp_path):
    data_error(["empty", "0 bytes"], load_dataset,
               f"idx:{write_idx(tmp_path, override={'train_x': b''})}")


def test_idx_truncated_gz(tmp_path):
    good = gzip.compress(idx_bytes(small_arrays()["train_x"]))
    data_error(["truncated or corrupt gzip", "train-images"], load_dataset,
               f"idx:{write_idx(tmp_path, override={'train_x': good[: len(good) // 2]})}")


def test_idx_corrupt_gz(tmp_path):
    good = bytearray(gzip.compress(idx_bytes(small_arrays()["train_x"])))
    good[20:40] = b"\xff" * 20
    data_error(["corrupt gzip"], load_dataset, f"idx:{write_idx(tmp_path, override={'train_x': bytes(good)})}")


def test_idx_wrong_magic_says_found_and_expected(tmp_path):
    labels_as_images = gzip.compress(idx_bytes(small_arrays()["train_y"]))
    msg = data_error(["wrong IDX magic", "0x00000801", "0x00000803", "swapped"], load_dataset,
                     f"idx:{write_idx(tmp_path / 'a', override={'train_x': labels_as_images})}")
    assert "train-images" in msg
    junk = gzip.compress(b"\x12\x34\x56\x78" + bytes(100))
    data_error(["0x12345678", "expected 0x00000801"], load_dataset,
               f"idx:{write_idx(tmp_path / 'b', override={'test_y': junk})}")


def test_idx_header_dims_inconsistent_with_file_size(tmp_path):
    data = idx_bytes(small_arrays()["train_x"])
    data_error(["header dims 20x4x4", "320", "317", "truncated"], load_dataset,
               f"idx:{write_idx(tmp_path, override={'train_x': gzip.compress(data[:-3])})}")


def test_idx_image_label_count_mismatch(tmp_path):
    arrays = small_arrays()
    arrays["train_y"] = arrays["train_y"][:-1]
    data_error(["20 train images but 19 train labels", "matching"], load_dataset,
               f"idx:{write_idx(tmp_path, arrays)}")


def test_idx_train_and_test_image_sizes_differ(tmp_path):
    arrays = small_arrays()
    arrays["test_x"] = np.zeros((10, 5, 5), np.uint8)
    data_error(["same dataset"], load_dataset, f"idx:{write_idx(tmp_path, arrays)}")


def test_idx_missing_folder(tmp_path):
    data_error(["does not exist", "train-images-idx3-ubyte"], load_dataset, f"idx:{tmp_path / 'nope'}")


def test_idx_zero_images_and_one_image(tmp_path):
    arrays = small_arrays()
    arrays["train_x"], arrays["train_y"] = arrays["train_x"][:0], arrays["train_y"][:0]
    data_error(["no data"], load_dataset, f"idx:{write_idx(tmp_path / 'a', arrays)}")
    arrays = small_arrays()
    arrays["train_x"], arrays["train_y"] = arrays["train_x"][:1], arrays["train_y"][:1]
    data_error(["1 image", "at least 2"], load_dataset, f"idx:{write_idx(tmp_path / 'b', arrays)}")


# --------------------------------------------------------------------------------------------- npz

def test_npz_uint8_is_scaled_and_split_like_digits(tmp_path):
    x = np.arange(50 * 16, dtype=np.uint16).reshape(50, 4, 4) % 256       # non-uint8 ints in 0..255
    y = np.arange(50) % 5
    d = load_dataset(save_npz(tmp_path, x=x.astype(np.uint8), y=y))
    assert_split_tensors(d)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (36, 4, 10) and d.n_classes == 5
    assert d.x_train.max() <= 1 and torch.allclose(torch.cat([d.x_train, d.x_val, d.x_test]).sum() * 255,
                                                   torch.tensor(float(x.sum())), rtol=1e-5)
    e = load_dataset(save_npz(tmp_path, "e.npz", x=x.astype(np.int64), y=y))
    assert torch.equal(e.x_train, d.x_train) and e.x_train.dtype == torch.float32


def test_npz_float_rgb_unlabelled_and_official_test(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((12, 3, 5, 5))
    d = load_dataset(save_npz(tmp_path, x=x, x_test=rng.random((4, 3, 5, 5)).astype(np.float32)))
    assert d.shape == (3, 5, 5) and not d.has_labels and d.n_classes == 0 and d.class_names == ()
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (11, 1, 4)
    assert_split_tensors(d)


def test_npz_class_names(tmp_path):
    d = load_dataset(save_npz(tmp_path, x=np.zeros((10, 4, 4), np.uint8), y=np.arange(10) % 2,
                              class_names=np.array(["cat", "dog"])), classes=[1])
    assert d.class_names == ("dog",) and d.n_classes == 1 and int(d.y_train.max()) == 0


@pytest.mark.parametrize("arrays,words", [
    ({"x": np.full((10, 4, 4), np.nan)}, ["NaN/inf"]),
    ({"x": np.full((10, 4, 4), np.inf, np.float32)}, ["NaN/inf"]),
    ({"x": np.linspace(0, 2, 160).reshape(10, 4, 4)}, ["outside [0, 1]", "min 0", "max 2", "divide by 255"]),
    ({"x": np.linspace(-1, 1, 160).reshape(10, 4, 4)}, ["outside [0, 1]", "min -1", "max 1"]),
    ({"x": np.arange(160, dtype=np.int32).reshape(10, 4, 4) * 2}, ["0..255", "318"]),
    ({"x": np.zeros((10, 1, 4, 4, 1))}, ["rank 5", "reshape"]),
    ({"x": np.zeros((10, 16))}, ["feature 'x0' is constant on the training split"]),      # 2-D x: vectors
    ({"x": np.zeros((10, 4, 4, 3))}, ["channel-last", "moveaxis"]),
    ({"x": np.zeros((10, 2, 4, 4))}, ["C 1 or 3"]),
    ({"x": np.zeros((1, 4, 4))}, ["1 image", "at least 2"]),
    ({"x": np.zeros((0, 4, 4))}, ["0 image", "at least 2"]),
    ({"x": np.array(["a", "b"])}, ["rank 1"]),
    ({"x": np.full((3, 4, 4), "a")}, ["dtype"]),
    ({"images": np.zeros((10, 4, 4))}, ["no array named 'x'", "images", "np.savez"]),
    ({"x": np.zeros((10, 4, 4)), "y": np.arange(10) - 1}, ["negative labels"]),
    ({"x": np.zeros((10, 4, 4)), "y": np.linspace(0, 1, 10)}, ["non-integer"]),
    ({"x": np.zeros((10, 4, 4)), "y": np.zeros(9, np.int64)}, ["(10,)"]),
    ({"x": np.zeros((10, 4, 4)), "y": np.zeros(10, bool)}, ["dtype bool"]),
    ({"x": np.zeros((10, 4, 4)), "y_test": np.zeros(10, np.int64)}, ["every split or none"]),
    ({"x": np.zeros((10, 4, 4)), "y": np.zeros(10, np.int64), "x_test": np.zeros((3, 4, 4))},
     ["every split or none"]),
    ({"x": np.zeros((10, 4, 4)), "x_test": np.zeros((3, 5, 5))}, ["same shape"]),
])
def test_npz_validation_errors(tmp_path, arrays, words):
    data_error(words, load_dataset, save_npz(tmp_path, **arrays))


def test_npz_float_labels_that_are_integers_are_accepted(tmp_path):
    d = load_dataset(save_npz(tmp_path, x=np.zeros((10, 4, 4)), y=(np.arange(10) % 2).astype(np.float32)))
    assert d.y_train.dtype == torch.int64 and d.n_classes == 2


def test_npz_pickled_object_array_is_refused(tmp_path):
    x = np.empty(3, dtype=object)
    x[:] = [np.zeros((4, 4))] * 3
    path = tmp_path / "obj.npz"
    np.savez(path, x=x)                        # savez pickles object arrays
    data_error(["pickled", "refuses"], load_dataset, f"npz:{path}")


def test_npz_file_problems(tmp_path):
    data_error(["does not exist"], load_dataset, f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "empty.npz").write_bytes(b"")
    data_error(["empty"], load_dataset, f"npz:{tmp_path / 'empty.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all" * 10)
    data_error(["npz"], load_dataset, f"npz:{tmp_path / 'junk.npz'}")
    np.savez(tmp_path / "good.npz", x=np.zeros((10, 4, 4)))
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    data_error(["npz"], load_dataset, f"npz:{tmp_path / 'trunc.npz'}")
    np.save(tmp_path / "single.npy", np.zeros((10, 4, 4)))
    data_error(["single .npy", "np.savez"], load_dataset, f"npz:{tmp_path / 'single.npy'}")


# --------------------------------------------------------------------------------------------- specs, list

@pytest.mark.parametrize("spec,words", [("cifar", ["unknown dataset", "digits", "fashion-mnist", "idx:FOLDER",
                                                   "npz:FILE"]),
                                        ("mnist", ["not bundled", "idx:FOLDER"]),
                                        ("idx:", ["no path"]), ("npz: ", ["no path"])])
def test_unknown_spec_lists_valid_forms(spec, words):
    data_error(words, load_dataset, spec)


def test_list_datasets(tmp_path):
    entries = list_datasets(str(tmp_path / "nope"))
    names = [e["name"] for e in entries]
    assert names[:2] == ["digits", "fashion-mnist"] and "idx:FOLDER" in names and "npz:FILE" in names
    assert all(set(e) == {"name", "available", "source", "detail"} for e in entries)
    fm = entries[1]
    assert fm["available"] is False and "apt-get install dataset-fashion-mnist" in fm["detail"]
    ok = list_datasets(str(write_idx(tmp_path / "fm")))[1]
    assert ok["available"] is True and ok["source"] == str(tmp_path / "fm")


# --------------------------------------------------------------------------------------------- corruptions

def _gray(n: int = 64, c: int = 1) -> torch.Tensor:
    return torch.full((n, c, 28, 28), 0.5)


def test_masking_fraction_and_reproducible():
    x = _gray()
    out = corrupt(x, "masking", 0.25, torch.Generator().manual_seed(0))
    assert abs((out == 0).float().mean().item() - 0.25) < 0.01
    assert torch.equal(out[out != 0], x[out != 0]) and torch.equal(x, _gray())      # x untouched
    assert torch.equal(out, corrupt(x, "masking", 0.25, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, corrupt(x, "masking", 0.25, torch.Generator().manual_seed(1)))


def test_salt_and_pepper_values_and_fraction():
    out = corrupt(_gray(), "salt-and-pepper", 0.2, torch.Generator().manual_seed(0))
    assert set(torch.unique(out).tolist()) == {0.0, 0.5, 1.0}
    hit = out != 0.5
    assert abs(hit.float().mean().item() - 0.2) < 0.01
    assert abs((out[hit] == 1).float().mean().item() - 0.5) < 0.02


def test_pixel_corruptions_hit_all_channels_together():
    out = corrupt(_gray(8, 3), "masking", 0.5, torch.Generator().manual_seed(0))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])


def test_gaussian_noise_std_and_clipping():
    out = corrupt(_gray(), "gaussian", 0.1, torch.Generator().manual_seed(0))
    assert abs((out - 0.5).std().item() - 0.1) < 0.005 and abs((out - 0.5).mean().item()) < 0.005
    big = corrupt(_gray(), "gaussian", 3.0, torch.Generator().manual_seed(0))
    assert big.min() == 0.0 and big.max() == 1.0
    assert torch.equal(corrupt(_gray(), "gaussian", 0.0), _gray())
    assert torch.equal(out, corrupt(_gray(), "gaussian", 0.1, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("kind,level", [("blur", 0.1), ("gaussian", -0.1), ("masking", 1.5),
                                        ("salt-and-pepper", float("nan")), ("masking", "0.2")])
def test_corrupt_validates(kind, level):
    with pytest.raises(ConfigError):
        corrupt(_gray(2), kind, level)


def test_parse_corruption():
    assert parse_corruption("gaussian:0.3") == ("gaussian", 0.3)
    assert parse_corruption("masking") == ("masking", CORRUPTIONS["masking"]) == ("masking", 0.25)
    assert parse_corruption(" Salt_and_Pepper:0.1 ") == ("salt-and-pepper", 0.1)
    for text, word in [("blur", "unknown corruption"), ("gaussian:abc", "not a number"),
                       ("masking:2", "fraction in [0, 1]"), ("gaussian:-1", "sigma >= 0")]:
        with pytest.raises(ConfigError, match=word.replace("[", r"\[").replace("]", r"\]")):
            parse_corruption(text)


# --------------------------------------------------------------------------------------------- property

_VALID = {key: idx_bytes(a) for key, a in small_arrays(n_train=6, n_test=3, hw=3).items()}


@st.composite
def mutated_file(draw):
    """(which file, its bytes): random bytes, or a valid IDX file (raw or gz) truncated / flipped / extended."""
    key = draw(st.sampled_from(sorted(_VALID)))
    if draw(st.booleans()):
        return key, draw(st.binary(max_size=120))
    data = bytearray(_VALID[key])
    use_gz = draw(st.booleans())
    if use_gz:
        data = bytearray(gzip.compress(bytes(data)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return key, bytes(data)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_file())
def test_mutated_idx_bytes_give_a_dataset_or_a_data_error(case):
    key, data = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, stem in IDX_FILES.items():
            (folder / (stem + ".gz")).write_bytes(data if k == key else gzip.compress(_VALID[k]))
        try:
            d = load_dataset(f"idx:{folder}")
        except DataError:
            return
        assert_split_tensors(d)


def test_npz_with_an_unsupported_zip_compression_is_a_data_error(tmp_path):
    """Found by the fuzzer: zipfile raises NotImplementedError for an unknown compression method."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        arr = io.BytesIO()
        np.save(arr, np.zeros((4, 8, 8), np.float32), allow_pickle=False)
        z.writestr("x.npy", arr.getvalue())
    data = bytearray(buf.getvalue())
    data[8:10] = (99).to_bytes(2, "little")                       # local header: compression method
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 10:cd + 12] = (99).to_bytes(2, "little")            # central directory: compression method
    p = tmp_path / "odd.npz"
    p.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_dataset(f"npz:{p}")
