"""The errors vaelab raises for problems a user can fix.

Every expected failure (bad data, a bad option, a checkpoint from another model, a diverged run)
is a :class:`VaelabError`. The CLI prints its message, one clear paragraph saying what is wrong and
how to fix it, and exits non-zero without a traceback. Anything else is a bug.
"""
from __future__ import annotations


class VaelabError(Exception):
    """Base class: a problem with the user's input or environment, with a message that says how to fix it."""

    exit_code = 2


class DataError(VaelabError):
    """A dataset is missing, corrupt, or not images in [0, 1]."""


class ConfigError(VaelabError):
    """An option or configuration value is invalid."""


class CheckpointError(VaelabError):
    """A checkpoint is missing, corrupt, from another model, or not a vaelab checkpoint."""


class DivergenceError(VaelabError):
    """Training produced NaN/inf in a loss term or gradient.

    ``term`` names the quantity that went non-finite ("recon", "kl", ..., "loss" or "gradient"),
    ``epoch``/``step`` say where; all three are None when unknown.
    """

    exit_code = 3

    def __init__(self, message: str, *, term: str | None = None, epoch: int | None = None,
                 step: int | None = None) -> None:
        super().__init__(message)
        self.term, self.epoch, self.step = term, epoch, step


class Interrupted(VaelabError):
    """The user stopped training (Ctrl-C); the last completed epoch's checkpoint is on disk."""

    exit_code = 130


class OutputError(VaelabError):
    """An output path exists (and would be overwritten) or cannot be written."""


class MemoryBudgetError(VaelabError):
    """An allocation would exceed the memory budget (vaelab.budget): the message says how much, why, and the fix."""
