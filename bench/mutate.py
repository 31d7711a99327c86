"""Mutation testing of the write path and the on-disk format (``make mutate``; not part of ``make test``).

A small runner of our own, not mutmut or cosmic-ray, because many tests here spawn child Python
processes (``PYTHONPATH=<checkout>``, real signals, SIGKILL): the mutated module must be what every one
of those processes imports, and a tool that mutates through an import hook or trampolines in the test
process would leave the children running the original code (fake survivors). Here each worker holds a
plain copy of the checkout; a mutant is written into the copy's source file (its ``.pyc`` removed), so
the test process and every child it starts (``PYTHONPATH`` points at the copy) import the mutant.

Steps:

1. Mutants: each module of ``[tool.mini_mlflow.mutate] modules`` is parsed and one mutant made per
   site and operator (below), applied one at a time as a text edit of the original source.
2. Map: the test selection (``tests``) runs once on the unmutated copy under coverage, children
   included (a ``sitecustomize`` in the copy starts coverage in every Python process, with the test's
   number as its context), giving for each line the tests that executed it.
3. Run: each mutant runs the tests that executed its lines (fastest first, ``pytest -x``, hypothesis
   derandomized); module-level code (constants, defaults) runs every test that touched the module.
   A mutant no test executes is "not covered" (counted as surviving).
4. Survivors are checked again against the whole selection (a line executed only in a child killed
   by SIGKILL leaves no coverage record), and every kill is confirmed by re-running its failing test
   alone on the mutant (a kill that does not repeat is reported as flaky, not counted).

Operators: comparison swaps (``<``/``<=``, ``==``/``!=``, ``is``/``is not``, ``in``/``not in``),
``and``/``or``, dropping ``not``, arithmetic and bitwise swaps (``+``/``-``, ``*``/``/``, ``|``/``&``,
...), numbers +1, ``True``/``False``, strings and f-strings changed (``"x"`` → ``"XXxXX"``), ``return x``
→ ``return None``, a call statement removed (``pass``), a plain ``if``/``while`` condition negated.
Docstrings and annotations are not mutated.

Usage: ``python bench/mutate.py [--workers N] [--module PATH] [--only ID ...] [--json F] [--markdown F]``.
Runs made in batches (``--module``, or ``--only`` to run survivors again after a test was added) are
joined into one report by ``--merge A.json B.json ... --markdown FILE``: a later file's verdict on a
mutant replaces an earlier one's; the mutants are those of today's code (a mutant no file judged is
reported as "pending" and counted as surviving).
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import py_compile
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CACHE_TAG = sys.implementation.cache_tag
#: Process groups of the test runs in flight, ended if this runner is stopped.
_LIVE: set[int] = set()
_STOP = threading.Event()

_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BIN_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.Mult,
    ast.Pow: ast.Mult,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
    ast.BitXor: ast.BitOr,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}


@dataclass
class Mutant:
    id: str  #: ``<path>:<line>:<n>``, n counting the mutants of that line
    path: str  #: repository-relative path of the module
    line: int
    op: str  #: which operator made it
    before: str  #: the original source of the mutated span (first line, shortened)
    after: str  #: what replaced it
    start: int  #: byte offsets of the span in the original file
    end: int
    lines: list[int]  #: lines a test must execute for the mutant to matter
    module_level: bool  #: runs at import (constants, defaults, class bodies)
    #: For a module-level mutant, the lines where its effect is used (a private constant's readers, a
    #: default's function body); empty: anything in the module may be affected.
    uses: list[int] = field(default_factory=list)
    status: str = "pending"  #: killed, timeout, survived, not covered, flaky, error
    killer: str = ""  #: the first failing test (or why the run failed)
    tests: int = 0  #: tests selected for it
    seconds: float = 0.0
    rechecked: bool = False  #: a survivor run again against the whole selection
    detail: str = field(default="", repr=False)


# -- mutants ---------------------------------------------------------------------------------------


class _Finder:
    """Walks a module's AST and records (node, replacement source, operator) per mutation site."""

    def __init__(self, source: bytes, tree: ast.Module, path: str) -> None:
        self.source = source
        self.starts = [0]
        for i, byte in enumerate(source):
            if byte == 0x0A:
                self.starts.append(i + 1)
        self.sites: list[tuple[ast.AST, str, str, ast.stmt, bool, list[int]]] = []
        self.skip: set[int] = set()
        self._mark_skipped(tree)
        self.stmt: ast.stmt | None = None
        self.in_function = False
        self.uses: list[int] = []
        self.readers = _readers(tree, path)
        self.visit(tree)

    def _mark_skipped(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                first = body[0] if body else None
                docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                if docstring and isinstance(first.value.value, str):  # type: ignore[union-attr]
                    self.skip.add(id(first))
            annotations: list[ast.AST | None] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                annotations.append(node.returns)
            elif isinstance(node, (ast.arg, ast.AnnAssign)):
                annotations.append(node.annotation)
            elif isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            ):
                annotations.append(node)
            elif isinstance(node, ast.JoinedStr):
                # Positions inside f-strings are unreliable before 3.12: the f-string is one site.
                annotations.extend(node.values)
            for sub in annotations:
                if sub is not None:
                    self.skip.update(id(n) for n in ast.walk(sub))

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def visit(self, node: ast.AST) -> None:
        if id(node) in self.skip:
            return
        saved = self.stmt, self.in_function, self.uses
        if isinstance(node, ast.stmt):
            self.stmt = node
        if not self.in_function and isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            self.uses = self.readers.get(names[0], []) if len(names) == 1 == len(targets) else []
        self.mutate(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            # Decorators and defaults are evaluated where the function is defined.
            for dec in getattr(node, "decorator_list", []):
                self.visit(dec)
            assert node.end_lineno is not None
            self.uses = list(range(node.lineno, node.end_lineno + 1))
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    self.visit(default)
            self.uses = []
            self.in_function = True
            body = node.body if isinstance(node.body, list) else [node.body]
            for sub in body:
                self.visit(sub)
        else:
            for child in ast.iter_child_nodes(node):
                self.visit(child)
        self.stmt, self.in_function, self.uses = saved

    def add(self, node: ast.AST, replacement: ast.AST | str, op: str) -> None:
        if isinstance(replacement, ast.AST):
            text = ast.unparse(replacement)
            replacement = text if isinstance(node, ast.stmt) else f"({text})"
        assert self.stmt is not None or isinstance(node, ast.stmt)
        self.sites.append((node, replacement, op, self.stmt or node, self.in_function, self.uses))  # type: ignore[arg-type]

    def mutate(self, node: ast.AST) -> None:
        if isinstance(node, ast.Compare):
            for i, cmp in enumerate(node.ops):
                swap = _CMP_SWAP.get(type(cmp))
                if swap is not None:
                    new = copy.deepcopy(node)
                    new.ops[i] = swap()
                    self.add(node, new, f"{_sym(cmp)} → {_sym(swap())}")
        elif isinstance(node, ast.BoolOp):
            new_bool = copy.deepcopy(node)
            new_bool.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            self.add(node, new_bool, "and → or" if isinstance(node.op, ast.And) else "or → and")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.add(node, node.operand, "not x → x")
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            swap_bin = _BIN_SWAP.get(type(node.op))
            if swap_bin is not None:
                new_op = copy.deepcopy(node)
                new_op.op = swap_bin()
                self.add(node, new_op, f"{_sym(node.op)} → {_sym(swap_bin())}")
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                self.add(node, ast.Constant(not value), f"{value} → {not value}")
            elif isinstance(value, int):
                self.add(node, ast.Constant(value + 1), "n → n+1")
            elif isinstance(value, float):
                self.add(node, ast.Constant(value + 1.0), "x → x+1.0")
            elif isinstance(value, str):
                self.add(node, ast.Constant(f"XX{value}XX"), "string changed")
            elif isinstance(value, bytes):
                self.add(node, ast.Constant(b"XX" + value + b"XX"), "bytes changed")
        elif isinstance(node, ast.JoinedStr):
            new_f = ast.JoinedStr([ast.Constant("XX"), *node.values])
            self.add(node, new_f, "f-string changed")
        elif isinstance(node, ast.Return):
            if node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None
            ):
                self.add(node, "return None", "return x → return None")
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            self.add(node, "pass", "call removed")
        if isinstance(node, (ast.If, ast.While, ast.IfExp)) and _plain(node.test):
            self.add(node.test, ast.UnaryOp(ast.Not(), node.test), "condition negated")
        if isinstance(node, ast.comprehension):
            for cond in node.ifs:
                if _plain(cond):
                    self.add(cond, ast.UnaryOp(ast.Not(), cond), "condition negated")


