"""The package's shape, read from its source: imports flow one way (no circle, nothing imported from a
higher layer), no module grows past 400 lines, and `--help` imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 400

# Lowest first. A module may import from lower layers, and from its own package within its layer;
# tasks, strategies and training share a layer and never import each other (the loop knows neither).
LAYERS = (
    ("errors", "validate", "names", "metrics", "dropout", "settings", "version", "heap", "machine"),
    ("models", "data"),
    ("tasks", "strategies", "training"),
    ("runs",),
    ("reports", "generation"),
    ("sweeps",),
    ("recommendation", "compare"),
    ("comparison",),
    ("api",),
    ("cli",),
    ("__main__", "__init__"),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
BASE = LAYERS[0]


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "loralab").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every loralab module `path` imports, at its top or inside a function (`from a import b` counts b
    where b is a module, else a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loralab"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("loralab"))
    return {m for m in found if m in modules}


def _area(module: str) -> str:
    """The top-level part a module belongs to: `loralab.models.packed` -> models; `loralab` -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_area_has_a_layer():
    assert {_area(m) for m in _modules()} <= set(LAYER), {_area(m) for m in _modules()} - set(LAYER)


def test_no_upward_or_sideways_import():
    wrong = []
    for module, imported in _graph().items():
        mine = _area(module)
        for other in imported:
            theirs = _area(other)
            if mine == theirs or (mine in BASE and theirs in BASE):
                continue
            if LAYER[theirs] >= LAYER[mine]:
                wrong.append(f"{module} -> {other}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_no_module_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in (SRC / "loralab").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_help_imports_no_torch():
    code = ("import sys\nfrom loralab.cli import build_parser\nbuild_parser()\n"
            "heavy = [m for m in ('torch', 'transformers', 'numpy', 'optuna') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
