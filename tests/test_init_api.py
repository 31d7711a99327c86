"""The init/log/finish face: same files as the fluent API, step counting, nested keys, errors, lifecycle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import mini_mlflow as mm

from conftest import read_jsonl

VOLATILE_META = ("run_id", "run_name", "start_time", "end_time")


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run (relative path → bytes), except per-process bookkeeping and meta.yaml."""
    files = {}
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir).as_posix()
        if path.is_file() and rel not in ("meta.yaml", ".lock") and not rel.startswith(".heartbeat"):
            files[rel] = path.read_bytes()
    return files


def stable_meta(run_dir: Path) -> dict[str, object]:
    meta = yaml.safe_load((run_dir / "meta.yaml").read_text())
    return {k: v for k, v in meta.items() if k not in VOLATILE_META}


def test_init_writes_the_same_run_as_the_fluent_api(store: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    mm.set_experiment("proj")
    with mm.start_run(run_name="fluent", tags={"team": "vision"}) as fluent:
        mm.log_params({"lr": 0.1, "layers": [64, 32]})
        for i in range(3):
            mm.log_metrics({"loss": 1 / (i + 1), "val/acc": 0.5 + i / 10}, step=i, timestamp=1000 + i)
        mm.log_artifact(str(model), "model")
    with mm.init(
        "proj", name="wandb", tags={"team": "vision"}, config={"lr": 0.1, "layers": [64, 32]}
    ) as run:
        for i in range(3):
            run.log({"loss": 1 / (i + 1), "val": {"acc": 0.5 + i / 10}}, timestamp=(1000 + i) / 1000)
        run.log_artifact(model, type="model")
    fluent_dir = store / "1" / fluent.run_id
    init_dir = Path(run.dir)
    assert init_dir.parent == fluent_dir.parent  # project "proj" is the fluent experiment "proj"
    assert snapshot(init_dir) == snapshot(fluent_dir)
    assert stable_meta(init_dir) == stable_meta(fluent_dir)
    assert stable_meta(init_dir)["status"] == "FINISHED"
    assert (init_dir / "metrics" / "val" / "acc.jsonl").read_text().splitlines()[0] == (
        '{"step":0,"value":0.5,"timestamp":1000}'
    )
    assert run.project == "proj" and run.name == "wandb"


def test_step_counts_up_per_call_and_follows_explicit_steps(store: Path) -> None:
    run = mm.init("steps")
    run.log({"a": 1.0})
    run.log({"a": 2.0})
    run.log({"a": 3.0}, step=10)
    run.log({"a": 4.0})
    run.log({"b": 5.0}, step=2)  # an earlier explicit step does not pull the counter back
    run.log({"a": 6.0})
    assert run.step == 13
    run.finish()
    steps = [p["step"] for p in read_jsonl(Path(run.dir) / "metrics" / "a.jsonl")]
    assert steps == [0, 1, 10, 11, 12]
    assert [p["step"] for p in read_jsonl(Path(run.dir) / "metrics" / "b.jsonl")] == [2]


def test_nested_dicts_flatten_to_slash_keys(store: Path) -> None:
    with mm.init("nested") as run:
        run.log({"train": {"loss": 0.5, "opt": {"lr": 0.01}}, "epoch": 1}, step=4)
    metrics = Path(run.dir) / "metrics"
    assert sorted(p.relative_to(metrics).as_posix() for p in metrics.rglob("*.jsonl")) == [
        "epoch.jsonl",
        "train/loss.jsonl",
        "train/opt/lr.jsonl",
    ]
    assert read_jsonl(metrics / "train" / "opt" / "lr.jsonl")[0]["value"] == 0.01


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"loss": 0.5, "note": "hello"}, "'note'"),
        ({"loss": 0.5, "flag": True}, "'flag'"),
        ({"loss": 0.5, "deep": {"er": None}}, "'deep/er'"),
        ({"loss": 0.5, "deep": {"er": [1, 2]}}, "'deep/er'"),
    ],
)
def test_non_numeric_values_name_the_key_and_log_nothing(
    store: Path, data: dict[str, object], named: str
) -> None:
    run = mm.init("bad")
    with pytest.raises(mm.InvalidValueError, match=named):
        run.log(data)
    assert run.step == 0  # the failed call used no step
    run.log({"loss": 1.0})
    run.finish()
    points = read_jsonl(Path(run.dir) / "metrics" / "loss.jsonl")
    assert [(p["step"], p["value"]) for p in points] == [(0, 1.0)]


