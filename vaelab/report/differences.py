"""The paired differences of metrics.json ("differences": b - a per metric, with 95 % bootstrap intervals)
and the one rule that calls them: better or worse only when the interval excludes zero."""
from __future__ import annotations

from typing import Any

from vaelab.metrics.intervals import verdict as interval_verdict


def difference(doc: dict[str, Any], a: str, b: str, key: str) -> dict | None:
    """The interval of b - a for metric ``key`` ("generation.prior.fd"), from metrics.json "differences"."""
    block = (doc.get("differences") or {}).get(f"{b} - {a}") or {}
    iv = block.get(key)
    if iv is None:
        inv = ((doc.get("differences") or {}).get(f"{a} - {b}") or {}).get(key)
        if inv is not None and inv.get("low") is not None and inv.get("high") is not None:
            iv = {**inv, "value": -inv["value"], "low": -inv["high"], "high": -inv["low"]}
    return iv


def called(diff: dict | None, better: str, n_test: int | None = None) -> str:
    """'better' / 'worse' when the interval of the difference excludes 0, else 'similar' (also without one)."""
    if diff is None:
        return "similar"
    v = interval_verdict(diff, better, n_test)
    return v if v in ("better", "worse") else "similar"
