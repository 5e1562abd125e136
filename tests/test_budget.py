"""vaelab.budget: sizes, the available memory, the estimates, and the refusals they drive."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import bad_inputs as B
from vaelab import budget
from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.errors import ConfigError, DataError, MemoryBudgetError
from vaelab.models import build_model, count_params, model_config


@pytest.fixture(autouse=True)
def _no_cap():
    budget.set_max_memory(None)
    yield
    budget.set_max_memory(None)


@pytest.mark.parametrize("text, n", [("512M", 512 * 10**6), ("8G", 8 * 10**9), ("1.5GB", 1_500_000_000),
                                     ("2GiB", 2 * 2**30), ("100k", 100_000), ("4096", 4096), (1e9, 10**9),
                                     (" 3 mib ", 3 * 2**20)])
def test_parse_size(text, n):
    assert budget.parse_size(text) == n


@pytest.mark.parametrize("text", ["lots", "", "-1G", "0", "1e400", "8 parsecs", True])
def test_parse_size_refuses(text):
    with pytest.raises(ConfigError, match="size like"):
        budget.parse_size(text)


def test_available_order(monkeypatch):
    monkeypatch.delenv("VAELAB_MAX_MEMORY", raising=False)
    n, src = budget.available()
    assert n is not None and n > 0 and src in ("MemAvailable in /proc/meminfo", "the cgroup's memory.max")
    monkeypatch.setenv("VAELAB_MAX_MEMORY", "3G")
    assert budget.available() == (3 * 10**9, "VAELAB_MAX_MEMORY")
    budget.set_max_memory("2G")                      # the option wins over the environment
    assert budget.available() == (2 * 10**9, "--max-memory")


def test_check_message_names_number_driver_and_fix():
    budget.set_max_memory("1G")
    budget.check(10**9, "x", "y", "z")              # exactly the budget is allowed
    with pytest.raises(MemoryBudgetError) as e:
        budget.check(2.5e9, "training vae", "--hidden 9,9", "Lower --hidden.")
    msg = str(e.value)
    assert msg == ("training vae needs about 2.5 GB of memory (--hidden 9,9), but only 1.0 GB is available "
                   "(--max-memory). Lower --hidden.")


def test_fmt_bytes():
    assert [budget.fmt_bytes(n) for n in (12, 1500, 2.5e6, 22.9e9, 4e12)] == \
        ["12 bytes", "1.5 kB", "2.5 MB", "22.9 GB", "4.0 TB"]


def test_count_params_is_exact_and_allocates_nothing():
    for name, kw in [("vae", {}), ("cvae", {"n_classes": 10}), ("iwae", {"backbone": "conv", "input_shape": (3, 32, 32)})]:
        cfg = model_config(name, input_shape=kw.pop("input_shape", (1, 8, 8)), **kw)
        assert count_params(cfg) == sum(p.numel() for p in build_model(cfg).parameters())
    huge = model_config("vae", input_shape=(1, 8, 8), hidden=(60000, 60000))      # 7.2e9 parameters: 28.8 GB
    h, d, p = 60000, 16, 64          # encoder p-h-h-(mu, logvar), decoder d-h-h-p, each Linear with its bias
    assert count_params(huge) == (p * h + h) + (h * h + h) + (h * 2 * d + 2 * d) + (d * h + h) + (h * h + h) + (h * p + p)


def test_build_model_refuses_over_budget():
    budget.set_max_memory("100M")
    with pytest.raises(MemoryBudgetError, match=r"building vae needs about 160.8 MB .*40,190,768 fp32 parameters from --hidden 4096,4096"):
        build_model(model_config("vae", input_shape=(1, 28, 28), hidden=(4096, 4096)))


def test_training_estimate_grows_with_batch_and_width():
    cfg = model_config("vae", input_shape=(1, 28, 28))
    small = budget.activation_bytes(784, cfg.hidden * 2, 16, 128)
    assert budget.activation_bytes(784, cfg.hidden * 2, 16, 256) == 2 * small
    assert budget.param_bytes(1000, training=True) == 4 * budget.param_bytes(1000) == 16000
    budget.set_max_memory("10M")          # 1.08e6 params x 16 bytes = 17 MB > 10 MB
    with pytest.raises(MemoryBudgetError, match="training vae needs about .* --batch-size 128"):
        budget.check_training(cfg, count_params(cfg), 128)


def test_fit_refuses_before_allocating(tmp_path):
    from vaelab.train import fit

    budget.set_max_memory("50M")
    data = load_dataset("digits")
    with pytest.raises(MemoryBudgetError, match="training vae needs about"):
        fit(model_config("vae", input_shape=data.shape, hidden=(4096, 4096)), data, TrainConfig(epochs=1), None,
            progress=False)


# --------------------------------------------------------------------------------------------- bounded readers
def test_gz_idx_inflating_past_its_header_is_too_long_not_truncated(tmp_path: Path):
    head = B.idx_bytes(np.zeros((0, 8, 8)))[:4] + (40).to_bytes(4, "big") + (8).to_bytes(4, "big") * 2
    good = B.idx_bytes(np.zeros((40, 8, 8)))
    folder = B.write_idx(tmp_path / "a", override={"train_x": B.gz_members(head + bytes(2560), 3, 1 << 20)})
    with pytest.raises(DataError, match="it is too long"):
        load_dataset(f"idx:{folder}")
    folder = B.write_idx(tmp_path / "b", override={"train_x": gzip.compress(good[:-10])})
    with pytest.raises(DataError, match="has 2550 after gunzip; it is truncated"):
        load_dataset(f"idx:{folder}")
    folder = B.write_idx(tmp_path / "c", override={"train_x": gzip.compress(good)})   # split over members: fine
    assert load_dataset(f"idx:{folder}").x_train.shape[1:] == (1, 8, 8)


def test_raw_idx_longer_than_header(tmp_path: Path):
    folder = B.write_idx(tmp_path, gz=False, override={"train_x": B.good_idx("train_x", gz=False) + b"\0"})
    with pytest.raises(DataError, match="longer than its header declares"):
        load_dataset(f"idx:{folder}")


def test_idx_header_over_budget(tmp_path: Path):
    budget.set_max_memory("1M")          # the 40x8x8 images are allowed, a 2 MB header is not
    data = B.idx_bytes(np.zeros((0, 8, 8)))[:4] + (2**15).to_bytes(4, "big") + (8).to_bytes(4, "big") * 2
    folder = B.write_idx(tmp_path, gz=False, override={"train_x": data + bytes(2**15 * 64)})
    with pytest.raises(MemoryBudgetError, match=r"its IDX header declares 32768x8x8 bytes.*--max-memory"):
        load_dataset(f"idx:{folder}")


@pytest.mark.parametrize("shape, dtype, n_data, phrase", [
    ((10**6, 10**6), "<f4", 1024, "declares an array of shape (1000000, 1000000)"),
    ((40, 8, 8), "<f4", 40 * 64 * 4 - 1, "holds 10239 data bytes"),
    ((40, 8, 8), "<f4", 40 * 64 * 4 + 4, "holds 10244 data bytes"),
    ((40, 8, 8), "|O", 40 * 64 * 8, "refuses to load"),
])
def test_npy_header_is_validated_before_allocating(tmp_path: Path, shape, dtype, n_data, phrase):
    p = B.write_npz_members(tmp_path / "h.npz", {"x.npy": B.npy_header_member(shape, dtype, bytes(n_data))})
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{p}")
    assert phrase in str(e.value)


def test_npz_members_read_by_the_bounded_reader_equal_numpy(tmp_path: Path):
    x = np.asfortranarray((B.images(30, (5, 7)) * 255).astype(np.uint8))
    y = np.arange(30) % 3
    for compress in (np.savez, np.savez_compressed):
        compress(tmp_path / "a.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
        d = load_dataset(f"npz:{tmp_path / 'a.npz'}", val_fraction=0)
        back = np.concatenate([d.x_train.numpy(), d.x_test.numpy()])
        assert sorted(map(bytes, (back * 255).round().astype(np.uint8))) == sorted(map(bytes, x[:, None]))
        assert d.class_names == ("a", "b", "c")


@pytest.mark.parametrize("where, value, index", [("y", 1_000_000_000, 7), ("y", 120, 0), ("y_test", 10**12, 3)])
def test_label_values_checked_against_the_image_count(tmp_path: Path, where, value, index):
    y, y_test = np.arange(100) % 3, np.arange(20) % 3
    (y if where == "y" else y_test)[index] = value
    p = B.write_npz(tmp_path / "l.npz", x=B.images(100), y=y, x_test=B.images(20), y_test=y_test)
    with pytest.raises(DataError, match=f"label {value} at index {index} of {where} would mean {value + 1} classes "
                                        "for 120 images"):
        load_dataset(f"npz:{p}")


def test_label_equal_to_image_count_minus_one_is_allowed(tmp_path: Path):
    y = np.arange(40) % 3
    y[5] = 39                                      # 40 classes for 40 images: odd but possible
    p = B.write_npz(tmp_path / "l.npz", x=B.images(40), y=y)
    assert load_dataset(f"npz:{p}").n_classes == 40


def test_class_names_longer_than_the_images(tmp_path: Path):
    p = B.write_npz(tmp_path / "c.npz", x=B.images(10), y=np.arange(10) % 2, class_names=np.array(["a"] * 11))
    with pytest.raises(DataError, match="class_names holds 11 names for 10 images"):
        load_dataset(f"npz:{p}")


def test_dataset_arrays_over_budget(tmp_path: Path):
    budget.set_max_memory("100k")
    with pytest.raises(MemoryBudgetError, match=r"loading digits needs about 920.\d kB .*1797 images of shape"):
        load_dataset("digits")
