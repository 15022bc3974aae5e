"""The packages' import graph: no circles, and the layering of docs/ARCHITECTURE.md.

``service`` and ``worker`` import ``model_store`` and ``stylenet``, never each other;
``stylenet`` and ``model_store`` import neither. Imports made when a module loads
(module level, ``TYPE_CHECKING`` blocks left out) must form no circle: a circle makes the
import order matter and breaks as soon as one of them imports a name from the other at
load time. Imports inside functions are not counted (they run later, on demand).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("stylenet", "model_store", "service", "worker")
#: Which packages each one may import.
ALLOWED = {
    "stylenet": {"stylenet"},
    "model_store": {"model_store", "stylenet"},
    "service": {"service", "model_store", "stylenet"},
    "worker": {"worker", "model_store", "stylenet"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _load_time_nodes(tree: ast.Module):
    """Module-level statements, into ``if``/``try`` blocks but not ``if TYPE_CHECKING``."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" in ast.unparse(node.test):
                stack.extend(node.orelse)
                continue
            stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                stack.extend(handler.body)
        else:
            yield node


def _imports(name: str, path: Path, modules: dict[str, Path], load_time: bool) -> set[str]:
    """The project modules ``name`` imports (at load time only, or anywhere)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = _load_time_nodes(tree) if load_time else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_at_load_time() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules, load_time=True) for name, path in modules.items()}
    # A package's __init__ re-exporting its modules is not a circle of theirs.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert _cycles(graph) == []


def test_packages_import_only_what_their_layer_allows() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        owner = name.split(".")[0]
        for target in _imports(name, path, modules, load_time=False):
            if target.split(".")[0] not in ALLOWED[owner]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_the_rules_see_a_circle() -> None:
    """The checker itself finds a circle (so the two tests above can fail)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
