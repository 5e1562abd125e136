"""The data as modelled: binarisation and dequantisation of grey-level images.

A likelihood is a statement about the data it is evaluated on. Grey pixels x in [0, 1] are not
binary, so the Bernoulli "NLL" of grey pixels is a cross-entropy, not a likelihood; and 8-bit pixels
are discrete, so a density (Gaussian, continuous Bernoulli) evaluated on them is not a likelihood
either. vaelab therefore transforms the data into what the model's likelihood describes:

* ``binarize`` (Bernoulli likelihood): x_bin ~ Bernoulli(x), the grey level read as a probability.
  ``dynamic`` draws afresh each training epoch (a regulariser, as in Burda et al. 2016); ``static`` is
  one fixed draw. Validation and test splits are always one fixed draw, the same for every model and
  every training seed (seeded by ``BINARIZE_SEED`` and the split name), so numbers are comparable.
* ``dequantize = L`` (densities): pixel v = x * (L - 1) in {0..L-1} becomes y = (v + u) / L with
  u ~ U(0, 1) (Theis et al. 2016; Dinh et al. 2017). Any density p on [0, 1]^D then gives a lower
  bound on the probability of the discrete pixels: log P(v) >= E_u log p(y) - D log L. vaelab reports
  the NLL of the *discrete* data on the 0..L-1 scale, i.e. -log p(y) + D log L, and bits/dim =
  that / (D ln 2): the convention of PixelCNN/RealNVP papers. Test splits use one fixed u draw.
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import Tensor

from vaelab.config import ModelConfig
from vaelab.errors import DataError

BINARIZE_SEED = 20160101     # fixed: every model is scored on the same binarised test set


def _split_generator(split: str, seed: int = BINARIZE_SEED) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000003 + zlib.crc32(split.encode()))


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One Bernoulli draw per pixel with the grey level as its probability: (N, C, H, W) -> same, in {0, 1}."""
    return torch.bernoulli(x.clamp(0.0, 1.0), generator=generator)


def dequantize(x: Tensor, n_levels: int, generator: torch.Generator | None = None) -> Tensor:
    """y = (round(x * (L - 1)) + u) / L, u ~ U(0, 1): (N, C, H, W) in [0, 1] -> same, in [0, 1)."""
    v = torch.round(x * (n_levels - 1))
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    return (v + u.to(x.device)) / n_levels


def check_levels(x: Tensor, n_levels: int) -> None:
    """Refuse --dequantize L when the pixels are not on the L-level grid (e.g. 256 on 17-level digits)."""
    sample = x.flatten()[: 200_000].double() * (n_levels - 1)
    err = float((sample - sample.round()).abs().max()) if sample.numel() else 0.0
    if err > 1e-3:
        raise DataError(f"--dequantize {n_levels}: the pixels are not multiples of 1/{n_levels - 1} (off by up to "
                        f"{err:.3f} levels). Give the data's own number of grey levels (256 for 8-bit images, "
                        "17 for sklearn digits).")


def modelled(x: Tensor, cfg: ModelConfig, split: str) -> Tensor:
    """An evaluation split as the model's likelihood sees it: a fixed draw, the same for every model.

    Args:
        x: (N, C, H, W) grey levels in [0, 1]; split: "train" | "val" | "test" (seeds the draw)
    Returns:
        (N, C, H, W): binary for binarize != "none", dequantised for dequantize > 0, else x itself
    """
    if cfg.binarize != "none":
        return binarize(x.cpu(), _split_generator(split)).to(x.device)
    if cfg.dequantize:
        check_levels(x, cfg.dequantize)
        return dequantize(x.cpu(), cfg.dequantize, _split_generator(split)).to(x.device)
    return x


def training_view(x: Tensor, cfg: ModelConfig, seed: int, epoch: int, static: Tensor | None = None) -> Tensor:
    """The training tensor for one epoch: a fresh draw (dynamic, dequantised) or the fixed one (static).

    The draw is seeded by (seed, epoch) alone, so a resumed run sees the same data as an uninterrupted one.

    Args:
        x: (N, C, H, W) grey levels; static: the fixed static draw, when cfg.binarize == "static"
    """
    if cfg.binarize == "static":
        return static if static is not None else modelled(x, cfg, "train")
    gen = torch.Generator().manual_seed(seed * 1000003 + epoch)
    if cfg.binarize == "dynamic":
        return binarize(x.cpu(), gen).to(x.device)
    if cfg.dequantize:
        return dequantize(x.cpu(), cfg.dequantize, gen).to(x.device)
    return x


def nll_offset(cfg: ModelConfig) -> float:
    """Nats per image added to -log p(y) to get the NLL of the discrete pixels: D log L when dequantised."""
    return cfg.n_pixels * math.log(cfg.dequantize) if cfg.dequantize else 0.0
