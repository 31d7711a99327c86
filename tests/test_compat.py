"""Code written against the original Mini MLflow README keeps working unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

import mini_mlflow
from mini_mlflow import ExperimentTracker, Run, active_run, end_run, log_metric, log_param, start_run


def test_mlflow_like_api(store: Path) -> None:
    run = start_run(run_name="my_experiment")
    assert active_run() is run
    log_param("learning_rate", 0.01)
    log_param("batch_size", 32)
    log_metric("accuracy", 0.95)
    log_metric("loss", 0.05)
    end_run()
    assert active_run() is None
    data = mini_mlflow.get_run(run.run_id)
    assert data["params"] == {"learning_rate": 0.01, "batch_size": 32}
    assert data["metrics"] == {"accuracy": 0.95, "loss": 0.05}
    assert data["metadata"]["run_name"] == "my_experiment"
    assert data["metadata"]["status"] == "FINISHED"


def test_start_run_signature_defaults(store: Path) -> None:
    run = start_run(run_name=None, experiment_id=0, run_id=None)
    assert run.experiment_id == 0
    end_run()


def test_context_manager_api_in_default_mlruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINI_MLFLOW_TRACKING_DIR", raising=False)
    with ExperimentTracker(run_name="my_experiment") as run:
        run.log_param("learning_rate", 0.01)
        run.log_metric("accuracy", 0.95)
    assert run.status == "FINISHED"
    assert (tmp_path / "mlruns" / "0" / run.run_id / "params" / "learning_rate.json").exists()
    assert ExperimentTracker().runs_dir == "mlruns"


def test_multiple_runs_and_retrieval(store: Path) -> None:
    tracker = ExperimentTracker(experiment_id=0, runs_dir=store)
    assert tracker.runs_dir == store
    for lr in [0.001, 0.01, 0.1]:
        with tracker as run:
            run.log_param("learning_rate", lr)
            run.log_metric("final_accuracy", 1 - lr)
    runs = tracker.list_runs()
    assert len(runs) == 3
    run_data = tracker.get_run(runs[0])
    assert run_data["params"] == {"learning_rate": 0.1}
    assert run_data["metrics"] == {"final_accuracy": 0.9}
    assert set(run_data) == {"metadata", "params", "tags", "metrics"}


def test_tracker_methods(store: Path) -> None:
    tracker = ExperimentTracker(run_name="base", experiment_id=3, runs_dir=str(store))
    run = tracker.start_run()
    assert tracker.active_run() is run and run.name == "base" and run.experiment_id == 3
    with pytest.raises(RuntimeError, match="already an active run"):
        tracker.start_run()
    tracker.end_run()
    assert tracker.active_run() is None
    with pytest.raises(RuntimeError, match="No active run"):
        tracker.end_run()
    other = tracker.start_run(run_name="other", experiment_id=4)
    assert other.experiment_id == 4
    tracker.end_run("FAILED")
    assert other.status == "FAILED"
    assert tracker.list_runs(4) == [other.run_id]
    assert tracker.get_run(other.run_id, experiment_id=4)["metadata"]["status"] == "FAILED"


def test_run_class(store: Path) -> None:
    run = Run(name="my_run", runs_dir=store)
    assert (run.run_id, run.experiment_id, run.name, run.status) == (run.run_id, 0, "my_run", "RUNNING")
    assert run.end_time is None and run.start_time
    run.log_param("learning_rate", 0.01)
    run.log_metric("accuracy", 0.95)
    run.end()
    assert run.status == "FINISHED" and run.end_time
    failed = Run(runs_dir=store)
    failed.end(status="FAILED")
    assert failed.status == "FAILED"


def test_caller_experiment_id_creates_its_folder(store: Path) -> None:
    run = Run(experiment_id=5, runs_dir=store)
    assert run.experiment_id == 5
    assert (store / "5" / "meta.yaml").exists()
    assert (store / "5" / run.run_id / "meta.yaml").exists()
    run.end()
    assert Run(experiment_id="5", runs_dir=store).experiment_id == "5"
    for bad in [-1, "abc", "../x", 1.5, True]:
        with pytest.raises(ValueError, match="experiment id"):
            Run(experiment_id=bad, runs_dir=store)  # type: ignore[arg-type]
