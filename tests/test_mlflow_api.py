"""MLflow tracking code runs unchanged on ``import mini_mlflow as mlflow``: names, signatures, entities,
behaviours (auto-started runs, current experiment, tracking URIs) and the client."""

from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import pytest

import mini_mlflow as mlflow
from mini_mlflow import MlflowClient
from mini_mlflow._config import resolve
from mini_mlflow.entities import Experiment, Metric, Param, Run, RunStatus, RunTag, ViewType


def test_the_common_idioms_of_mlflow_code(store: Path) -> None:
    mlflow.set_experiment("demo")
    with mlflow.start_run(run_name="first", description="a note") as run:
        mlflow.log_params({"lr": 0.01, "layers": [64, 32]})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.set_tags({"team": "vision"})
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == run.info.run_id
        assert run.info.status == "RUNNING" and run.info.run_name == "first"
        assert run.info.artifact_uri == Path(run.run_dir, "artifacts").as_uri()
        assert run.data.metrics == {"loss": pytest.approx(1 / 3)}  # read now, buffer included
    got = mlflow.get_run(run.info.run_id)
    assert isinstance(got, Run) and got.info.status == "FINISHED"
    assert got.info.experiment_id == mlflow.get_experiment_by_name("demo").experiment_id
    assert isinstance(got.info.start_time, int) and got.info.end_time >= got.info.start_time
    assert got.data.params == {"lr": "0.01", "layers": "[64, 32]"}  # MLflow's str() of the value
    assert got.data.tags["team"] == "vision" and got.data.tags["mlflow.note.content"] == "a note"
    assert got.data.tags["mlflow.runName"] == "first"
    assert got["params"] == {"lr": 0.01, "layers": [64, 32]}  # the dict of earlier versions, as logged
    history = MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert all(isinstance(m, Metric) and m.run_id == run.info.run_id for m in history)


def test_logging_with_no_active_run_starts_one_and_end_run_without_one_does_nothing(store: Path) -> None:
    mlflow.end_run()  # MLflow code often ends "whatever is active" first
    mlflow.log_metric("acc", 0.5)
    run = mlflow.active_run()
    assert run is not None and run.info.status == "RUNNING"
    mlflow.log_param("p", 1)
    mlflow.end_run()
    assert mlflow.active_run() is None
    last = mlflow.last_active_run()
    assert last is not None and last.info.run_id == run.run_id and last.data.metrics == {"acc": 0.5}


def test_keywords_mlflow_code_passes_are_accepted(store: Path) -> None:
    with mlflow.start_run(log_system_metrics=False) as parent:
        mlflow.log_metric("m", 1.0, step=1, synchronous=True)  # on disk when the call returns
        assert (Path(parent.run_dir) / "metrics" / "m.jsonl").read_bytes()
        mlflow.log_metrics({"a": 1.0}, step=2, synchronous=False, timestamp=5)
        mlflow.log_param("q", 2, synchronous=True)
        mlflow.set_tag("k", "v", synchronous=True)
        with mlflow.start_run(nested=True, parent_run_id=parent.run_id) as child:
            assert mlflow.get_parent_run(child.run_id).info.run_id == parent.run_id
        assert mlflow.get_parent_run(parent.run_id) is None
    with pytest.raises(mlflow.InvalidInputError, match="first argument is run_id"):
        mlflow.start_run("my run")  # the original Mini MLflow's first argument was run_name
    with pytest.raises(mlflow.InvalidInputError, match="synchronous must be"):
        mlflow.log_metric("m", 1.0, 1, 1_700_000_000_000)  # a timestamp where MLflow has synchronous


def test_run_id_logs_to_a_run_that_is_not_active_even_a_finished_one(store: Path) -> None:
    with mlflow.start_run() as done:
        mlflow.log_metric("x", 1.0, step=0)
    mlflow.log_metric("x", 2.0, step=1, run_id=done.run_id)  # written at once (no live run here)
    mlflow.log_params({"late": "yes"}, run_id=done.run_id)
    mlflow.log_text("hello", "notes/a.txt", run_id=done.run_id)
    got = mlflow.get_run(done.run_id)
    assert got.info.status == "FINISHED"  # status left alone, as MLflow's client does
    assert got.data.metrics == {"x": 2.0} and got.data.params == {"late": "yes"}
    assert (Path(done.run_dir) / "artifacts" / "notes" / "a.txt").read_text() == "hello"
    mlflow.delete_run(done.run_id)
    with pytest.raises(mlflow.InvalidInputError, match="deleted"):
        mlflow.log_metric("x", 3.0, run_id=done.run_id)


