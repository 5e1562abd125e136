"""``folder:PATH``: a folder of image files (PNG, JPEG, BMP, WebP; decoded by Pillow), searched recursively.

Layout (the torchvision ImageFolder convention):

- one sub-folder per class (``PATH/cat/*.png``, ``PATH/dog/**/*.jpg``): labelled, classes in sorted name order;
- images directly in ``PATH`` (and no class folders): unlabelled;
- ``PATH/train/`` and ``PATH/test/`` (each with the same class folders, or flat): the official test split.

Size: ``image_size`` S makes every image S x S, aspect kept by a centre crop to a square, then a
Lanczos resize. Without it every image must already have one size; mixed sizes are resized to the
most common size (centre-cropped to its aspect), never padded, and the data's source says so.
Channels: ``channels`` 1 or 3; by default grey when every image is grey ("1", "L", "LA", "I", "I;16",
"F" modes), else RGB (alpha is dropped, palettes converted).

A damaged or non-image file is a DataError naming it; ``skip_unreadable`` skips those files instead and
lists them in the data's source. Hidden files (``.name``) are ignored.

Decoded once: the uint8 arrays are cached in ``$VAELAB_CACHE/data/`` (default ``~/.cache/vaelab``, where
the judge's cache lives) under a key of every file's relative path, size and modification time plus the
options, so a second run reads one .npz. Files changed in the last 2 s are never cached (coarse mtimes).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vaelab import budget
from vaelab.data.base import check_count, arrays_digest, RawData
from vaelab.errors import ConfigError, DataError
from vaelab.io import atomic_path, cache_root

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
CACHE_VERSION = 1
_RACY_SECONDS = 2.0


def _scan(root: Path, skip_unreadable: bool, skipped: list[str]) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files under ``root`` (sorted), their class indices (None when flat) and the class names."""
    files, others = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            (files if p.suffix.lower() in IMAGE_EXTENSIONS else others).append(p)
    if others:
        if not skip_unreadable:
            raise DataError(f"{others[0]} is not an image file (vaelab reads {', '.join(IMAGE_EXTENSIONS)}); "
                            f"{len(others)} such file(s) under {root}. Remove them, or pass --skip-unreadable "
                            "to skip (and list) them.")
        skipped.extend(str(p) for p in others)
    top = [p for p in files if p.parent == root]
    class_dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not files:
        raise DataError(f"folder {root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}), searched recursively. "
                        "Point folder: at the folder with the images (or with one sub-folder per class).")
    if top and len(top) < len(files):
        raise DataError(f"folder {root} mixes images at its top level ({top[0].name}, ...) with images in "
                        f"sub-folders ({', '.join(class_dirs[:3])}): use one sub-folder per class (labelled) or "
                        "put every image in one folder (unlabelled).")
    if top:
        return files, None, []
    counts = Counter(p.relative_to(root).parts[0] for p in files)
    empty = [c for c in class_dirs if counts.get(c, 0) == 0]
    if empty:
        raise DataError(f"class folder {root / empty[0]} holds no images (classes are the sub-folders of {root}). "
                        "Add its images or remove the folder.")
    index = {c: i for i, c in enumerate(class_dirs)}
    return files, [index[p.relative_to(root).parts[0]] for p in files], class_dirs


def _key(files: list[Path], root: Path, options: dict) -> tuple[str, bool]:
    """Cache key over relative paths, sizes and mtimes + options; and whether any file is too fresh to cache."""
    h = hashlib.sha256(json.dumps({**options, "v": CACHE_VERSION}, sort_keys=True).encode())
    now, fresh = time.time(), False
    for p in files:
        st = p.stat()
        fresh |= now - st.st_mtime < _RACY_SECONDS
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32], fresh


