"""The imports between emulator's own modules: no cycle, lazy and type-only imports included.

The graph is read from the source with `ast`, so it sees every import a module can run:
module level, inside functions, and under `if TYPE_CHECKING:`. A package's `__init__` that
re-exports its submodules is not a cycle with them: importing `emulator.a.b` runs
`emulator/a/__init__.py` first, but no edge is drawn for that. A submodule that imports a name
from its own package (`from emulator.a import x`) does depend on `emulator.a`, and gets an edge.
Imports by name at run time (`importlib.import_module(name)`, for lazy re-exports and
subcommands) count too: in a module that calls it, every string that names one of our modules is
an edge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "emulator"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its `__init__.py`)."""
    found = {}
    for file in sorted(root.rglob("*.py")):
        parts = list(file.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = file
    return found


def imports_of(name: str, file: Path, modules: Mapping[str, Path]) -> set[str]:
    """The emulator modules `name` imports, wherever in the file the import statement is."""
    tree = ast.parse(file.read_text(), str(file))
    is_package = file.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    dynamic = _imports_by_name(tree)
    for node in ast.walk(tree):
        if dynamic and isinstance(node, ast.Constant) and node.value in modules:
            found.add(node.value)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_known(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # `from emulator.x import y`: the module emulator.x.y if there is one.
                found.add(submodule if submodule in modules else _known(base, modules))
    found.discard("")
    found.discard(name)
    return found


def _imports_by_name(tree: ast.AST) -> bool:
    """Whether the module calls `importlib.import_module` or `__import__`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                return True
    return False


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _known(dotted: str, modules: Mapping[str, Path]) -> str:
    """The emulator module a dotted import names (its longest known prefix), or ""."""
    while dotted:
        if dotted in modules:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return ""


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, file, modules) for name, file in modules.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        # Iterative: a deep chain of imports must not hit the recursion limit.
        work: list[tuple[str, Iterator[str]]] = [(node, iter(sorted(graph.get(node, ()))))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[current] = min(low[current], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[current])
                if low[current] == index[current]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == current:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def path_through(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a component, for the message: a → b → ... → a."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(previous[chain[-1]])
                    return [start, *reversed(chain[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    nxt.append(target)
        frontier = nxt
    return component  # pragma: no cover - a component always has a cycle through its first


def test_no_import_cycle_inside_the_package() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles inside emulator/:\n" + "\n".join(
        " → ".join(path_through(graph, component)) for component in found
    )


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("emulator.call", {"emulator.contracts.model"}),  # MethodSpec, in type hints only
        ("emulator.errors", {"emulator.metadata"}),  # metadata checks, itself a leaf
        ("emulator.metadata", set()),
        ("emulator.clock", set()),
        ("emulator.chain", {"emulator.call"}),
        ("emulator._bounded", set()),
    ],
)
def test_the_bottom_layer_imports_next_to_nothing(module: str, allowed: set[str]) -> None:
    assert import_graph()[module] <= allowed


def test_contracts_import_only_the_bottom_layer() -> None:
    """Contracts sit below everything that serves them."""
    graph = import_graph()
    outside = {
        target
        for name, targets in graph.items()
        if name == "emulator.contracts" or name.startswith("emulator.contracts.")
        for target in targets
        if not target.startswith("emulator.contracts")
    }
    # (_yaml: the lock file is read with the line of every key, as config files are)
    assert outside <= {"emulator.call", "emulator.errors", "emulator._bounded", "emulator._yaml"}


# -- the checker itself -----------------------------------------------------------------------


def _package(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / "emulator"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def f():\n    from emulator import b\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from emulator.c import thing\n"
            ),
            "c.py": "import emulator.a\n",
        },
    )
    graph = import_graph(root)
    assert graph["emulator.a"] == {"emulator.b"}
    assert graph["emulator.b"] == {"emulator.c"}
    assert cycles(graph) == [["emulator.a", "emulator.b", "emulator.c"]]
    assert path_through(graph, cycles(graph)[0]) == [
        "emulator.a",
        "emulator.b",
        "emulator.c",
        "emulator.a",
    ]


def test_the_checker_sees_imports_by_name(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": (
                "import importlib\n_LAZY = {'B': 'emulator.b'}\n"
                "def __getattr__(name):\n    return importlib.import_module(_LAZY[name])\n"
            ),
            "b.py": "NOT_A_MODULE = 'emulator.a'\n",  # no import_module here: just a string
        },
    )
    graph = import_graph(root)
    assert graph["emulator.a"] == {"emulator.b"}
    assert graph["emulator.b"] == set()


def test_a_package_reexporting_its_submodules_is_no_cycle(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "from emulator.pkg.inner import x\n",
            "pkg/inner.py": "x = 1\n",
        },
    )
    assert cycles(import_graph(root)) == []


def test_a_submodule_importing_from_its_own_package_is_an_edge(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "from emulator.pkg.inner import x\ny = 2\n",
            "pkg/inner.py": "from . import y\nx = 1\n",
        },
    )
    graph = import_graph(root)
    assert graph["emulator.pkg.inner"] == {"emulator.pkg"}
    assert cycles(graph) == [["emulator.pkg", "emulator.pkg.inner"]]
