"""The bad-input matrix: every case a user can get wrong, run through the CLI.

Shared by tests/test_bad_input.py (which asserts each case) and scripts/error_table.py (which
writes docs/errors.md from the same cases). A case builds its files under a fresh folder DIR,
returns the argv of one ``vaelab`` command, and names the key phrase its message must contain.

The CLI runs in-process (``vaelab.cli.main``) so the whole matrix takes seconds: a case passes
when main returns a non-zero code, prints exactly one line to stderr containing the phrase, and
raises nothing (an escaping exception is what prints a traceback from ``python -m vaelab``);
tests/test_bad_input.py also runs a few cases as real ``python -m vaelab`` subprocesses.
"""
from __future__ import annotations

import atexit
import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import shlex
import shutil
import subprocess
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
TINY = ["--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--quiet", "--device", "cpu"]


# --------------------------------------------------------------------------------------------- running
@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(argv: list[str], cwd: Path) -> Result:
    """Run ``vaelab ARGV`` in-process in ``cwd``; an exception that escapes main becomes a traceback on stderr."""
    from vaelab.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as e:           # argparse
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:             # noqa: BLE001 - exactly what the matrix must never see
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(old)
    return Result(int(code or 0), out.getvalue(), err.getvalue())


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes); mount points' contents included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def normalise(text: str, folder: Path) -> str:
    return text.replace(str(folder.resolve()), "DIR").replace(str(folder), "DIR")


# --------------------------------------------------------------------------------------------- builders
def idx_bytes(a: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else (0x801 if a.ndim == 1 else 0x803)
    return magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in a.shape) + a.astype(np.uint8).tobytes()


def write_idx(folder: Path, n_train: int = 40, n_test: int = 20, hw: int = 8, gz: bool = True,
              override: dict[str, bytes] | None = None, labels_max: int = 3) -> Path:
    """A small MNIST-format folder; ``override[key]`` replaces one file's final bytes."""
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (n_train, hw, hw)), "train_y": np.arange(n_train) % labels_max,
              "test_x": rng.integers(0, 256, (n_test, hw, hw)), "test_y": np.arange(n_test) % labels_max}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        data = gzip.compress(data, mtime=0) if gz else data
        if override and key in override:
            data = override[key]
        (folder / (stem + (".gz" if gz else ""))).write_bytes(data)
    return folder


def good_idx(key: str, gz: bool = True, n: int = 40, hw: int = 8) -> bytes:
    rng = np.random.default_rng(0)
    a = np.arange(n) % 3 if key.endswith("_y") else rng.integers(0, 256, (n, hw, hw))
    data = idx_bytes(a)
    return gzip.compress(data, mtime=0) if gz else data


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def images(n: int = 40, shape: tuple[int, ...] = (8, 8), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def make_checkpoint(folder: Path, model: str = "vae", hidden: int = 16, n_latent: int = 2) -> Path:
    """Train a tiny model on digits for one epoch (in-process, ~1 s) and return its folder."""
    from vaelab.config import TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import model_config
    from vaelab.train import fit

    data = load_dataset("digits")
    mcfg = model_config(model, input_shape=data.shape, n_latent=n_latent, hidden=(hidden,),
                        n_classes=data.n_classes if model == "cvae" else 0)
    fit(mcfg, data, TrainConfig(epochs=1, seed=0, device="cpu"), folder, progress=False,
        data_meta={"spec": "digits", "data_dir": None, "split_seed": 0, "val_fraction": 0.1, "classes": None,
                   "max_train": None})
    return folder


_CKPT_CACHE: dict[tuple, Path] = {}
atexit.register(lambda: [shutil.rmtree(p.parent, ignore_errors=True) for p in _CKPT_CACHE.values()])


def checkpoint(d: Path, name: str = "ckpt", **kw) -> Path:
    """A copy of a cached tiny checkpoint at DIR/name."""
    key = tuple(sorted(kw.items()))
    if key not in _CKPT_CACHE:
        import tempfile

        _CKPT_CACHE[key] = make_checkpoint(Path(tempfile.mkdtemp(prefix="vaelab-ckpt-")) / "m", **kw)
    shutil.copytree(_CKPT_CACHE[key], d / name)
    return d / name


def flip_bit(path: Path, offset_from_end: int, bit: int = 0) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) - offset_from_end] ^= 1 << bit
    path.write_bytes(bytes(b))


def edit_config(folder: Path, edit: Callable[[dict], None]) -> None:
    p = folder / "config.json"
    cfg = json.loads(p.read_text())
    edit(cfg)
    p.write_text(json.dumps(cfg, indent=2))


