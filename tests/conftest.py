"""Make the helper modules in tests/ (bad_inputs.py) importable from the tests."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