def test_log_rejects_what_is_not_a_dict_or_a_number(store: Path) -> None:
    run = mm.init("bad")
    with pytest.raises(mm.InvalidInputError, match="dict"):
        run.log([("loss", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(mm.InvalidValueError, match="step"):
        run.log({"loss": 1.0}, step="3")  # type: ignore[arg-type]
    with pytest.raises(mm.InvalidValueError, match="seconds"):
        run.log({"loss": 1.0}, timestamp="now")  # type: ignore[arg-type]
    with pytest.raises(mm.InvalidInputError, match="metric key"):
        run.log({"../escape": 1.0})
    run.finish()


def test_params_and_tags(store: Path) -> None:
    run = mm.init("p", config={"lr": 0.1})
    run.log_params({"batch": 32})
    run.log_params({"lr": 0.1})  # same value: no-op
    with pytest.raises(mm.ParamConflictError, match="lr"):
        run.log_params({"lr": 0.2})
    run.log_tags({"gpu": "A100"})
    run.log_tags({"gpu": "H100"})  # last write wins
    run.finish()
    assert run.config == {"lr": 0.1, "batch": 32}
    record = mm.get_run(run.id)
    assert record["params"] == {"lr": 0.1, "batch": 32}
    assert record["tags"] == {"gpu": "H100"}


def test_config_changes_are_logged_as_params_as_wandb_users_expect(store: Path) -> None:
    # W&B's run.config is live: a key set or updated later is recorded. A plain dict here accepted
    # run.config.update({...}) and dropped it silently.
    run = mm.init("p", config={"lr": 0.1})
    run.config.update({"extra": 1})
    run.config["layers"] = 3
    run.config.dropout = 0.5
    run.config.setdefault("lr", 9.0)  # present: left as it is
    assert run.config.lr == 0.1 and run.config["dropout"] == 0.5
    with pytest.raises(AttributeError, match="no key 'missing'"):
        _ = run.config.missing
    with pytest.raises(mm.ParamConflictError, match="lr"):
        run.config["lr"] = 0.2
    with pytest.raises(mm.InvalidInputError, match="write-once"):
        del run.config["lr"]
    with pytest.raises(mm.InvalidInputError, match="write-once"):
        run.config.pop("lr")
    run.finish()
    expected = {"lr": 0.1, "extra": 1, "layers": 3, "dropout": 0.5}
    assert run.config == expected and mm.get_run(run.id)["params"] == expected
    import copy
    import pickle

    for duplicate in (copy.copy, copy.deepcopy, lambda c: pickle.loads(pickle.dumps(c))):
        plain = duplicate(run.config)  # the run has ended: a copy must not log again
        assert type(plain) is dict and plain == expected


def test_tags_may_be_wandbs_list_of_labels_and_a_bad_kind_leaves_no_run(store: Path) -> None:
    run = mm.init("p", tags=["baseline", "sweep-3"])
    run.finish()
    assert mm.get_run(run.id)["tags"] == {"baseline": "", "sweep-3": ""}
    for bad in [[1, 2], "baseline", 7]:
        with pytest.raises(mm.InvalidInputError, match="tags must be a dict .* or a list of labels"):
            mm.init("q", tags=bad)  # type: ignore[arg-type]
    with pytest.raises(mm.InvalidInputError, match="tag key"):
        mm.init("q", tags=["../escape"])
    assert [r.run_id for r in mm.search_runs(search_all_experiments=True, output_format="list")] == [run.id]


@pytest.mark.parametrize(
    ("status", "stored"),
    [("finished", "FINISHED"), ("failed", "FAILED"), ("killed", "KILLED"), ("FAILED", "FAILED")],
)
def test_finish_records_the_status_once(store: Path, status: str, stored: str) -> None:
    run = mm.init("f")
    run.finish(status)
    run.finish()  # a second finish does nothing
    assert mm.get_run(run.id)["metadata"]["status"] == stored
    with pytest.raises(mm.RunEndedError):
        run.log({"x": 1.0})


def test_finish_refuses_an_unknown_status(store: Path) -> None:
    run = mm.init("f")
    with pytest.raises(mm.InvalidInputError, match="finished, failed, killed"):
        run.finish("done")
    run.finish()


def test_context_manager_status_follows_the_exit(store: Path) -> None:
    with pytest.raises(RuntimeError), mm.init("cm") as failed:
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), mm.init("cm") as killed:
        raise KeyboardInterrupt
    assert mm.get_run(failed.id)["metadata"]["status"] == "FAILED"
    assert mm.get_run(killed.id)["metadata"]["status"] == "KILLED"


def test_init_becomes_the_active_run_for_the_fluent_calls(store: Path) -> None:
    run = mm.init("mixed")
    assert mm.active_run() is run.run
    mm.log_metric("from_fluent", 1.0)
    run.finish()
    assert mm.active_run() is None
    assert mm.get_run(run.id)["metrics"] == {"from_fluent": 1.0}


def test_init_resumes_a_run_by_id(store: Path) -> None:
    first = mm.init("resume", config={"lr": 0.1})
    first.log({"loss": 1.0})
    first.finish()
    again = mm.init("resume", run_id=first.id)
    again.log({"loss": 0.5}, step=1)
    again.finish()
    assert again.dir == first.dir
    assert [p["value"] for p in read_jsonl(Path(again.dir) / "metrics" / "loss.jsonl")] == [1.0, 0.5]


def test_is_offline_follows_the_settings(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = mm.init("o")
    assert local.is_offline  # no sync URL: nothing leaves the machine
    local.finish()
    # With a URL the run would sync in the background (covered by the sync tests); offline wins over it,
    # as an argument and as a variable.
    monkeypatch.setenv("MINI_MLFLOW_SYNC_URL", "http://127.0.0.1:5999")
    forced = mm.init("o", offline=True)
    assert forced.is_offline
    forced.finish()
    monkeypatch.setenv("MINI_MLFLOW_OFFLINE", "yes")
    from_env = mm.init("o")
    assert from_env.is_offline and from_env.run._settings.sync_url == "http://127.0.0.1:5999"
    from_env.finish()


def test_artifacts_files_and_folders_with_a_type(store: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("a,b\n")
    (tmp_path / "notes.txt").write_text("hi")
    with mm.init("art") as run:
        run.log_artifact(tmp_path / "data", type="dataset")
        run.log_artifact(str(tmp_path / "notes.txt"))
        with pytest.raises(mm.InvalidInputError, match="artifact path"):
            run.log_artifact(tmp_path / "notes.txt", type="../out")
    artifacts = Path(run.dir) / "artifacts"
    assert (artifacts / "dataset" / "train.csv").read_text() == "a,b\n"
    assert (artifacts / "notes.txt").read_text() == "hi"


def test_init_store_root_argument(store: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    with mm.init("dir", dir=other) as run:
        run.log({"x": 1.0})
    assert Path(run.dir).parent.parent == other
    assert os.path.isfile(Path(run.dir) / "metrics" / "x.jsonl")
    assert not (store / "1").exists()


def test_init_refuses_bad_arguments(store: Path) -> None:
    with pytest.raises(mm.InvalidInputError, match="experiment name"):
        mm.init("")
    with pytest.raises(mm.InvalidInputError, match="config must be a dict"):
        mm.init("x", config=[1, 2])  # type: ignore[arg-type]


def test_every_setting_is_also_an_argument(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINI_MLFLOW_FSYNC", "never")
    run = mm.init("args", fsync="flush", heartbeat_interval=3)  # arguments beat variables
    assert run.run._settings.fsync == "flush" and run.run._settings.heartbeat_interval == 3.0
    run.finish()
    ctx = mm.get_or_create_ctx("args-ctx", flush_interval=0.5)
    assert ctx.run._settings.flush_interval == 0.5 and ctx.run._settings.fsync == "never"
    ctx.end()
    with pytest.raises(mm.InvalidInputError, match="unknown setting"):
        mm.init("args", flush_every=1)
    with pytest.raises(mm.InvalidInputError, match="argument max_buffer"):
        mm.init("args", max_buffer=0)
