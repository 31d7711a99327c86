"""Kedro: a real project run under SequentialRunner, ThreadRunner, async saves and ParallelRunner (forked and
spawned workers); each dataset round-trips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .helpers import experiment_ids, history, need, runs_of
from conftest import ROOT

need("kedro")
pd = need("pandas")
from kedro.io.core import Version  # noqa: E402

from mini_mlflow import Run  # noqa: E402
from mini_mlflow.integrations.kedro import (  # noqa: E402
    MiniMlflowArtifactDataset,
    MiniMlflowDataFrameDataset,
    MiniMlflowMetricsDataset,
    MiniMlflowModelDataset,
    MiniMlflowResultDataset,
)

PIPELINE = """
import threading
from kedro.pipeline import Pipeline, node
import pandas as pd


def make_table(n):
    return pd.DataFrame({"x": list(range(n)), "y": [2.0 * i for i in range(n)]})


def train(table, lr):
    # The table comes back from the run's parquet copy: a wrong round trip fails the pipeline.
    assert list(table["y"]) == [2.0 * i for i in range(len(table))], table
    return {"coef": 2.0, "lr": lr, "rows": len(table)}


def evaluate(model, table):
    assert model["rows"] == len(table)
    return {"mse": 0.25, "per_class": {"a": 0.5, "b": 0.75}}, {"accuracy": 0.9, "label": "ok"}


def report(model):
    return {"coef": model["coef"], "thread": threading.current_thread().name}


def fail(model):
    raise RuntimeError("node exploded")


def interrupt(model):
    raise KeyboardInterrupt


def register_pipelines():
    main = Pipeline([
        node(make_table, "params:n", "table", name="make_table"),
        node(train, ["table", "params:lr"], "model", name="train"),
        node(evaluate, ["model", "table"], ["metrics", "results"], name="evaluate"),
        node(report, "model", "report", name="report"),
    ])
    broken = Pipeline([
        node(make_table, "params:n", "table", name="make_table"),
        node(train, ["table", "params:lr"], "model", name="train"),
        node(fail, "model", "report", name="fail"),
    ])
    interrupted = Pipeline([
        node(make_table, "params:n", "table", name="make_table"),
        node(train, ["table", "params:lr"], "model", name="train"),
        node(interrupt, "model", "report", name="interrupt"),
    ])
    return {"__default__": main, "broken": broken, "interrupted": interrupted}
"""

CATALOG = """
table:
  type: mini_mlflow.integrations.kedro.MiniMlflowDataFrameDataset
  artifact_path: data/table.parquet
model:
  type: mini_mlflow.integrations.kedro.MiniMlflowModelDataset
  versioned: true
metrics:
  type: mini_mlflow.integrations.kedro.MiniMlflowMetricsDataset
  prefix: eval
results:
  type: mini_mlflow.integrations.kedro.MiniMlflowResultDataset
report:
  type: mini_mlflow.integrations.kedro.MiniMlflowArtifactDataset
  artifact_path: reports
  dataset:
    type: json.JSONDataset
    filepath: data/report.json
"""

DRIVER = """
import sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

runners = {
    "sequential": lambda: SequentialRunner(),
    "thread": lambda: ThreadRunner(max_workers=4, is_async=True),
    "async": lambda: SequentialRunner(is_async=True),
    "parallel": lambda: ParallelRunner(max_workers=2),
}
if __name__ == "__main__":  # spawned ParallelRunner workers import this module again
    bootstrap_project(Path.cwd())
    for name in sys.argv[2:]:  # "runner", or "runner@pipeline" for another pipeline than argv[1]
        name, _, pipeline = name.partition("@")
        with KedroSession.create(project_path=Path.cwd()) as session:
            try:
                session.run(pipeline_names=[pipeline or sys.argv[1]], runner=runners[name]())
            except KeyboardInterrupt:  # as a notebook goes on after Ctrl-C
                print("interrupted")
