"""One CLI convention: every command takes ``--root``, answers ``--help``, and fails a bad call with exit 2
and one ``error:`` line; sync works from a plain install and says so clearly when httpx is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import click
import pytest

import mini_mlflow as mm
from mini_mlflow.cli._main import cli
from mini_mlflow.read._search import search_runs

from conftest import ROOT

COMMANDS = cli.list_commands(click.Context(cli))


def mini(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``mini-mlflow ARGS`` in a real process, with no MINI_MLFLOW_* variable from the test's environment."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    full.update({"PYTHONPATH": str(ROOT), "COLUMNS": "120"}, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "mini_mlflow", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lower().startswith("error")]


def test_the_command_list_is_the_one_this_test_knows() -> None:
    # A new command joins the walk below by itself; this list only makes its arrival visible.
    assert COMMANDS == [
        "compare",
        "delete",
        "doctor",
        "experiments",
        "export",
        "gc",
        "import",
        "ls",
        "restore",
        "run",
        "show",
        "sync",
        "tail",
        "ui",
    ]


def test_a_command_loads_its_own_module_and_not_the_others(tmp_path: Path) -> None:
    # Commands are imported when they run: `ls` must not pay for sync, run or the UI at every start.
    with mm.Run(runs_dir=tmp_path / "mlruns", name="listed") as run:
        run.log_metric("m", 1.0)
    code = (
        "import json, sys\n"
        "from mini_mlflow.cli._main import cli\n"
        "cli.main(['--root', sys.argv[1], 'ls'], standalone_mode=False)\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('mini_mlflow.cli.')]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="120")
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "mlruns")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    *table, loaded = done.stdout.strip().splitlines()
    assert any("listed" in line for line in table)  # the run was listed
    modules = set(json.loads(loaded))
    assert "mini_mlflow.cli._read_cmds" in modules
    assert not modules & {
        "mini_mlflow.cli._sync_cmds", "mini_mlflow.cli._run_cmds", "mini_mlflow.cli._ui_cmd",
        "mini_mlflow.cli._show_cmds", "mini_mlflow.cli._lifecycle_cmds", "mini_mlflow.cli._doctor",
    }  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_root_and_answers_help_and_a_bad_call(command: str, tmp_path: Path) -> None:
    found = cli.get_command(click.Context(cli), command)
    assert found is not None
    options = {opt for param in found.params for opt in getattr(param, "opts", [])}
    assert "--root" in options
    shown = mini(command, "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"Usage: python -m mini_mlflow {command}") and "--root" in shown.stdout
    bad = mini(command, "--no-such-option", cwd=tmp_path)
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert "Traceback" not in bad.stdout + bad.stderr
    lines = error_lines(bad.stderr)
    assert len(lines) == 1 and "'--no-such-option'" in lines[0], bad.stderr  # names the bad thing


def test_root_after_the_command_name_is_used_by_every_command_that_had_none(tmp_path: Path) -> None:
    store = tmp_path / "runs"
    with mm.Run(runs_dir=store, name="trained") as run:
        run.log_metric("acc", 0.9)
    # export, then import into another store, each with --root after the command (as a new user types)
    done = mini("export", "--root", "runs", "--format", "mlflow", "out", "--all", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "0" / run.run_id / "metrics" / "acc").is_file()
    done = mini("import", "--root", "copy", "--format", "mlflow", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert mm.Store(tmp_path / "copy").get_run(run.run_id)["metrics"] == {"acc": 0.9}
    done = mini("doctor", "--root", "runs", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["store"]["root"] == str(store) and report["store"]["runs"] == 1
    assert next(r for r in report["settings"] if r["setting"] == "tracking_dir")["source"] == "argument"
    done = mini(
        "sync", "--root", "runs", "--all", "--to", "http://127.0.0.1:9", "--dry-run", "--json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert [r["run_id"] for r in json.loads(done.stdout)["run_reports"]] == [run.run_id]
    (tmp_path / "job.py").write_text("print('hi')\n")
    done = mini("run", "--root", "runs", "-n", "wrapped", "--", "job.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {r.run_name for r in search_runs(root=store)} == {"trained", "wrapped"}
    assert not (tmp_path / "mlruns").exists()  # none of them fell back to the default store


def test_httpx_is_a_core_dependency() -> None:
    plain = [r for r in requires("mini-mlflow") or [] if "extra ==" not in r]
    assert any(r.replace(" ", "").startswith("httpx") for r in plain), plain


def test_sync_without_httpx_is_one_clear_line(tmp_path: Path) -> None:
    """A broken install (httpx missing) gets one line saying what to install, never a traceback."""
    with mm.Run(runs_dir=tmp_path / "mlruns") as run:
        run.log_metric("acc", 1.0)
    blocker = (
        "import sys\n"
        "sys.modules['httpx'] = None  # `import httpx` now raises ImportError, as where it is not installed\n"
        "from mini_mlflow.cli import main\n"
        "sys.argv = ['mini-mlflow', 'sync', '--all', '--to', 'http://127.0.0.1:9']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", blocker], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert error_lines(done.stderr) == [
        "error: syncing needs the httpx package, which is not installed: pip install httpx"
    ], done.stderr
