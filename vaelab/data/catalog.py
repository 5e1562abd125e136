"""What `vaelab datasets` lists, and where the Fashion-MNIST files are looked for: file-system checks only,
no numpy or torch, so the command answers at once."""
from __future__ import annotations

import os

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_NAMES = {"train_x": "train-images", "train_y": "train-labels",
             "test_x": "t10k-images", "test_y": "t10k-labels"}


def find_idx_files(folder: str) -> tuple[dict[str, str], list[str]]:
    """Paths of the four IDX files in ``folder`` (gz or raw, "-idx" or ".idx" names) and the missing ones."""
    found, missing = {}, []
    for key, stem in IDX_NAMES.items():
        suffix = "idx1-ubyte" if key.endswith("_y") else "idx3-ubyte"
        names = [f"{stem}-{suffix}.gz", f"{stem}-{suffix}", f"{stem}.{suffix}.gz", f"{stem}.{suffix}"]
        path = next((os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))), None)
        if path is None:
            missing.append(f"{stem}-{suffix}[.gz]")
        else:
            found[key] = path
    return found, missing


def list_datasets(data_dir: str | None = None) -> list[dict]:
    """What `vaelab datasets` shows: one dict per dataset with name, available, source, detail."""
    out = [{"name": "digits", "available": True, "source": "scikit-learn load_digits (embedded)",
            "detail": "1797 images 1x8x8, 10 classes; seeded split 20% test, then val_fraction of the rest. Default."}]
    folder = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else FASHION_MNIST_DIR
    found, missing = find_idx_files(folder) if os.path.isdir(folder) else ({}, ["folder"])
    if not missing:
        size = sum(os.path.getsize(p) for p in found.values())
        detail = f"60000 train + 10000 test images 1x28x28, 10 classes; files {size / 1e6:.1f} MB in {folder}"
    else:
        what = f"{folder} does not exist" if missing == ["folder"] else f"{folder} lacks {', '.join(missing)}"
        detail = (f"not available: {what}. Install with `sudo apt-get install dataset-fashion-mnist` "
                  "or pass --data-dir FOLDER with the four IDX files.")
    out.append({"name": "fashion-mnist", "available": not missing, "source": folder, "detail": detail})
    out.append({"name": "idx:FOLDER", "available": True, "source": "a folder you give",
                "detail": "any MNIST-format IDX folder (train-/t10k- images and labels, .gz or raw), "
                          "e.g. MNIST: --dataset idx:~/mnist"})
    out.append({"name": "npz:FILE", "available": True, "source": "a file you give",
                "detail": "np.savez(FILE, x=(N,H,W) or (N,C,H,W) uint8 0..255 or float [0,1], optional y, "
                          "x_test, y_test, class_names); read with allow_pickle=False"})
    out.append({"name": "folder:PATH", "available": True, "source": "a folder you give",
                "detail": "PNG/JPEG/BMP/WebP files, searched recursively; one sub-folder per class gives labels, "
                          "flat = unlabelled; train/ + test/ sub-folders keep that split; --image-size S (centre "
                          "crop), --image-channels 1|3, --skip-unreadable; decoded once, cached in "
                          "~/.cache/vaelab/data"})
    out.append({"name": "csv:FILE", "available": True, "source": "a file you give",
                "detail": "a table with a header row: numeric feature columns, --label-column NAME for the classes; "
                          "standardised with the training split's mean/std (saved in the checkpoint); MLP backbone, "
                          "Gaussian likelihood with a learned per-feature sigma. An npz with a 2-D x (N, D) is read "
                          "the same way"})
    return out
