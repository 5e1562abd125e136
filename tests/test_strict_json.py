"""The one strict-JSON writer (vaelab.io.strict_json / atomic_write_json): what it turns into what."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vaelab.io import atomic_write_json, strict_json


def test_non_finite_become_null_and_negative_zero_becomes_zero():
    doc = strict_json({"nan": float("nan"), "inf": [float("inf"), -math.inf], "neg0": -0.0,
                       "np_neg0": np.float32(-0.0), "np_nan": np.float64("nan")})
    assert doc == {"nan": None, "inf": [None, None], "neg0": 0.0, "np_neg0": 0.0, "np_nan": None}
    assert math.copysign(1.0, doc["neg0"]) == 1.0 and math.copysign(1.0, doc["np_neg0"]) == 1.0
    assert "-0.0" not in json.dumps(doc)


def test_numpy_scalars_tuples_paths_and_keys():
    doc = strict_json({"f32": np.float32(1.5), "i64": np.int64(3), "b": np.bool_(True), "t": (1, (2, 3)),
                       "p": Path("/a/b.png"), 7: "int key", "arr": np.array([[1, 2], [3, 4]], dtype=np.int8),
                       "farr": np.array([np.nan, 0.25])})
    assert doc == {"f32": 1.5, "i64": 3, "b": True, "t": [1, [2, 3]], "p": "/a/b.png", "7": "int key",
                   "arr": [[1, 2], [3, 4]], "farr": [None, 0.25]}
    assert type(doc["f32"]) is float and type(doc["i64"]) is int and type(doc["b"]) is bool
    json.dumps(doc, allow_nan=False)          # strict: would raise on NaN/inf


def test_bool_stays_bool_and_values_are_unchanged():
    assert strict_json([True, False, 1, 0, 2.5, "x", None]) == [True, False, 1, 0, 2.5, "x", None]
    assert [type(v) for v in strict_json([True, 1])] == [bool, int]


def test_atomic_write_json_writes_strict_json(tmp_path):
    p = tmp_path / "m.json"
    atomic_write_json(p, {"x": np.float64("inf"), "y": -0.0, "z": (np.int32(1),)})
    text = p.read_text(encoding="utf-8")
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}")) == \
        {"x": None, "y": 0.0, "z": [1]}
    assert "-0.0" not in text and text.endswith("\n")
