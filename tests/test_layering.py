"""The layering, in one line: config -> data -> models -> train -> measure -> report -> orchestration.

A module imports only from its own layer or the layers below it (module-level and function-level
imports alike), the imports between vaelab modules have no cycle, and no module imports another
module's private name (``_x``). ``LAYERS`` is the one table: a new module goes into it by its dotted
name or a package prefix (the longest prefix wins); a module it does not place fails the test.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vaelab"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("config", ("vaelab.errors", "vaelab.config", "vaelab.options", "vaelab.io", "vaelab.callable_module",
                "vaelab.schedules", "vaelab.molecules.defaults")),
    ("data", ("vaelab.data", "vaelab.preprocess", "vaelab.imaging", "vaelab.budget", "vaelab.molecules.tokenizers",
              "vaelab.molecules.data", "vaelab.molecules.dataset")),
    ("models", ("vaelab.losses", "vaelab.models", "vaelab.checkpoint")),
    ("train", ("vaelab.train", "vaelab.distributed", "vaelab.rundir", "vaelab.guard", "vaelab.lock",
               "vaelab.retry", "vaelab.tracking")),
    ("measure", ("vaelab.metrics", "vaelab.measure", "vaelab.density", "vaelab.evaluate", "vaelab.judge", "vaelab.sampling",
                 "vaelab.score", "vaelab.verdict", "vaelab.test_time", "vaelab.molecules.metrics",
                 "vaelab.molecules.latent", "vaelab.molecules.properties", "vaelab.molecules.training",
                 "vaelab.molecules.guacamol", "vaelab.molecules.design")),
    ("report", ("vaelab.report", "vaelab.molecules.report", "vaelab.explore")),
    ("orchestration", ("vaelab.compare", "vaelab.sweep", "vaelab.executor", "vaelab.molecules.compare",
                       "vaelab.molecules.cli", "vaelab.molecules.design_cmd", "vaelab.cli", "vaelab.__main__", "vaelab")),
]
# Known upward imports, each with the issue that removes it. Keep this empty: it is for work in flight.
PENDING = {("vaelab.train", "vaelab.metrics.collapse"): "issue 13.4: the collapse diagnostics move to fit's callers"}
RANK = {prefix: i for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The rank of ``module`` in LAYERS by its longest matching prefix (None: not placed)."""
    best = None
    for prefix, rank in RANK.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    return best[1] if best else None


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, int, list[str]]]:
    """(imported vaelab module, line, names imported from it) for every import statement in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, []) for a in node.names if a.name.split(".")[0] == "vaelab"]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target.split(".")[0] != "vaelab":
                continue
            names = [a.name for a in node.names]
            # `from vaelab.x import y` where y is a submodule imports the submodule
            subs = [n for n in names if f"{target}.{n}" in MODULES]
            out += [(f"{target}.{n}", node.lineno, []) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                out.append((target, node.lineno, rest))
    return out


def private_attribute_uses(module: str) -> list[tuple[str, int]]:
    """``alias._name`` where ``alias`` is a vaelab module imported into ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("vaelab.") and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for a in node.names:
                if f"{target}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
    return [(f"{aliases[n.value.id]}.{n.attr}", n.lineno) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
            and n.attr.startswith("_") and not n.attr.startswith("__")]


def test_every_module_has_a_layer():
    assert not [m for m in MODULES if layer_of(m) is None], "add these modules to LAYERS"


def test_no_import_goes_up_a_layer():
    bad = []
    for m in MODULES:
        for target, line, names in imports(m):
            if names == ["__version__"] and target == "vaelab":
                continue        # package metadata, not code
            if target in MODULES and layer_of(target) > layer_of(m) and (m, target) not in PENDING:
                bad.append(f"{m}:{line} imports {target} ({LAYERS[layer_of(target)][0]} above "
                           f"{LAYERS[layer_of(m)][0]})")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_modules():
    bad = []
    for m in MODULES:
        for target, line, names in imports(m):
            if target != m:
                bad += [f"{m}:{line} imports {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
        bad += [f"{m}:{line} uses {name}" for name, line in private_attribute_uses(m)]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in imports(m) if t in MODULES and t != m} for m in MODULES}
    # a package's __init__ re-exporting its submodules is not a cycle with them
    graph = {m: {t for t in ts if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
             for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module,expected", [("vaelab.models.vae", "models"), ("vaelab.report.html", "report"),
                                             ("vaelab.metrics.fd", "measure"), ("vaelab", "orchestration")])
def test_the_table_places_by_longest_prefix(module, expected):
    assert LAYERS[layer_of(module)][0] == expected


def test_the_trainer_loop_fits_on_two_screens():
    """fit is the epoch loop, read top to bottom (its set-up, step loop, validation and finish are named pieces)."""
    import ast

    tree = ast.parse((ROOT / "vaelab" / "train.py").read_text())
    fit = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fit")
    assert fit.end_lineno - fit.lineno + 1 <= 100, f"fit is {fit.end_lineno - fit.lineno + 1} lines"
    step_loop = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_train_epoch")
    assert step_loop.end_lineno - step_loop.lineno + 1 <= 60
