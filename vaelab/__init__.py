"""vaelab: deterministic and variational autoencoders, trained side by side and measured."""
from __future__ import annotations

__version__ = "0.1.0"
