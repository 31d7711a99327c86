"""Hostile CLI arguments: every command and option with `..`, absolute paths, NUL, control characters,
rich markup, ANSI escapes, huge strings, odd numbers and bytes that are not UTF-8.

Every invocation must end with exit code 0, 1 (not found, broken, failed) or 2 (usage), a failure must
say what was wrong on one ``error:`` line (no traceback, no raw escape sequence reaching the terminal),
a failed command must leave the store as it was, and nothing may be written outside the store.
Mostly through click's runner (fast, hypothesis-driven); a few cases in a real ``python -m mini_mlflow``
process, where the operating system's own rules for arguments (bytes, no NUL) apply.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.cli._main import cli
from mini_mlflow.read._search import search_runs
from mini_mlflow.store import _experiments

from conftest import ROOT

pytestmark = pytest.mark.timeout(180)

HOSTILE = [
    "..",
    "../..",
    "../../../../etc/passwd",
    "/etc/passwd",
    "/",
    "a/../../b",
    "a\x00b",
    "\x00",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07",
    "[red]markup[/red]",
    "[link=file:///etc/passwd]x[/link]",
    "\r\nforged line",
    "\u202eevil",
    "x" * 100_000,
    "-1",
    "0",
    "-99999999999999999999",
    "99999999999999999999999",
    "1e400",
    "nan",
    "inf",
    "",
    " ",
    "*",
    "'",
    '"',
    "%s%n%x",
    "{0}",
    "C:\\Windows",
    "\\\\server\\share",
    "\udcff\udcfe",  # bytes that are not UTF-8, as Python hands them over from argv
    "💥",
    "--help",
    "-",
]

hostile = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=30),
    st.text(st.sampled_from("./\\\x00\x1b[]:;'\"*?-~0123456789abcdef\udcff \t\n"), max_size=20),
)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with two experiments, three runs (one deleted) and artifacts, built once per module."""

    root = tmp_path_factory.mktemp("template") / "mlruns"
    mm.set_tracking_dir(root)
    try:
        for name in ("alpha", "beta"):
            with mm.start_run(run_name=name):
                mm.log_params({"lr": 0.1, "name": name})
                for step in range(5):
                    mm.log_metric("acc", step / 10, step=step)
                mm.log_text("hi", "notes/a.txt")
        exp = _experiments.get_or_create_experiment(str(root), "second")
        with mm.start_run(experiment_id=exp, run_name="gone") as run:
            mm.log_metric("acc", 1.0)
    finally:
        mm.set_tracking_dir(None)
    result = CliRunner().invoke(cli, ["--root", str(root), "delete", run.run_id])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def work(store: Path, tmp_path: Path, store_template: Path) -> Iterator[Path]:
    """A fresh copy of the template store at ``tmp_path/mlruns`` (the fluent API's store too)."""
    shutil.copytree(store_template, store, symlinks=True)
    yield tmp_path


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with a hash of its content (derived ``.index`` caches left out)."""
    out = {}
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".index"]
        for name in dirs + files:
            path = Path(current, name)
            rel = str(path.relative_to(folder))
            if path.is_symlink() or path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_cli(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(root), *args], env={"COLUMNS": "120"})


def check(result: Result, args: tuple[str, ...]) -> None:
    """The contract every invocation keeps, whatever it was given."""
    shown = [a[:40] for a in args]
    assert result.exit_code in (0, 1, 2), (shown, result.exit_code, result.output[-500:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{shown}: {type(result.exception).__name__}: {result.exception}")
    out = result.output
    assert "Traceback" not in out, (shown, out[-2000:])
    assert "\x1b" not in out and "\x07" not in out, (shown, out[-500:])  # no escape reaches a terminal
    assert "\udcff" not in out  # undecodable bytes are shown escaped, never crash the output
    if result.exit_code != 0:
        errors = [line for line in out.splitlines() if line.lower().startswith("error")]
        assert len(errors) == 1, (shown, out[-1000:])
        # One line of at most 1,000 characters after its prefix: a 100,000-character argument is
        # named by its start and its length, never echoed whole.
        assert len(errors[0].split(":", 1)[1]) <= 1000, (shown, len(errors[0]), errors[0][:200])


COMMANDS: list[tuple[str, ...]] = [
    ("show", "{x}"),
    ("show", "{x}", "--json"),
    ("show", "--root", "{x}", "{ref}"),
    ("show", "{ref}", "-m", "{x}"),
    ("tail", "{x}"),
    ("tail", "{ref}", "-n", "{x}"),
    ("tail", "{ref}", "--interval", "{x}"),
    ("tail", "{ref}", "-m", "{x}"),
    ("compare", "{x}", "{ref}"),
    ("compare", "{ref}", "{x}", "--json"),
    ("delete", "{x}"),
    ("restore", "{x}"),
    ("gc", "-e", "{x}", "--dry-run"),
    ("gc", "-e", "{x}", "--yes"),
    ("ls", "-e", "{x}"),
    ("ls", "-e", "{x}", "--json"),
    ("ls", "--filter", "{x}"),
    ("ls", "--filter", "params.name = '{x}'"),
    ("ls", "--filter", "metrics.acc > {x}"),
    ("ls", "--order-by", "{x}"),
    ("ls", "--order-by", "metrics.{x} DESC"),
    ("ls", "--limit", "{x}"),
    ("ls", "--root", "{x}"),
    ("experiments", "--root", "{x}"),
    ("import", "--format", "mlflow", "{x}"),
    ("sync", "{x}", "--dry-run", "--to", "http://127.0.0.1:9"),
    ("sync", "-e", "{x}", "--dry-run", "--to", "http://127.0.0.1:9"),
    ("sync", "--all", "--dry-run", "--to", "{x}"),
    ("sync", "--all", "--dry-run", "--to", "http://127.0.0.1:9", "--timeout", "{x}"),
    ("sync", "--all", "--dry-run", "--to", "http://127.0.0.1:9", "--retries", "{x}"),
    ("export", "--format", "{x}", "out"),
    ("export", "--format", "mlflow", "out", "{x}"),
    ("export", "--format", "mlflow", "out", "-e", "{x}"),
    ("run", "-s", "{x}", "--", "true"),
    ("run", "-n", "{x}", "-p", "k={x}", "--", "true"),
    ("run", "-e", "{x}", "--", "true"),
]


def _fill(template: tuple[str, ...], value: str, ref: str) -> tuple[str, ...]:
    return tuple(part.replace("{x}", value).replace("{ref}", ref) for part in template)


@pytest.mark.parametrize("template", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_survives_every_listed_hostile_value(work: Path, template: tuple[str, ...]) -> None:
    store = work / "mlruns"
    ref = search_runs(["0"], filter_string="params.name = 'alpha'")[0].run_id[:8]
    outside = snapshot(work)
    for value in HOSTILE:
        args = _fill(template, value, ref)
        before = snapshot(store)
        result = run_cli(store, *args)
        check(result, args)
        if result.exit_code != 0:
            assert snapshot(store) == before, [a[:40] for a in args]
        # Nothing appears or changes outside the store (an export writes only where it is told: out/).
        after = {k: v for k, v in snapshot(work).items() if not k.startswith(("mlruns", "out"))}
        assert after == {k: v for k, v in outside.items() if not k.startswith(("mlruns", "out"))}, args


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(COMMANDS), value=hostile)
def test_hypothesis_hostile_arguments(work: Path, template: tuple[str, ...], value: str) -> None:
    store = work / "mlruns"
    args = _fill(template, value, "0")
    outside = {k: v for k, v in snapshot(work).items() if not k.startswith(("mlruns", "out"))}
    before = snapshot(store)
    result = run_cli(store, *args)
    check(result, args)
    if result.exit_code != 0:
        assert snapshot(store) == before
    assert {k: v for k, v in snapshot(work).items() if not k.startswith(("mlruns", "out"))} == outside


def test_names_shown_literally_and_refs_never_leave_the_store(work: Path) -> None:
    """A run whose name and params are hostile is listed with them escaped; a ref with `..` or an
    absolute path never names a folder outside (a run folder planted outside is never found)."""
    store = work / "mlruns"
    with mm.start_run(run_name="\x1b[31m[red]evil[/red]\x07") as run:
        mm.log_param("p", "[bold]x[/bold]\x1b]0;t\x07")
    outside = work / "abcdef0123"
    (outside / "metrics").mkdir(parents=True)
    for args in (
        ("ls",),
        ("show", run.run_id),
        ("compare", run.run_id, run.run_id[:6]),
        ("tail", run.run_id),
    ):
        result = run_cli(store, *args)
        check(result, args)
        assert result.exit_code == 0, result.output
    shown = run_cli(store, "show", run.run_id).output
    assert "[red]evil[/red]" in shown and "\\x1b[31m" in shown and "[bold]x[/bold]" in shown
    for ref in ("../../abcdef0123", str(outside), "../abcdef0123", "0/../../abcdef0123"):
        for command in ("show", "tail", "delete", "restore"):
            result = run_cli(store, command, ref)
            check(result, (command, ref))
            assert result.exit_code == 1 and "invalid run id" in result.output, result.output
    assert not (outside / "meta.yaml").exists()


def test_export_destinations_stay_where_they_are_told(work: Path) -> None:
    """``..`` and absolute destinations are the user's choice: written exactly there, nowhere else;
    a NUL or an undecodable name is refused or handled without a traceback."""
    store = work / "mlruns"
    (work / "cwd").mkdir()
    os.chdir(work / "cwd")
    for dest, where in (
        ("..", work),
        ("../out-up", work / "out-up"),
        (str(work / "out-abs"), work / "out-abs"),
    ):
        result = run_cli(store, "export", "--format", "mlflow", dest, "--all")
        check(result, ("export", dest))
        assert result.exit_code == 0, result.output
        assert (where / "0" / "meta.yaml").is_file() and (where / ".trash").is_dir()
    for dest in ("a\x00b", "\udcff\udcfe", "\x1b[31mx", "[red]x"):
        result = run_cli(store, "export", "--format", "mlflow", dest, "--all")
        check(result, ("export", dest))
    assert not (work / "a").exists()


REAL = [
    (["show", b"\xff\xfe".decode("utf-8", "surrogateescape")], 1, "invalid run id"),
    (["ls", "--root", b"/nonexistent/\xff".decode("utf-8", "surrogateescape")], 2, "no store at"),
    (["ls", "--filter", "\x1b[31m" + "x" * 100_000], 2, "filter"),
    (["ls", "--limit", "-5"], 2, "--limit"),
    (["ls", "--limit", "9" * 5000], 2, "--limit"),
    (["tail", "0", "-n", "nan"], 2, "--lines"),
    (["show", "../" * 1000 + "etc"], 1, "invalid run id"),
    (["delete", "/etc/passwd"], 1, "invalid run id"),
    (
        ["import", "--format", "mlflow", b"/nonexistent/\xff".decode("utf-8", "surrogateescape")],
        1,
        "not a folder",
    ),
]


@pytest.mark.parametrize(("args", "code", "expected"), REAL, ids=[str(i) for i in range(len(REAL))])
def test_real_process_with_os_level_arguments(work: Path, args: list[str], code: int, expected: str) -> None:
    store = work / "mlruns"
    before = snapshot(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env.update(PYTHONPATH=str(ROOT), MINI_MLFLOW_TRACKING_DIR=str(store))
    argv = [os.fsencode(a) for a in [sys.executable, "-m", "mini_mlflow", *args]]
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, timeout=60)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and expected in err, err[-2000:]
    assert b"\x1b" not in proc.stdout + proc.stderr
    assert len([line for line in err.splitlines() if line.lower().startswith("error")]) == 1, err[-2000:]
    assert snapshot(work) == before
