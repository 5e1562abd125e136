"""Schedules of the training objective: the KL weight per optimiser step.

A pure function of the TrainConfig and the step, below the trainer (which applies it) and the report
(which draws it), so that neither imports the other.
"""
from __future__ import annotations

import math

from vaelab.config import TrainConfig


def kl_weight(cfg: TrainConfig, step: int) -> float:
    """Multiplier of beta at optimiser step ``step`` (the KL schedule), in [0, 1].

    W = kl_warmup_steps, t = step:
      constant  1
      linear    min(1, t / W)
      sigmoid   logistic ramp rescaled to be exactly 0 at t = 0 and 1 at t >= W:
                (s(10 (t/W - 1/2)) - s(-5)) / (s(5) - s(-5)), s the logistic function
      cyclical  Fu et al. 2019 ("Cyclical annealing"): within each period P = kl_cycle_steps
                (default 2 W, their R = 0.5) the weight ramps linearly 0 -> 1 over W steps, then
                holds 1; the period repeats for the whole run.
    """
    w = cfg.kl_warmup_steps
    if cfg.kl_schedule == "constant" or w <= 0:
        return 1.0
    if cfg.kl_schedule == "cyclical":
        step = step % (cfg.kl_cycle_steps or 2 * w)
    r = min(1.0, step / w)
    if cfg.kl_schedule == "sigmoid":
        lo, hi = 1 / (1 + math.exp(5.0)), 1 / (1 + math.exp(-5.0))
        return (1 / (1 + math.exp(-10.0 * (r - 0.5))) - lo) / (hi - lo)
    return r
