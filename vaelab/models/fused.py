"""One training step of the plain MLP models with a hand-derived backward: no autograd graph, no module calls.

Why: a training step of these small models is their matmuls plus a tail of small elementwise ops, each
dispatched, recorded and replayed by autograd. Here the forward runs on the layers' weights directly (each
ReLU in place) and the backward is written out, with the gradients going straight into ``p.grad``. The
matmuls are the same 17 (for two hidden layers) that autograd issues; what goes is the tail. Measured on
one CPU thread (benchmarks/README.md, ``bench_floor.py``): the MLP VAE 784-512-256-16 at batch 128 in
0.95x of the autograd step's time, and the digits model 64-256-128-8 at batch 64 in 0.78x; ``fit`` on the
former 1.18x faster (bench_train.py), as the loop's own per-step work shrinks too.

Where it applies (:func:`fused_step` says why not, else the trainer uses autograd): the mlp backbone, the
Bernoulli likelihood, models ae, dae, rae, vae, beta-vae (free bits included) and iwae with the Gaussian prior,
no labels, no property head; fp32, one process, not compiled. The forward is the models' own arithmetic
(values through vaelab.losses and the prior object, the same random draws in the same order: the DAE's
corruption, then the reparameterisation noise), so a run gives autograd's numbers up to float rounding.
tests/test_fused.py checks every gradient of every eligible model against autograd's.

The derivatives (per example; s = 1/B for the batch mean, times the trainer's rank weight):
    Bernoulli -log p(x|z) = sum softplus(l) - x l           d/dl = sigmoid(l) - x
    Linear y = a W^T + b                                     dW = gy^T a, db = sum_b gy, ga = gy W
    ReLU (from its output r)                                 g * [r > 0]
    KL = -1/2 sum (1 + logvar - mu^2 - exp(logvar))          d/dmu = mu, d/dlogvar = (exp(logvar) - 1) / 2
    free bits: sum_d max(fb, mean_b KL_d) per the batch      the KL's gradient in dimensions above the floor only
    z = mu + exp(logvar / 2) eps                             dz/dmu = 1, dz/dlogvar = eps exp(logvar / 2) / 2
    logvar = clamp(head, LOGVAR_MIN, LOGVAR_MAX)             gradient 0 outside the range (as autograd's clamp)
    RAE: gamma ||z||^2 / 2 per example; lambda ||theta_dec||^2   d/dz = gamma z; d/dtheta = 2 lambda theta
    IWAE: -log (1/K) sum_k w_k, log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)
          d/d(log w_k) = -softmax_k(log w); log p(z) = -||z||^2 / 2 + c gives d/dz = -z; log q(z(mu, logvar)|x)
          = -1/2 sum (logvar + eps^2) + c through its own sample: 0 in mu, -1/2 in each logvar
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vaelab import losses
from vaelab.models.ae import DenoisingAE, RegularizedAE
from vaelab.models.base import Autoencoder, LossTerms
from vaelab.models.likelihoods import Bernoulli
from vaelab.models.priors import LOGVAR_MAX, LOGVAR_MIN, GaussianPrior
from vaelab.models.vae import IWAE, VAE

_relu_grad = torch.ops.aten.threshold_backward   # g * [r > 0], from the ReLU's output r (what autograd uses)


def why_not(model: Autoencoder) -> str | None:
    """None when :class:`FusedStep` computes this model's objective exactly, else the reason it does not."""
    cfg = model.cfg
    if type(model) not in (Autoencoder, DenoisingAE, RegularizedAE, VAE, IWAE):
        return f"{cfg.model} has its own objective (only ae, dae, rae, vae, beta-vae and iwae are written out)"
    if cfg.backbone != "mlp" or not isinstance(model.likelihood, Bernoulli):
        return "only the mlp backbone with the Bernoulli likelihood is written out"
    if model.is_stochastic and type(model.prior) is not GaussianPrior:
        return f"the {cfg.prior} prior's KL is not written out"
    if model.property_head is not None or model.is_conditional:
        return "a property head or labels are not written out"
    if isinstance(model, DenoisingAE) and model.noise_kind == "unk":
        return "token dropout is for sequences"
    enc = [type(m) for m in model.encoder.net]
    dec = [type(m) for m in model.decoder.net]
    n_enc, n_dec = (len(enc) - 1) // 2, (len(dec) - 2) // 2
    if enc != [nn.Flatten] + [nn.Linear, nn.ReLU] * n_enc or dec != [nn.Linear, nn.ReLU] * n_dec + [nn.Linear,
                                                                                                       nn.Unflatten]:
        return "the backbone is not the plain Linear/ReLU stack this step writes out"
    if "loss" in vars(model) or any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                                    or m._backward_pre_hooks for m in model.modules()) \
            or any(p._backward_hooks for p in model.parameters()):
        return "the model has hooks or an instance's own loss, which only autograd's path runs"
    covered = {id(p) for m in [*model.encoder.net, model.head, *model.decoder.net] for p in m.parameters()}
    if {id(p) for p in model.parameters()} != covered:
        return "the model has parameters outside its encoder, head and decoder"
    return None


