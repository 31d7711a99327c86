"""Shared fixtures: every test gets its own store in tmp_path and leaves no run open."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow.write import _registry

ROOT = Path(__file__).resolve().parent.parent

# A suite started in the background of a non-interactive shell (`make test &`, some CI runners) inherits
# SIGINT ignored, and an ignored signal stays ignored in every child: the Ctrl-C tests would then send
# Ctrl-C to programs that cannot receive it. Children start as under a terminal instead (a handler in
# this process becomes the default disposition in a child).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh store root used by the fluent API; open runs are ended after the test."""
    root = tmp_path / "mlruns"
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("MINI_MLFLOW_"):
            monkeypatch.delenv(name)
    mm.set_tracking_dir(root)
    yield root
    for run in _registry.open_runs():
        try:
            run.end("KILLED")
        except Exception:
            pass
    mm.set_tracking_dir(None)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def only_run_dir(root: Path, experiment_id: str = "0") -> Path:
    runs = [p for p in (root / experiment_id).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def python_child(
    code: str, cwd: Path, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    """Start a Python child running ``code`` (dedented) with this checkout importable."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the promises this run did not check: tests skipped for want of root, strace or disk
    (docs/reliability.md, "Not verified without root"), so a green run is never mistaken for all."""
    skipped = terminalreporter.stats.get("skipped", [])
    found = []
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        found.append(f"{report.nodeid}: {reason.removeprefix('Skipped: ')}")
    if found:
        terminalreporter.section("promises not verified in this run (see docs/reliability.md)")
        for line in sorted(set(found)):
            terminalreporter.write_line(line)
