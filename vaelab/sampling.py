"""Generation: decode codes drawn from the prior N(0, I) or from an ex-post density of the codes.

Both samplers apply to every model, AEs included: the prior shows an AE's "holes", the ex-post
Gaussian mixture (Ghosh et al. 2020) shows what an AE can do with a fitted density.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaelab.errors import ConfigError
from vaelab.measure.batched import decode_mean, encode_means


def sample_labels(model: torch.nn.Module, n: int, label: int | None = None) -> Tensor | None:
    """Labels for decoding a conditional model: ``label`` for all, else cycling through the classes."""
    if not model.is_conditional:
        if label is not None:
            raise ConfigError(f"--label applies only to label-conditioned models (cvae), not {model.cfg.model}.")
        return None
    c = model.cfg.n_classes
    if label is not None and not 0 <= label < c:
        raise ConfigError(f"--label must be in [0, {c - 1}] for this model, got {label}.")
    return torch.full((n,), label, dtype=torch.long) if label is not None else torch.arange(n) % c


def fit_density(sampler: str, model: torch.nn.Module, data: Any, seed: int = 0, z_train: Tensor | None = None):
    """The sampler's density over z: ``prior`` or ``gmm`` fitted to the training split's posterior means.

    ``z_train`` (N_train, D): those means when the caller has them already (``evaluate`` does); else encoded here.
    """
    from vaelab.density import FITTED, make_density

    prior = getattr(model, "prior", None)
    if sampler == "prior" and prior is not None and prior.name != "gaussian":   # the model's own p(z) (--prior)
        from vaelab.models.priors import PriorDensity

        return PriorDensity(prior, seed)
    density = make_density(sampler, model.cfg.n_latent, seed)
    if sampler in FITTED:
        density.fit(z_train if z_train is not None else encode_means(model, data.x_train, data.y_train))
    return density


def sample_images(ckpt_path: str | Path, n: int, sampler: str = "prior", seed: int = 0,
                  label: int | None = None) -> Tensor:
    """Load a checkpoint and decode ``n`` samples: (n, C, H, W) in [0, 1]."""
    from vaelab.checkpoint import load_model

    ck = load_model(ckpt_path)
    model = ck.model
    data = None
    if sampler != "prior":
        data = reload_dataset(ck.config)
    density = fit_density(sampler, model, data, seed)
    z = density.sample(n, seed=seed)
    return decode_mean(model, z, sample_labels(model, n, label))


SAMPLE_BLOCK = 65_536       # samples decoded (and held) at a time when `vaelab sample` streams to .npy


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block`` of a streamed draw: block 0 uses ``seed`` itself (so a draw of at most one
    block equals sample_images' draw); later blocks a sha256 of (seed, block), independent of each other."""
    if block == 0:
        return seed
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{block}".encode()).digest()[:8], "big") >> 1


def sample_to_npy(ckpt_path: str | Path, out: str | Path, n: int, sampler: str = "prior", seed: int = 0,
                  label: int | None = None, block: int = SAMPLE_BLOCK) -> None:
    """Decode ``n`` samples block by block into ``out`` (float32 (n, C, H, W) .npy, written atomically).

    Memory stays at one block of codes and images whatever ``n`` is: the rows are appended to the file
    after its header. Block b draws its codes with ``block_seed(seed, b)``.
    """
    import shutil

    import numpy as np

    from vaelab import budget
    from vaelab.checkpoint import load_model

    from vaelab.io import atomic_path

    ck = load_model(ckpt_path)
    model = ck.model
    shape = (n, *model.cfg.input_shape)
    n_bytes = budget.array_bytes(shape)
    out = Path(out)
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
    if n_bytes > free:
        raise ConfigError(f"{n} samples of shape {tuple(model.cfg.input_shape)} make a {budget.fmt_bytes(n_bytes)} "
                          f".npy, but {out.parent} has {budget.fmt_bytes(free)} free. Lower --n or write elsewhere.")
    budget.check(budget.array_bytes((block, *model.cfg.input_shape)) * 3, f"sampling {n} images",
                 f"a block of {block} decoded images", "Raise --max-memory if the memory is there.")
    density = fit_density(sampler, model, reload_dataset(ck.config) if sampler != "prior" else None, seed)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": shape}
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)    # then the rows, block by block (C order)
        for b, i in enumerate(range(0, n, block)):
            m = min(block, n - i)
            y = sample_labels(model, m, label)
            if y is not None and label is None:
                y = (y + i) % model.cfg.n_classes           # keep cycling through the classes across blocks
            x = decode_mean(model, density.sample(m, seed=block_seed(seed, b)), y)
            f.write(x.clamp(0, 1).float().numpy().tobytes())


def reload_dataset(config: dict[str, Any]):
    """Load the dataset a checkpoint was trained on, from the "data" block of its config.json."""
    from vaelab.data import load_dataset

    d = config.get("data") or {}
    if "spec" not in d:
        raise ConfigError("this checkpoint does not record how to reload its dataset (no data.spec in config.json).")
    data = load_dataset(d["spec"], data_dir=d.get("data_dir"), seed=d.get("split_seed", 0),
                        val_fraction=d.get("val_fraction", 0.1), classes=d.get("classes"), max_train=d.get("max_train"),
                        **{k: d[k] for k in ("image_size", "image_channels", "skip_unreadable", "label_column")
                           if d.get(k)})
    if d.get("fingerprint") and data.fingerprint != d["fingerprint"]:
        raise ConfigError(f"the dataset {d['spec']} now has fingerprint {data.fingerprint}, but the model was trained on "
                          f"{d['fingerprint']}: the data files changed since training.")
    return data
