"""Deterministic autoencoders: AE, denoising AE, regularised AE (RAE); images and token sequences alike."""
from __future__ import annotations

import torch
from torch import Tensor

from vaelab import losses
from vaelab.config import ModelConfig
from vaelab.data import corrupt, parse_corruption
from vaelab.models.base import Autoencoder, LossTerms
from vaelab.models.seq import UNK, token_dropout

AE = Autoencoder


class DenoisingAE(Autoencoder):
    """Vincent et al. 2008: reconstruct the clean x from a corrupted copy, -log p(x | g(corrupt(x))).

    Images: cfg.corruption of vaelab.data (gaussian, salt-and-pepper, masking). Token sequences: each
    token replaced by <unk> with probability p ("unk:p"; word dropout, Bowman et al. 2016, on the encoder's input).
    """

    has_property_loss = False

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        if self.is_sequence:
            self.noise_kind, self.noise_level = "unk", token_dropout(cfg.corruption)
        else:
            self.noise_kind, self.noise_level = parse_corruption(cfg.corruption)

    def corrupt(self, x: Tensor) -> Tensor:
        """The corrupted copy the encoder sees (global RNG: seeded and restored on resume)."""
        if self.noise_kind == "unk":
            hit = (torch.rand(x.shape, device=x.device) < self.noise_level) & (x > UNK)   # real tokens only
            return x.masked_fill(hit, UNK)
        return corrupt(x, self.noise_kind, self.noise_level)

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        z = self.encode(self.corrupt(x), y).mean
        recon = self.recon_nll(self.decode(z, y, x), x).mean()
        return LossTerms(recon, {"recon": recon.detach()})


class RegularizedAE(Autoencoder):
    """RAE-L2 (Ghosh et al. 2020): recon + gamma * 0.5||z||^2 + lambda * ||theta_dec||^2.

    Deterministic; it generates through a density fitted to its codes after training (ex-post GMM).
    """

    has_property_loss = False

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        z = self.encode(x, y).mean
        recon = self.recon_nll(self.decode(z, y, x), x).mean()
        z_l2 = losses.rae_z_penalty(z).mean()
        dec_l2 = losses.l2_norm_squared([p for p in self.decoder.parameters()])
        total = recon + self.cfg.rae_gamma * z_l2 + self.cfg.rae_lambda * dec_l2
        return LossTerms(total, {"recon": recon.detach(), "z_l2": z_l2.detach(), "dec_l2": dec_l2.detach()})
