"""MLflow's rules where unchanged MLflow code depends on them (each checked against MLflow 3.17 side by
side): the Default experiment always exists, ``mlflow.runName`` renames a run, a resume id must exist,
runs are created only in existing experiments, a metric not logged has an empty history, search results
come in pages with a token, and a download of the whole artifacts folder lands in ``dst`` itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import mini_mlflow as mlflow
from mini_mlflow import MlflowClient


def test_the_default_experiment_exists_before_anything_is_logged_and_is_never_doubled(store: Path) -> None:
    client = MlflowClient(str(store))
    default = client.get_experiment_by_name("Default")
    assert default is not None and default.experiment_id == "0" and default.lifecycle_stage == "active"
    assert client.get_experiment("0").name == "Default"
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert not (store / "0").exists(), "reading wrote nothing"
    with pytest.raises(ValueError, match="'Default' already exists \\(id 0\\)"):
        client.create_experiment("Default")
    assert mlflow.set_experiment("Default").experiment_id == "0"  # not a second "Default" as id 1
    with mlflow.start_run():
        mlflow.log_metric("m", 1.0)
    mlflow.set_experiment(experiment_id="0")
    with mlflow.start_run():
        pass
    names = [e.name for e in client.search_experiments()]
    assert names == ["Default"], names
    assert len(mlflow.search_runs(experiment_ids=["0"], output_format="list")) == 2


def test_the_run_name_tag_renames_the_run(store: Path) -> None:
    with mlflow.start_run() as run:
        mlflow.set_tag("mlflow.runName", "legacy-name")
        assert run.info.run_name == "legacy-name"
    got = mlflow.get_run(run.info.run_id)
    assert got.info.run_name == "legacy-name" and got.data.tags["mlflow.runName"] == "legacy-name"
    assert json.loads((Path(run.run_dir) / "tags" / "mlflow.runName.json").read_text()) == "legacy-name"
    client = MlflowClient(str(store))
    client.set_tag(run.info.run_id, "mlflow.runName", "renamed")  # an ended run, written directly
    found = mlflow.search_runs(filter_string="attributes.run_name = 'renamed'", output_format="list")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    with mlflow.start_run(tags={"mlflow.runName": "from-tag"}) as tagged:
        pass
    with mlflow.start_run(run_name="wins", tags={"mlflow.runName": "loses"}) as named:
        pass
    assert mlflow.get_run(tagged.info.run_id).info.run_name == "from-tag"
    assert mlflow.get_run(named.info.run_id).info.run_name == "wins"
    client.update_run(named.info.run_id, name="changed")  # the name and its tag move together
    again = client.get_run(named.info.run_id)
    assert again.info.run_name == again.data.tags["mlflow.runName"] == "changed"
    live = client.create_run("0")
    meta = Path(live.info.artifact_uri.removeprefix("file://")).parent / "meta.yaml"
    assert "end_time: null" in meta.read_text()
    client.update_run(live.info.run_id, status="FAILED")  # as MLflow's: an end status stamps the end
    assert "end_time: null" not in meta.read_text()
    ended = client.get_run(live.info.run_id).info
    assert ended.status == "FAILED" and ended.end_time >= ended.start_time


def test_create_run_needs_an_existing_active_experiment(store: Path) -> None:
    client = MlflowClient(str(store))
    with pytest.raises(LookupError, match="no experiment with id 12345"):
        client.create_run("12345")
    assert not (store / "12345").exists()
    gone = client.create_experiment("gone")
    client.delete_experiment(gone)
    with pytest.raises(ValueError, match="is deleted: restore it"):
        client.create_run(gone)
    run = client.create_run("0")  # the Default experiment, written on this first use
    assert run.info.experiment_id == "0" and (store / "0" / run.info.run_id / "meta.yaml").exists()


def test_a_metric_not_logged_has_an_empty_history_and_a_missing_run_is_not_found(store: Path) -> None:
    client = MlflowClient(str(store))
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)
    assert client.get_metric_history(run.info.run_id, "not-logged") == []
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.5]
    with pytest.raises(LookupError):
        client.get_metric_history("f" * 32, "loss")
    with pytest.raises(ValueError, match="metric key"):
        client.get_metric_history(run.info.run_id, "../escape")


def page_token(offset: int) -> str:
    """The token of the page starting at ``offset``, as a page's ``.token`` carries it."""
    import base64

    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def test_search_results_come_in_pages_with_mlflows_token_loop(store: Path) -> None:
    for i in range(7):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_metric("i", i)
    client = MlflowClient(str(store))
    seen, token, pages = [], None, 0
    while True:  # the loop MLflow's docs give
        page = client.search_runs(["0"], order_by=["metrics.i ASC"], max_results=3, page_token=token)
        seen += [r.info.run_name for r in page]
        pages += 1
        token = page.token
        if not token:
            break
    assert seen == [f"r{i}" for i in range(7)] and pages == 3
    exact = client.search_runs(["0"], max_results=7)
    assert len(exact) == 7 and exact.token is None  # no empty page after an exact fit
    second = client.search_runs(["0"], order_by=["metrics.i DESC"], max_results=3, page_token=page_token(3))
    assert [r.info.run_name for r in second] == ["r3", "r2", "r1"] and second.token == page_token(6)
    last = client.search_runs(["0"], order_by=["metrics.i DESC"], max_results=1, page_token=page_token(6))
    assert [r.info.run_name for r in last] == ["r0"] and last.token is None  # a later page that fits
    # A page past the 100,000th run is asked for as any other (it was refused as max_results 100,003).
    far = client.search_runs(["0"], max_results=3, page_token=page_token(99_999))
    assert list(far) == [] and far.token is None
    for i in range(3):
        client.create_experiment(f"e{i}")
    first = client.search_experiments(max_results=2, order_by=["name ASC"])
    rest = client.search_experiments(max_results=2, order_by=["name ASC"], page_token=first.token)
    assert [e.name for e in [*first, *rest]] == ["Default", "e0", "e1", "e2"] and rest.token is None
    with pytest.raises(ValueError, match="invalid page_token"):
        client.search_runs(["0"], page_token="not-a-token")