def test_experiments_by_name_id_tags_search_and_delete(store: Path) -> None:
    exp_id = mlflow.create_experiment("a", tags={"owner": "me"})
    with pytest.raises(mlflow.InvalidInputError, match="already exists"):
        mlflow.create_experiment("a")
    exp = mlflow.set_experiment(experiment_id=exp_id)
    assert isinstance(exp, Experiment) and exp.name == "a" and exp.tags == {"owner": "me"}
    assert exp["experiment_id"] == exp_id  # also the dict of earlier versions
    mlflow.set_experiment_tags({"stage": "dev"})
    assert mlflow.get_experiment(exp_id).tags == {"owner": "me", "stage": "dev"}
    with mlflow.start_run():
        pass
    from mini_mlflow.read._search import search_runs as engine

    assert engine(root=store).broken == []  # experiment tags live in its meta.yaml, not beside the runs
    mlflow.create_experiment("b")
    assert [e.name for e in mlflow.search_experiments(filter_string="name LIKE 'a%'")] == ["a"]
    assert [e.name for e in mlflow.search_experiments(filter_string="tags.stage = 'dev'")] == ["a"]
    # "Default" (experiment 0) is there as in every MLflow store, before anything is logged to it
    assert [e.name for e in mlflow.search_experiments(order_by=["name DESC"])] == ["b", "a", "Default"]
    mlflow.delete_experiment(exp_id)
    assert [e.name for e in mlflow.search_experiments()] == ["b", "Default"]
    assert {e.name for e in mlflow.search_experiments(view_type=ViewType.ALL)} == {"a", "b", "Default"}
    with pytest.raises(mlflow.InvalidInputError, match="deleted"):
        mlflow.set_experiment("a")
    with pytest.raises(mlflow.NotFoundError):
        mlflow.get_experiment("42")
    assert mlflow.get_experiment_by_name("nope") is None


def test_search_runs_like_mlflow(store: Path) -> None:
    pd = pytest.importorskip("pandas")
    mlflow.set_experiment("sweep")
    for lr in (0.1, 0.01):
        with mlflow.start_run(run_name=f"lr={lr}"):
            mlflow.log_param("lr", lr)
            mlflow.log_metric("acc", 1 - lr)
    mlflow.set_experiment("other")
    with mlflow.start_run(run_name="elsewhere"):
        mlflow.log_metric("acc", 0.5)
    df = mlflow.search_runs(experiment_names=["sweep"], order_by=["metrics.acc DESC"])
    assert isinstance(df, pd.DataFrame)
    assert list(df["tags.mlflow.runName"]) == ["lr=0.01", "lr=0.1"] and df["metrics.acc"].max() == 0.99
    assert list(df["params.lr"]) == ["0.01", "0.1"]
    assert len(mlflow.search_runs()) == 1  # the current experiment only, as MLflow
    assert len(mlflow.search_runs(search_all_experiments=True)) == 3
    runs = mlflow.search_runs(
        experiment_names=["sweep"], filter_string="params.lr = '0.1'", output_format="list"
    )
    assert [r.info.run_name for r in runs] == ["lr=0.1"] and runs[0].data.params == {"lr": "0.1"}
    by_tag = mlflow.search_runs(filter_string="tags.mlflow.runName = 'elsewhere'", output_format="list")
    assert [r.run_name for r in by_tag] == ["elsewhere"]  # a system tag names the run's own field
    assert mlflow.search_runs(experiment_ids=["999"], output_format="list") == []
    with pytest.raises(mlflow.InvalidInputError, match="output_format"):
        mlflow.search_runs(output_format="csv")


def test_tracking_uri_forms_and_online_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith(("MINI_MLFLOW_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    try:
        for uri, where in [
            ("runs-a", tmp_path / "runs-a"),
            (f"file://{tmp_path}/runs-b", tmp_path / "runs-b"),
            ("mini-mlflow:runs-c", tmp_path / "runs-c"),
            (f"mini-mlflow://{tmp_path}/runs-d", tmp_path / "runs-d"),
        ]:
            mlflow.set_tracking_uri(uri)
            assert mlflow.get_tracking_uri() == uri
            with mlflow.start_run() as run:
                pass
            assert Path(run.run_dir).parent.parent == where
            assert mlflow.Run().run_dir.startswith(str(where))  # Run() follows the URI too
        mlflow.set_tracking_uri("http://127.0.0.1:9/")
        settings = resolve()
        assert settings.sync_url == "http://127.0.0.1:9" and settings.tracking_dir == "mlruns"
        for bad in ("databricks", "sqlite:///mlflow.db", "postgresql://u:secret@db/x"):
            with pytest.raises(mlflow.InvalidInputError, match="not supported") as info:
                mlflow.set_tracking_uri(bad)
            assert "secret" not in str(info.value) and "http(s)://" in str(info.value)
        mlflow.set_tracking_dir(None)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
        with pytest.raises(mlflow.InvalidInputError, match="MLFLOW_TRACKING_URI.*MINI_MLFLOW_TRACKING_DIR"):
            mlflow.start_run()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "from-env"))
        with mlflow.start_run() as run:
            pass
        assert Path(run.run_dir).parent.parent == tmp_path / "from-env"
    finally:
        mlflow.set_tracking_dir(None)