def _readers(tree: ast.Module, path: str) -> dict[str, list[int]]:
    """Private module-level names read only inside this module's functions: the lines that read them.

    A mutant of such a constant can only matter where it is read. Names read at module level (in
    another constant) or by another module are left out: their mutants run every test of the module.
    """
    reads: dict[str, list[int]] = {}
    at_module_level: set[str] = set()

    def walk(node: ast.AST, stmt: ast.stmt | None, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            here = child if isinstance(child, ast.stmt) else stmt
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load):
                if inner and here is not None:
                    reads.setdefault(child.id, []).extend({here.lineno, child.lineno})
                else:
                    at_module_level.add(child.id)
            walk(child, here, inner)

    walk(tree, None, False)
    others = "\n".join(p.read_text() for p in (ROOT / "mini_mlflow").rglob("*.py") if p != ROOT / path)
    return {
        name: sorted(set(lines))
        for name, lines in reads.items()
        if name.startswith("_")
        and name not in at_module_level
        and re.search(rf"\b{re.escape(name)}\b", others) is None
    }


def _plain(test: ast.expr) -> bool:
    """A condition with no operator of its own to mutate (a name, attribute, call...)."""
    return not isinstance(test, (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Constant))


def _sym(op: ast.AST) -> str:
    return {
        ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
        ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
        ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
        ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
    }[type(op)]  # fmt: skip


