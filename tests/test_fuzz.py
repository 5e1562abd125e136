"""Property-based fuzzing of everything vaelab reads from disk: random and mutated bytes.

The only allowed outcomes are a loaded, valid object or the documented error type: DataError for
the dataset loaders (IDX folders, .npz), CheckpointError for the checkpoint reader (config.json,
weights.safetensors, last.safetensors). Anything else (a crash, a hang, an unpickle) fails.
Seeded (derandomize=True) so CI sees the same examples every run.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bad_inputs as B
from vaelab.checkpoint import load_model, load_tensors
from vaelab.data import Dataset, load_dataset
from vaelab.errors import CheckpointError, DataError

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@st.composite
def mutated(draw, good: bytes) -> bytes:
    """``good`` with a few bytes overwritten, a slice deleted or inserted, and/or truncated."""
    b = bytearray(good)
    for _ in range(draw(st.integers(0, 4))):
        if b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    op = draw(st.sampled_from(["none", "truncate", "delete", "insert"]))
    if op == "truncate":
        b = b[:draw(st.integers(0, len(b)))]
    elif op in ("delete", "insert") and b:
        i = draw(st.integers(0, len(b) - 1))
        if op == "delete":
            del b[i:i + draw(st.integers(1, 16))]
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(b)


def any_bytes(good: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=600), mutated(good))


def assert_valid_dataset(d: Dataset) -> None:
    for split in ("train", "val", "test"):
        x = getattr(d, f"x_{split}")
        assert x.dtype == torch.float32 and x.dim() == 4 and tuple(x.shape[1:]) == d.shape
        if x.numel():
            assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
        y = getattr(d, f"y_{split}")
        if y is not None and y.numel():
            assert y.dtype == torch.int64 and y.min() >= 0 and y.max() < d.n_classes
    assert d.x_train.shape[0] >= 1


def load_or_data_error(spec: str) -> None:
    """The loader's only allowed outcomes: a valid Dataset, or a DataError with a message."""
    try:
        d = load_dataset(spec)
    except DataError as e:
        assert str(e)
        return
    assert_valid_dataset(d)


# --------------------------------------------------------------------------------------------- IDX
IDX_KEYS = list(B.IDX_FILES)


@FUZZ
@given(key=st.sampled_from(IDX_KEYS), gz=st.booleans(), data=st.data())
def test_idx_loader_fuzz(key: str, gz: bool, data) -> None:
    good = B.good_idx(key, gz=gz, n=40 if key.startswith("train") else 20)
    bad = data.draw(any_bytes(good))
    if gz and data.draw(st.booleans()):
        bad = gzip.compress(data.draw(mutated(B.good_idx(key, gz=False, n=40 if key.startswith("train") else 20))),
                            mtime=0)                                   # valid gzip around mutated IDX bytes
    with tempfile.TemporaryDirectory() as tmp:
        folder = B.write_idx(Path(tmp) / "idx", gz=gz, override={key: bad})
        load_or_data_error(f"idx:{folder}")


# --------------------------------------------------------------------------------------------- npz
def _npz_bytes(**arrays: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.savez(f, **arrays)
    return f.getvalue()


GOOD_NPZ = _npz_bytes(x=B.images(12), y=np.arange(12) % 3)
GOOD_NPZ_COMPRESSED = (lambda f: (np.savez_compressed(f, x=(B.images(12) * 255).astype(np.uint8)), f.getvalue())[1])(
    io.BytesIO())


@FUZZ
@given(data=st.data(), compressed=st.booleans())
def test_npz_loader_fuzz(data, compressed: bool) -> None:
    bad = data.draw(any_bytes(GOOD_NPZ_COMPRESSED if compressed else GOOD_NPZ))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        path.write_bytes(bad)
        load_or_data_error(f"npz:{path}")


# --------------------------------------------------------------------------------------------- .npy headers
DTYPES = ["<f4", "<f8", "|u1", "<i8", "<u2", "|b1", "<c8", "|V4", "<U3", "|S0", "|O"]


@FUZZ
@given(shape=st.lists(st.integers(0, 2**40), min_size=0, max_size=5), dtype=st.sampled_from(DTYPES),
       fortran=st.booleans(), n_data=st.integers(0, 4096), compressed=st.booleans(),
       key=st.sampled_from(["x", "y", "x_test", "class_names"]))
def test_npy_header_fuzz(shape: list[int], dtype: str, fortran: bool, n_data: int, compressed: bool, key: str) -> None:
    """Any declared shape/dtype against any amount of data: a dataset or a DataError, memory bounded by the data.

    Declared sizes run up to 2**40 per axis (far beyond this machine): nothing may be allocated from them.
    """
    members = {"x.npy": _npz_member(B.images(12))} if key != "x" else {}
    members[f"{key}.npy"] = B.npy_header_member(tuple(shape), dtype, bytes(range(256)) * (n_data // 256) +
                                                bytes(n_data % 256))
    with tempfile.TemporaryDirectory() as tmp:
        path = B.write_npz_members(Path(tmp) / "h.npz", members, compress=compressed)
        load_or_data_error(f"npz:{path}")


def _npz_member(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, a, allow_pickle=False)
    return f.getvalue()


# --------------------------------------------------------------------------------------------- gzip streams
@FUZZ
@given(dims=st.one_of(st.just((40, 8, 8)), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 64), st.integers(0, 64))),
       n_data=st.one_of(st.just(40 * 8 * 8), st.integers(0, 20_000)), n_members=st.integers(1, 4), trailing=st.binary(max_size=64),
       level=st.integers(0, 9))