def test_client_creates_logs_terminates_and_lists(store: Path, tmp_path: Path) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("client")
    created = client.create_run(exp_id, run_name="by-client", tags={"t": "1"})
    run_id = created.info.run_id
    assert created.info.status == "RUNNING" and mlflow.active_run() is None  # not made active
    client.log_batch(
        run_id,
        metrics=[Metric("m", 1.0, 1000, 0), Metric("m", 2.0, 2000, 1)],
        params=[Param("p", "x")],
        tags=[RunTag("u", "2")],
    )
    client.log_param(run_id, "q", 3)
    client.set_tag(run_id, "v", "w")
    client.delete_tag(run_id, "v")
    client.log_text(run_id, "hi", "dir/hello.txt")
    (tmp_path / "local.bin").write_bytes(b"\x00\x01")
    client.log_artifact(run_id, str(tmp_path / "local.bin"), "bin")
    client.set_terminated(run_id)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "by-client"
    assert got.data.params == {"p": "x", "q": "3"} and got.data.metrics == {"m": 2.0}
    assert {"t": "1", "u": "2"}.items() <= got.data.tags.items() and "v" not in got.data.tags
    assert [(m.timestamp, m.step) for m in client.get_metric_history(run_id, "m")] == [(1000, 0), (2000, 1)]
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [("bin", True), ("dir", True)]
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "dir")] == [("dir/hello.txt", 2)]
    local = client.download_artifacts(run_id, "dir", str(tmp_path / "down"))
    assert Path(local, "hello.txt").read_text() == "hi"
    with pytest.raises(mlflow.InvalidInputError):
        client.list_artifacts(run_id, "../..")
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]
    client.rename_experiment(exp_id, "renamed")
    assert client.get_experiment(exp_id).name == "renamed"
    client.delete_run(run_id)
    assert client.search_runs([exp_id]) == []
    assert [r.info.run_id for r in client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)] == [
        run_id
    ]
    client.restore_run(run_id)
    other = MlflowClient(tracking_uri=f"mini-mlflow:{tmp_path}/second")
    assert [e.name for e in other.search_experiments()] == ["Default"]  # as in any MLflow store


def _png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, color type, raw rows) of a PNG made by log_image: a decoder of our own."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, _depth, color = struct.unpack(">IIBB", header[:10])
    return width, height, color, zlib.decompress(idat)


def test_images_tables_figures_and_inputs(store: Path) -> None:
    np = pytest.importorskip("numpy")
    with mlflow.start_run() as run:
        image = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
        mlflow.log_image(image, "img/rgb.png")
        mlflow.log_image(np.zeros((3, 4)), key="gray", step=7, timestamp=123)
        mlflow.log_table({"a": [1, 2], "b": ["x", "y"]}, "tables/t.json")
        mlflow.log_input(
            {"name": "train", "digest": "abc123", "source": {"uri": "s3://x"}}, context="training"
        )
        with pytest.raises(mlflow.InvalidInputError, match="0 to 1"):
            mlflow.log_image(np.full((2, 2), 2.0), "bad.png")
    art = Path(run.run_dir) / "artifacts"
    width, height, color, raw = _png_pixels((art / "img" / "rgb.png").read_bytes())
    assert (width, height, color) == (2, 2, 2) and raw == b"\x00" + bytes(image[0].ravel()) + b"\x00" + bytes(
        image[1].ravel()
    )
    assert _png_pixels((art / "images" / "gray" / "step_7_123.png").read_bytes())[:3] == (4, 3, 0)
    assert json.loads((art / "tables" / "t.json").read_text()) == {
        "columns": ["a", "b"],
        "data": [[1, "x"], [2, "y"]],
    }
    pd = pytest.importorskip("pandas")
    table = mlflow.load_table("tables/t.json", run_ids=[run.run_id], extra_columns=["run_id"])
    assert list(table["b"]) == ["x", "y"] and set(table["run_id"]) == {run.run_id}
    assert isinstance(table, pd.DataFrame)
    (dataset_input,) = mlflow.get_run(run.run_id).inputs.dataset_inputs
    assert dataset_input.dataset.name == "train" and dataset_input.dataset.digest == "abc123"
    assert json.loads(dataset_input.dataset.source) == {"uri": "s3://x"}
    assert [(t.key, t.value) for t in dataset_input.tags] == [("mlflow.data.context", "training")]