def mutants_of(path: str) -> list[Mutant]:
    """Every mutant of the module at ``path`` (repository-relative)."""
    source = (ROOT / path).read_bytes()
    tree = ast.parse(source)
    original = ast.dump(tree)
    finder = _Finder(source, tree, path)
    out: list[Mutant] = []
    seen: set[bytes] = set()
    per_line: dict[int, int] = {}
    for node, replacement, op, stmt, in_function, uses in finder.sites:
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = finder.offset(node.lineno, node.col_offset)
        end = finder.offset(node.end_lineno, node.end_col_offset)
        mutated = source[:start] + replacement.encode() + source[end:]
        try:
            if ast.dump(ast.parse(mutated)) == original or mutated in seen:
                continue
        except SyntaxError:
            continue
        seen.add(mutated)
        n = per_line[node.lineno] = per_line.get(node.lineno, 0) + 1
        before = source[start:end].decode().split("\n")[0]
        lines = {stmt.lineno, *range(node.lineno, node.end_lineno + 1)}
        out.append(
            Mutant(
                id=f"{path}:{node.lineno}:{n}",
                path=path,
                line=node.lineno,
                op=op,
                before=before[:90],
                after=replacement[:90],
                start=start,
                end=end,
                lines=sorted(lines),
                module_level=not in_function,
                uses=[] if in_function else uses,
            )
        )
    return out


# -- the copies the tests run in -------------------------------------------------------------------

