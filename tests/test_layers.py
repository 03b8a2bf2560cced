"""The tree's structure, checked: houses import only downward, no import cycles, small
files, one address parser (docs/architecture.md states these rules)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "xcpconsole"

#: house -> the houses it may import (besides itself).  Keep in step with architecture.md.
BASE = {"errors"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "address": BASE,
    "http1": BASE,
    "relay": BASE,
    "rfb": BASE,
    "settings": BASE | {"address", "trust"},
    "trust": BASE | {"address"},
    "xapi": BASE | {"address", "settings", "trust"},
    "net": BASE | {"address", "http1", "relay", "rfb", "settings", "trust", "xapi"},
    "web": BASE | {"address", "http1", "relay", "rfb", "settings", "trust", "xapi", "net"},
    # the simulated host shares only the protocol core with the client
    "sim": BASE | {"address", "http1", "relay", "rfb"},
    "cli": BASE | {"address", "http1", "relay", "rfb", "settings", "trust", "xapi", "net",
                   "web", "sim"},
    # the package's facade re-exports the library API (lazily), never the CLI, web or sim
    "__init__": BASE | {"address", "relay", "settings", "xapi", "net"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def house_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported xcpconsole module, at module level) for every import in ``path``;
    ``if TYPE_CHECKING:`` imports count as module level: knowledge of another module is
    a dependency even when only annotations use it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(
        ".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names
                             if a.name.split(".")[0] == "xcpconsole")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != "xcpconsole":
                    continue
                # ``from . import events`` names submodules
                if not child.module:
                    found.extend((f"{target}.{a.name}", top) for a in child.names)
                else:
                    found.append((target, top))
            inner_top = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, inner_top)

    visit(tree, True)
    return found


SOURCES = sorted(SRC.rglob("*.py"))


def test_houses_import_only_downward() -> None:
    wrong = []
    for path in SOURCES:
        me = house_of(module_name(path))
        for target, _top in imports_of(path):
            other = house_of(target)
            if other != me and other not in ALLOWED[me]:
                wrong.append(f"{module_name(path)} -> {target}")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    modules = {module_name(p) for p in SOURCES}
    for path in SOURCES:
        edges = set()
        for target, top in imports_of(path):
            if not top:
                continue  # a lazy import inside a function cannot make an import cycle
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]  # ``from .x import name``
            if target != module_name(path):
                edges.add(target)
        graph[module_name(path)] = edges
    # a package's __init__ importing its own submodules is not a cycle of knowledge
    for name, edges in graph.items():
        graph[name] = {e for e in edges if not name.startswith(e + ".") or e == "xcpconsole"}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                dfs(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    assert cycles == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_file_is_under_600_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 600


_ADDRESS_HANDIWORK = [
    re.compile(r"""rpartition\(["']:["']\)"""),  # HOST:PORT splitting
    re.compile(r"""f["']\[\{[\w.]*\}\]"""),  # IPv6 bracketing: f"[{host}]"
]


def test_host_port_is_parsed_and_formatted_in_one_place() -> None:
    offenders = []
    for path in SOURCES:
        if path.name == "address.py" and path.parent == SRC:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(p.search(line) for p in _ADDRESS_HANDIWORK):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_layer_table_is_the_documented_one() -> None:
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for house in ALLOWED:
        if house != "__init__":
            assert f"`xcpconsole.{house}`" in doc, house
