"""No import cycles among qwen3's modules, found statically (ast), so that none comes back.

Every import counts, also the ones inside functions and under ``if TYPE_CHECKING:``: a lazy or type-only import
hides a cycle from Python, not from the reader, and the layering (model -> engine -> serve; train beside engine) is
what keeps the package understandable. The one exception is a package and its own modules (a package re-exports
its children; a child reaching into its parent package is how Python loads it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qwen3

ROOT = Path(qwen3.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The qwen3 modules (or module attributes) that ``module``'s code imports."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in names if name == "qwen3" or name.startswith("qwen3.")}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = imported_names(tree, name, path.name == "__init__.py")
        # "from qwen3.a import b" imports module qwen3.a.b when it exists, else the attribute b of qwen3.a.
        graph[name] = {t if t in paths else t.rpartition(".")[0] for t in targets} - {name}
        graph[name] &= set(paths)
    return graph


def without_package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop the edges between a package ``__init__`` and the modules inside it (see the module docstring)."""
    return {
        name: {t for t in targets if not (name.startswith(t + ".") or t.startswith(name + "."))}
        for name, targets in graph.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (as a path that ends where it starts), or None; iterative DFS with colours."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        path = [start]
        iterators = [iter(sorted(graph[start]))]
        colour[start] = 1
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                iterators.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                iterators.append(iter(sorted(graph[nxt])))
    return None


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_relative_and_in_function_imports_are_seen():
    source = "from . import cache\ndef f():\n    from ..engine.llm import LLM\nif TYPE_CHECKING:\n    import qwen3.x\n"
    names = imported_names(ast.parse(source), "qwen3.model.layers", is_package=False)
    assert names == {
        "qwen3.model",
        "qwen3.model.cache",
        "qwen3.engine.llm",
        "qwen3.engine.llm.LLM",
        "qwen3.x",
    }


def test_qwen3_has_no_import_cycles():
    cycle = find_cycle(without_package_edges(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# Lower layers never import upper ones: the model knows nothing of the engine, the engine nothing of training or
# serving (a run directory's layout, which both need, lives in qwen3/model/run_dir.py).
FORBIDDEN = {
    "qwen3.model": ("qwen3.engine", "qwen3.serve", "qwen3.train"),
    "qwen3.tokenizer": ("qwen3.engine", "qwen3.serve", "qwen3.train", "qwen3.model"),
    "qwen3.chat": ("qwen3.engine", "qwen3.serve", "qwen3.train", "qwen3.model"),
    "qwen3.engine": ("qwen3.serve", "qwen3.train"),
}


@pytest.mark.parametrize("layer", FORBIDDEN)
def test_layers_import_only_downwards(layer):
    bad = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name == layer or name.startswith(layer + ".")
        for target in sorted(targets)
        if target.startswith(FORBIDDEN[layer])
    ]
    assert bad == []
