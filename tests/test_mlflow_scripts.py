"""MLflow-style tracking scripts (tests/mlflow_scripts/) run twice: under real MLflow on SQLite, and with
``import mini_mlflow as mlflow``. What each logged must be the same, read back through each library's own
``MlflowClient``: experiments, run names, statuses, lifecycle stages, params, user tags, parents, every
metric point (step, value) and every artifact path; and what the script printed must be equal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

SCRIPTS = sorted((Path(__file__).parent / "mlflow_scripts").glob("*.py"))
pytest.importorskip("mlflow")


def _as_mini(source: str) -> str:
    """The same script on mini_mlflow: only the imports change."""
    source = re.sub(r"^import mlflow(\s)", r"import mini_mlflow as mlflow\1", source, flags=re.M)
    return re.sub(r"^from mlflow(\.entities)? import", r"from mini_mlflow\1 import", source, flags=re.M)


def _run(script: Path, where: Path, mini: bool) -> str:
    where.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINI_MLFLOW_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    if mini:
        path = where / script.name
        path.write_text(_as_mini(script.read_text()))
        env["MINI_MLFLOW_TRACKING_DIR"] = str(where / "mlruns")
    else:
        path = script
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{where}/mlflow.db"
    done = subprocess.run(
        [sys.executable, str(path)], cwd=where, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{'mini' if mini else 'mlflow'} {script.name}:\n{done.stderr[-3000:]}"
    return done.stdout


def _artifacts(client: Any, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for info in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return found


def summary(client: Any, view_all: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Everything the scripts logged, per (experiment name, run name), as each client reads it back."""
    out = {}
    for exp in client.search_experiments(view_type=view_all):
        runs = client.search_runs([exp.experiment_id], run_view_type=view_all, max_results=1000)
        names = {r.info.run_id: r.info.run_name for r in runs}
        for r in runs:
            tags = r.data.tags
            out[(exp.name, r.info.run_name)] = {
                "status": r.info.status,
                "lifecycle_stage": r.info.lifecycle_stage,
                "params": dict(r.data.params),
                "tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")},
                "parent": names.get(tags.get("mlflow.parentRunId")),
                "note": tags.get("mlflow.note.content"),
                "experiment_tags": {k: v for k, v in exp.tags.items() if not k.startswith("mlflow.")},
                "metrics": {
                    key: sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, key))
                    for key in r.data.metrics
                },
                "artifacts": sorted(_artifacts(client, r.info.run_id)),
            }
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_the_script_logs_the_same_under_mlflow_and_mini_mlflow(script: Path, tmp_path: Path) -> None:
    import mlflow

    import mini_mlflow

    real_out = _run(script, tmp_path / "mlflow", mini=False)
    mini_out = _run(script, tmp_path / "mini", mini=True)
    assert mini_out == real_out
    real = summary(
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow/mlflow.db"),
        mlflow.entities.ViewType.ALL,
    )
    ours = summary(
        mini_mlflow.MlflowClient(tracking_uri=f"mini-mlflow:{tmp_path}/mini/mlruns"),
        mini_mlflow.entities.ViewType.ALL,
    )
    assert real, "the script logged nothing under MLflow: the comparison would prove nothing"
    assert sorted(ours) == sorted(real)
    for key in real:
        assert ours[key] == real[key], key


def test_the_import_rewrite_changes_only_imports() -> None:
    source = "import mlflow\nfrom mlflow import MlflowClient\nfrom mlflow.entities import Metric\nx = 'import mlflow'\n"
    assert _as_mini(source) == (
        "import mini_mlflow as mlflow\nfrom mini_mlflow import MlflowClient\n"
        "from mini_mlflow.entities import Metric\nx = 'import mlflow'\n"
    )