_PLUGIN = r'''
"""Loaded by bench/mutate.py into each test run: selects and orders tests, records what happened."""
import json, os, time

_SELECT = os.environ.get("MUTATE_SELECT")
_RESULT = os.environ["MUTATE_RESULT"]
_MAP = os.environ.get("MUTATE_MAP") == "1"
_state = {"passed": 0, "failed": None, "timeout": False, "durations": {}, "map": []}

try:
    from hypothesis import settings

    settings.register_profile("mutate", derandomize=True, database=None, print_blob=False)
    settings.load_profile("mutate")
except ImportError:
    pass


def pytest_collection_modifyitems(session, config, items):
    if _SELECT is None:
        return
    with open(_SELECT) as f:
        wanted = json.load(f)
    order = {nodeid: i for i, nodeid in enumerate(wanted)}
    keep = [item for item in items if item.nodeid in order]
    keep.sort(key=lambda item: order[item.nodeid])
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in order])
    items[:] = keep
    _state["selected"] = len(keep)


def pytest_runtest_protocol(item, nextitem):
    if not _MAP:
        return None
    import coverage

    index = str(len(_state["map"]))
    _state["map"].append(item.nodeid)
    os.environ["MUTATE_CTX"] = index  # children start coverage with this context (the rc file)
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.switch_context(index)
    return None


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _state["passed"] += 1
    if _MAP:
        _state["durations"][report.nodeid] = _state["durations"].get(report.nodeid, 0.0) + report.duration
    if report.failed:
        _state.setdefault("failures", []).append(report.nodeid)
    if report.failed and _state["failed"] is None:
        _state["failed"] = f"{report.nodeid} ({report.when})"
        _state["timeout"] = "Timeout" in str(report.longrepr)[-20000:]


def pytest_sessionfinish(session, exitstatus):
    with open(_RESULT, "w") as f:
        json.dump(_state, f)
'''

_SITECUSTOMIZE = """\
import os
if os.environ.get("COVERAGE_PROCESS_START"):
    import coverage
    coverage.process_startup()
"""


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in files:
        if not name:
            continue
        src = ROOT / os.fsdecode(name)
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        dst = dest / os.fsdecode(name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
    (dest / "_mutate_plugin.py").write_text(_PLUGIN)
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(dest / "mini_mlflow")], check=True)


def _env(worker: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MINI_MLFLOW_", "COVERAGE_", "PYTEST_", "MUTATE_", "HYPOTHESIS_"))
    }
    env.update(PYTHONPATH=str(worker), PYTHONHASHSEED="0", **extra)
    return env


#: Address space of a test run and its children: a mutant that allocates without end (a walk that
#: never stops) fails with MemoryError in seconds, instead of calling the kernel's OOM killer on the
#: whole machine. No test here needs a tenth of it.
MEMORY_CAP = 8 << 30


def _cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _pytest(
    worker: Path, files: list[str], select: list[str] | None, limit: float, first: bool = True, **env: str
) -> tuple[str, dict[str, object], float]:
    """Run pytest in ``worker``; return ("done"|"timeout", the plugin's record, seconds)."""
    result = worker.parent / f"{worker.name}-result.json"
    result.unlink(missing_ok=True)
    extra = dict(env, MUTATE_RESULT=str(result))
    if select is not None:
        sel = worker.parent / f"{worker.name}-select.json"
        sel.write_text(json.dumps(select))
        extra["MUTATE_SELECT"] = str(sel)
    cmd = [
        PYTHON, "-m", "pytest", *(["-x"] if first else []), "-q", "--no-header", "-p", "no:cacheprovider",
        "-p", "_mutate_plugin",
        f"--basetemp={worker.parent / (worker.name + '-tmp')}", "--timeout=60", "-o", "addopts=", *files,
    ]  # fmt: skip
    began = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=worker,
        env=_env(worker, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_cap_memory,
    )
    _LIVE.add(proc.pid)
    try:
        out, _ = proc.communicate(timeout=limit)
        state = "done"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        state = "timeout"
    finally:
        _LIVE.discard(proc.pid)
    seconds = time.monotonic() - began
    record: dict[str, object] = {"rc": proc.returncode, "output": out.decode(errors="replace")[-3000:]}
    if result.exists():
        try:
            record.update(json.loads(result.read_text()))
        except ValueError:
            pass
    return state, record, seconds


