"""What a molecule model has learned, per epoch: token accuracy and exact reconstruction on validation molecules.

``ReconstructionRecorder`` is an ``on_epoch`` hook of :func:`vaelab.train.fit`; it adds to each epoch's record

  * ``token_accuracy``: the share of target tokens (<eos> included, padding excluded) that are the argmax of
    p(x_t | x_<t, z) under teacher forcing, z the posterior mean;
  * ``recon_exact``: the share of molecules whose greedy decode of the posterior mean has the canonical SMILES
    of the input (vaelab.molecules.metrics.reconstruction_accuracy, the test metric of the comparison);

both on the first ``n`` validation molecules, so a figure shows where more training goes.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from vaelab.models.seq import PAD


@torch.inference_mode()
def token_accuracy(model: torch.nn.Module, x: Tensor, batch_size: int = 512) -> float:
    """Teacher-forced next-token accuracy of the posterior mean's decoder.

    Args:
        x: (N, L) int64 ids <bos> tokens <eos> <pad>...
    Returns:
        (# positions t >= 1 with x_t != <pad> and argmax_v p(v | x_<t, z) = x_t) / (# positions with x_t != <pad>).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    hits = total = 0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device)
        z = model.encode(xb).mean                                   # (B, D)
        logits = model.decode(z, None, xb)                          # (B, L-1, V)
        target = xb[:, 1:]                                          # (B, L-1)
        mask = target != PAD
        hits += int(((logits.argmax(-1) == target) & mask).sum())
        total += int(mask.sum())
    model.train(was_training)
    return hits / total if total else float("nan")


def exact_reconstruction(model: torch.nn.Module, tokenizer: Any, x: Tensor, smiles: Sequence[str]) -> float:
    """Share of molecules whose greedy decode of the posterior mean is the molecule itself (canonical SMILES)."""
    from vaelab.molecules.latent import decode_codes, encode_ids
    from vaelab.molecules.metrics import reconstruction_accuracy

    was_training = model.training
    recon = decode_codes(model, tokenizer, encode_ids(model, x))
    model.train(was_training)
    return reconstruction_accuracy(list(smiles), recon)


class ReconstructionRecorder:
    """``fit(..., on_epoch=ReconstructionRecorder(data, n=500))``: per-epoch token accuracy and exact reconstruction.

    ``then`` is called after it with the same arguments (e.g. vaelab.metrics.collapse.record_epoch), so one hook
    slot serves both.
    """

    def __init__(self, data: Any, n: int = 500, then: Callable[..., None] | None = None):
        self.tokenizer = data.tokenizer
        self.x = data.x_val[:n]                                     # (n, L) ids
        self.smiles = list(data.smiles_val[:n])
        self.then = then

    def __call__(self, model: torch.nn.Module, x_val: Tensor, y_val: Tensor | None, record: dict[str, Any]) -> None:
        if len(self.smiles):
            record["token_accuracy"] = round(token_accuracy(model, self.x), 5)
            record["recon_exact"] = round(exact_reconstruction(model, self.tokenizer, self.x, self.smiles), 5)
            record["recon_n"] = len(self.smiles)
        if self.then is not None:
            self.then(model, x_val, y_val, record)
