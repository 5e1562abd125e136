"""vaelab: deterministic and variational autoencoders, trained side by side and measured.

The public API, the same functions the CLI calls:

    vaelab.load_dataset(spec, ...)      -> Dataset           (vaelab.data)
    vaelab.fit(model_or_cfg, data, cfg, out) -> Run          (vaelab.train; the `train` command)
    vaelab.evaluate(model, data, ...)   -> metrics dict      (vaelab.evaluate; what `compare` measures)
    vaelab.compare(CompareConfig, out)  -> metrics dict      (vaelab.compare; the `compare` command)
    vaelab.load(folder)                 -> Checkpoint        (vaelab.checkpoint.load_model: .model, .config)
    DataSpec, ModelConfig, TrainConfig, EvalConfig, CompareConfig, SampleConfig, SweepConfig   (vaelab.config)

The config classes are imported at once (they need only the standard library); everything that needs
torch is imported on first use (module ``__getattr__``, PEP 562), so ``import vaelab`` and
``vaelab --help`` stay fast.
"""
from __future__ import annotations

import importlib
from typing import Any

from vaelab.config import (CompareConfig, DataSpec, EvalConfig, ModelConfig, SampleConfig, SweepConfig,
                           TrainConfig)

__version__ = "0.1.0"

_LAZY = {   # public name -> (module, attribute)
    "fit": ("vaelab.train", "fit"),
    "compare": ("vaelab.compare", "compare"),
    "evaluate": ("vaelab.evaluate", "evaluate"),
    "load": ("vaelab.checkpoint", "load_model"),
    "load_dataset": ("vaelab.data", "load_dataset"),
}

__all__ = ["fit", "compare", "evaluate", "load", "load_dataset", "DataSpec", "ModelConfig", "TrainConfig",
           "EvalConfig", "CompareConfig", "SampleConfig", "SweepConfig", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        # ``compare`` and ``evaluate`` share their names with the modules that define them, and importing a
        # submodule sets the package attribute to the module: those modules are callable (vaelab.callable_module)
        if name not in ("compare", "evaluate"):
            globals()[name] = value
        return value
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