class Workers:
    """N copies of the checkout; a mutant is applied to one copy for the time of its run."""

    def __init__(self, base: Path, n: int) -> None:
        self.free: queue.Queue[Path] = queue.Queue()
        for i in range(n):
            worker = base / f"w{i}"
            _copy_checkout(worker)
            self.free.put(worker)

    def run(self, m: Mutant, select: list[str], limit: float) -> tuple[str, dict[str, object], float]:
        worker = self.free.get()
        try:
            target = worker / m.path
            original = (ROOT / m.path).read_bytes()
            pyc = target.parent / "__pycache__" / f"{target.stem}.{CACHE_TAG}.pyc"
            target.write_bytes(original[: m.start] + m.after.encode() + original[m.end :])
            pyc.unlink(missing_ok=True)
            try:
                files = sorted({t.split("::")[0] for t in select})  # collect only what runs
                return _pytest(worker, files, select, limit)
            finally:
                target.write_bytes(original)
                py_compile.compile(str(target), cfile=str(pyc), doraise=True)
        finally:
            self.free.put(worker)

    def check_children_import_the_copy(self) -> None:
        """Every process a test starts must import the mutated copy, never the checkout."""
        workers = list(self.free.queue)
        for worker in workers:
            code = "import mini_mlflow.write._buffer as m; print(m.__file__)"
            for cwd in (worker, Path(tempfile.gettempdir())):
                out = subprocess.run(
                    [PYTHON, "-c", code],
                    cwd=cwd,
                    env=_env(worker),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
                if not out.startswith(str(worker) + os.sep):
                    raise SystemExit(f"a child in {cwd} imported {out}, not the copy in {worker}")


# -- the coverage map --------------------------------------------------------------------------------


def coverage_map(base: Path, files: list[str]) -> tuple[dict[str, dict[int, set[str]]], dict[str, float]]:
    """Run the selection once under coverage (children too): {module: {line: tests}}, test durations."""
    worker = base / "map"
    _copy_checkout(worker)
    (worker / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    data_dir = base / "coverage"
    data_dir.mkdir()
    rc = base / "coveragerc"
    rc.write_text(
        "[run]\n"
        f"data_file = {data_dir}/.coverage\n"
        "parallel = true\n"
        f"include = {worker}/mini_mlflow/*\n"
        "context = ${MUTATE_CTX}\n"
        "patch = _exit\n"
    )
    state, record, seconds = _pytest(
        worker, files, None, 3600, False, COVERAGE_PROCESS_START=str(rc), MUTATE_MAP="1", MUTATE_CTX=""
    )
    failures = sorted(set(record.get("failures") or []))  # type: ignore[call-overload]
    print(f"map: {len(record['map'])} tests under coverage in {seconds:.0f} s", file=sys.stderr)  # type: ignore[arg-type]
    if failures:
        # Tests with timing can fail under coverage's tracing: they must pass without it.
        print(f"map: {failures} failed under coverage; again without it", file=sys.stderr)
        again, plain, _ = _pytest(worker, sorted({t.split("::")[0] for t in failures}), failures, 600, False)
        if again != "done" or plain.get("rc") != 0:
            print(plain.get("output"), file=sys.stderr)
            raise SystemExit("the selection does not pass on the unmutated code")
    elif state != "done" or record.get("rc") != 0:
        print(record.get("output"), file=sys.stderr)
        raise SystemExit(f"the selection does not pass on the unmutated code under coverage ({state})")
    import coverage

    cov = coverage.Coverage(config_file=str(rc))
    cov.combine(strict=True)
    data = cov.get_data()
    names: list[str] = record["map"]  # type: ignore[assignment]
    out: dict[str, dict[int, set[str]]] = {}
    for measured in data.measured_files():
        rel = os.path.relpath(measured, worker)
        by_line = data.contexts_by_lineno(measured)
        lines: dict[int, set[str]] = {}
        for line, contexts in by_line.items():
            tests = set()
            for ctx in contexts:
                label = ctx.split("|")[-1]
                if label.isdigit():
                    tests.add(names[int(label)])
            lines[line] = tests
        out[rel] = lines
    durations = {nodeid: float(d) for nodeid, d in record["durations"].items()}  # type: ignore[union-attr]
    return out, durations


# -- running -----------------------------------------------------------------------------------------


def _classify(m: Mutant, state: str, record: dict[str, object], selected: int) -> None:
    failed = record.get("failed")
    rc = record.get("rc")
    if state == "timeout":
        m.status, m.killer = "timeout", "the whole run exceeded its time limit"
    elif failed:
        m.status = "timeout" if record.get("timeout") else "killed"
        m.killer = str(failed)
        m.detail = str(record.get("output"))[-1500:]
    elif rc in (2, 3, 4):
        m.status, m.killer = "killed", f"pytest exit {rc}: the mutant breaks collection, import or pytest"
        m.detail = str(record.get("output"))[-600:]
    elif isinstance(rc, int) and rc < 0:  # the test process itself died (a crash, or killed for memory)
        m.status, m.killer = "killed", f"the test process died of signal {-rc}"
        m.detail = str(record.get("output"))[-600:]
    elif rc == 0 and record.get("passed") == selected:
        m.status = "survived"
    elif rc == 0:
        m.status = "error"  # not every selected test ran: a selection problem, not a verdict
        m.detail = f"{record.get('passed')} of {selected} tests passed; " + str(record.get("output"))[-600:]
    else:
        m.status, m.detail = "error", str(record.get("output"))[-600:]


def _limit(durations: dict[str, float], select: list[str]) -> float:
    return 90 + 3 * sum(durations.get(t, 1.0) for t in select)


def run_all(
    mutants: list[Mutant],
    cmap: dict[str, dict[int, set[str]]],
    durations: dict[str, float],
    workers: Workers,
    n: int,
    recheck: bool,
) -> None:
    every_test = sorted(durations, key=durations.__getitem__)
    lock = threading.Lock()
    done = [0]
    #: Tests that failed on a mutant and then passed alone on it: every kill they make is confirmed.
    flaky_tests: set[str] = set()
    confirmed: set[str] = set()

    def module_tests(path: str) -> set[str]:
        return set().union(*cmap.get(path, {}).values())

    sources: dict[str, str] = {}

    def tests_naming(m: Mutant) -> set[str]:
        """Tests in the files that name the constant a module-level mutant changes: a test that only
        reads a constant (``assert RUN_STATUSES == ...``) runs no line of its module, so coverage alone
        never selects it."""
        line = (ROOT / m.path).read_text().splitlines()[m.line - 1]
        target = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]*)?=", line)
        if target is None:
            return set()
        word = re.compile(rf"\b{re.escape(target.group(1))}\b")
        found = set()
        for test in every_test:
            file = test.split("::", 1)[0]
            if file not in sources:
                path = ROOT / file
                sources[file] = path.read_text() if path.is_file() else ""
            if word.search(sources[file]):
                found.add(test)
        return found

    def confirm(m: Mutant) -> None:
        nodeid = m.killer.rsplit(" (", 1)[0]
        state, record, seconds = workers.run(m, [nodeid], _limit(durations, [nodeid]))
        m.seconds += seconds
        with lock:
            confirmed.add(m.id)
        if state != "timeout" and not record.get("failed") and record.get("rc") == 0:
            # The first failure's output is kept (in --json): a test failing at random is a defect to trace.
            m.status, m.detail = "flaky", f"{nodeid} failed once on the mutant, then passed alone; {m.detail}"
            with lock:
                flaky_tests.add(nodeid)

    def one(m: Mutant) -> None:
        lines = cmap.get(m.path, {})
        where = m.uses if m.module_level else m.lines
        if m.module_level and not m.uses:
            tests = module_tests(m.path)
        else:
            tests = set().union(*(lines.get(i, set()) for i in where))
        if m.module_level:
            tests |= tests_naming(m)
        select = sorted(tests, key=lambda t: durations.get(t, 1.0))
        m.tests = len(select)
        if not select:
            m.status = "not covered"
        else:
            state, record, seconds = workers.run(m, select, _limit(durations, select))
            m.seconds = seconds
            _classify(m, state, record, len(select))
        if recheck and m.status in ("survived", "not covered"):
            # Lines run only in a child that was SIGKILLed leave no coverage record: the whole selection.
            state, record, seconds = workers.run(m, every_test, _limit(durations, every_test))
            m.seconds += seconds
            m.tests = len(every_test)
            m.rechecked = True
            _classify(m, state, record, len(every_test))
        # A kill is confirmed (its failing test alone, on the mutant again) where the run was long, many
        # tests under load, or the failing test has been seen failing at random.
        long_run = m.module_level or m.rechecked
        if m.status in KILLS and m.killer.startswith("tests/"):  # noqa: SIM102
            if long_run or m.killer.rsplit(" (", 1)[0] in flaky_tests:
                confirm(m)
        with lock:
            done[0] += 1
            print(f"[{done[0]}/{len(mutants)}] {m.status:11} {m.id} {m.op}: {m.killer}", file=sys.stderr)

    def pool(todo: list[Mutant], task: Callable[[Mutant], None]) -> None:
        jobs: queue.Queue[Mutant] = queue.Queue()
        for m in todo:
            jobs.put(m)

        def loop() -> None:
            while not _STOP.is_set():
                try:
                    m = jobs.get_nowait()
                except queue.Empty:
                    return
                task(m)

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except BaseException:
            _STOP.set()  # Ctrl-C or SIGTERM: end the test runs in flight, then stop
            for pid in list(_LIVE):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            raise

    # Long selections first, so that the workers finish together.
    pool(sorted(mutants, key=lambda m: not m.module_level), one)
    late = [
        m
        for m in mutants
        if m.status in KILLS and m.id not in confirmed and m.killer.rsplit(" (", 1)[0] in flaky_tests
    ]
    if late:
        print(f"confirming {len(late)} kills by tests seen failing at random", file=sys.stderr)
        pool(late, confirm)


