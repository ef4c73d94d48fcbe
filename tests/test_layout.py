"""The package's layering: imports run one way, from the CLI down to the solver and readers."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "sotalign"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(mods: dict[str, Path]) -> dict[str, dict[str, bool]]:
    """module -> {imported sotalign module: imported inside a function?} (every statement)."""
    graph: dict[str, dict[str, bool]] = {}
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        is_pkg = p.name == "__init__.py"
        funcs = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        inner = {id(n) for f in funcs for n in ast.walk(f)}
        edges: dict[str, bool] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [
                    f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names
                ]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m:
                    edges[t] = edges.get(t, False) or id(node) in inner
        graph[m] = edges
    return graph


def test_no_import_cycles():
    graph = _imports(_modules())
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> None:
        state[v] = 1
        path.append(v)
        for w in graph[v]:
            if state.get(w) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(w) :], w]))
            if w not in state:
                visit(w)
        path.pop()
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v)


def test_no_function_level_imports_of_the_package():
    graph = _imports(_modules())
    hidden = sorted(f"{m} -> {t}" for m, e in graph.items() for t, inside in e.items() if inside)
    assert hidden == []


def test_nothing_below_the_cli_imports_it():
    graph = _imports(_modules())
    below = [m for m in graph if not m.startswith("sotalign.cli") and m != "sotalign.__main__"]
    offenders = sorted(
        f"{m} -> {t}" for m in below for t in graph[m] if t.startswith("sotalign.cli")
    )
    assert offenders == []


def test_bottom_layers_import_only_the_bottom():
    """The solver and the readers sit at the bottom: errors, arrays, checks, the collectives of
    row sharding (parallel), and themselves; parallel itself needs only errors."""
    graph = _imports(_modules())
    assert set(graph["sotalign.parallel"]) <= {"sotalign.errors"}
    allowed = ("sotalign.errors", "sotalign.arrays", "sotalign.checks", "sotalign.parallel")
    for layer in ("sotalign.ot", "sotalign.io"):
        for m, edges in graph.items():
            if m == layer or m.startswith(layer + "."):
                bad = [t for t in edges if not (t.startswith(layer) or t in allowed)]
                assert bad == [], f"{m} imports {bad}"


def test_modules_stay_small():
    long = {
        str(p.relative_to(SRC)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 720
    }
    assert long == {}
