"""Unit functions for tests/test_executor.py, importable by name in spawned workers and Ray tasks."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def square(spec: dict[str, Any]) -> dict[str, Any]:
    """{"x": x} -> {"x": x, "y": x * x, "pid": the worker's process id}; writes spec["folder"]/out.txt when given."""
    if spec.get("folder"):
        Path(spec["folder"]).mkdir(parents=True, exist_ok=True)
        (Path(spec["folder"]) / "out.txt").write_text(str(spec["x"] ** 2))
    return {"x": spec["x"], "y": spec["x"] ** 2, "pid": os.getpid()}


def stamp(spec: dict[str, Any]) -> dict[str, Any]:
    """Append spec["key"] to the file spec["log"] (one line per unit, in the order the units started)."""
    with open(spec["log"], "a", encoding="utf-8") as f:
        f.write(spec["key"] + "\n")
    return {"key": spec["key"]}


def die_once(spec: dict[str, Any]) -> dict[str, Any]:
    """Kill its own worker (SIGKILL-like, no clean-up) the first time; succeed when run again with resume."""
    marker = Path(spec["marker"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(9)
    return {"x": spec["x"], "resumed": bool(spec.get("resume"))}


def always_die(spec: dict[str, Any]) -> dict[str, Any]:
    """Kill its own worker every time it runs."""
    os._exit(9)


def subnormals_left(spec: dict[str, Any]) -> dict[str, Any]:
    """How many of 4 M subnormal float32 numbers survive x * 1 on two threads: 0 where the worker flushes
    them to zero in every thread (vaelab.budget.flush_denormals), all of them where it does not."""
    import torch

    torch.set_num_threads(2)
    x = torch.full((1 << 22,), 1000, dtype=torch.int32).view(torch.float32)   # 1.4e-42, subnormal, by its bits
    return {"left": int((x * 1.0).count_nonzero())}
