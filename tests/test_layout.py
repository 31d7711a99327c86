"""The package's folders are its data flow: every import points down the flow, and no import cycle exists.

Read from the sources with ``ast``, so an import inside a function (a lazy one) counts as much as one at
the top of a module; only imports under ``if TYPE_CHECKING:`` (annotations, never run) are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mini_mlflow"

#: Stages from the bottom up. A module may import its own stage or one listed before it, never after.
STAGES = [
    ("mini_mlflow._errors", "mini_mlflow._log", "mini_mlflow._version"),
    ("mini_mlflow.store",),  # the on-disk format
    ("mini_mlflow._tracking_uri", "mini_mlflow._config"),  # settings (a run id checked by the format)
    ("mini_mlflow.read",),  # reader, index, search
    ("mini_mlflow.interop",),  # MLflow's model and FileStore
    ("mini_mlflow.sync",),  # files → an MLflow server
    ("mini_mlflow.write",),  # live runs: buffer, writer thread (online mode starts sync)
    ("mini_mlflow.api",),  # the faces
    ("mini_mlflow.mlflow_plugin",),  # MLflow's own client and server on the store (MLflow loads it)
    ("mini_mlflow.integrations",),  # frameworks' hooks, on the public Run API (never imported by the package)
    ("mini_mlflow.ui",),  # the local web page (reads the store; the CLI starts it)
    ("mini_mlflow.cli",),
    ("mini_mlflow", "mini_mlflow.__main__", "mini_mlflow.entities", "mini_mlflow.tracking"),  # public
]


def stage_of(module: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} belongs to no stage: add it to STAGES"
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from pkg import mod`` names ``pkg.mod``)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{alias.name}" for alias in node.names]
            targets = [sub for sub in subs if sub in known] or [target]
            if len(targets) < len(subs) and target not in targets:
                targets.append(target)  # names from the module itself, beside submodules
        found.update(t for t in targets if t in known)
    found.discard(here)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, known) for p in paths}


def test_every_import_points_down_the_flow() -> None:
    wrong = [
        f"{src} imports {dst}"
        for src, targets in graph().items()
        for dst in sorted(targets)
        if stage_of(dst) > stage_of(src) and not src.startswith(dst + ".")  # a package's own __init__
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    edges = graph()
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_checker_sees_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """The two rules above are only as good as the import reader: check it on a known module."""
    source = PACKAGE / "write" / "_run.py"
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found = imports_of(source, known)
    assert "mini_mlflow.write._online" in found  # imported inside __init__, only in online mode
    assert "mini_mlflow.read._reader" in found  # imported inside to_dict
    assert "mini_mlflow.write._registry" in found  # `from . import _registry`
    registry = imports_of(PACKAGE / "write" / "_registry.py", known)
    assert "mini_mlflow.write._run" not in registry  # only under TYPE_CHECKING there