class _Boom:
    """Unpickling this object creates the file named by its argument: proof that something unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": _Boom(str(marker))}, protocol=4))
    return path


def write_torch_save(path: Path) -> Path:
    import torch

    torch.save({"w": torch.zeros(2)}, str(path))
    return path


def mount_tmpfs(target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; return None on success or the reason it cannot (not root, no mount)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mount unavailable: {e}"
    return None if r.returncode == 0 else f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); needs root"


def unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=20)


# --------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    id: str
    what: str                                   # the case, as the README table names it
    setup: Callable[[Path], list[str]]          # builds files under DIR, returns argv
    phrase: str                                 # key phrase the one-line message must contain
    code: int = 2                               # expected exit code
    new_files: bool = False                     # may the command leave new files (never alter old ones)?
    lines: int = 1                              # lines on stderr (a retry notice precedes the error)
    needs_mount: str | None = None              # tmpfs options of a mount at DIR/mnt (root only)
    needs: Callable[[], str | None] = field(default=lambda: None)   # reason to skip, or None


def _train(d: Path, *args: str, model: str = "vae") -> list[str]:
    return ["train", model, *TINY, *args, "--out", str(d / "run")]


def _no_fashion() -> str | None:
    return None if (FASHION / "train-images-idx3-ubyte.gz").exists() else f"{FASHION} not installed"


def _fashion_bad_labels(d: Path) -> list[str]:
    folder = d / "fm"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        os.symlink(FASHION / name, folder / name)
    y = np.frombuffer(gzip.decompress((FASHION / "train-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8).copy()
    y[7] = 12
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y), mtime=0))
    return _train(d, "--dataset", "fashion-mnist", "--data-dir", str(folder))


def _gz_truncated(d: Path) -> list[str]:
    data = good_idx("train_x")
    write_idx(d / "idx", override={"train_x": data[: len(data) // 2]})
    return _train(d, "--dataset", f"idx:{d / 'idx'}")


def _gz_corrupt(d: Path) -> list[str]:
    data = bytearray(good_idx("train_x"))
    for i in range(20, 60):
        data[i] ^= 0x5A
    write_idx(d / "idx", override={"train_x": bytes(data)})
    return _train(d, "--dataset", f"idx:{d / 'idx'}")


def _resume_other_model(d: Path) -> list[str]:
    checkpoint(d, "run")
    return ["train", "vae", "--resume", "--hidden", "32", "--latent-dim", "2", "--epochs", "2", "--quiet",
            "--device", "cpu", "--out", str(d / "run")]


def _other_architecture(d: Path) -> list[str]:
    a = checkpoint(d, "ckpt")
    b = checkpoint(d, "other", hidden=32)
    shutil.copy(b / "weights.safetensors", a / "weights.safetensors")
    shutil.rmtree(b)
    return ["sample", str(a), "--out", str(d / "s.png")]


def _truncated_weights(d: Path) -> list[str]:
    c = checkpoint(d)
    w = c / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    return ["sample", str(c), "--out", str(d / "s.png")]


def _bitflip_weights(d: Path) -> list[str]:
    c = checkpoint(d)
    flip_bit(c / "weights.safetensors", 37, bit=3)          # inside the last tensor's bytes
    return ["sample", str(c), "--out", str(d / "s.png")]


def _bitflip_header(d: Path) -> list[str]:
    c = checkpoint(d)
    b = bytearray((c / "weights.safetensors").read_bytes())
    n = int.from_bytes(b[:8], "little")
    header = b[8:8 + n]
    i = header.index(b'"shape":[') + len(b'"shape":[')
    header[i] ^= 0x04                                        # a digit of the first shape changes
    b[8:8 + n] = header
    (c / "weights.safetensors").write_bytes(bytes(b))
    return ["sample", str(c), "--out", str(d / "s.png")]


def _truncated_last(d: Path) -> list[str]:
    c = checkpoint(d, "run")
    last = c / "last.safetensors"
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 3])
    return ["train", "vae", "--resume", *TINY[:-1], "cpu", "--epochs", "2", "--out", str(c)]


def _foreign_safetensors(d: Path) -> list[str]:
    import torch
    from safetensors.torch import save_file

    c = checkpoint(d)
    save_file({"w": torch.zeros(3)}, str(c / "weights.safetensors"))
    return ["sample", str(c), "--out", str(d / "s.png")]


def _pickle_file(d: Path) -> list[str]:
    write_pickle(d / "model.pt", d / "UNPICKLED")
    return ["sample", str(d / "model.pt"), "--out", str(d / "s.png")]


def _pickle_as_weights(d: Path) -> list[str]:
    c = checkpoint(d)
    write_pickle(c / "weights.safetensors", d / "UNPICKLED")
    return ["sample", str(c), "--out", str(d / "s.png")]


def _torch_save_file(d: Path) -> list[str]:
    c = checkpoint(d)
    write_torch_save(d / "weights.pth")
    shutil.copy(d / "weights.pth", c / "weights.safetensors")
    return ["sample", str(c), "--out", str(d / "s.png")]


def _full_disk(d: Path) -> list[str]:
    return ["train", "vae", "--hidden", "256", "--latent-dim", "2", "--epochs", "1", "--quiet", "--device", "cpu",
            "--out", str(d / "mnt" / "run")]


def _read_only(d: Path) -> list[str]:
    return _train(d)[:-1] + [str(d / "mnt" / "run")]


def _existing_run(d: Path) -> list[str]:
    checkpoint(d, "run")
    return _train(d)


def _sample_out_exists(d: Path) -> list[str]:
    c = checkpoint(d)
    (d / "s.png").write_bytes(b"an older picture")
    return ["sample", str(c), "--out", str(d / "s.png")]


# -- bounded readers / memory budget: inputs whose declared sizes would exhaust memory --------------
def gz_members(head: bytes, n_zero_members: int, member_bytes: int = 1 << 26) -> bytes:
    """A gzip file: ``head`` then ``n_zero_members`` members of ``member_bytes`` zeros each (concatenated gzip
    members are one valid stream), so a few MB inflate to gigabytes without compressing gigabytes here."""
    zeros = gzip.compress(bytes(member_bytes), compresslevel=9, mtime=0)
    return gzip.compress(head, mtime=0) + zeros * n_zero_members


def _gz_too_long(d: Path) -> list[str]:
    """A 4 MB .gz whose header promises 60,000 images of 28x28 (47 MB) and that inflates to 4.3 GB."""
    head = idx_bytes(np.zeros((0, 28, 28)))[:4] + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    write_idx(d / "idx", hw=28, override={"train_x": gz_members(head, 64)})
    return _train(d, "--dataset", f"idx:{d / 'idx'}")


def npy_header_member(shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"") -> bytes:
    """The bytes of an .npy file whose header declares ``shape`` but which holds only ``data``."""
    import numpy.lib.format as fmt

    buf = io.BytesIO()
    fmt.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def write_npz_members(path: Path, members: dict[str, bytes], compress: bool = True) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npz_huge_header(d: Path) -> list[str]:
    p = write_npz_members(d / "h.npz", {"x.npy": npy_header_member((1_000_000, 1_000_000)) + bytes(1024)})
    return _train(d, "--dataset", f"npz:{p}")


def _npz_label_huge(d: Path) -> list[str]:
    y = np.arange(120) % 3
    y[7] = 1_000_000_000
    return _train(d, "--dataset", _npz(d, x=images(120), y=y), model="cvae")


def write_pngs(folder: Path, n: int = 6, size: int = 8, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _folder_damaged(d: Path) -> list[str]:
    write_pngs(d / "imgs" / "a")
    write_pngs(d / "imgs" / "b", seed=1)
    (d / "imgs" / "b" / "broken.png").write_bytes((d / "imgs" / "b" / "0.png").read_bytes()[:40])
    return _train(d, "--dataset", f"folder:{d / 'imgs'}")


def _folder_empty_class(d: Path) -> list[str]:
    write_pngs(d / "imgs" / "a")
    (d / "imgs" / "b").mkdir()
    return _train(d, "--dataset", f"folder:{d / 'imgs'}")


def _csv(d: Path, bad: str | None = None, column: int = 2, row: int = 3) -> str:
    """A small table (header + 40 rows of 4 features); ``bad`` replaces one cell ("" = a missing value)."""
    rng = np.random.default_rng(0)
    rows = [[f"{v:.3f}" for v in r] for r in rng.normal(size=(40, 4))]
    if bad is not None:
        rows[row - 1][column] = bad
    text = "f0,f1,f2,f3\n" + "".join(",".join(r) + "\n" for r in rows)
    (d / "t.csv").write_text(text)
    return f"csv:{d / 't.csv'}"


def _csv_constant(d: Path) -> str:
    spec = _csv(d)
    lines = (d / "t.csv").read_text().splitlines()
    (d / "t.csv").write_text("\n".join([lines[0]] + [",".join(l.split(",")[:3] + ["5"]) for l in lines[1:]]) + "\n")
    return spec


def _csv_other_columns(d: Path) -> str:
    """DIR/o.csv: the rows of ``_csv`` with column f3 renamed g3 (a table whose columns differ from the training's)."""
    _csv(d)
    lines = (d / "t.csv").read_text().splitlines()
    (d / "o.csv").write_text("\n".join(["f0,f1,f2,g3"] + lines[1:]) + "\n")
    return f"csv:{d / 'o.csv'}"


def _score_other_columns(d: Path) -> list[str]:
    """A tiny VAE trained on DIR/t.csv (in-process, ~1 s), then `vaelab score` on a table with other columns."""
    from vaelab.config import DataSpec, TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import model_config
    from vaelab.train import fit

    spec = DataSpec(dataset=_csv(d))
    data = load_dataset(spec.dataset)
    fit(model_config("vae", input_shape=data.shape, n_latent=2, hidden=(16,), likelihood="gaussian", learn_sigma=True),
        data, TrainConfig(epochs=1, seed=0, device="cpu"), d / "ckpt", progress=False, data_meta=spec.meta())
    return ["score", str(d / "ckpt"), "--dataset", _csv_other_columns(d), "--out", str(d / "s.csv")]


def _compare(d: Path, *args: str) -> list[str]:
    return ["compare", "--models", "ae,vae", *TINY, "--no-pair", *args, "--out", str(d / "run")]


def _npz(d: Path, **arrays: np.ndarray) -> str:
    return f"npz:{write_npz(d / 'data.npz', **arrays)}"


CASES: list[Case] = [
    # -- data: files ---------------------------------------------------------------------------
    Case("missing-folder", "missing dataset folder",
         lambda d: _train(d, "--dataset", f"idx:{d / 'nope'}"), "does not exist"),
    Case("missing-data-dir", "missing --data-dir for fashion-mnist",
         lambda d: _train(d, "--dataset", "fashion-mnist", "--data-dir", str(d / "nope")), "does not exist"),
    Case("missing-idx-file", "IDX folder missing one of its four files",
         lambda d: (write_idx(d / "idx"), (d / "idx" / "t10k-labels-idx1-ubyte.gz").unlink(),
                    _train(d, "--dataset", f"idx:{d / 'idx'}"))[-1], "lacks t10k-labels-idx1-ubyte"),
    Case("missing-npz", "missing .npz file", lambda d: _train(d, "--dataset", f"npz:{d / 'none.npz'}"),
         "does not exist"),
    Case("unknown-dataset", "unknown dataset name", lambda d: _train(d, "--dataset", "mnist"),
         "MNIST is not bundled"),
    Case("empty-idx", "empty IDX file",
         lambda d: (write_idx(d / "idx", override={"train_x": b""}), _train(d, "--dataset", f"idx:{d / 'idx'}"))[-1],
         "is empty (0 bytes)"),
    Case("empty-npz", "empty .npz file",
         lambda d: ((d / "e.npz").write_bytes(b""), _train(d, "--dataset", f"npz:{d / 'e.npz'}"))[-1],
         "is empty (0 bytes)"),
    Case("truncated-gz", "truncated .gz", _gz_truncated, "truncated or corrupt gzip"),
    Case("corrupt-gz", "corrupt .gz (bytes flipped)", _gz_corrupt, "truncated or corrupt gzip"),
    Case("truncated-idx", "truncated raw IDX",
         lambda d: (write_idx(d / "idx", gz=False, override={"train_x": good_idx("train_x", gz=False)[:-50]}),
                    _train(d, "--dataset", f"idx:{d / 'idx'}"))[-1], "it is truncated or corrupt"),
    Case("wrong-magic", "wrong IDX magic",
         lambda d: (write_idx(d / "idx", override={"train_x": gzip.compress(b"\x00\x00\x08\x04" + bytes(100), mtime=0)}),
                    _train(d, "--dataset", f"idx:{d / 'idx'}"))[-1], "wrong IDX magic"),
    Case("swapped-idx", "images and labels files swapped",
         lambda d: (write_idx(d / "idx", override={"train_x": good_idx("train_y"), "train_y": good_idx("train_x")}),
                    _train(d, "--dataset", f"idx:{d / 'idx'}"))[-1], "are the images and labels files swapped"),
    Case("count-mismatch", "image/label count mismatch",
         lambda d: (write_idx(d / "idx", override={"train_y": good_idx("train_y", n=39)}),
                    _train(d, "--dataset", f"idx:{d / 'idx'}"))[-1], "40 train images but 39 train labels"),
    Case("npz-not-zip", ".npz that is not an archive",
         lambda d: ((d / "x.npz").write_bytes(b"this is not a zip archive at all"),
                    _train(d, "--dataset", f"npz:{d / 'x.npz'}"))[-1], "is not an .npz archive"),
    Case("npz-truncated", "truncated .npz",
         lambda d: (write_npz(d / "t.npz", x=images()), (d / "t.npz").write_bytes((d / "t.npz").read_bytes()[:900]),
                    _train(d, "--dataset", f"npz:{d / 't.npz'}"))[-1], "not a readable .npz"),
    Case("npz-no-x", ".npz without x",
         lambda d: _train(d, "--dataset", _npz(d, images=images())), "has no array named 'x'"),
    Case("npz-pickle", ".npz holding a pickled object array",
         lambda d: _train(d, "--dataset", _npz(d, x=np.array([{"a": 1}, None], dtype=object))),
         "refuses to load"),
    Case("nan-pixels", "NaN pixels",
         lambda d: _train(d, "--dataset", _npz(d, x=np.where(np.eye(8, dtype=bool), np.nan, images()).astype(np.float32))),
         "NaN/inf"),
    Case("inf-pixels", "inf pixels",
         lambda d: _train(d, "--dataset", _npz(d, x=np.concatenate([images(), np.full((1, 8, 8), np.inf, np.float32)]))),
         "NaN/inf"),
    Case("negative-pixels", "negative pixel values",
         lambda d: _train(d, "--dataset", _npz(d, x=images() - 0.5)), "outside [0, 1]"),
    Case("pixels-over-255", "integer pixels above 255",
         lambda d: _train(d, "--dataset", _npz(d, x=(images() * 1000).astype(np.int32))), "must lie in 0..255"),
    Case("pixels-0-255-float", "float pixels in 0..255",
         lambda d: _train(d, "--dataset", _npz(d, x=images() * 255)), "divide by 255"),
    Case("wrong-rank", "wrong rank (5-D x)",
         lambda d: _train(d, "--dataset", _npz(d, x=images().reshape(40, 1, 8, 8, 1))), "has rank 5"),
    Case("channel-last", "channel-last images (N, H, W, C)",
         lambda d: _train(d, "--dataset", _npz(d, x=images(shape=(8, 8, 3)))), "looks channel-last"),
    Case("single-image", "a single image",
         lambda d: _train(d, "--dataset", _npz(d, x=images(1))), "has 1 image(s)"),
    Case("string-pixels", "non-numeric x",
         lambda d: _train(d, "--dataset", _npz(d, x=np.full((4, 2, 2), "a"))), "has dtype <U1"),
    # -- data: labels --------------------------------------------------------------------------
    Case("labels-length", "labels not one per image",
         lambda d: _train(d, "--dataset", _npz(d, x=images(), y=np.zeros(39, np.int64))), "one integer per image"),
    Case("labels-negative", "negative labels",
         lambda d: _train(d, "--dataset", _npz(d, x=images(), y=np.arange(40) - 1)), "negative labels"),
    Case("labels-float", "non-integer labels",
         lambda d: _train(d, "--dataset", _npz(d, x=images(), y=np.arange(40) + 0.5)), "non-integer values"),
    Case("labels-out-of-range", "labels out of range (fashion-mnist label 12)", _fashion_bad_labels,
         "labels go up to 12 but it has 10 classes", needs=_no_fashion),
    Case("cvae-no-labels", "cvae on data without labels",
         lambda d: _train(d, "--dataset", _npz(d, x=images()), model="cvae"), "needs a labelled dataset"),
    Case("classes-absent", "--classes naming a label the data lacks",
         lambda d: _train(d, "--classes", "3,42"), "classes [42] do not exist"),
    Case("classes-unlabelled", "--classes on unlabelled data",
         lambda d: _train(d, "--dataset", _npz(d, x=images()), "--classes", "0,1"), "has no labels"),
    Case("label-not-cvae", "sample --label on a model without labels",
         lambda d: ["sample", str(checkpoint(d)), "--label", "3", "--out", str(d / "s.png")],
         "applies only to label-conditioned models"),
    Case("label-out-of-range", "sample --label out of range for a cvae",
         lambda d: ["sample", str(checkpoint(d, model="cvae")), "--label", "10", "--out", str(d / "s.png")],
         "--label must be in [0, 9]"),
    # -- data: image folders -------------------------------------------------------------------
    Case("folder-unreadable-image", "folder: with a damaged image", _folder_damaged, "broken.png is damaged"),
    Case("folder-not-image", "folder: with a non-image file",
         lambda d: (write_pngs(d / "imgs"), (d / "imgs" / "notes.txt").write_text("hi"),
                    _train(d, "--dataset", f"folder:{d / 'imgs'}"))[-1], "notes.txt is not an image file"),
    Case("folder-empty", "folder: with no images",
         lambda d: ((d / "imgs").mkdir(), _train(d, "--dataset", f"folder:{d / 'imgs'}"))[-1], "holds no image files"),
    Case("folder-empty-class", "folder: with one class folder empty", _folder_empty_class,
         "imgs/b holds no images"),
    Case("image-size-not-folder", "--image-size on a dataset that is not a folder",
         lambda d: _train(d, "--image-size", "16"), "applies to image folders"),
    # -- data: tables (csv:FILE) ---------------------------------------------------------------
    Case("csv-missing-value", "csv: with a missing value",
         lambda d: _train(d, "--dataset", _csv(d, "")), "column 'f2' has a missing value at row 3"),
    Case("csv-string", "csv: with a string in a numeric column",
         lambda d: _train(d, "--dataset", _csv(d, "high")), "column 'f2' holds 'high' at row 3"),
    Case("csv-nan", "csv: with NaN",
         lambda d: _train(d, "--dataset", _csv(d, "nan")), "column 'f2' has a missing value at row 3"),
    Case("csv-constant", "csv: with a constant column",
         lambda d: _train(d, "--dataset", _csv_constant(d)), "column 'f3' is constant"),
    Case("csv-no-label-column", "csv: --label-column naming a column the header lacks",
         lambda d: _train(d, "--dataset", _csv(d), "--label-column", "species"), "has no column named 'species'"),
    Case("label-column-not-csv", "--label-column on a dataset that is not a table",
         lambda d: _train(d, "--label-column", "y"), "--label-column applies to tables"),
    Case("vectors-bernoulli", "a table with the Bernoulli likelihood",
         lambda d: _train(d, "--dataset", _csv(d), "--likelihood", "bernoulli"),
         "bernoulli likelihood models values in [0, 1]"),
    Case("score-table-other-columns", "score: a table whose columns differ from the training table's",
         _score_other_columns, "does not have the columns the model was trained on (missing 'f3'; extra 'g3')"),
    Case("ood-table-other-columns", "--ood-dataset: a table whose columns differ from the training table's",
         lambda d: _compare(d, "--dataset", _csv(d), "--ood-dataset", _csv_other_columns(d)),
         "does not have the columns the model was trained on"),
    Case("ood-images-for-table", "--ood-dataset: images for models trained on a table",
         lambda d: _compare(d, "--dataset", _csv(d), "--ood-dataset", "digits"),
         "--ood-dataset digits holds images, but the model was trained on a table"),
    Case("inliers-too-few-test-images", "--inliers leaving a test split too small for the sample metrics",
         lambda d: _compare(d, "--dataset", _npz(d, x=images(18), y=np.arange(18) % 3), "--inliers", "0,1"),
         "needs at least 4 to measure precision, recall and coverage"),
    # -- memory: declared sizes and size-driven allocations (vaelab.budget) --------------------
    Case("gz-inflates-past-header", ".gz inflating to 4.3 GB past its header's 60,000 images", _gz_too_long,
         "it is too long"),
    Case("gz-header-beyond-deflate", ".gz whose header declares more than deflate can hold",
         lambda d: (write_idx(d / "idx", override={"train_x": gzip.compress(
             idx_bytes(np.zeros((0, 8, 8)))[:4] + (2**31).to_bytes(4, "big") + (4096).to_bytes(4, "big") * 2, mtime=0)}),
                    _train(d, "--dataset", f"idx:{d / 'idx'}"))[-1], "more than a"),
    Case("npy-header-huge", ".npz member whose .npy header declares a 4 TB array", _npz_huge_header,
         "declares an array of shape (1000000, 1000000)"),
    Case("npz-label-huge", "one label of 1,000,000,000 in an .npz (cvae)", _npz_label_huge,
         "label 1000000000 at index 7 of y"),
    Case("npz-over-budget", ".npz larger than --max-memory",
         lambda d: _train(d, "--dataset", _npz(d, x=images(2000, (16, 16))), "--max-memory", "1M"),
         "needs about 2.0 MB of memory"),
    Case("hidden-over-budget", "--hidden too wide for the memory", lambda d: _train(d, "--hidden", "60000,60000",
                                                                                   "--max-memory", "8G"),
         "training vae needs about 116.1 GB"),
    Case("latent-over-budget", "--latent-dim too large for the memory",
         lambda d: _train(d, "--latent-dim", "4096", "--hidden", "4096", "--max-memory", "100M"),
         "driven by --hidden 4096, --latent-dim 4096"),
    Case("sample-png-over-budget", "sample --n 1e9 into one PNG grid",
         lambda d: ["sample", str(checkpoint(d)), "--n", "1000000000", "--out", str(d / "s.png"),
                    "--max-memory", "8G"], "write --out FILE.npy, which streams"),
    Case("max-memory-bad", "--max-memory not a size", lambda d: _train(d, "--max-memory", "lots"),
         "--max-memory takes a size like 512M"),
    # -- options -------------------------------------------------------------------------------
    Case("unknown-model", "unknown model", lambda d: ["train", "gan", "--out", str(d / "run")], "unknown model 'gan'"),
    Case("unknown-backbone", "unknown option value (--backbone)", lambda d: _train(d, "--backbone", "resnet"),
         "invalid choice: 'resnet'"),
    Case("unknown-option", "unknown option", lambda d: _train(d, "--latnet-dim", "4"), "unrecognized arguments"),
    Case("unknown-command", "unknown command", lambda d: ["trian", "vae"], "invalid choice: 'trian'"),
    Case("unknown-sampler", "unknown --sampler", lambda d: ["sample", str(checkpoint(d)), "--sampler", "flow",
                                                           "--out", str(d / "s.png")], "unknown sampler"),
    Case("unknown-on-nan", "unknown --on-nan", lambda d: _train(d, "--on-nan", "ignore"), "invalid choice: 'ignore'"),
    Case("unknown-corruption", "unknown --corruption", lambda d: _train(d, "--corruption", "blur", model="dae"),
         "unknown corruption 'blur'"),
    Case("bad-corruption-level", "corruption level out of range",
         lambda d: _train(d, "--corruption", "masking:1.5", model="dae"), "needs a fraction in [0, 1]"),
    Case("unknown-device", "unknown --device", lambda d: _train(d, "--device", "tpu"), "unknown device 'tpu'"),
    Case("latent-zero", "latent size 0", lambda d: _train(d, "--latent-dim", "0"), "latent size must be a positive"),
    Case("latent-negative", "latent size negative", lambda d: _train(d, "--latent-dim", "-3"),
         "latent size must be a positive"),
    Case("latent-not-int", "latent size not an integer", lambda d: _train(d, "--latent-dim", "2.5"),
         "invalid int value: '2.5'"),
    Case("hidden-not-ints", "--hidden not integers", lambda d: _train(d, "--hidden", "64,abc"),
         "--hidden must be comma-separated integers"),
    Case("epochs-zero", "--epochs 0", lambda d: _train(d, "--epochs", "0"), "epochs must be >= 1"),
    Case("lr-nan", "--lr nan", lambda d: _train(d, "--lr", "nan"), "lr must be a finite number"),
    Case("beta-inf", "--beta inf", lambda d: _train(d, "--beta", "inf"), "beta must be a finite number"),
    Case("sigma-zero", "--sigma 0", lambda d: _train(d, "--likelihood", "gaussian", "--sigma", "0"), "sigma must be > 0"),
    Case("val-fraction", "--val-fraction out of range", lambda d: _train(d, "--val-fraction", "1.5"),
         "--val-fraction must be in [0, 1)"),
    Case("max-train-zero", "--max-train 0", lambda d: _train(d, "--max-train", "0"), "max_train must be a positive"),
    Case("max-retries-negative", "--max-retries negative", lambda d: _train(d, "--max-retries", "-1"),
         "--max-retries must be an integer >= 0"),
    Case("too-few-train-images", "fewer than 2 training images (a 3-image npz; a larger batch is capped)",
         lambda d: _train(d, "--dataset", _npz(d, x=images(n=3))), "training needs at least 2"),
    Case("conv-too-small", "image size the backbone cannot take (conv on 8x8)",
         lambda d: _train(d, "--backbone", "conv", "--channels", "8,8,8,8"), "needs images of at least 16x16"),
    Case("image-1x1", "1x1 images", lambda d: _train(d, "--dataset", _npz(d, x=images(shape=(1, 1)))),
         "at least 2x2"),
    Case("two-channels", "2-channel images",
         lambda d: _train(d, "--dataset", _npz(d, x=images(shape=(2, 8, 8)))), "C 1 or 3"),
    # -- checkpoints ---------------------------------------------------------------------------
    Case("ckpt-missing", "checkpoint that does not exist",
         lambda d: ["sample", str(d / "nope"), "--out", str(d / "s.png")], "does not exist"),
    Case("ckpt-not-vaelab", "a folder that is not a checkpoint",
         lambda d: ((d / "empty").mkdir(), ["sample", str(d / "empty"), "--out", str(d / "s.png")])[-1],
         "has no config.json"),
    Case("other-architecture", "a checkpoint of another architecture", _other_architecture,
         "does not match the weights it sits beside"),
    Case("resume-other-model", "--resume with another architecture", _resume_other_model,
         "it was trained as a different model"),
    Case("truncated-safetensors", "truncated safetensors", _truncated_weights, "not a readable safetensors"),
    Case("bitflip-safetensors", "bit-flipped safetensors (tensor bytes)", _bitflip_weights,
         "do not match the SHA-256"),
    Case("bitflip-header", "bit-flipped safetensors (header)", _bitflip_header, "not a readable safetensors"),
    Case("truncated-last", "--resume from a truncated last.safetensors", _truncated_last,
         "not a readable safetensors"),
    Case("foreign-safetensors", "safetensors not written by vaelab", _foreign_safetensors, "not written by vaelab"),
    Case("tampered-config", "tampered config.json (n_latent edited)",
         lambda d: (edit_config(checkpoint(d), lambda c: c["model"].update(n_latent=3)),
                    ["sample", str(d / "ckpt"), "--out", str(d / "s.png")])[-1], "does not match the weights"),
    Case("config-not-json", "config.json that is not JSON",
         lambda d: ((checkpoint(d) / "config.json").write_text('{"format": "vaelab-checkpoint",'),
                    ["sample", str(d / "ckpt"), "--out", str(d / "s.png")])[-1], "is not valid JSON"),
    Case("config-unknown-field", "config.json with an unknown field",
         lambda d: (edit_config(checkpoint(d), lambda c: c["model"].update(depth=3)),
                    ["sample", str(d / "ckpt"), "--out", str(d / "s.png")])[-1], "unknown fields ['depth']"),
    Case("config-wrong-type", "config.json with a wrong type (n_latent 2.0)",
         lambda d: (edit_config(checkpoint(d), lambda c: c["model"].update(n_latent=2.0)),
                    ["sample", str(d / "ckpt"), "--out", str(d / "s.png")])[-1], "n_latent must be an integer"),
    Case("config-unknown-model", "config.json naming an unknown model",
         lambda d: (edit_config(checkpoint(d), lambda c: c["model"].update(model="gan")),
                    ["sample", str(d / "ckpt"), "--out", str(d / "s.png")])[-1], "names an unknown model 'gan'"),
    Case("pickle-checkpoint", "a pickle file given as a checkpoint (never unpickled)", _pickle_file,
         "vaelab never unpickles"),
    Case("pickle-as-weights", "a pickle renamed weights.safetensors (never unpickled)", _pickle_as_weights,
         "vaelab never unpickles"),
    Case("torch-save-weights", "a torch.save file renamed weights.safetensors", _torch_save_file,
         "vaelab never unpickles"),
    # -- output --------------------------------------------------------------------------------
    Case("existing-run", "an existing run folder", _existing_run, "already holds a trained model"),
    Case("out-is-file", "--out is a file",
         lambda d: ((d / "run").write_text("notes"), _train(d))[-1], "exists and is not a folder"),
    Case("out-under-file", "unwritable output folder (under a regular file)",
         lambda d: ((d / "afile").write_text("x"), _train(d)[:-1] + [str(d / "afile" / "run")])[-1],
         "cannot create"),
    Case("out-read-only", "unwritable output folder (read-only mount)", _read_only, "Read-only file system",
         needs_mount="ro,size=64k"),
    Case("out-full", "full output disk (64 KiB tmpfs)", _full_disk, "No space left on device",
         new_files=True, needs_mount="size=64k"),
    Case("sample-out-exists", "sample --out that exists", _sample_out_exists, "exists; pass --overwrite"),
    Case("sample-out-suffix", "sample --out with an unknown suffix",
         lambda d: ["sample", str(checkpoint(d)), "--out", str(d / "s.jpg")], "--out must end in .png or .npy"),
    # -- training ------------------------------------------------------------------------------
    Case("diverged", "training diverges (NaN/inf)",
         lambda d: _train(d, "--likelihood", "gaussian", "--sigma", "1e-30"), "became NaN/inf", code=3,
         new_files=True),
    Case("diverged-retries", "training diverges, retries exhausted",
         lambda d: _train(d, "--likelihood", "gaussian", "--sigma", "1e-30", "--on-nan", "retry", "--max-retries", "1"),
         "Gave up after 1 retry", code=3, new_files=True, lines=2),
]


def run_case(case: Case, d: Path) -> tuple[list[str], Result, dict[str, bytes], dict[str, bytes]]:
    """Build the case in DIR=d, run it; returns argv, result and the file snapshots before and after."""
    mnt = d / "mnt"
    argv = case.setup(d)
    before = snapshot(d)
    if case.needs_mount:
        reason = mount_tmpfs(mnt, case.needs_mount)
        if reason:
            raise RuntimeError(reason)
    try:
        res = run_cli(argv, d)
        after = snapshot(d)
    finally:
        if case.needs_mount:
            unmount(mnt)
    return argv, res, before, after


def message_text(res: Result, d: Path) -> str:
    """stderr as one table cell: lines joined by <br>, DIR for the case folder, | escaped."""
    return "<br>".join(normalise(line, d) for line in res.stderr.strip().splitlines()).replace("|", "\\|")


def table_row(case: Case, argv: list[str], res: Result, d: Path) -> str:
    cmd = command_text(argv, d).replace("|", "\\|")
    return f"| {case.what} (`{case.id}`) | `{cmd}` | {message_text(res, d)} |"


TABLE_HEAD = ["| case | command | message (stderr) |", "|---|---|---|"]


def command_text(argv: list[str], d: Path) -> str:
    return normalise("vaelab " + " ".join(shlex.quote(a) for a in argv), d)


def digest(files: dict[str, bytes]) -> str:
    return hashlib.sha256(json.dumps({k: hashlib.sha256(v).hexdigest() for k, v in files.items()}).encode()).hexdigest()