class FusedStep:
    """``step(x, kl_weight, scale)``: the model's training objective on the batch x, with every parameter's
    gradient (of ``scale`` x the total) written into ``p.grad``; returns the LossTerms ``model.loss`` returns.

    Build it through :func:`fused_step` (which checks the model is one it writes out).
    """

    def __init__(self, model: Autoencoder):
        self.model = model
        self.enc = [m for m in model.encoder.net if isinstance(m, nn.Linear)]
        self.dec = [m for m in model.decoder.net if isinstance(m, nn.Linear)]
        self.head = model.head
        self.params = list(model.parameters())

    @torch.no_grad()
    def __call__(self, x: Tensor, kl_weight: float = 1.0, scale: float = 1.0) -> LossTerms:
        model, cfg = self.model, self.model.cfg
        for p in self.params:
            if p.grad is None:
                p.grad = torch.empty_like(p)
        n = x.shape[0]
        s = scale / n                                             # d(batch mean)/d(one example), rank-weighted
        x_in = model.corrupt(x) if isinstance(model, DenoisingAE) else x
        # forward: the activations the backward needs
        acts = [x_in.reshape(n, -1)]                              # the input of each encoder layer, then the head's
        for lin in self.enc:
            acts.append(torch.addmm(lin.bias, acts[-1], lin.weight.t()).relu_())
        head = torch.addmm(self.head.bias, acts[-1], self.head.weight.t())      # (B, D) or (B, 2D)
        iwae = isinstance(model, IWAE)
        k = cfg.k if iwae else 1
        if model.is_stochastic:
            raw_a, raw_b = head.chunk(2, dim=-1)
            mu, logvar = model.prior.params(raw_a, raw_b)
            # the models' own draws: VAE.loss's randn_like(mu), IWAE.loss's (K, B, D)
            eps = torch.randn((k, *mu.shape), dtype=mu.dtype, device=mu.device) if iwae else torch.randn_like(mu)
            z = model.prior.rsample(mu, logvar, eps)              # (B, D), or (K, B, D)
        else:
            z = head
        dacts = [z.reshape(-1, z.shape[-1])]                      # the input of each decoder layer (K B rows)
        for lin in self.dec[:-1]:
            dacts.append(torch.addmm(lin.bias, dacts[-1], lin.weight.t()).relu_())
        logits = torch.addmm(self.dec[-1].bias, dacts[-1], self.dec[-1].weight.t())   # (K B, P)
        recon = losses.bernoulli_nll(logits.view(*z.shape[:-1], *x.shape[1:]), x)    # (B,) or (K, B): the values
        if iwae:                                                  # each sample's share of the bound's gradient
            log_pz, log_qz = model.prior.log_prob(z), model.prior.log_q(z, mu, logvar)   # (K, B) each
            bound = losses.iwae_bound(-recon, log_pz, log_qz)     # (B,)
            share = torch.softmax(-recon + log_pz - log_qz, dim=0).mul_(s)   # (K, B): -dL/d(log w), the weights
        # backward: the decoder from the likelihood's gradient
        g = torch.sigmoid(logits).view(k, n, -1).sub_(x.reshape(n, -1))
        g.mul_(share.unsqueeze(-1) if iwae else s)
        g = g.view(k * n, -1)
        for i in range(len(self.dec) - 1, -1, -1):
            g = self._linear_backward(self.dec[i], g, dacts[i], relu_input=i > 0)
        if isinstance(model, RegularizedAE):
            g.add_(z, alpha=cfg.rae_gamma * s)
            dec_params = [p for lin in self.dec for p in (lin.weight, lin.bias)]
            torch._foreach_add_([p.grad for p in dec_params], dec_params, alpha=2 * cfg.rae_lambda * scale)
        if iwae:
            g = self._iwae_posterior_backward(g.view(z.shape), raw_b, z, logvar, eps, share, s)
        elif model.is_stochastic:
            g = self._posterior_backward(g, raw_b, mu, logvar, eps, kl_weight, s)
        for i, lin in [(len(self.enc), self.head), *reversed(list(enumerate(self.enc)))]:
            g = self._linear_backward(lin, g, acts[i], relu_input=i > 0, input_grad=i > 0)
        if iwae:
            return self._iwae_terms(recon, bound, z, mu, logvar)
        return self._terms(recon, z, mu if model.is_stochastic else None, logvar if model.is_stochastic else None,
                           kl_weight)

    @staticmethod
    def _linear_backward(lin: nn.Linear, gy: Tensor, a: Tensor, relu_input: bool, input_grad: bool = True) -> Tensor:
        """Gradients of y = a W^T + b from dL/dy: into W.grad and b.grad; returns dL/da (masked by the ReLU that
        made a, when one did)."""
        torch.mm(gy.t(), a, out=lin.weight.grad)
        torch.sum(gy, 0, out=lin.bias.grad)
        if not input_grad:
            return gy
        ga = torch.mm(gy, lin.weight)
        return _relu_grad(ga, a, 0) if relu_input else ga

    def _posterior_backward(self, gz: Tensor, raw_b: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor,
                            kl_weight: float, s: float) -> Tensor:
        """dL/d(head output) (B, 2D) from dL/dz: the reparameterisation and the (free-bits) KL."""
        cfg = self.model.cfg
        w = cfg.beta * kl_weight * s                              # the KL's weight per example
        std = torch.exp(0.5 * logvar)
        g = torch.empty((gz.shape[0], 2 * gz.shape[1]), dtype=gz.dtype, device=gz.device)
        g_mu, g_lv = g.chunk(2, dim=-1)
        kl_mask = None
        if cfg.free_bits > 0:                                     # dimensions at the floor pass no KL gradient
            kl_mask = (losses.gaussian_kl_per_dim(mu, logvar).mean(0) > cfg.free_bits).to(gz.dtype)  # (D,)
        torch.mul(mu, w if kl_mask is None else kl_mask * w, out=g_mu)
        g_mu.add_(gz)
        kl_lv = (std * std).sub_(1).mul_(0.5 * w)
        if kl_mask is not None:
            kl_lv.mul_(kl_mask)
        torch.mul(gz, eps, out=g_lv)
        g_lv.mul_(std).mul_(0.5).add_(kl_lv)
        g_lv.masked_fill_((raw_b < LOGVAR_MIN) | (raw_b > LOGVAR_MAX), 0.0)
        return g

    @staticmethod
    def _iwae_posterior_backward(gz: Tensor, raw_b: Tensor, z: Tensor, logvar: Tensor, eps: Tensor, share: Tensor,
                                 s: float) -> Tensor:
        """IWAE: dL/d(head output) (B, 2D) from the decoder's dL/dz (K, B, D) and each sample's share of the bound.

        log w = log p(x|z) + log p(z) - log q(z|x) at z = mu + sigma eps. log p(z) adds share * z to dL/dz; log q,
        as a function of (mu, logvar) through its own sample, is -1/2 sum (logvar + eps^2 + log 2 pi), so its
        total derivative is 0 in mu and -1/2 in each logvar (the shares of an example sum to s).
        """
        gz = torch.addcmul(gz, share.unsqueeze(-1), z)            # (K, B, D)
        g = torch.empty((gz.shape[1], 2 * gz.shape[2]), dtype=gz.dtype, device=gz.device)
        g_mu, g_lv = g.chunk(2, dim=-1)
        torch.sum(gz, 0, out=g_mu)
        torch.sum(gz.mul_(eps), 0, out=g_lv)
        g_lv.mul_(torch.exp(0.5 * logvar)).mul_(0.5).sub_(0.5 * s)
        g_lv.masked_fill_((raw_b < LOGVAR_MIN) | (raw_b > LOGVAR_MAX), 0.0)
        return g

    def _iwae_terms(self, recon: Tensor, bound: Tensor, z: Tensor, mu: Tensor, logvar: Tensor) -> LossTerms:
        """IWAE.loss's total and terms."""
        total = -bound.mean()
        kl = self.model.prior.kl(mu, logvar, z[0])
        return LossTerms(total, {"neg_iwae": total, "recon": recon.mean(), "kl": kl.mean(),
                                 "neg_elbo": (recon.mean(0) + kl).mean()})

    def _terms(self, recon: Tensor, z: Tensor, mu: Tensor | None, logvar: Tensor | None,
               kl_weight: float) -> LossTerms:
        """The total and the named terms exactly as the model's own ``loss`` names them."""
        model, cfg = self.model, self.model.cfg
        r = recon.mean()
        if isinstance(model, RegularizedAE):
            z_l2 = losses.rae_z_penalty(z).mean()
            dec_l2 = losses.l2_norm_squared([p for lin in self.dec for p in (lin.weight, lin.bias)])
            return LossTerms(r + cfg.rae_gamma * z_l2 + cfg.rae_lambda * dec_l2,
                             {"recon": r, "z_l2": z_l2, "dec_l2": dec_l2})
        if not model.is_stochastic:
            return LossTerms(r, {"recon": r})
        kl = losses.gaussian_kl(mu, logvar)                       # (B,)
        kl_opt = (losses.free_bits(losses.gaussian_kl_per_dim(mu, logvar), cfg.free_bits)
                  if cfg.free_bits > 0 else kl)
        return LossTerms(r + cfg.beta * kl_weight * kl_opt.mean(),
                         {"recon": r, "kl": kl.mean(), "neg_elbo": (recon + kl).mean()})


def fused_step(model: Autoencoder) -> FusedStep | None:
    """The hand-derived step for ``model``, or None where autograd must do it (:func:`why_not`)."""
    return FusedStep(model) if why_not(model) is None else None