# -- report ------------------------------------------------------------------------------------------

KILLS = ("killed", "timeout")


def summary(mutants: list[Mutant], modules: list[str]) -> list[tuple[str, int, int, int, int, int]]:
    rows = []
    for path in [*modules, "total"]:
        ms = [m for m in mutants if path in ("total", m.path)]
        killed = sum(m.status == "killed" for m in ms)
        timeout = sum(m.status == "timeout" for m in ms)
        survived = sum(m.status not in KILLS for m in ms)
        rows.append((path, len(ms), killed, timeout, survived, sum(m.status == "not covered" for m in ms)))
    return rows


def markdown(mutants: list[Mutant], modules: list[str], meta: dict[str, str]) -> str:
    out = [
        "# Mutation testing: the write path and the on-disk format",
        "",
        f"Produced by `{meta['command']}` on {meta['date']}, {meta['machine']}; {meta['runtime']}.",
        "The tool (`bench/mutate.py`) and why it is ours: its docstring. Each surviving mutant is",
        "explained in [docs/reliability.md](../docs/reliability.md#mutation-testing).",
        "",
        "| module | mutants | killed | killed by a timeout | survived | of which no test runs the line "
        "| killed % |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, total, killed, timeout, survived, uncovered in summary(mutants, modules):
        share = 100 * (killed + timeout) / total if total else 0.0
        name = "**total**" if path == "total" else f"`{path}`"
        out.append(f"| {name} | {total} | {killed} | {timeout} | {survived} | {uncovered} | {share:.1f} |")
    flaky = [m for m in mutants if m.status == "flaky"]
    errors = [m for m in mutants if m.status == "error"]
    out += [
        "",
        "Killed by a timeout: the mutant made a test hang (pytest-timeout, 60 s per test) or the whole",
        "run exceed three times the tests' normal time plus 90 s. A kill in a long run (a module-level",
        "mutant, which runs every test that touches its module, or a survivor re-checked against all) and",
        "every kill by a test once seen failing at random is confirmed by running that test alone on the",
        f"mutant again: {len(flaky)} did not repeat (flaky, counted as survived, the test named below).",
        f"Runs that gave no verdict (counted as survived): {len(errors)}.",
        "",
        "## Survivors",
        "",
        "| mutant | operator | original | mutated |",
        "|---|---|---|---|",
    ]
    for m in mutants:
        if m.status not in KILLS:
            note = "" if m.status == "survived" else f" ({m.status})"
            if m.status == "flaky":
                note += f" {m.detail.split(' failed once')[0]}"
            out.append(f"| `{m.id}`{note} | {m.op} | `{_cell(m.before)}` | `{_cell(m.after)}` |")
    out += ["", "## Timeouts", ""]
    out += [
        f"- `{m.id}` {m.op}: `{_cell(m.before)}` → `{_cell(m.after)}`"
        for m in mutants
        if m.status == "timeout"
    ]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _short(command: str) -> str:
    """A run's command for the report: an ``--only`` list by its length, files by their names."""
    words, out = command.split(), []
    while words:
        word = words.pop(0)
        if word == "--only":
            ids = []
            while words and not words[0].startswith("--"):
                ids.append(words.pop(0))
            out.append(f"--only <{len(ids)} mutants>")
        elif word in ("--json", "--markdown") and words:
            out.append(f"{word} {Path(words.pop(0)).name}")
        else:
            out.append(word.replace("mini_mlflow/", ""))
    return " ".join(out)


def merge(reports: list[str], modules: list[str], out: str | None) -> int:
    """One report from several runs' JSON files, over the mutants of today's code."""
    mutants = [m for path in modules for m in mutants_of(path)]
    by_id = {m.id: m for m in mutants}
    runs, stale = [], 0
    for report in reports:
        data = json.loads(Path(report).read_text())
        runs.append(data["meta"])
        for old in data["mutants"]:
            m = by_id.get(old["id"])
            if m is None or (m.before, m.after) != (old["before"], old["after"]):
                stale += 1  # the code moved since that run: its verdict is not today's
                continue
            for name in ("status", "killer", "tests", "seconds", "rechecked", "detail"):
                setattr(m, name, old[name])
    if stale:
        print(f"{stale} verdicts left out: their mutants are not in today's code", file=sys.stderr)
    meta = {
        "command": "bench/mutate.py --merge " + " ".join(Path(r).name for r in reports),
        "date": max(r["date"] for r in runs),
        "machine": runs[-1]["machine"],
        "runtime": " + ".join(r["runtime"] for r in runs)
        + f" in {len(runs)} runs: "
        + "; ".join(f"`{_short(r['command'])}`" for r in runs),
    }
    for path, total, killed, timeout, survived, uncovered in summary(mutants, modules):
        print(f"{path:40} {total:5} killed {killed:4} timeout {timeout:3} survived {survived:4} "
              f"(not covered {uncovered})")  # fmt: skip
    if out:
        Path(out).write_text(markdown(mutants, modules, meta))
    return 0


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mini_mlflow"]["mutate"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--module", action="append", help="only these modules (default: the configured ones)")
    parser.add_argument("--only", nargs="*", help="only these mutant ids")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--recheck", action="store_true", help="re-run survivors against every test")
    parser.add_argument("--json", default=str(ROOT / "bench" / "mutation.json"))
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join earlier runs' reports, run nothing")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.module or config["modules"], args.markdown)

    modules: list[str] = args.module or config["modules"]
    files: list[str] = config["tests"]
    mutants = [m for path in modules for m in mutants_of(path)]
    if args.only:
        mutants = [m for m in mutants if m.id in set(args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.id}\t{m.op}\t{m.before!r} -> {m.after!r}")
        print(f"{len(mutants)} mutants", file=sys.stderr)
        return 0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="mini-mlflow-mutate-"))
    try:
        cmap, durations = coverage_map(base, files)
        workers = Workers(base, args.workers)
        workers.check_children_import_the_copy()
        run_all(mutants, cmap, durations, workers, args.workers, args.recheck)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    minutes = (time.monotonic() - began) / 60
    for path, total, killed, timeout, survived, uncovered in summary(mutants, modules):
        print(f"{path:40} {total:5} killed {killed:4} timeout {timeout:3} survived {survived:4} "
              f"(not covered {uncovered})")  # fmt: skip
    meta = {
        "command": "make mutate"
        if not (args.module or args.only)
        else " ".join(["bench/mutate.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{os.uname().sysname} {os.uname().machine}, {os.cpu_count()} cores, "
        f"{args.workers} workers",
        "runtime": f"{minutes:.0f} minutes",
    }
    # Each kill keeps its failing test's output (in --json): a kill that looks unrelated to its mutant
    # is how a test failing at random shows itself (one did: a race test that failed 1 run in 9).
    Path(args.json).write_text(json.dumps({"meta": meta, "mutants": [asdict(m) for m in mutants]}, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown(mutants, modules, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
