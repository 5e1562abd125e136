"""Make a module callable as its main function: ``vaelab.compare(cfg, out)`` works although ``vaelab.compare``
is also the module that defines ``compare`` (importing a submodule sets the package attribute to it).
"""
from __future__ import annotations

import sys
import types
from typing import Any, Callable


def make_callable(module_name: str, func_name: str) -> None:
    """Calling the module ``module_name`` calls its function ``func_name`` (module ``__class__`` assignment)."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            fn: Callable[..., Any] = getattr(self, func_name)
            return fn(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
