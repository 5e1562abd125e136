"""What stops a training run cleanly: the NaN/inf guard and Ctrl-C (the trainer's named pieces).

The NaN guard costs no host-device sync per step: each step's values (the total, the named terms,
the gradient norm) are checked on the device, and the first step with a non-finite value is
remembered there (a non-finite value also sticks in the running sums). The trainer reads the guard
on its log stride, together with the progress numbers, and :meth:`NanGuard.check` then names the
diverged term, puts the last epoch's weights back and raises ``DivergenceError``. Checkpoints are
written only after an epoch passed the check, so the last good one stays on disk.
"""
from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaelab.errors import DivergenceError


def diverged_term(names: list[str], nonfinite: list[bool]) -> str:
    """The name of the first non-finite quantity of a step: a named term, else the total, else the gradient.

    Args:
        names: ["loss", term, ...]; nonfinite: (len(names) + 1,) flags, the last one the gradient norm's
    """
    for name, bad in [*zip(names[1:], nonfinite[1:]), (names[0], nonfinite[0])]:
        if bad:
            return name
    return "gradient"


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of the weights: the rollback point of the guard (taken at each epoch boundary)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class NanGuard:
    """Per-epoch NaN/inf watch on the device; ``check`` (on the log stride) raises with the term's name.

    Args:
        model: the model whose weights are put back on a divergence
        what: the model's name, for the message; lr: the learning rate, for the message's advice
        out: the model folder (None: nothing is on disk), for the message
    """

    def __init__(self, model: torch.nn.Module, what: str, lr: float, out: Path | None) -> None:
        self.model, self.what, self.lr, self.out = model, what, lr, out
        self.good_state = snapshot(model)    # the rollback point when a NaN is found (last epoch's weights)

    def start_epoch(self, device: torch.device) -> None:
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)   # first step with a NaN/inf, or -1
        self.bad_mask = torch.zeros(0, dtype=torch.bool, device=device)

    def observe(self, vals: Tensor, step: int) -> None:
        """Remember, on the device, the first step whose values are non-finite, and which values they were.

        Args:
            vals: (1 + T + 1,) the total, the T named terms and the gradient norm of optimiser step ``step``
        """
        if self.bad_mask.numel() == 0:
            self.bad_mask = torch.zeros(len(vals), dtype=torch.bool, device=vals.device)
        nonfinite = ~torch.isfinite(vals)
        hit = nonfinite.any() & (self.first_bad < 0)
        self.first_bad = torch.where(hit, step, self.first_bad)
        self.bad_mask = torch.where(hit, nonfinite, self.bad_mask)

    def flag(self) -> Tensor:
        """(1,) float64: the first bad step (0 when none); summed over ranks it says whether any rank saw one."""
        return self.first_bad.double().clamp(min=0).reshape(1)

    def check(self, any_bad: float, names: list[str], epoch: int, step: int, world_size: int,
              history: list[dict[str, Any]]) -> None:
        """Raise DivergenceError (weights rolled back) when some rank saw a non-finite value.

        Args:
            any_bad: the all-reduced :meth:`flag` (> 0: some rank saw one); names: ["loss", term, ...]
        """
        if any_bad <= 0:
            return
        fb = int(self.first_bad)
        bad = diverged_term(names, self.bad_mask.tolist()) if fb >= 0 else "gradient"
        where = f"step {fb}" if fb >= 0 else f"step {int(any_bad) // world_size} (on another rank)"
        self.rollback()
        kept = (f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept in {self.out}"
                if self.out is not None and history else "no checkpoint had been written yet")
        raise DivergenceError(
            f"{self.what}: the {bad!r} term became NaN/inf at epoch {epoch}, {where}; {kept}. "
            f"Try a lower --lr (now {self.lr}), --grad-clip 10, --on-nan retry, or a Gaussian "
            "likelihood with larger sigma.", term=bad, epoch=epoch, step=fb if fb >= 0 else step)

    def check_val(self, val_terms: dict[str, float], val: float, epoch: int, step: int) -> None:
        """Raise DivergenceError (weights rolled back) on a non-finite validation term; the epoch is not saved."""
        bad_val = next((k for k, v in val_terms.items() if not math.isfinite(v)), None)
        if bad_val is not None or not math.isfinite(val):
            self.rollback()
            raise DivergenceError(f"{self.what}: the validation {bad_val or 'loss'!r} term became NaN/inf at epoch "
                                  f"{epoch}. Try a lower --lr (now {self.lr}), --grad-clip 10 or --on-nan retry.",
                                  term=f"val.{bad_val or 'loss'}", epoch=epoch, step=step)

    def passed_epoch(self) -> dict[str, Tensor]:
        """The epoch passed every check: its weights are the new rollback point (returned)."""
        self.good_state = snapshot(self.model)
        return self.good_state

    def rollback(self) -> None:
        """Put the last good (epoch-boundary) weights back, so a caller holding the model never sees NaN weights."""
        self.model.load_state_dict(self.good_state)


class CtrlC:
    """SIGINT (Ctrl-C) as a flag that the loop checks between steps, so a stop never lands inside a write, a
    kernel or a finaliser (where Python can swallow a KeyboardInterrupt). A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
