"""No import cycle in holisafe_bench: layers import downwards only.

The graph is read from the source with `ast`, so imports hidden inside functions (the usual
way a cycle is papered over) and under `if TYPE_CHECKING:` count like top-level ones.
An import of package P is an edge to P/__init__ only: a package re-exporting its own
submodules is not a cycle by itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import holisafe_bench

Graph = dict[str, set[str]]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module under the package folder `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The dotted name of everything any import statement in `tree` loads, at any depth.
    `from X import y` gives X.y: a module when y is one, else a name inside X."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_base(node, module, is_package)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _absolute_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    # `from . import x` in a/b.py is relative to package a; in a/__init__.py, to a itself.
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def resolve(name: str, known: set[str]) -> str | None:
    """The module of ours a dotted name lands in: its longest prefix that is a module, so
    a package's name is an edge to its __init__ only, never to its submodules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph(root: Path, package: str) -> Graph:
    modules = module_files(root, package)
    known = set(modules)
    graph: Graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = imported_names(tree, module, path.name == "__init__.py")
        targets = {resolve(name, known) for name in names}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (as a closed path a -> ... -> a) per strongly connected component of more
    than one module (Tarjan's algorithm, iterative: the graph may be deep)."""
    found = []
    for component in _components(graph):
        if len(component) > 1:
            found.append(_cycle_in(graph, component))
    return sorted(found)


def _components(graph: Graph) -> list[set[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    result.append(component)
            elif nxt not in index:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(sorted(graph.get(nxt, ())))))
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
    return result


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """The shortest path from the component's first module back to itself (breadth first)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in its component")  # pragma: no cover


def test_holisafe_bench_has_no_import_cycle():
    root = Path(holisafe_bench.__file__).parent
    graph = import_graph(root, "holisafe_bench")
    assert len(graph) > 50, "the walk found too few modules"  # guards against a bad root
    tangled = [sorted(c) for c in _components(graph) if len(c) > 1]
    assert not tangled, "import cycles in holisafe_bench:\n" + "\n".join(
        f"{' -> '.join(_cycle_in(graph, set(c)))}  (modules in the tangle: {', '.join(c)})"
        for c in sorted(tangled)
    )


def reachable(graph: Graph, start: str) -> set[str]:
    """Every module `start` loads, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_layers_import_downwards():
    """The dataset never loads the provider layer (images live in holisafe_bench.media), and
    the layers the stages use never import a stage (the old judging <-> stage tangle)."""
    graph = import_graph(Path(holisafe_bench.__file__).parent, "holisafe_bench")
    dataset = [m for m in graph if m.startswith("holisafe_bench.dataset")]
    assert dataset
    for module in dataset:
        providers = sorted(r for r in reachable(graph, module) if ".providers" in r)
        assert not providers, f"{module} loads {providers}"
    for module, targets in graph.items():
        if module.startswith(("holisafe_bench.judging", "holisafe_bench.providers")):
            stages = sorted(t for t in targets if t.startswith("holisafe_bench.stages"))
            assert not stages, f"{module} imports {stages}"


def _write_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_finds_a_cycle_hidden_inside_a_function_and_names_it(tmp_path):
    root = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import thing\n",
            "b.py": "def thing():\n    from pkg import c\n    return c\n",
            "c.py": "import pkg.a\n",
            "d.py": "import pkg.a\n",  # points into the cycle, is not part of it
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg.b"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_relative_imports_resolve_against_the_right_package(tmp_path):
    root = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "top.py": "",
            "sub/__init__.py": "from . import inner\nfrom .inner import name\n",
            "sub/inner.py": "from .. import top\nfrom ..top import x\nfrom . import other\n",
            "sub/other.py": "from .inner import y\n",
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg.sub"] == {"pkg.sub.inner"}
    assert graph["pkg.sub.inner"] == {"pkg.top", "pkg.sub.other"}
    assert cycles(graph) == [["pkg.sub.inner", "pkg.sub.other", "pkg.sub.inner"]]


def test_a_package_reexporting_its_submodules_is_no_cycle(tmp_path):
    root = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "data/__init__.py": "from pkg.data.loaders import load\n",
            "data/loaders.py": "import pkg.data.checks\nfrom pkg.data.checks import ok\n",
            "data/checks.py": "import json\nfrom typing import TYPE_CHECKING\n",
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg.data"] == {"pkg.data.loaders"}
    assert graph["pkg.data.loaders"] == {"pkg.data.checks"}
    assert graph["pkg.data.checks"] == set()  # stdlib imports are not ours
    assert cycles(graph) == []


def test_importing_a_name_from_the_own_package_is_a_cycle(tmp_path):
    # loaders -> pkg.data/__init__ -> loaders: a real cycle, unlike the re-export alone.
    root = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "data/__init__.py": "from pkg.data.loaders import load\n",
            "data/loaders.py": "from pkg.data import Thing\n",
        },
    )
    assert cycles(import_graph(root, "pkg")) == [["pkg.data", "pkg.data.loaders", "pkg.data"]]


def test_imports_under_type_checking_count(tmp_path):
    root = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.b import B\n",
            "b.py": "class B:\n    def f(self):\n        import pkg.a as a\n        return a\n",
        },
    )
    assert cycles(import_graph(root, "pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]