def _header(p: Path) -> tuple[str, tuple[int, int]] | None:
    """(mode, (width, height)) from the file's header, or None when Pillow cannot identify it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            return im.mode, im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _centre_crop(size: tuple[int, int], aspect: float) -> tuple[int, int, int, int]:
    """The largest centred box of width/height ``aspect`` inside an image of ``size`` (w, h)."""
    w, h = size
    if w / h > aspect:
        cw = max(1, round(h * aspect))
        left = (w - cw) // 2
        return left, 0, left + cw, h
    ch = max(1, round(w / aspect))
    top = (h - ch) // 2
    return 0, top, w, top + ch


def _decode(p: Path, mode: str, target: tuple[int, int]) -> np.ndarray | None:
    """One image as (C, H, W) uint8 in ``mode`` ("L" or "RGB") at ``target`` (w, h), or None when damaged."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I", "I;16", "F"):          # 16-bit / float grey: scale to 8 bits
                a = np.asarray(im, dtype=np.float64)
                hi = 65535.0 if im.mode.startswith("I") and a.max() > 255 else 255.0
                im = Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8))
            im = im.convert(mode)
            if im.size != target:
                im = im.resize(target, Image.Resampling.LANCZOS, box=_centre_crop(im.size, target[0] / target[1]))
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _decode_all(files: list[Path], mode: str, target: tuple[int, int], what: str) -> list[np.ndarray | None]:
    """Decode in threads (Pillow releases the GIL while decoding), with a progress bar on stderr."""
    from tqdm.auto import tqdm

    out: list[np.ndarray | None] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
            tqdm(total=len(files), desc=f"decoding {what}", unit="img", file=sys.stderr, mininterval=0.5,
                 disable=len(files) < 500) as bar:
        for a in pool.map(lambda p: _decode(p, mode, target), files, chunksize=64):
            out.append(a)
            bar.update()
    return out


def _load_split(root: Path, image_size: int | None, channels: int | None, skip_unreadable: bool,
                skipped: list[str], shape_from: tuple[str, tuple[int, int]] | None = None):
    """Decode one folder (a split): x (N, C, H, W) uint8, y (N,) int64 or None, class names, (mode, size), note."""
    files, labels, names = _scan(root, skip_unreadable, skipped)
    headers = [_header(p) for p in files]
    bad = [p for p, h in zip(files, headers) if h is None]
    if bad and not skip_unreadable:
        raise DataError(f"{bad[0]} is damaged or not an image Pillow can read ({len(bad)} such file(s) under {root}). "
                        "Replace or remove it, or pass --skip-unreadable to skip (and list) such files.")
    note = ""
    if shape_from is not None:                 # the test folder takes the train folder's mode and size
        mode, target = shape_from
    else:
        ok = [h for h in headers if h is not None]
        if not ok:
            raise DataError(f"no readable image under {root}. Replace the damaged files.")
        mode = {1: "L", 3: "RGB", None: "L" if all(m in GREY_MODES for m, _ in ok) else "RGB"}[channels]
        sizes = Counter(s for _, s in ok)
        if image_size is not None:
            target = (image_size, image_size)
            note = f"; resized to {image_size}x{image_size} (centre crop to a square, Lanczos)"
        else:
            target = sizes.most_common(1)[0][0]
            if len(sizes) > 1:
                n_other = sum(n for s, n in sizes.items() if s != target)
                note = (f"; {n_other} image(s) of other sizes resized to the most common {target[1]}x{target[0]} "
                        "(centre crop to its aspect, Lanczos)")
    c = 1 if mode == "L" else 3
    budget.check(budget.array_bytes((len(files), c, target[1], target[0]), 1) * 6, f"decoding {root}",
                 f"{len(files)} images of {c}x{target[1]}x{target[0]}",
                 "Pass a smaller --image-size, or raise --max-memory if the memory is there.")
    arrays = _decode_all(files, mode, target, root.name)
    keep = [i for i, a in enumerate(arrays) if a is not None]
    lost = [files[i] for i, a in enumerate(arrays) if a is None]
    if lost and not skip_unreadable:
        raise DataError(f"{lost[0]} is damaged: Pillow cannot decode it ({len(lost)} such file(s) under {root}). "
                        "Replace or remove it, or pass --skip-unreadable to skip (and list) such files.")
    skipped.extend(str(p) for p in lost if p not in bad)
    skipped.extend(str(p) for p in bad)
    x = np.stack([arrays[i] for i in keep]) if keep else np.zeros((0, c, target[1], target[0]), np.uint8)
    y = None if labels is None else np.asarray([labels[i] for i in keep], dtype=np.int64)
    return x, y, names, (mode, target), note


