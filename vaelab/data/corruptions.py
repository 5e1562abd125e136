"""Corruptions for denoising AE training and the denoising metric (DESIGN.md default levels)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from vaelab.data.base import is_vector_shape
from vaelab.errors import ConfigError, DataError

CORRUPTIONS = {"gaussian": 0.3, "salt-and-pepper": 0.2, "masking": 0.25}   # DESIGN.md default levels
VECTOR_CORRUPTIONS = ("gaussian", "masking")                                # those that apply to standardised vectors
_LEVEL_RANGE = {"gaussian": (0.0, math.inf), "salt-and-pepper": (0.0, 1.0), "masking": (0.0, 1.0)}


def _check_corruption(kind: str, level: float) -> None:
    if kind not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)} "
                          "(optionally with a level, e.g. gaussian:0.3).")
    lo, hi = _LEVEL_RANGE[kind]
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not (lo <= level <= hi) or math.isnan(level):
        what = "sigma >= 0" if kind == "gaussian" else "a fraction in [0, 1]"
        raise ConfigError(f"corruption {kind} needs {what}, got {level!r} (default {CORRUPTIONS[kind]}).")


def corrupt(x: Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Return a corrupted copy of ``x`` (``x`` itself is not modified).

    - gaussian: add N(0, level^2) noise, clip to [0, 1].
    - salt-and-pepper: a fraction ``level`` of pixels set to 0 or 1 with equal odds.
    - masking: a fraction ``level`` of pixels set to 0.
    A "pixel" is one spatial position: all channels of a chosen pixel change together.
    Feature vectors (B, 1, 1, D), standardised: gaussian noise is not clipped, masking sets a feature to 0
    (its training mean), salt-and-pepper (the ends of [0, 1]) has no meaning and is refused.

    Args:
        x: (B, C, H, W) float in [0, 1], or (B, 1, 1, D) standardised vectors.
        kind: one of CORRUPTIONS.
        level: sigma for gaussian, a fraction in [0, 1] otherwise.
        generator: torch generator on x's device, for reproducible noise.
    Returns:
        (B, C, H, W), same dtype and device as x.
    """
    _check_corruption(kind, level)
    if not torch.is_floating_point(x) or x.dim() < 2:
        raise DataError(f"corrupt needs float images (B, C, H, W), got dtype {x.dtype} shape {tuple(x.shape)}.")
    kw = {"generator": generator, "device": x.device, "dtype": x.dtype}
    is_vectors = is_vector_shape(x.shape[1:])
    if is_vectors and kind not in VECTOR_CORRUPTIONS:
        raise ConfigError(f"the {kind} corruption sets pixels to the ends of [0, 1] and has no meaning for standardised "
                          f"feature vectors; use one of {', '.join(VECTOR_CORRUPTIONS)}.")
    if kind == "gaussian":
        noisy = x + level * torch.randn(x.shape, **kw)
        return noisy if is_vectors else noisy.clamp_(0.0, 1.0)
    pixel_shape = (x.shape[0], 1, *x.shape[2:])                   # (B, 1, H, W), broadcast over C
    hit = torch.rand(pixel_shape, **kw) < level
    if kind == "masking":
        return x.masked_fill(hit, 0.0)
    salt = (torch.rand(pixel_shape, **kw) < 0.5).to(x.dtype)      # 1 = salt, 0 = pepper
    return torch.where(hit, salt, x)


def corruptions_for(shape: tuple[int, ...]) -> dict[str, float]:
    """The corruptions (kind -> default level) of the denoising metric for data of ``shape`` (C, H, W):
    all of CORRUPTIONS for images, VECTOR_CORRUPTIONS for feature vectors (1, 1, D)."""
    if is_vector_shape(shape):
        return {k: v for k, v in CORRUPTIONS.items() if k in VECTOR_CORRUPTIONS}
    return dict(CORRUPTIONS)


def parse_corruption(text: str) -> tuple[str, float]:
    """Parse "kind[:level]": "gaussian:0.3" -> ("gaussian", 0.3); "masking" -> ("masking", 0.25)."""
    kind, sep, level_text = str(text).strip().lower().partition(":")
    kind = kind.strip().replace("_", "-")
    if kind not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {text!r}; choose one of {', '.join(CORRUPTIONS)}, "
                          "optionally with a level: gaussian:0.3, salt-and-pepper:0.2, masking:0.25.")
    if not sep:
        return kind, CORRUPTIONS[kind]
    try:
        level = float(level_text)
    except ValueError:
        raise ConfigError(f"corruption {text!r}: level {level_text.strip()!r} is not a number; "
                          f"write e.g. {kind}:{CORRUPTIONS[kind]}.") from None
    _check_corruption(kind, level)
    return kind, level
