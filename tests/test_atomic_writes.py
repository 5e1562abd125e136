"""Every file vaelab writes goes through vaelab.io's atomic writes; and those are atomic and keep modes sane."""
from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from vaelab.errors import OutputError
from vaelab.io import atomic_path, atomic_write_text

PKG = Path(__file__).resolve().parents[1] / "vaelab"
WRITERS = {"write_text", "write_bytes", "savefig", "imsave", "save_file", "dump", "savez", "savez_compressed",
           "to_csv", "save"}


def _write_calls_outside_atomic(tree: ast.AST) -> list[int]:
    """Line numbers of file-writing calls not lexically inside ``with atomic_path(...)``."""
    bad: list[int] = []

    def visit(node: ast.AST, inside: bool) -> None:
        if isinstance(node, ast.With):
            inside = inside or any(isinstance(i.context_expr, ast.Call) and getattr(i.context_expr.func, "id", getattr(
                i.context_expr.func, "attr", None)) == "atomic_path" for i in node.items)
        if isinstance(node, ast.Call) and not inside:
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            mode = None
            if name == "open":
                args = node.args[1:2] + [k.value for k in node.keywords if k.arg == "mode"]
                mode = args[0].value if args and isinstance(args[0], ast.Constant) else "r"
            if name in WRITERS or (mode is not None and any(c in str(mode) for c in "wax+")):
                bad.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return bad


def test_every_write_is_atomic() -> None:
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "io.py" and path.parent == PKG:
            continue                                   # the atomic writers themselves
        src = path.read_text(encoding="utf-8")
        assert "torch.save(" not in src and "pickle.dump" not in src, f"{path}: pickles"
        offenders += [f"{path.relative_to(PKG.parent)}:{n}" for n in _write_calls_outside_atomic(ast.parse(src))]
    assert not offenders, f"file writes outside vaelab.io.atomic_path: {offenders}"


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644     # mkstemp alone gives 0600


def test_unwritable_target_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write to"):
        atomic_write_text(tmp_path / "file" / "sub" / "a.txt", "x")


def test_the_scan_finds_plain_writes() -> None:
    src = "p.write_text('x')\nopen(p, 'wb')\nopen(p)\nwith atomic_path(p) as t:\n    t.write_bytes(b'')\n"
    assert _write_calls_outside_atomic(ast.parse(src)) == [1, 2]