def test_downloading_the_whole_artifacts_folder_fills_dst_itself(store: Path, tmp_path: Path) -> None:
    with mlflow.start_run() as run:
        mlflow.log_text("x", "x.txt")
        mlflow.log_text("y", "sub/y.txt")
    client = MlflowClient(str(store))
    dst = tmp_path / "dst"
    assert client.download_artifacts(run.info.run_id, "", str(dst)) == str(dst)
    assert sorted(os.listdir(dst)) == ["sub", "x.txt"] and (dst / "sub" / "y.txt").read_text() == "y"
    one = tmp_path / "one"
    assert client.download_artifacts(run.info.run_id, "sub/y.txt", str(one)) == str(one / "y.txt")
    folder = tmp_path / "folder"
    assert client.download_artifacts(run.info.run_id, "sub", str(folder)) == str(folder / "sub")


def test_mlflow_code_catches_our_errors_as_mlflow_exception_with_its_error_codes(store: Path) -> None:
    client = MlflowClient(str(store))
    try:
        client.get_run("f" * 32)
    except mlflow.exceptions.MlflowException as exc:  # what `except MlflowException` under the alias reads
        assert exc.error_code == "RESOURCE_DOES_NOT_EXIST" and "f" * 32 in exc.message
    else:
        pytest.fail("no error for a run that does not exist")
    with pytest.raises(mlflow.exceptions.MlflowException) as bad:
        mlflow.log_metric("../escape", 1.0)
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    mlflow.end_run()
    with mlflow.start_run(), pytest.raises(mlflow.exceptions.MlflowException) as twice:
        mlflow.start_run()
    assert twice.value.error_code == "INVALID_STATE"


def test_start_run_returns_an_mlflow_active_run(store: Path) -> None:
    with mlflow.start_run() as run:  # code annotates with mlflow.ActiveRun and checks it
        assert isinstance(run, mlflow.ActiveRun) and isinstance(mlflow.active_run(), mlflow.ActiveRun)


def test_mlflow_artifacts_functions_read_a_runs_artifacts_and_nothing_else(
    store: Path, tmp_path: Path
) -> None:
    with mlflow.start_run() as run:
        mlflow.log_dict({"lr": 0.1}, "config.json")
        mlflow.log_dict({"layers": [1, 2]}, "model/spec.yaml")
        mlflow.log_text("hello", "notes/readme.txt")
        uri = mlflow.get_artifact_uri("config.json")
    rid = run.info.run_id
    assert mlflow.artifacts.load_dict(f"runs:/{rid}/config.json") == {"lr": 0.1}
    assert mlflow.artifacts.load_dict(uri) == {"lr": 0.1}  # the file: URI get_artifact_uri gives
    assert mlflow.artifacts.load_dict(f"runs:/{rid}/model/spec.yaml") == {"layers": [1, 2]}
    assert mlflow.artifacts.load_text(f"runs:/{rid}/notes/readme.txt") == "hello"
    got = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="notes", dst_path=str(tmp_path / "d"))
    assert Path(got, "readme.txt").read_text() == "hello"
    names = [f.path for f in mlflow.artifacts.list_artifacts(f"runs:/{rid}/")]
    assert names == ["config.json", "model", "notes"]
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    for bad in [f"runs:/{rid}/../meta.yaml", outside.as_uri(), str(outside), "s3://bucket/x"]:
        with pytest.raises(ValueError):
            mlflow.artifacts.load_dict(bad)
    with pytest.raises(LookupError):
        mlflow.artifacts.load_text(f"runs:/{rid}/missing.txt")
