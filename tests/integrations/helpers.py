"""What the integration tests share: importing a framework (skipped, or failed where required) and
reading runs back through the public reader."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import mini_mlflow as mm

#: The checkout, put on a child's PYTHONPATH.
ROOT = Path(__file__).resolve().parents[2]

#: Set by `make test` and `.ci/run`: there a framework that is missing is a failure, never a skip.
REQUIRED = os.environ.get("INTEGRATION_TESTS_REQUIRED", "")


def need(module: str, tier: str = "default") -> ModuleType:
    """Import a framework; skip without it, unless this tier's frameworks are required here."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if tier in REQUIRED.split(","):
            pytest.fail(f"{module} is required in the {tier} integration tier but cannot be imported: {exc}")
        hint = "make test-torch" if tier == "torch" else "pip install -e '.[integrations]'"
        pytest.skip(f"{module} is not installed ({hint})", allow_module_level=True)


def runs_of(root: Path, experiment_id: str) -> list[dict[str, Any]]:
    """Every run of an experiment as ``get_run`` gives it, oldest first."""
    store = mm.Store(root)
    runs = [store.get_run(run_id) for run_id in store.list_runs(experiment_id)]
    return sorted(runs, key=lambda r: r["metadata"]["start_time"])


def history(root: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every point of a metric, in logged order."""
    found = mm.Store(root).get_metric_history(run_id, key)
    return list(zip(found.steps, found.values))


def experiment_ids(root: Path) -> dict[str, str]:
    """Experiment name → id."""
    return {e["name"]: e["experiment_id"] for e in mm.Store(root).list_experiments()}


def run_python(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in ``cwd`` with this checkout importable, no ``MINI_MLFLOW_*`` setting of
    this process, and ``env`` on top; fail the test (with the ends of its output) unless it exits 0."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    full.update(PYTHONPATH=str(ROOT), **env)
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done
