"""The MLflow-style API: what lands on disk, what the reader returns, and every caller mistake."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

import mini_mlflow as mm

from conftest import read_jsonl

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_issue_example_writes_the_documented_layout(store: Path) -> None:
    experiment_id = mm.set_experiment("resnet").experiment_id
    assert experiment_id == "1"
    with mm.start_run(run_name="lr-0.1") as run:
        mm.log_params({"lr": 0.1, "batch_size": 64})
        for step in range(3):
            mm.log_metric("train/loss", 1.0 / (step + 1), step=step, timestamp=1_000 + step)
        (store.parent / "model.pt").write_bytes(b"weights")
        mm.log_artifact(str(store.parent / "model.pt"))
    rdir = store / "1" / run.run_id
    assert re.fullmatch(r"[0-9a-f]{32}", run.run_id)
    assert (rdir / "metrics" / "train" / "loss.jsonl").read_text() == (
        '{"step":0,"value":1.0,"timestamp":1000}\n'
        '{"step":1,"value":0.5,"timestamp":1001}\n'
        '{"step":2,"value":0.3333333333333333,"timestamp":1002}\n'
    )
    assert (rdir / "params" / "lr.json").read_text() == "0.1\n"
    assert (rdir / "params" / "batch_size.json").read_text() == "64\n"
    assert (rdir / "artifacts" / "model.pt").read_bytes() == b"weights"
    meta = yaml.safe_load((rdir / "meta.yaml").read_text())
    assert meta["format_version"] == 1
    assert meta["run_id"] == run.run_id and meta["run_name"] == "lr-0.1"
    assert meta["experiment_id"] == "1" and meta["status"] == "FINISHED"
    assert ISO_Z.match(meta["start_time"]) and ISO_Z.match(meta["end_time"])
    assert meta["lifecycle_stage"] == "active" and meta["parent_run_id"] is None
    assert set(meta) >= {"user", "source"}
    exp = yaml.safe_load((store / "1" / "meta.yaml").read_text())
    assert exp["experiment_id"] == "1" and exp["name"] == "resnet"
    assert exp["lifecycle_stage"] == "active" and ISO_Z.match(exp["creation_time"])
    assert mm.get_experiment_by_name("resnet")["experiment_id"] == "1"
    assert mm.get_experiment_by_name("nope") is None
    assert mm.set_experiment("resnet").experiment_id == "1"  # existing: same id


def test_default_experiment_is_0_and_named_default(store: Path) -> None:
    with mm.start_run():
        pass
    exp = yaml.safe_load((store / "0" / "meta.yaml").read_text())
    assert exp["name"] == "Default" and exp["experiment_id"] == "0"


def test_store_keeps_no_absolute_path(store: Path) -> None:
    with mm.start_run(run_name="r") as run:
        mm.log_metric("m", 1.0)
        mm.log_param("p", "v")
        mm.set_tag("t", "x")
        mm.log_text("hi", "a/b.txt")
    needle = str(store.parent).encode()
    for path in store.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    moved = store.parent / "moved"
    store.rename(moved)
    assert mm.Store(moved).get_run(run.run_id)["metrics"] == {"m": 1.0}


def test_nan_and_inf_round_trip_as_strict_json(store: Path) -> None:
    with mm.start_run() as run:
        for i, v in enumerate([float("nan"), float("inf"), float("-inf"), 1e300, -0.0, 5]):
            mm.log_metric("odd", v, step=i)
    path = Path(run.run_dir) / "metrics" / "odd.jsonl"
    rows = [strict_json(line) for line in path.read_text().splitlines()]
    assert [r["value"] for r in rows][:3] == ["NaN", "Infinity", "-Infinity"]  # type: ignore[index]
    values = [p.value for p in mm.get_metric_history(run.run_id, "odd")]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1e300, -0.0, 5.0]


def test_reads_see_own_writes_without_flush(store: Path) -> None:
    with mm.start_run() as run:
        for i in range(1000):
            mm.log_metric("loss", i * 0.5, step=i)
        mm.log_param("lr", 0.01)
        got = mm.get_run(run.run_id)
        assert got["metrics"] == {"loss": 999 * 0.5}
        assert got["params"] == {"lr": 0.01}
        assert got["metadata"]["status"] == "RUNNING"
        history = mm.get_metric_history(run.run_id, "loss")
        assert [p.step for p in history] == list(range(1000))


def test_flush_really_drains(store: Path) -> None:
    with mm.start_run() as run:
        for i in range(5000):
            mm.log_metric("a", float(i), step=i)
        mm.flush()
        lines = read_jsonl(Path(run.run_dir) / "metrics" / "a.jsonl")
        assert [r["step"] for r in lines] == list(range(5000))


def test_log_metrics_and_defaults(store: Path) -> None:
    with mm.start_run() as run:
        mm.log_metrics({f"k{i}": i for i in range(10)}, step=7)
        mm.log_metric("no_step", 2)
    for i in range(10):
        (row,) = read_jsonl(Path(run.run_dir) / "metrics" / f"k{i}.jsonl")
        assert row["step"] == 7 and row["value"] == float(i)
    (row,) = read_jsonl(Path(run.run_dir) / "metrics" / "no_step.jsonl")
    assert row["step"] == 0 and row["value"] == 2.0  # MLflow's default step
    assert run.start_time_ms is not None
    assert run.start_time_ms - 5 <= row["timestamp"] <= run.start_time_ms + 60_000


def test_log_metrics_with_a_bad_key_logs_none_of_the_dict(store: Path) -> None:
    with mm.start_run() as run:
        with pytest.raises(ValueError, match="bad key"):
            mm.log_metrics({"good": 1.0, "bad key!": 2.0})
        mm.flush()
    assert not (Path(run.run_dir) / "metrics" / "good.jsonl").exists()


def test_tags_last_write_wins_and_start_run_tags(store: Path) -> None:
    with mm.start_run(tags={"team": "vision"}) as run:
        mm.set_tag("stage", "a")
        mm.set_tags({"stage": "b", "n": 3})
    got = mm.get_run(run.run_id)
    assert got["tags"] == {"team": "vision", "stage": "b", "n": "3"}
    assert (Path(run.run_dir) / "tags" / "stage.json").read_text() == '"b"\n'


def test_params_are_write_once(store: Path) -> None:
    with mm.start_run() as run:
        mm.log_param("lr", 0.1)
        mm.log_param("lr", 0.1)  # same value: no-op
        with pytest.raises(ValueError) as err:
            mm.log_param("lr", 0.2)
        assert "0.1" in str(err.value) and "0.2" in str(err.value) and "'lr'" in str(err.value)
        assert isinstance(err.value, mm.ParamConflictError)
        mm.log_params({"config": {"layers": [1, 2], "act": "relu"}, "name": "x", "flag": True, "none": None})
    got = mm.get_run(run.run_id)["params"]
    assert got == {
        "lr": 0.1,
        "config": {"act": "relu", "layers": [1, 2]},
        "name": "x",
        "flag": True,
        "none": None,
    }
    # a resumed run (another process, later) still refuses a different value
    with mm.start_run(run_id=run.run_id):
        with pytest.raises(mm.ParamConflictError, match="0.1"):
            mm.log_param("lr", 0.5)
        mm.log_param("lr", 0.1)


def test_params_that_cannot_be_stored_raise_clearly(store: Path) -> None:
    with mm.start_run():
        with pytest.raises(ValueError, match="'obj'.*JSON"):
            mm.log_param("obj", object())
        with pytest.raises(ValueError, match="'nan'.*JSON"):
            mm.log_param("nan", float("nan"))
        with pytest.raises(ValueError, match="6000"):
            mm.log_param("big", "x" * 6001)
        mm.log_param("edge", "x" * 6000)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a//b",
        "/a",
        "a/",
        "./a",
        "a/../b",
        "..",
        "../x",
        "a\x00b",
        "tab\tkey",
        "semi;colon",
        "x" * 251,
        "m.json/x",
    ],
)
def test_invalid_keys_raise_value_error_naming_the_key(store: Path, key: str) -> None:
    with mm.start_run():
        for call in (
            lambda: mm.log_metric(key, 1.0),
            lambda: mm.log_param(key, 1),
            lambda: mm.set_tag(key, "v"),
        ):
            with pytest.raises(ValueError) as err:
                call()
            assert repr(key)[:40] in str(err.value) or "characters long" in str(err.value)


@pytest.mark.parametrize("value", [True, False, None, "1.0", b"1", [1.0], {"a": 1}, 1j])
def test_non_numeric_metric_values_raise(store: Path, value: object) -> None:
    with mm.start_run():
        with pytest.raises((TypeError, ValueError), match="not a real number"):
            mm.log_metric("m", value)  # type: ignore[arg-type]


def test_metric_step_and_timestamp_types(store: Path) -> None:
    with mm.start_run() as run:
        with pytest.raises(TypeError, match="step"):
            mm.log_metric("m", 1.0, step=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="step"):
            mm.log_metric("m", 1.0, step=True)
        with pytest.raises(TypeError, match="timestamp"):
            mm.log_metric("m", 1.0, timestamp="now")  # type: ignore[arg-type]
        for bad in (float("inf"), float("-inf"), float("nan")):  # int() of these would be a deep error
            with pytest.raises(TypeError, match="timestamp .* finite"):
                mm.log_metric("m", 1.0, timestamp=bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="timestamp .* finite"):
                mm.log_metrics({"m": 1.0}, timestamp=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'m': value 1000.* too large for a float"):
            mm.log_metric("m", 10**400)
        mm.log_metric("m", 1.0, step=-5, timestamp=3)
    assert read_jsonl(Path(run.run_dir) / "metrics" / "m.jsonl") == [
        {"step": -5, "value": 1.0, "timestamp": 3}
    ]


def test_numpy_integers_are_steps_and_timestamps(store: Path) -> None:
    np = pytest.importorskip("numpy")
    with mm.start_run() as run:  # as MLflow takes them (a numpy int64 timestamp was refused)
        mm.log_metric("m", 2.0, step=np.int32(1), timestamp=np.int64(4))
    assert read_jsonl(Path(run.run_dir) / "metrics" / "m.jsonl") == [
        {"step": 1, "value": 2.0, "timestamp": 4}
    ]


def test_caller_mistakes_keep_the_original_messages(store: Path) -> None:
    # Logging with no active run starts one and ending none does nothing, as in MLflow (the original
    # Mini MLflow raised "No active run" for both; README: "Where MLflow and the original differ").
    mm.end_run()
    mm.log_param("p", 1)
    started = mm.active_run()
    assert started is not None and mm.get_run(started.run_id)["params"] == {"p": 1}
    mm.end_run()
    run = mm.start_run()
    with pytest.raises(RuntimeError, match="already an active run"):
        mm.start_run()
    with pytest.raises(ValueError, match="Invalid status"):
        mm.end_run("DONE")
    mm.end_run()
    with pytest.raises(ValueError, match="Cannot log"):
        run.log_metric("m", 1.0)
    with pytest.raises(ValueError, match="Cannot log"):
        run.log_param("p", 1)
    with pytest.raises(ValueError, match="already ended"):
        run.end()
    assert mm.active_run() is None


def test_exception_inside_with_marks_failed_and_reraises(store: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with mm.start_run() as run:
            mm.log_metric("m", 1.0)
            1 / 0
    assert run.status == "FAILED"
    assert mm.get_run(run.run_id)["metadata"]["status"] == "FAILED"
    assert mm.active_run() is None


def test_keyboard_interrupt_inside_with_marks_killed(store: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with mm.start_run() as run:
            raise KeyboardInterrupt
    assert mm.get_run(run.run_id)["metadata"]["status"] == "KILLED"


def test_end_run_status_and_times(store: Path) -> None:
    run = mm.start_run()
    assert run.status == "RUNNING" and run.end_time is None and ISO_Z.match(run.start_time or "")
    assert [p.name for p in Path(run.run_dir).glob(".heartbeat-*")]  # a live run beats from its start
    mm.end_run("failed")
    assert run.status == "FAILED" and ISO_Z.match(run.end_time or "")
    assert not list(Path(run.run_dir).glob(".heartbeat-*"))  # an ended run leaves no heartbeat behind


def test_an_ended_run_is_never_beaten_again(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINI_MLFLOW_HEARTBEAT", "0.05")
    run = mm.start_run()
    mm.end_run()
    time.sleep(0.3)  # six beat intervals: a run the writer thread still held would have beaten again
    assert not list(Path(run.run_dir).glob(".heartbeat-*"))


def test_resume_by_run_id_appends(store: Path) -> None:
    with mm.start_run(run_name="first") as run:
        mm.log_metric("loss", 1.0, step=0)
    with mm.start_run(run_id=run.run_id) as again:
        assert again.run_id == run.run_id and again.name == "first"
        assert mm.get_run(run.run_id)["metadata"]["status"] == "RUNNING"
        mm.log_metric("loss", 0.5, step=1)
    assert [p.value for p in mm.get_metric_history(run.run_id, "loss")] == [1.0, 0.5]
    assert mm.get_run(run.run_id)["metadata"]["status"] == "FINISHED"


def test_caller_run_ids(store: Path) -> None:
    with mm.init("Default", run_id="my-run_01") as run:  # a new run under a chosen id: init, not start_run
        mm.log_metric("m", 1.0)
    assert (store / "0" / "my-run_01" / "meta.yaml").exists()
    assert run.id == "my-run_01"
    with mm.start_run(run_id="my-run_01") as again:  # start_run resumes it
        mm.log_metric("m", 2.0)
    assert again.run_id == "my-run_01"
    assert [p.value for p in mm.get_metric_history("my-run_01", "m")] == [1.0, 2.0]
    for bad in ["../escape", "-leading", "has space", "a/b", "", "x" * 300]:
        with pytest.raises(ValueError, match="invalid run id"):
            mm.start_run(run_id=bad)
    assert mm.active_run() is None


def test_start_run_with_an_id_no_run_has_is_not_found_and_creates_nothing(store: Path) -> None:
    # MLflow's rule: a mistyped resume id, or a name passed as the first argument, would otherwise
    # become a new run that hides the mistake.
    for wrong in ["f" * 32, "myname"]:
        with pytest.raises(mm.NotFoundError, match=f"Run with id={wrong} not found.*run_name="):
            mm.start_run(wrong)
    assert mm.active_run() is None
    assert not [p for p in store.glob("*/*") if p.is_dir()], "no run folder was created"


def test_nested_runs_record_their_parent(store: Path) -> None:
    with mm.start_run() as parent:
        with mm.start_run(nested=True) as child:
            assert mm.active_run() is child
            mm.log_metric("m", 1.0)
        assert mm.active_run() is parent
    assert child.parent_run_id == parent.run_id
    assert mm.get_run(child.run_id)["metadata"]["parent_run_id"] == parent.run_id
    assert mm.get_run(child.run_id)["metrics"] == {"m": 1.0}
    assert mm.get_run(parent.run_id)["metrics"] == {}


def test_active_run_is_thread_local(store: Path) -> None:
    seen: list[object] = []
    with mm.start_run() as run:
        t = threading.Thread(target=lambda: seen.append(mm.active_run()))
        t.start()
        t.join()
        assert mm.active_run() is run
    assert seen == [None]


def test_list_runs_newest_first(store: Path) -> None:
    ids = []
    for i in range(3):
        with mm.start_run(run_name=f"r{i}") as run:
            ids.append(run.run_id)
        import time

        time.sleep(0.005)
    assert mm.list_runs(0) == ids[::-1]


def test_artifacts(store: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    with mm.start_run() as run:
        mm.log_artifact(src / "a.txt", artifact_path="one/two")
        mm.log_artifacts(src, artifact_path="tree")
        mm.log_dict({"x": 1}, "cfg/config.json")
        mm.log_dict({"y": 2}, "cfg/config.yaml")
        mm.log_text("hello", "notes.txt")
        for bad in ["../out", "/abs", "a/../../b", "C:/win", "a\\b"]:
            with pytest.raises(ValueError, match="artifact path"):
                mm.log_artifact(src / "a.txt", artifact_path=bad)
            with pytest.raises(ValueError, match="artifact path"):
                mm.log_text("x", f"{bad}/f.txt")
        with pytest.raises(ValueError, match="is not a file"):
            mm.log_artifact(src / "missing.txt")
    art = Path(run.run_dir) / "artifacts"
    assert (art / "one" / "two" / "a.txt").read_text() == "A"
    assert (art / "tree" / "a.txt").read_text() == "A"
    assert (art / "tree" / "sub" / "b.txt").read_text() == "B"
    assert json.loads((art / "cfg" / "config.json").read_text()) == {"x": 1}
    assert yaml.safe_load((art / "cfg" / "config.yaml").read_text()) == {"y": 2}
    assert (art / "notes.txt").read_text() == "hello"
    assert not list(tmp_path.glob("out*")) and not Path("/abs").exists()


def test_artifact_folder_symlinked_outside_is_refused(store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    with mm.start_run() as run:
        (Path(run.run_dir) / "artifacts" / "link").symlink_to(outside)
        with pytest.raises(ValueError, match="outside"):
            mm.log_text("x", "link/f.txt")
    assert list(outside.iterdir()) == []


def test_settings_errors_name_the_variable(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINI_MLFLOW_FLUSH_INTERVAL", "soon")
    with pytest.raises(ValueError, match="MINI_MLFLOW_FLUSH_INTERVAL='soon'.*seconds"):
        mm.start_run()
    monkeypatch.setenv("MINI_MLFLOW_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("MINI_MLFLOW_FSYNC", "sometimes")
    with pytest.raises(ValueError, match="MINI_MLFLOW_FSYNC.*never, end, flush"):
        mm.start_run()
    monkeypatch.delenv("MINI_MLFLOW_FSYNC")
    monkeypatch.setenv("MINI_MLFLOW_FLUSH_INTERVL", "1")
    with pytest.warns(UserWarning, match="MINI_MLFLOW_FLUSH_INTERVL.*MINI_MLFLOW_FLUSH_INTERVAL"):
        with mm.start_run():
            pass


def test_tracking_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINI_MLFLOW_TRACKING_DIR", str(tmp_path / "elsewhere"))
    mm.set_tracking_dir(None)
    assert mm.get_tracking_dir() == str(tmp_path / "elsewhere")
    with mm.start_run() as run:
        pass
    assert (tmp_path / "elsewhere" / "0" / run.run_id / "meta.yaml").exists()
    monkeypatch.delenv("MINI_MLFLOW_TRACKING_DIR")
    assert mm.get_tracking_dir() == "mlruns"


@pytest.mark.parametrize(
    ("code", "status"), [(0, "FINISHED"), (None, "FINISHED"), (3, "FAILED"), ("bye", "FAILED")]
)
def test_sys_exit_inside_with_is_judged_by_its_code(store: Path, code: object, status: str) -> None:
    with pytest.raises(SystemExit):
        with mm.start_run() as run:
            raise SystemExit(code)
    assert mm.get_run(run.run_id)["metadata"]["status"] == status


def test_log_level_setting_controls_mini_mlflow_messages(
    store: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MINI_MLFLOW_LOG_LEVEL", "INFO")
    with caplog.at_level("INFO", logger="mini_mlflow"):
        with mm.start_run() as run:
            pass
    messages = [r.getMessage() for r in caplog.records if r.name == "mini_mlflow"]
    assert f"run {run.run_id} ended: FINISHED" in messages
    caplog.clear()
    monkeypatch.setenv("MINI_MLFLOW_LOG_LEVEL", "ERROR")
    with mm.start_run():
        pass
    assert not [r for r in caplog.records if r.name == "mini_mlflow" and r.levelname == "INFO"]
