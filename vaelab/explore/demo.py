"""A small run folder to try the explorer on (and to test and benchmark it): digits, AE and VAE.

``vaelab compare`` writes the real run folders; this trains only what the explorer needs, in the
same layout (RUN/models/<name>/), with the same data block in each config.json so that
``vaelab.sampling.reload_dataset`` finds the data again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vaelab.config import TrainConfig
from vaelab.data import load_dataset

#: name in the run folder -> (model, n_latent)
DEMO_MODELS: dict[str, tuple[str, int]] = {"ae-2d": ("ae", 2), "vae-2d": ("vae", 2), "ae": ("ae", 16),
                                           "vae": ("vae", 16)}


def make_demo_run(out: str | Path, names: Sequence[str] = tuple(DEMO_MODELS), dataset: str = "digits",
                  epochs: int = 30, hidden: tuple[int, ...] = (512, 256), max_train: int | None = None,
                  seed: int = 0, progress: bool = False,
                  specs: dict[str, tuple[str, int]] | None = None) -> Path:
    """Train ``names`` (keys of ``specs``, default DEMO_MODELS) on ``dataset`` into ``out/models/<name>/``.

    Returns ``out``. Models already trained there are kept (skipped, not retrained).
    """
    specs = {**DEMO_MODELS, **(specs or {})}
    from vaelab.models import model_config
    from vaelab.train import fit

    out = Path(out)
    data = load_dataset(dataset, seed=0, val_fraction=0.1, max_train=max_train)
    meta = {"spec": dataset, "data_dir": None, "split_seed": 0, "val_fraction": 0.1, "classes": None,
            "max_train": max_train, "fingerprint": data.fingerprint}
    for name in names:
        folder = out / "models" / name
        if (folder / "weights.safetensors").exists():
            continue
        model, n_latent = specs[name]
        cfg = model_config(model, input_shape=data.shape, n_latent=n_latent, hidden=tuple(hidden),
                           n_classes=data.n_classes if model == "cvae" else 0)
        fit(cfg, data, TrainConfig(epochs=epochs, batch_size=128, seed=seed, device="cpu"), out=folder,
            progress=progress, data_meta=meta)
    return out