def test_gzip_stream_fuzz(dims: tuple[int, int, int], n_data: int, n_members: int, trailing: bytes, level: int) -> None:
    """An IDX images file as a gzip stream: any declared dims, any real length, split over several gzip members,
    with trailing bytes. A dataset (only when the declared size is the real one) or a DataError."""
    raw = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + bytes(n_data)
    cut = [len(raw) * i // n_members for i in range(n_members + 1)]
    gz = b"".join(gzip.compress(raw[a:b], compresslevel=level, mtime=0) for a, b in zip(cut, cut[1:])) + trailing
    with tempfile.TemporaryDirectory() as tmp:
        folder = B.write_idx(Path(tmp) / "idx", override={"train_x": gz})       # the other files: 40 8x8 images
        try:
            d = load_dataset(f"idx:{folder}")
        except DataError as e:
            assert str(e)
            return
    assert dims == (40, 8, 8) and n_data == 40 * 8 * 8
    assert_valid_dataset(d)


# --------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return B.make_checkpoint(tmp_path_factory.mktemp("fuzz") / "model")


def _load_or_error(folder: Path) -> None:
    """load_model: a verified model that runs, or CheckpointError."""
    try:
        ck = load_model(folder)
    except CheckpointError as e:
        assert str(e)
        return
    x = torch.rand(3, *ck.model.cfg.input_shape)
    assert torch.isfinite(ck.model.loss(x).total)


def _with_file(ckpt: Path, name: str, content: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="vaelab-fuzz-"))
    shutil.copytree(ckpt, folder / "m")
    (folder / "m" / name).write_bytes(content)
    return folder


@FUZZ
@given(data=st.data())
def test_checkpoint_config_bytes_fuzz(ckpt: Path, data) -> None:
    bad = data.draw(any_bytes((ckpt / "config.json").read_bytes()))
    folder = _with_file(ckpt, "config.json", bad)
    try:
        _load_or_error(folder / "m")
    finally:
        shutil.rmtree(folder)


# no subnormal floats: vaelab (and tests/conftest.py) flush them to zero on the CPU, which hypothesis refuses to mix
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_subnormal=False)
                    | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                    max_leaves=8)


@FUZZ
@given(data=st.data())
def test_checkpoint_config_values_fuzz(ckpt: Path, data) -> None:
    """Valid JSON with one field replaced by any JSON value (or a near miss of its own value)."""
    cfg = json.loads((ckpt / "config.json").read_text())
    block = data.draw(st.sampled_from(["model", "top"]))
    target = cfg["model"] if block == "model" else cfg
    key = data.draw(st.sampled_from(sorted(target)))
    old = target[key]
    near = [old, float(old) if isinstance(old, int) and not isinstance(old, bool) else old, [old], str(old)]
    target[key] = data.draw(st.one_of(JSON, st.sampled_from(near)))
    folder = _with_file(ckpt, "config.json", json.dumps(cfg).encode())
    try:
        _load_or_error(folder / "m")
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(data=st.data())
def test_checkpoint_weights_fuzz(ckpt: Path, data) -> None:
    good = (ckpt / "weights.safetensors").read_bytes()
    bad = data.draw(st.one_of(mutated(good), st.binary(max_size=600)))
    folder = _with_file(ckpt, "weights.safetensors", bad)
    try:
        _load_or_error(folder / "m")
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(data=st.data())
def test_resume_point_fuzz(ckpt: Path, data) -> None:
    """last.safetensors (what --resume reads): its tensors, verified, or CheckpointError."""
    good = (ckpt / "last.safetensors").read_bytes()
    bad = data.draw(mutated(good))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.safetensors"
        path.write_bytes(bad)
        try:
            tensors, meta = load_tensors(path)
        except CheckpointError:
            return
    ref, ref_meta = load_tensors(ckpt / "last.safetensors")
    assert tensors.keys() == ref.keys() and all(torch.equal(tensors[k], ref[k]) for k in ref)
