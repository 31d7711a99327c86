"""A run resumed from a checkpoint leaves MLflow as it reads locally: the points its resume superseded
(``resumes.json``) are neither synced nor exported, and its summaries (`show`, the UI's run page) count
without them. Checked through MLflow's own client against a real server and a FileStore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mini_mlflow as mm
from mini_mlflow.cli._main import cli
from mini_mlflow.integrations._resume import record_resume
from mini_mlflow.read._resumes import RESUMES_FILE
from mini_mlflow.ui._answers import run_detail

from .sync_helpers import _experiment_id, remote_run

pytestmark = pytest.mark.timeout(120)

#: What the run keeps: the first attempt's steps 0-4, then the resumed attempt's 5-7 (it stopped early).
KEPT = [(0, 10.0), (1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 25.0), (6, 26.0), (7, 27.0)]


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def first_attempt(root: Path, experiment: str) -> mm.Run:
    """Steps 0-9 logged (loss = 10 - step), as a training interrupted after step 9 leaves them."""
    run = mm.Run(experiment_id=_experiment_id(root, experiment), name="resumed", runs_dir=root)
    for step in range(10):
        run.log_metric("loss", 10.0 - step, step=step)
    run.log_metric("lr", 0.1, step=0)  # a metric the resume covers without superseding anything
    return run


def resume_and_finish(run: mm.Run) -> None:
    """Training resumes from the checkpoint of step 4 and logs steps 5-7 again, then ends."""
    record_resume(run, 4)
    for step in range(5, 8):
        run.log_metric("loss", 20.0 + step, step=step)
    run.end()


def resumed_run(root: Path, experiment: str) -> mm.Run:
    run = first_attempt(root, experiment)
    resume_and_finish(run)
    return run


def test_the_resume_record_gives_each_file_its_size(tmp_path: Path) -> None:
    run = resumed_run(tmp_path / "mlruns", "r")
    (record,) = json.loads((Path(run.run_dir) / RESUMES_FILE).read_text())
    lines = (Path(run.run_dir) / "metrics" / "loss.jsonl").read_bytes().split(b"\n")
    assert record["points"] == {"loss": 10, "lr": 1}
    assert record["bytes"]["loss"] == sum(len(line) + 1 for line in lines[:10])


def test_sync_sends_no_superseded_point(tmp_path: Path, mlflow_server: Any, mlflow_client: Any) -> None:
    root = tmp_path / "mlruns"
    run = resumed_run(root, "resumed-sync")
    result = run_cli("--root", str(root), "sync", "--all", "--to", mlflow_server.url, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["points"] == 9 and summary["run_reports"][0]["superseded"] == 5
    remote = remote_run(mlflow_client, "resumed-sync", run.run_id)
    history = mlflow_client.get_metric_history(remote.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == KEPT
    assert remote.data.metrics["loss"] == 27.0
    again = json.loads(
        run_cli("--root", str(root), "sync", "--all", "--to", mlflow_server.url, "--json").output
    )
    assert again["points"] == 0  # the passed-over lines are behind the cursor: nothing pending


def test_a_sync_from_the_middle_of_the_file_passes_over_what_the_resume_covers(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    """Steps 0-9 are synced before the training is resumed: they stay on the server (MLflow's REST API
    deletes no metric point); the next pass sends only the new points, read from its cursor."""
    root = tmp_path / "mlruns"
    run = first_attempt(root, "resumed-mid")
    run.flush()
    url = mlflow_server.url
    assert (
        json.loads(run_cli("--root", str(root), "sync", "--all", "--to", url, "--json").output)["points"]
        == 11
    )
    resume_and_finish(run)
    second = json.loads(run_cli("--root", str(root), "sync", "--all", "--to", url, "--json").output)
    assert second["points"] == 3 and second["errors"] == []
    remote = remote_run(mlflow_client, "resumed-mid", run.run_id)
    history = mlflow_client.get_metric_history(remote.info.run_id, "loss")
    assert len(history) == 13
    # MLflow's latest value is the highest step's: the first attempt's step 9, already on the server.
    assert remote.data.metrics["loss"] == 1.0


def test_export_leaves_superseded_points_out_for_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    root, dest = tmp_path / "mlruns", tmp_path / "exported"
    run = resumed_run(root, "resumed-export")
    result = run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all")
    assert result.exit_code == 0, result.output
    assert "5 points superseded by a resume left out" in result.output
    client = mlflow.MlflowClient(tracking_uri=dest.resolve().as_uri())
    assert sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, "loss")) == KEPT
    assert len(client.get_metric_history(run.run_id, "lr")) == 1


def test_show_and_the_run_page_summarize_without_superseded_points(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    run = resumed_run(root, "resumed-show")
    shown = json.loads(run_cli("--root", str(root), "show", run.run_id, "--json").output)["metrics"]["loss"]
    expected = {"count": 8, "min": 6.0, "max": 27.0, "last": 27.0, "last_step": 7}
    assert {k: shown[k] for k in expected} == expected
    page = run_detail(str(root), run.run_id)["summary"]["loss"]
    assert {k: page[k] for k in expected} == expected
    # The files still hold every point.
    assert len(mm.Store(root).get_metric_history(run.run_id, "loss", include_superseded=True)) == 13


def test_a_record_without_byte_sizes_is_read_by_counting_points(tmp_path: Path) -> None:
    """Records written before ``bytes`` existed: the limit is where the counted points end."""
    from mini_mlflow.read._resumes import load_resumes, superseding

    run = resumed_run(tmp_path / "mlruns", "r")
    path = str(Path(run.run_dir) / "metrics" / "loss.jsonl")
    (record,) = load_resumes(run.run_dir)
    old_style = {"step": record["step"], "points": record["points"]}
    assert (
        superseding([old_style], "loss", path)
        == superseding([record], "loss", path)
        == [(record["bytes"]["loss"], 4)]
    )
