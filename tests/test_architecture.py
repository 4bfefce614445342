"""The house's walls: which package may import which (docs/architecture.md), and no import circle anywhere.

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages of ours it may import (besides itself); the arrows of docs/architecture.md
ALLOWED: dict[str, set[str]] = {
    "features": set(),
    "models": {"features"},
    "bundles": {"features", "models"},
    "synth": {"features", "models"},
    "training": {"features", "models", "bundles"},
    "batch": {"features", "models", "bundles"},
    "serving": {"features", "models", "bundles"},
    "ops": {"features", "models", "bundles", "training", "batch"},
    "cli": {"features", "models", "bundles", "synth", "training", "batch", "serving", "ops"},
}
PACKAGES = [p for p in ALLOWED if (ROOT / p).is_dir()]


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of ours that ``module`` imports (the package itself when a name is not a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in ALLOWED:
                yield name


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {m: set(_imports(m, p, known)) - {m} for m, p in known.items()}


def test_every_package_imports_only_what_the_architecture_allows() -> None:
    graph = _graph()
    assert {"features", "models", "bundles", "training", "serving", "cli"} <= set(PACKAGES)
    wrong = sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        for t in targets
        if (a := m.split(".")[0]) != (b := t.split(".")[0]) and b not in ALLOWED[a]
    )
    assert not wrong, "imports across the walls:\n" + "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle among modules, or None (depth-first search, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_no_import_circle_between_modules() -> None:
    circle = _cycle(_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_checks_catch_what_they_claim() -> None:
    """The search finds a planted circle, and the walls refuse serving -> training."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert "training" not in ALLOWED["serving"] and "serving" not in ALLOWED["training"]


@pytest.mark.parametrize("package", ["serving", "batch", "bundles"])
def test_the_read_side_never_loads_training_code(package: str) -> None:
    """What serves answers imports no job code (nor, through it, Ibis)."""
    graph = _graph()
    reached, todo = set(), [m for m in graph if m.split(".")[0] == package]
    while todo:
        m = todo.pop()
        if m in reached:
            continue
        reached.add(m)
        todo.extend(graph.get(m, ()))
    assert not {m for m in reached if m.split(".")[0] in ("training", "synth", "cli")}
