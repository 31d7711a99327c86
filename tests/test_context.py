"""The run context face: params in (recorded), secrets (never written), results apart from metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from test_init_api import snapshot, stable_meta

import mini_mlflow as mm
from mini_mlflow.api import _context

from conftest import python_child

SECRET = "tr0ub4dor-and-3"


def test_context_writes_the_same_run_as_the_fluent_api(store: Path, tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG")
    with mm.start_run(run_name="fluent") as fluent:
        mm.log_params({"p1": 5, "p2": "a-string"})
        for i in range(1, 4):
            mm.log_metric("loss", 2 * i, step=i)
        mm.log_text("abc is 123", "test.txt")
        mm.log_artifact(str(chart))
    with mm.get_or_create_ctx("ctx") as ctx:
        assert ctx.get_param("p1", 5) == 5
        assert ctx.get_param("p2", "a-string") == "a-string"
        for i in range(1, 4):
            ctx.log_metric("loss", 2 * i, i)
        ctx.log_artifact("test.txt", body=b"abc is 123")
        ctx.log_artifact("chart.png", local_path=chart)
        ctx.log_result("accuracy", 12)
    fluent_dir = store / "0" / fluent.run_id
    ctx_dir = Path(ctx.run.run_dir)
    ctx_files = snapshot(ctx_dir)
    assert ctx_files.pop("results/accuracy.json") == b"12\n"  # the one thing only a context has
    fluent_files = snapshot(fluent_dir)
    for files in (ctx_files, fluent_files):  # timestamps differ between the two runs
        for rel in [r for r in files if r.startswith("metrics/")]:
            files[rel] = b"".join(
                json.dumps([p["step"], p["value"]]).encode() for p in map(json.loads, files[rel].splitlines())
            )
    assert ctx_files == fluent_files
    assert stable_meta(ctx_dir) == stable_meta(fluent_dir)
    assert ctx.parameters == {"p1": 5, "p2": "a-string"}


def test_to_dict_is_the_run_record(store: Path, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("x\n1\n")
    ctx = mm.get_or_create_ctx("mytask", project="records")
    ctx.get_param("p1", 1)
    assert ctx.get_input("infile", tmp_path / "in.csv") == str(tmp_path / "in.csv")
    assert ctx.get_input("absent") is None
    ctx.set_label("owner", "me")
    ctx.log_result("accuracy", 0.75)
    ctx.log_result("confusion", [[1, 0], [0, 1]])
    ctx.log_metric("loss", 0.5, 1)
    ctx.log_metric("loss", 0.25, 2)
    ctx.log_artifact("plots/a.txt", body="A")
    record = ctx.to_dict()
    assert record["metadata"] == {
        "name": "mytask",
        "uid": ctx.uid,
        "project": "records",
        "experiment_id": "1",
        "user": record["metadata"]["user"],
        "labels": {"owner": "me"},
    }
    assert record["spec"] == {"parameters": {"p1": 1}, "inputs": {"infile": str(tmp_path / "in.csv")}}
    status = record["status"]
    assert status["state"] == "RUNNING" and status["end_time"] is None
    assert status["results"] == {"accuracy": 0.75, "confusion": [[1, 0], [0, 1]]}
    assert status["metrics"] == {"loss": 0.25}
    assert status["artifacts"] == ["plots/a.txt"]
    assert yaml.safe_load(ctx.to_yaml()) == record
    ctx.end()
    assert ctx.to_dict()["status"]["state"] == "FINISHED"


def test_results_are_kept_apart_from_metrics_and_replaced(store: Path) -> None:
    ctx = mm.get_or_create_ctx("results")
    ctx.log_result("score", 1)
    ctx.log_result("score", 2)  # last write wins
    ctx.log_results({"best/epoch": 7, "nan": math.nan, "inf": -math.inf, "text": "ok"})
    rdir = Path(ctx.run.run_dir)
    assert (rdir / "results" / "score.json").read_text() == "2\n"
    assert (rdir / "results" / "best" / "epoch.json").read_text() == "7\n"
    assert (rdir / "results" / "nan.json").read_text() == '"NaN"\n'
    assert (rdir / "results" / "inf.json").read_text() == '"-Infinity"\n'
    assert not any((rdir / "metrics").iterdir())
    with pytest.raises(mm.InvalidInputError, match="result key"):
        ctx.log_result("../x", 1)
    with pytest.raises(mm.InvalidInputError, match="cannot be stored as JSON"):
        ctx.log_result("obj", object())
    ctx.end()
    with pytest.raises(mm.RunEndedError):
        ctx.log_result("late", 1)


def test_get_param_records_the_effective_value_once(store: Path) -> None:
    ctx = mm.get_or_create_ctx("params")
    assert ctx.get_param("lr", 0.1) == 0.1
    assert ctx.get_param("lr", 0.1) == 0.1
    with pytest.raises(mm.ParamConflictError, match="lr"):
        ctx.get_param("lr", 0.2)
    assert ctx.get_param("none") is None
    ctx.end()
    assert mm.get_run(ctx.uid)["params"] == {"lr": 0.1, "none": None}


def test_injected_params_and_inputs_win_over_defaults(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `mini-mlflow run` does before starting its child: create the run, then hand it over.
    parent = mm.Run(runs_dir=store)
    parent.log_params({"p1": 5})
    monkeypatch.setenv("MINI_MLFLOW_RUN_ID", parent.run_id)
    monkeypatch.setenv("MINI_MLFLOW_PARAMS", json.dumps({"p1": 5}))
    monkeypatch.setenv("MINI_MLFLOW_INPUTS", json.dumps({"infile": "s3://bucket/in.csv"}))
    ctx = mm.get_or_create_ctx("attached")
    assert ctx.uid == parent.run_id  # joined, not a new run
    assert ctx.get_param("p1", 1) == 5
    assert ctx.get_param("p2", "a-string") == "a-string"
    assert ctx.get_input("infile", "local.csv") == "s3://bucket/in.csv"
    ctx.end()
    assert mm.get_or_create_ctx("second").uid != parent.run_id  # only the first run attaches
    mm.get_or_create_ctx("second").end()
    parent.end()
    assert mm.get_run(parent.run_id)["params"] == {"p1": 5, "p2": "a-string"}


def test_get_or_create_returns_the_same_context_or_joins_the_active_run(store: Path) -> None:
    first = mm.get_or_create_ctx("job")
    assert mm.get_or_create_ctx("job") is first
    assert mm.active_run() is first.run  # fluent calls reach it too
    first.end()
    assert mm.get_or_create_ctx("job") is not first  # its run ended: a new one
    mm.get_or_create_ctx("job").end()
    with mm.start_run() as run:
        joined = mm.get_or_create_ctx("inside")
        assert joined.run is run
        with joined:  # does not end a run it only joined
            pass
        assert not run.ended


def test_context_manager_ends_the_run_it_started(store: Path) -> None:
    with pytest.raises(ValueError), mm.get_or_create_ctx("cm") as ctx:
        raise ValueError("boom")
    assert mm.get_run(ctx.uid)["metadata"]["status"] == "FAILED"


def test_artifact_sources(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local.txt").write_text("local")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f.txt").write_text("f")
    ctx = mm.get_or_create_ctx("art")
    assert ctx.log_artifact("local.txt") == "local.txt"  # neither body nor path: the key is the file
    ctx.log_artifact("renamed/copy.txt", local_path=tmp_path / "local.txt")
    ctx.log_artifact("bundle", local_path=tmp_path / "dir")
    ctx.log_artifact("text.txt", body="héllo")
    with pytest.raises(mm.InvalidInputError, match="not both"):
        ctx.log_artifact("x", body=b"1", local_path="local.txt")
    with pytest.raises(mm.InvalidInputError, match="not a file"):
        ctx.log_artifact("missing.txt")
    with pytest.raises(mm.InvalidInputError, match="artifact path"):
        ctx.log_artifact("../escape.txt", body=b"no")
    artifacts = Path(ctx.run.run_dir) / "artifacts"
    assert (artifacts / "local.txt").read_text() == "local"
    assert (artifacts / "renamed" / "copy.txt").read_text() == "local"
    assert (artifacts / "bundle" / "f.txt").read_text() == "f"
    assert (artifacts / "text.txt").read_text(encoding="utf-8") == "héllo"
    assert not (tmp_path / "escape.txt").exists() and not (artifacts.parent / "escape.txt").exists()
    ctx.end()


def test_secrets_come_from_files_then_the_environment_and_are_never_written(
    store: Path, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"# credentials\nexport ACCESS_KEY='{SECRET}'\n\nOTHER = plain\n")
    child = python_child(
        """
        import mini_mlflow as mm
        ctx = mm.get_or_create_ctx("secretive")
        key = ctx.get_secret("ACCESS_KEY")
        ctx.log_result("key_length", len(key))
        ctx.log_result("other", ctx.get_secret("OTHER"))
        ctx.log_result("from_env", ctx.get_secret("FROM_ENV"))
        ctx.log_result("missing", ctx.get_secret("MISSING"))
        assert "ACCESS_KEY" not in repr(ctx.__dict__.get("_secrets_files"))
        print(ctx.to_yaml())
        ctx.end()
        """,
        tmp_path,
        env={
            "MINI_MLFLOW_TRACKING_DIR": str(store),
            "MINI_MLFLOW_SECRETS_FILES": str(secrets),
            "FROM_ENV": "env-value",
        },
    )
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert SECRET not in out and SECRET not in err
    (run_dir,) = [p for p in (store / "0").iterdir() if p.is_dir()]
    results = {p.stem: json.loads(p.read_text()) for p in (run_dir / "results").iterdir()}
    assert results == {"key_length": len(SECRET), "other": "plain", "from_env": "env-value", "missing": None}
    for path in store.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_secrets_file_errors_name_the_line_not_the_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text(f"GOOD=1\n{SECRET}\n")
    with pytest.raises(mm.InvalidInputError, match="line 2") as info:
        _context.parse_secrets_file(bad)
    assert SECRET not in str(info.value)
    with pytest.raises(mm.InvalidInputError, match="cannot be read"):
        _context.parse_secrets_file(tmp_path / "absent.env")
    good = tmp_path / "good.env"
    good.write_text("A=\"x y\"\nB='z'\n  export C = 1 \n# D=2\nE=a=b\n")
    assert _context.parse_secrets_file(good) == {"A": "x y", "B": "z", "C": "1", "E": "a=b"}
