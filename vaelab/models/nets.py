"""Backbones shared by every model: an encoder body x -> features and a decoder z -> likelihood params.

    mlp, conv   images (B, C, H, W): sized from the input shape, so 8x8 digits and 28x28 Fashion-MNIST
                (and any HxW within reason) use the same code; the decoder gives (B, C, H, W) params;
                mlp also takes feature vectors (B, 1, 1, D) (tables: vaelab.data.csv)
    gru         token sequences (B, L) = <bos> ... <eos> <pad>...: a GRU encoder and an autoregressive
                GRU decoder (Bowman et al. 2016; Gomez-Bombarelli et al. 2018); teacher-forced on x it
                gives the next-token logits (B, L-1, V), and ``generate`` decodes ids

The heads (a point code for AEs, posterior parameters for VAEs) live in the models, so the backbone
is identical across the family: the comparison changes one thing.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vaelab.config import ModelConfig, conv_channels, is_vector_shape  # noqa: F401 - conv_channels re-exported
from vaelab.errors import ConfigError
from vaelab.models.seq import BOS, EOS, PAD, UNK, SeqModelConfig

MAX_SIDE = 512   # beyond this an MLP's first layer alone is gigabytes: refuse with a clear message


def _check_shape(cfg: ModelConfig) -> None:
    c, h, w = cfg.input_shape
    if is_vector_shape(cfg.input_shape):      # (1, 1, D) feature vectors: MLP only (the memory budget bounds D)
        if cfg.backbone == "conv":
            raise ConfigError(f"the conv backbone is for images; these data are vectors of {w} features "
                              "(a table). Use --backbone mlp.")
        return
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

    is_autoregressive = False    # the parameters of p(x|z) need no prefix of x

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

    is_autoregressive = False

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


class GRUEncoder(nn.Module):
    """x (B, L) ids -> features (B, hidden): the GRU's output at each sequence's <eos>.

    The GRU is causal, so its output at the <eos> position has seen exactly the molecule's tokens
    and none of the padding after it (no packing needed).
    """

    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.n_vocab, cfg.embed_dim, padding_idx=PAD)
        self.bidirectional = cfg.bidirectional
        self.gru = nn.GRU(cfg.embed_dim, cfg.hidden, cfg.n_layers, batch_first=True, bidirectional=cfg.bidirectional)
        self.hidden = cfg.hidden
        self.n_features = cfg.hidden * (2 if cfg.bidirectional else 1)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.gru(self.embed(x))                            # (B, L, H) or (B, L, 2H) bidirectional
        last = (x != PAD).sum(1).clamp(min=1) - 1                 # (B,) index of <eos>
        rows = torch.arange(x.shape[0], device=x.device)
        if not self.bidirectional:
            return h[rows, last]                                  # (B, H)
        # forward direction at <eos> (has read the molecule), backward direction at <bos> (has read it from
        # the end; the padding it read first is a function of the length alone, so no other input leaks in)
        return torch.cat([h[rows, last, :self.hidden], h[:, 0, self.hidden:]], dim=1)  # (B, 2H)


class GRUDecoder(nn.Module):
    """p(x|z) = prod_t p(x_t | x_<t, z): z sets the initial state and is fed at every step (Bowman et al. 2016)."""

    is_autoregressive = True     # the parameters of p(x_t | x_<t, z) exist only given the prefix x_<t

    def __init__(self, cfg: SeqModelConfig, n_in: int):
        super().__init__()
        self.n_layers, self.hidden, self.max_len = cfg.n_layers, cfg.hidden, cfg.max_len
        self.z_to_h = nn.Linear(n_in, cfg.hidden * cfg.n_layers)
        self.embed = nn.Embedding(cfg.n_vocab, cfg.embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(cfg.embed_dim + n_in, cfg.hidden, cfg.n_layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, cfg.n_vocab)

    def init_state(self, z: Tensor) -> Tensor:
        h0 = torch.tanh(self.z_to_h(z))                           # (N, H * layers)
        return h0.reshape(z.shape[0], self.n_layers, self.hidden).transpose(0, 1).contiguous()  # (layers, N, H)

    def step(self, z: Tensor, x_in: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits of the next token after each of x_in: z (N, D), x_in (N, T) -> ((N, T, V), state)."""
        h = self.init_state(z) if h is None else h
        zs = z[:, None, :].expand(-1, x_in.shape[1], -1)          # (N, T, D)
        o, h = self.gru(torch.cat([self.embed(x_in), zs], dim=-1), h)
        return self.out(o), h

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        """Teacher forcing: z (N, D), x (N, L) -> next-token logits (N, L-1, V) for the targets x[:, 1:]."""
        return self.step(z, x[:, :-1])[0]

    @torch.no_grad()
    def generate(self, z: Tensor, temperature: float = 0.0, generator: torch.Generator | None = None,
                 max_len: int | None = None) -> Tensor:
        """Ids decoded autoregressively from z (N, D): (N, max_len) <bos> tokens <eos> <pad>... (see Autoencoder)."""
        L = max_len or self.max_len
        n = z.shape[0]
        out = torch.full((n, L), PAD, dtype=torch.long, device=z.device)
        out[:, 0] = BOS
        tok = out[:, 0].clone()
        done = torch.zeros(n, dtype=torch.bool, device=z.device)
        h = self.init_state(z)
        never = torch.tensor([PAD, BOS, UNK], device=z.device)    # never targets in training: never generated
        for t in range(1, L):
            logits, h = self.step(z, tok[:, None], h)             # (N, 1, V)
            logits = logits[:, 0].index_fill(1, never, float("-inf"))
            if temperature == 0:
                tok = logits.argmax(-1)
            else:
                p = torch.softmax(logits.float() / temperature, -1).cpu()
                tok = torch.multinomial(p, 1, generator=generator)[:, 0].to(z.device)
            tok = tok.masked_fill(done, PAD)
            out[:, t] = tok
            done |= tok == EOS
            if bool(done.all()):
                break
        return out


class PropertyHead(nn.Module):
    """z (..., D) -> standardised properties (..., P): Linear-ReLU-Linear (Gomez-Bombarelli et al. 2018's predictor)."""

    def __init__(self, cfg: SeqModelConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.n_latent, cfg.property_hidden), nn.ReLU(),
                                 nn.Linear(cfg.property_hidden, len(cfg.properties)))
        self.register_buffer("mean", torch.tensor(cfg.property_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.property_std, dtype=torch.float32), persistent=False)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def predict(self, z: Tensor) -> Tensor:
        """The properties in their own units: std * f(z) + mean, (..., P)."""
        return self.net(z) * self.std + self.mean


def make_encoder(cfg: ModelConfig | SeqModelConfig) -> nn.Module:
    """The encoder body of cfg.backbone: x -> features (B, encoder.n_features)."""
    return {"mlp": MLPEncoder, "conv": ConvEncoder, "gru": GRUEncoder}[cfg.backbone](cfg)


def make_decoder(cfg: ModelConfig | SeqModelConfig, n_in: int) -> nn.Module:
    """The decoder of cfg.backbone, taking n_in inputs (z, plus one-hot labels for a CVAE)."""
    return {"mlp": MLPDecoder, "conv": ConvDecoder, "gru": GRUDecoder}[cfg.backbone](cfg, n_in)
