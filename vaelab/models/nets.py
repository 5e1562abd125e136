"""Backbones shared by every model: an encoder body x -> features and a decoder z -> image params.

Both are sized from the input shape, so 8x8 digits and 28x28 Fashion-MNIST (and any HxW within
reason) use the same code. The heads (a point code for AEs, mean and log-variance for VAEs) live in
the models, so the backbone is identical across the family: the comparison changes one thing.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError

MAX_SIDE = 512   # beyond this an MLP's first layer alone is gigabytes: refuse with a clear message


def _check_shape(cfg: ModelConfig) -> None:
    c, h, w = cfg.input_shape
    if c not in (1, 3):
        raise ConfigError(f"images must have 1 or 3 channels, got {c} (input shape {cfg.input_shape}).")
    if max(h, w) > MAX_SIDE:
        raise ConfigError(f"images of {h}x{w} are larger than vaelab's backbones take (max {MAX_SIDE} per side); "
                          "resize them first.")
    if cfg.backbone == "conv":
        need = 2 ** len(cfg.channels)
        if min(h, w) < need:
            raise ConfigError(
                f"the conv backbone with {len(cfg.channels)} stride-2 stages needs images of at least {need}x{need}, "
                f"got {h}x{w}. Use --backbone mlp, or fewer conv stages.")
    elif min(h, w) < 2:
        raise ConfigError(f"images must be at least 2x2, got {h}x{w}.")


class MLPEncoder(nn.Module):
    """x (B, C, H, W) -> features (B, hidden[-1])."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _check_shape(cfg)
        layers: list[nn.Module] = [nn.Flatten()]
        n_in = cfg.n_pixels
        for n_out in cfg.hidden:
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
            n_in = n_out
        self.net = nn.Sequential(*layers)
        self.n_features = n_in

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """z (B, n_in) -> image parameters (B, C, H, W): logits (Bernoulli) or means (Gaussian)."""

    def __init__(self, cfg: ModelConfig, n_in: int):
        super().__init__()
        _check_shape(cfg)
        layers: list[nn.Module] = []
        for n_out in reversed(cfg.hidden):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
            n_in = n_out
        layers += [nn.Linear(n_in, cfg.n_pixels), nn.Unflatten(1, cfg.input_shape)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def _conv_sizes(h: int, w: int, n_stages: int) -> list[tuple[int, int]]:
    """Spatial sizes after each k=3, s=2, p=1 conv: ceil(s / 2) per stage, input size first."""
    sizes = [(h, w)]
    for _ in range(n_stages):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> features (B, hidden[-1]) through stride-2 conv stages and one dense layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _check_shape(cfg)
        c, h, w = cfg.input_shape
        layers: list[nn.Module] = []
        n_in = c
        for n_out in cfg.channels:
            layers += [nn.Conv2d(n_in, n_out, 3, stride=2, padding=1), nn.ReLU()]
            n_in = n_out
        hl, wl = _conv_sizes(h, w, len(cfg.channels))[-1]
        layers += [nn.Flatten(), nn.Linear(n_in * hl * wl, cfg.hidden[-1]), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.n_features = cfg.hidden[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """z (B, n_in) -> image parameters (B, C, H, W): the encoder mirrored with transposed convs."""

    def __init__(self, cfg: ModelConfig, n_in: int):
        super().__init__()
        _check_shape(cfg)
        c, h, w = cfg.input_shape
        sizes = _conv_sizes(h, w, len(cfg.channels))       # [(H, W), ..., (h_last, w_last)]
        chans = list(cfg.channels)
        hl, wl = sizes[-1]
        layers: list[nn.Module] = [nn.Linear(n_in, cfg.hidden[-1]), nn.ReLU(),
                                   nn.Linear(cfg.hidden[-1], chans[-1] * hl * wl), nn.ReLU(),
                                   nn.Unflatten(1, (chans[-1], hl, wl))]
        outs = list(reversed(chans[:-1])) + [c]
        n_ch = chans[-1]
        for i, n_out in enumerate(outs):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - i], sizes[-2 - i]
            # (in - 1) * 2 - 2 + 3 + output_padding = out: output_padding recovers odd/even sizes exactly
            pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layers.append(nn.ConvTranspose2d(n_ch, n_out, 3, stride=2, padding=1, output_padding=pad))
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
            n_ch = n_out
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def make_backbone(cfg: ModelConfig, n_dec_in: int) -> tuple[nn.Module, nn.Module]:
    """(encoder body, decoder) for cfg.backbone. The decoder takes n_dec_in inputs (z, plus labels for a CVAE)."""
    if cfg.backbone == "mlp":
        return MLPEncoder(cfg), MLPDecoder(cfg, n_dec_in)
    return ConvEncoder(cfg), ConvDecoder(cfg, n_dec_in)