def folder_raw(path: str, image_size: int | None = None, channels: int | None = None,
                skip_unreadable: bool = False, cache_dir: str | None = None) -> RawData:
    """Read (or take from the cache) a folder of images as uint8 arrays."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or not 2 <= image_size <= 4096):
        raise ConfigError(f"--image-size must be an integer in [2, 4096], got {image_size!r}.")
    if channels not in (None, 1, 3):
        raise ConfigError(f"--image-channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"folder {root} does not exist (or is not a folder). Check the path given as "
                        "--dataset folder:PATH.")
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise DataError("folder: datasets need Pillow: pip install pillow.") from None
    split_dirs = root / "train", root / "test"
    has_split = all(d.is_dir() for d in split_dirs)
    options = {"image_size": image_size, "channels": channels, "skip_unreadable": skip_unreadable,
               "split": has_split}
    all_files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    key, fresh = _key(all_files, root, options)
    cache = cache_root(cache_dir) / "data" / f"folder-{key}.npz"
    if cache.is_file() and not fresh:
        try:
            from vaelab.data.npz import npz_raw

            raw = npz_raw(str(cache))
            meta = json.loads(str(np.load(cache, allow_pickle=False)["meta"]))
            return RawData(f"folder:{root}", meta["source"], raw.x, raw.y, raw.x_test, raw.y_test,
                        raw.n_classes if raw.y is not None else 0, tuple(meta["class_names"]), meta["digest"])
        except (DataError, KeyError, ValueError, OSError):
            pass                               # a damaged cache entry: decode again (and overwrite it)
    skipped: list[str] = []
    t0 = time.perf_counter()
    if has_split:
        x, y, names, shape, note = _load_split(split_dirs[0], image_size, channels, skip_unreadable, skipped)
        x_test, y_test, names_test, _, _ = _load_split(split_dirs[1], image_size, channels, skip_unreadable,
                                                       skipped, shape_from=shape)
        if (y is None) != (y_test is None) or names != names_test:
            raise DataError(f"{split_dirs[0]} and {split_dirs[1]} must have the same class folders (train: "
                            f"{', '.join(names) or 'none'}; test: {', '.join(names_test) or 'none'}).")
    else:
        x, y, names, shape, note = _load_split(root, image_size, channels, skip_unreadable, skipped)
        x_test = y_test = None
    check_count(x, f"folder {root}")
    n = len(x) + (0 if x_test is None else len(x_test))
    source = (f"{root}: {n} image files ({'train/ and test/ folders' if has_split else 'seeded split'}; "
              f"{'labelled by sub-folder' if y is not None else 'unlabelled'}; {'grey' if shape[0] == 'L' else 'RGB'} "
              f"{shape[1][1]}x{shape[1][0]}{note})")
    if skipped:
        source += f"; skipped {len(skipped)} unreadable file(s): " + ", ".join(
            os.path.relpath(s, root) for s in skipped[:20]) + (" ..." if len(skipped) > 20 else "")
    digest = arrays_digest(x, y, x_test, y_test)
    arrays = {"x": x, **({"y": y} if y is not None else {}), **({"x_test": x_test} if x_test is not None else {}),
              **({"y_test": y_test} if y_test is not None else {}),
              "meta": np.array(json.dumps({"source": source, "class_names": names, "digest": digest,
                                           "seconds": time.perf_counter() - t0}))}
    if not fresh:
        try:
            with atomic_path(cache) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
        except Exception:                       # noqa: BLE001 - a cache that cannot be written is only slower
            pass
    return RawData(f"folder:{root}", source, x, y, x_test, y_test, len(names) if y is not None else 0,
                tuple(names), digest)
