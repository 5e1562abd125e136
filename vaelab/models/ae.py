"""Deterministic autoencoders: AE, denoising AE, regularised AE (RAE)."""
from __future__ import annotations

from torch import Tensor

from vaelab import losses
from vaelab.config import ModelConfig
from vaelab.data import corrupt, parse_corruption
from vaelab.models.base import Autoencoder, LossTerms

AE = Autoencoder


class DenoisingAE(Autoencoder):
    """Vincent et al. 2008: reconstruct the clean x from a corrupted copy, -log p(x | g(corrupt(x)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.noise_kind, self.noise_level = parse_corruption(cfg.corruption)

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        x_noisy = corrupt(x, self.noise_kind, self.noise_level)   # global RNG: seeded and restored on resume
        z = self.encode(x_noisy, y).mean
        recon = self.recon_nll(self.decode(z, y), x).mean()
        return LossTerms(recon, {"recon": recon.detach()})


class RegularizedAE(Autoencoder):
    """RAE-L2 (Ghosh et al. 2020): recon + gamma * 0.5||z||^2 + lambda * ||theta_dec||^2.

    Deterministic; it generates through a density fitted to its codes after training (ex-post GMM).
    """

    def loss(self, x: Tensor, y: Tensor | None = None, kl_weight: float = 1.0) -> LossTerms:
        z = self.encode(x, y).mean
        recon = self.recon_nll(self.decode(z, y), x).mean()
        z_l2 = losses.rae_z_penalty(z).mean()
        dec_l2 = losses.l2_norm_squared([p for p in self.decoder.parameters()])
        total = recon + self.cfg.rae_gamma * z_l2 + self.cfg.rae_lambda * dec_l2
        return LossTerms(total, {"recon": recon.detach(), "z_l2": z_l2.detach(), "dec_l2": dec_l2.detach()})