def test_log_figure_with_matplotlib(store: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])
    with mlflow.start_run() as run:
        mlflow.log_figure(figure, "plots/line.png")
        mlflow.log_figure(figure, "plots/line.svg")
        with pytest.raises(mlflow.InvalidInputError, match="matplotlib or plotly"):
            mlflow.log_figure(object(), "x.png")
    plt.close(figure)
    art = Path(run.run_dir) / "artifacts" / "plots"
    assert (art / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (art / "line.svg").read_bytes()


def test_small_calls(store: Path) -> None:
    with mlflow.start_run() as run:
        mlflow.set_tag("gone", "soon")
        mlflow.delete_tag("gone")
        with pytest.raises(mlflow.NotFoundError):
            mlflow.delete_tag("gone")
        assert mlflow.get_artifact_uri("a/b.txt") == Path(run.run_dir, "artifacts").as_uri() + "/a/b.txt"
        with pytest.raises(mlflow.InvalidInputError):
            mlflow.get_artifact_uri("../escape")
        mlflow.flush_async_logging()
        mlflow.flush_artifact_async_logging()
    assert "gone" not in mlflow.get_run(run.run_id).data.tags
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlflow.autolog()
    assert any("mini_mlflow.integrations" in str(w.message) for w in caught)
    assert RunStatus.to_string(RunStatus.FINISHED) == "FINISHED" and RunStatus.from_string("KILLED") == 5
    assert mlflow.entities.ViewType.ALL == 3 and mlflow.tracking.MlflowClient is MlflowClient
    assert mlflow.is_tracking_uri_set()


def test_run_and_tracker_without_a_folder_use_the_configured_store(store: Path, tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    mlflow.set_tracking_dir(chosen)  # as set_tracking_uri or MINI_MLFLOW_TRACKING_DIR would
    run = mlflow.Run()
    run.end()
    assert Path(run.run_dir).parent.parent == chosen
    with mlflow.ExperimentTracker() as tracked:
        tracked.log_metric("m", 1.0)
    assert Path(tracked.run_dir).parent.parent == chosen
    assert mlflow.ExperimentTracker().runs_dir == str(chosen)


def test_load_table_never_reads_outside_the_run(store: Path, tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    (tmp_path / "secret.json").write_text('{"columns": ["s"], "data": [["TOP SECRET"]]}')
    with mlflow.start_run() as run:
        mlflow.log_table({"a": [1]}, "t.json")
    for bad in ("../../../../secret.json", "/etc/passwd", "..\\\\x.json"):
        with pytest.raises(mlflow.InvalidInputError):
            mlflow.load_table(bad, run_ids=[run.run_id])
    os.symlink(tmp_path, Path(run.run_dir) / "artifacts" / "linked")
    with pytest.raises(OSError, match="symbolic link"):
        mlflow.load_table("linked/secret.json", run_ids=[run.run_id])


def test_the_client_never_lists_or_copies_through_a_planted_link(store: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("TOP SECRET")
    (secret / "sub").mkdir()
    (secret / "sub" / "more.txt").write_text("TOP SECRET")
    with mlflow.start_run() as run:
        mlflow.log_text("mine", "ok/a.txt")
    os.symlink(secret, Path(run.run_dir) / "artifacts" / "linked")
    client = MlflowClient()
    assert [f.path for f in client.list_artifacts(run.run_id)] == ["ok"]  # the link is left out
    assert client.list_artifacts(run.run_id, "linked") == []
    with pytest.raises(OSError, match="symbolic link"):
        client.list_artifacts(run.run_id, "linked/sub")  # a link on the way, not at the end
    with pytest.raises((OSError, mlflow.NotFoundError)):
        client.download_artifacts(run.run_id, "linked/key.txt", str(tmp_path / "down"))
    assert not (tmp_path / "down").exists() or "TOP SECRET" not in "".join(
        p.read_text() for p in (tmp_path / "down").rglob("*") if p.is_file()
    )
