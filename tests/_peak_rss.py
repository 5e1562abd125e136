"""Run bad-input cases in this one process and print each one's peak resident memory (JSON lines).

    python tests/_peak_rss.py [CASE_ID ...]       # default: every case of tests/bad_inputs.py

Before each case the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``), so VmHWM
afterwards is the case's own peak (including the interpreter, torch and vaelab already loaded, as a
fresh ``python -m vaelab`` would hold them). Used by tests/test_memory.py.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

import bad_inputs as B  # noqa: E402


def vm_hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def main(ids: list[str]) -> None:
    for case in B.CASES:
        if (ids and case.id not in ids) or case.needs() or case.needs_mount:
            continue
        d = Path(tempfile.mkdtemp(prefix=f"vaelab-rss-{case.id}-"))
        try:
            argv = case.setup(d)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            res = B.run_cli(argv, d)
            print(json.dumps({"id": case.id, "code": res.code, "peak_bytes": vm_hwm_bytes(),
                              "traceback": "Traceback" in res.stderr}), flush=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
