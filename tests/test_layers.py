"""The packages import downward only, and no two modules import each other.

The layers, bottom first: ``graph_meta`` (the library) <- ``loaders`` (data ingestion)
<- ``training`` (the command line, the benchmark, the demo). A module may import its own
layer and those below it, never one above; and the import graph between modules has no
cycle. Both are read from the source (``ast``), so an import inside a function counts as
much as one at the top of a file: a lazy import that hides a cycle is still a cycle. Only
imports under ``if TYPE_CHECKING:`` (annotations, never executed) are left out of the cycle
check; they still count for the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"graph_meta": 0, "loaders": 1, "training": 2}
# first-party code outside the layers: nothing in the layers may import it
OUTSIDE = {"tests", "scripts", "benchmarks", "notebooks", "configs"}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for top in LAYERS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
            if name == "TYPE_CHECKING":
                out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _imports(name: str, path: Path, *, runtime: bool = False) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every import in the file, wherever it is (functions,
    classes, ``try``; ``if TYPE_CHECKING`` blocks unless ``runtime``): relative imports
    resolved, ``from a import b`` giving ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_checking_nodes(tree) if runtime else set()
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.append((sub if sub in MODULES else mod, node.lineno))
        elif isinstance(node, ast.Call):
            # importlib.import_module("pkg.mod") / __import__("pkg.mod") with a literal name
            fn = node.func
            fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if fname in ("import_module", "__import__") and node.args and \
                    isinstance(node.args[0], ast.Constant) and \
                    isinstance(node.args[0].value, str):
                found.append((node.args[0].value, node.lineno))
    return found


def _graph() -> dict[str, dict[str, int]]:
    """Module -> {first-party module it makes Python execute: line}. Importing ``a.b.c``
    executes ``a`` and ``a.b`` too; the importer's own parent packages are left out (Python
    has run them before the importer starts)."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        own = set(_ancestors(name))
        edges: dict[str, int] = {}
        for target, line in _imports(name, path, runtime=True):
            for t in [*_ancestors(target), target]:
                if t in MODULES and t != name and t not in own:
                    edges.setdefault(t, line)
        graph[name] = edges
    return graph


def test_the_layers_are_found() -> None:
    for top in LAYERS:
        assert top in MODULES, top
    assert len(MODULES) > 30


def test_imports_go_downward_only() -> None:
    bad = []
    for name, path in MODULES.items():
        layer = LAYERS[name.split(".")[0]]
        for target, line in _imports(name, path):
            top = target.split(".")[0]
            if top in OUTSIDE or LAYERS.get(top, -1) > layer:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, ("upward imports (graph_meta <- loaders <- training):\n  "
                     + "\n  ".join(bad))


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    lines = []
    for comp in cycles:
        members = set(comp)
        lines.append(" <-> ".join(comp) + ":")
        for v in comp:
            for w, line in graph[v].items():
                if w in members:
                    lines.append(f"    {MODULES[v].relative_to(ROOT)}:{line} imports {w}")
    assert not cycles, "import cycles between modules:\n" + "\n".join(lines)


@pytest.mark.parametrize("source, message", [
    ("def f():\n    from training.train import train_model\n", "upward"),
    ("import loaders.split\n", "upward"),
])
def test_the_check_sees_a_lazy_upward_import(tmp_path: Path, source: str,
                                             message: str) -> None:
    """The checker itself: a lazy upward import in a library module is found."""
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    targets = [t for t, _ in _imports("graph_meta.mod", path)]
    assert any(LAYERS.get(t.split(".")[0], -1) > 0 for t in targets), message


def test_the_check_sees_a_lazy_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_check_sees_a_lazy_cycle_in_the_real_graph(tmp_path: Path) -> None:
    """The old shape: ``fit`` importing the training loop lazily, which imports the model."""
    graph = {k: dict(v) for k, v in _graph().items()}
    assert "graph_meta.model" not in graph["graph_meta.fitting.train"]
    path = tmp_path / "train.py"
    path.write_text("def fit():\n    from graph_meta.model import GraphMetaRecommender\n",
                    encoding="utf-8")
    for target, line in _imports("graph_meta.fitting.train", path, runtime=True):
        graph["graph_meta.fitting.train"][target] = line
    assert any("graph_meta.model" in c and "graph_meta.fitting.train" in c
               for c in _cycles(graph))