"""


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    package = project / "src" / "demo"
    package.mkdir(parents=True)
    (project / "conf" / "base").mkdir(parents=True)
    (project / "conf" / "local").mkdir()
    (project / "data").mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.kedro]\npackage_name = "demo"\nproject_name = "demo"\nkedro_init_version = "1.7.0"\n'
        'source_dir = "src"\n'
    )
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        "from mini_mlflow.integrations.kedro import MiniMlflowHook\n"
        'HOOKS = (MiniMlflowHook(experiment="pipelines"),)\n'
    )
    (package / "pipeline_registry.py").write_text(PIPELINE)
    (project / "conf" / "base" / "parameters.yml").write_text("n: 6\nlr: 0.01\noptimizer:\n  name: adam\n")
    (project / "conf" / "base" / "catalog.yml").write_text(CATALOG)
    (project / "drive.py").write_text(textwrap.dedent(DRIVER))
    return project


def _kedro(
    project: Path, root: Path, pipeline: str, *runners: str, mp_context: str = "fork"
) -> subprocess.CompletedProcess[str]:
    env = {
        "KEDRO_MP_CONTEXT": mp_context,  # how ParallelRunner starts its worker processes
        # Nothing is written because a flush interval passed: a worker's points reach the disk only
        # if the worker writes them before its node completes.
        "MINI_MLFLOW_FLUSH_INTERVAL": "3600",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{project / 'src'}",
        "MINI_MLFLOW_TRACKING_DIR": str(root),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "HOME": str(project),
    }
    return subprocess.run(
        [sys.executable, "drive.py", pipeline, *runners],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_pipeline_is_one_run_under_each_runner_with_every_dataset_in_it(tmp_path: Path) -> None:
    project = _project(tmp_path)
    root = tmp_path / "mlruns"
    done = _kedro(project, root, "__default__", "sequential", "thread", "async", "parallel")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = experiment_ids(root)
    assert set(ids) == {"pipelines"}  # no stray run opened by a dataset on a worker thread
    runs = runs_of(root, ids["pipelines"])
    assert [r["tags"]["kedro.runner"] for r in runs] == [
        "SequentialRunner",
        "ThreadRunner",
        "SequentialRunner",
        "ParallelRunner",
    ]
    import mini_mlflow as mm

    for run in runs:
        run_id = run["metadata"]["run_id"]
        assert run["metadata"]["status"] == "FINISHED"
        assert run["params"] == {"n": 6, "lr": 0.01, "optimizer/name": "adam"}
        assert run["metrics"] == {"eval/mse": 0.25, "eval/per_class/a": 0.5, "eval/per_class/b": 0.75}
        assert history(root, run_id, "eval/mse") == [(0, 0.25)]
        assert run["tags"]["mini_mlflow.model/model.pkl"] == "builtins"
        run_dir = Path(mm.Store(root).find_run(run_id))
        artifacts = sorted(
            str(p.relative_to(run_dir / "artifacts"))
            for p in (run_dir / "artifacts").rglob("*")
            if p.is_file()
        )
        session = run["tags"]["kedro.session_id"]
        assert artifacts == ["data/table.parquet", f"model.pkl/{session}/model.pkl", "reports/report.json"]
        assert (run_dir / "results" / "accuracy.json").read_text() == "0.9\n"
        assert (run_dir / "results" / "label.json").read_text() == '"ok"\n'
        table = pd.read_parquet(run_dir / "artifacts" / "data" / "table.parquet")
        assert list(table["x"]) == list(range(6))


def test_a_failing_pipeline_ends_its_run_failed(tmp_path: Path) -> None:
    project = _project(tmp_path)
    root = tmp_path / "mlruns"
    done = _kedro(project, root, "broken", "thread")
    assert done.returncode != 0
    assert "node exploded" in done.stdout + done.stderr
    (run,) = runs_of(root, experiment_ids(root)["pipelines"])
    assert run["metadata"]["status"] == "FAILED"
    assert "node exploded" in run["tags"]["kedro.error"]
    assert run["params"]["lr"] == 0.01  # what ran before the failure is kept


def test_a_pipeline_interrupted_by_ctrl_c_ends_killed_when_the_next_one_starts(tmp_path: Path) -> None:
    # Kedro calls no hook on Ctrl-C; in a notebook the next session.run comes in the same process.
    project = _project(tmp_path)
    root = tmp_path / "mlruns"
    done = _kedro(project, root, "interrupted", "sequential", "sequential@__default__")
    assert done.returncode == 0 and "interrupted" in done.stdout, done.stdout + done.stderr
    runs = runs_of(root, experiment_ids(root)["pipelines"])
    assert [r["metadata"]["status"] for r in runs] == ["KILLED", "FINISHED"]
    assert [r["tags"]["kedro.pipeline"] for r in runs] == ["interrupted", "__default__"]


# -- each dataset on its own: save into a run, load back from it ---------------------------------------


@pytest.fixture
def run(store: Path) -> Any:
    with Run(runs_dir=store) as run:
        yield run


def test_metrics_round_trip_with_steps_and_nesting(store: Path, run: Run) -> None:
    dataset = MiniMlflowMetricsDataset(prefix="val", run_id=run.run_id, runs_dir=str(store))
    dataset.save({"loss": 0.5, "per_class": {"a": 1, "b": 2.5}})
    dataset.save({"loss": 0.25, "per_class": {"a": 3, "b": 4.0}})
    assert dataset.load() == {"loss": 0.25, "per_class": {"a": 3.0, "b": 4.0}}
    assert history(store, run.run_id, "val/loss") == [(0, 0.5), (1, 0.25)]
    # Another session saving to the same run (a new dataset, as in a new process) continues the count.
    again = MiniMlflowMetricsDataset(prefix="val", run_id=run.run_id, runs_dir=str(store))
    again.save({"loss": 0.125, "per_class": {"a": 5, "b": 6}})
    assert history(store, run.run_id, "val/loss") == [(0, 0.5), (1, 0.25), (2, 0.125)]
    fixed = MiniMlflowMetricsDataset(step=7, flatten=False, run_id=run.run_id, runs_dir=str(store))
    fixed.save({"acc": 0.9})
    assert history(store, run.run_id, "acc") == [(7, 0.9)]
    from kedro.io import DatasetError

    with pytest.raises(DatasetError, match="'acc'.*not a number"):
        fixed.save({"acc": "high"})


def test_results_round_trip(store: Path, run: Run) -> None:
    dataset = MiniMlflowResultDataset(run_id=run.run_id, runs_dir=str(store))
    dataset.save({"accuracy": 0.93, "classes": ["a", "b"], "summary": {"best": "b"}})
    assert dataset.load() == {"accuracy": 0.93, "classes": ["a", "b"], "summary": {"best": "b"}}


@pytest.mark.parametrize("backend", ["pickle", "joblib"])
def test_a_model_round_trips_with_its_framework_as_a_tag(store: Path, run: Run, backend: str) -> None:
    need("joblib")
    sklearn_linear = need("sklearn.linear_model")
    model = sklearn_linear.LinearRegression().fit([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])
    dataset = MiniMlflowModelDataset(backend=backend, run_id=run.run_id, runs_dir=str(store))
    dataset.save(model)
    loaded = dataset.load()
    assert loaded.predict([[3.0]])[0] == pytest.approx(7.0)
    assert mm_run(store, run.run_id)["tags"]["mini_mlflow.model/model.pkl"] == "sklearn"


def test_versioned_saves_keep_every_version_and_load_the_latest_or_the_one_asked_for(
    store: Path, run: Run
) -> None:
    kwargs: dict[str, Any] = {"run_id": run.run_id, "runs_dir": str(store)}
    MiniMlflowModelDataset(version=Version(None, "2026-01-01T00.00.00.000Z"), **kwargs).save({"v": 1})
    MiniMlflowModelDataset(version=Version(None, "2026-01-02T00.00.00.000Z"), **kwargs).save({"v": 2})
    assert MiniMlflowModelDataset(version=Version(None, None), **kwargs).load() == {"v": 2}
    assert MiniMlflowModelDataset(version=Version("2026-01-01T00.00.00.000Z", None), **kwargs).load() == {
        "v": 1
    }
    frame = pd.DataFrame({"a": [1, 2]})
    MiniMlflowDataFrameDataset("t.csv", version=Version(None, "v1"), **kwargs).save(frame)
    MiniMlflowDataFrameDataset("t.csv", version=Version(None, "v2"), **kwargs).save(frame * 10)
    assert list(MiniMlflowDataFrameDataset("t.csv", version=Version(None, None), **kwargs).load()["a"]) == [
        10,
        20,
    ]
    assert list(MiniMlflowDataFrameDataset("t.csv", version=Version("v1", None), **kwargs).load()["a"]) == [
        1,
        2,
    ]


@pytest.mark.parametrize("name", ["frame.parquet", "frame.csv"])
def test_a_dataframe_round_trips(store: Path, run: Run, name: str) -> None:
    frame = pd.DataFrame({"x": [1, 2, 3], "label": ["a", "b", "c"]})
    dataset = MiniMlflowDataFrameDataset(name, run_id=run.run_id, runs_dir=str(store))
    dataset.save(frame)
    pd.testing.assert_frame_equal(dataset.load(), frame)


def test_an_artifact_dataset_saves_through_the_wrapped_dataset_and_loads_from_the_run(
    store: Path, run: Run, tmp_path: Path
) -> None:
    need("kedro_datasets.json")
    local = tmp_path / "out" / "report.json"
    dataset = MiniMlflowArtifactDataset(
        {"type": "json.JSONDataset", "filepath": str(local)},
        artifact_path="reports",
        run_id=run.run_id,
        runs_dir=str(store),
    )
    dataset.save({"ok": True, "n": 3})
    assert local.is_file()
    copy = Path(run.run_dir) / "artifacts" / "reports" / "report.json"
    assert copy.read_bytes() == local.read_bytes()
    local.unlink()  # the load must come from the run's copy, not from the local file
    assert dataset.load() == {"ok": True, "n": 3}


def test_a_bad_configuration_is_refused_with_the_allowed_values() -> None:
    from kedro.io import DatasetError

    for make, message in [
        (lambda: MiniMlflowModelDataset(backend="cloudpickle"), "'pickle' or 'joblib'"),
        (lambda: MiniMlflowDataFrameDataset("data.xlsx"), "'parquet' or 'csv'"),
        (lambda: MiniMlflowArtifactDataset({"type": "json.JSONDataset"}), "filepath"),
    ]:
        with pytest.raises((ValueError, DatasetError), match=message):
            make()


def mm_run(root: Path, run_id: str) -> dict[str, Any]:
    import mini_mlflow as mm

    return mm.Store(root).get_run(run_id)


def test_saving_by_run_id_leaves_the_runs_status_as_it_was(store: Path) -> None:
    import mini_mlflow as mm

    with Run(runs_dir=store) as finished:
        pass
    MiniMlflowMetricsDataset(run_id=finished.run_id, runs_dir=str(store)).save({"late": 1.0})
    got = mm.Store(store).get_run(finished.run_id)
    assert got["metadata"]["status"] == "FINISHED" and got["metrics"] == {"late": 1.0}
    with Run(runs_dir=store) as live:
        MiniMlflowResultDataset(run_id=live.run_id, runs_dir=str(store)).save({"acc": 0.5})
        assert (
            mm.Store(store).get_run(live.run_id)["metadata"]["status"] == "RUNNING"
        )  # not ended by the save
        assert live.status == "RUNNING"
    # A run another process has open: written as one more writer and left open, for its owner to end.
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert owner.stdout is not None and owner.stdin is not None
        theirs = owner.stdout.readline().strip()
        MiniMlflowMetricsDataset(run_id=theirs, runs_dir=str(store)).save({"x": 2.0})
        got = mm.Store(store).get_run(theirs)
        assert got["metadata"]["status"] == "RUNNING" and got["metrics"] == {"x": 2.0}
        owner.stdin.close()  # the owner ends its run
        assert owner.wait(timeout=60) == 0
    finally:
        owner.kill()
        owner.wait(timeout=30)
    assert mm.Store(store).get_run(theirs)["metadata"]["status"] == "FINISHED"


OWNER = "import sys, mini_mlflow as mm; run = mm.Run(runs_dir=sys.argv[1]); print(run.run_id, flush=True); sys.stdin.read()"


@pytest.mark.parametrize("mp_context", ["fork", "spawn"])
def test_parallel_runner_workers_write_to_the_pipelines_run_and_leave_it_open(
    tmp_path: Path, mp_context: str
) -> None:
    # Each node runs in a worker process: its saves go to the pipeline's run as one more writer,
    # which leaves the run open (a worker never ends it); the hook's process ends it.
    project = _project(tmp_path)
    root = tmp_path / "mlruns"
    done = _kedro(project, root, "__default__", "parallel", mp_context=mp_context)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = experiment_ids(root)
    assert set(ids) == {"pipelines"}  # no run opened by a dataset in a worker
    (run,) = runs_of(root, ids["pipelines"])
    assert run["metadata"]["status"] == "FINISHED" and run["tags"]["kedro.runner"] == "ParallelRunner"
    assert run["metrics"] == {"eval/mse": 0.25, "eval/per_class/a": 0.5, "eval/per_class/b": 0.75}
    run_dir = Path(mm_store(root).find_run(run["metadata"]["run_id"]))
    assert (run_dir / "results" / "accuracy.json").read_text() == "0.9\n"
    assert (run_dir / "artifacts" / "reports" / "report.json").is_file()
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".heartbeat")]  # every writer left
    failed = _kedro(project, root, "broken", "parallel", mp_context=mp_context)
    assert failed.returncode != 0 and "node exploded" in failed.stdout + failed.stderr
    runs = runs_of(root, ids["pipelines"])
    assert sorted(r["metadata"]["status"] for r in runs) == ["FAILED", "FINISHED"]


def mm_store(root: Path) -> Any:
    import mini_mlflow as mm

    return mm.Store(root)
