"""The architecture, enforced: no import cycles and no import against the layer order.

Data flows one way (cells → rollout → engine → analysis → reports / CLI / checks). Every ``import`` of a
gradscope module in gradscope/ — module-level and the lazy ones inside functions — is read from the
source with `ast` and checked against the layer table below: a module may import its own layer or a lower
one, never a higher one. `checks` (CI regression checks on saved JSON) sits apart: it may only use the
JAX-free foundation. Separately, the module-level import graph must have no cycle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "gradscope"

#: top-level part of gradscope -> layer; a part may import parts of its own or a lower layer only
LAYERS = {
    "gradscope": 0,
    "_errors": 0,
    "_json": 0,
    "_lazy": 0,
    "_atomic": 0,
    "_registry": 0,
    "_precision": 0,
    "_cache": 0,
    "_reservation": 0,
    "_array_like": 0,
    "_random": 0,
    "_xla": 0,
    "_cpus": 0,
    "norms": 1,
    "cells": 2,
    "nets": 3,
    "mlp": 3,
    "_rollout": 3,
    "engine": 4,
    "analysis": 5,
    "io": 5,
    "report": 6,
    "experiments": 7,
    "watch": 7,
    "testing": 8,
    "cli": 8,
    "__main__": 9,
}
#: the only imports against the layer order, each lazy (inside a method) and why: Jupyter's display protocol
#: looks for ``_repr_html_`` on the object itself, so `Analysis` delegates its display to the report layer
ALLOWED_UPWARD = {("gradscope.analysis.core", "gradscope.report.notebook")}
#: JAX-free parts and what they may import
JAX_FREE = {"checks": {"gradscope", "_errors", "_json", "_lazy", "_atomic", "_registry", "checks"}}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gradscope"


def _imports(path: pathlib.Path, *, top_level_only: bool) -> set[str]:
    """gradscope modules imported by ``path`` (``from a import b`` counts as ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gradscope"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("gradscope"))
    return out


def test_every_part_has_a_layer():
    parts = {_part(m) for m in MODULES}
    assert parts <= set(LAYERS) | set(JAX_FREE), f"unplaced parts: {parts - set(LAYERS) - set(JAX_FREE)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layer_order(module):
    src = _part(module)
    bad = []
    for target in _imports(MODULES[module], top_level_only=False):
        dst = _part(target)
        if src in JAX_FREE:
            if dst not in JAX_FREE[src]:
                bad.append(target)
        elif dst in JAX_FREE:
            continue  # the JAX-free checks are usable from anywhere above the foundation
        elif dst != src and LAYERS[dst] > LAYERS[src] and (module, target) not in ALLOWED_UPWARD:
            bad.append(target)
    assert not bad, f"{module} imports upwards: {sorted(bad)}"


def test_no_import_cycles():
    graph = {m: {t for t in _imports(p, top_level_only=True) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
