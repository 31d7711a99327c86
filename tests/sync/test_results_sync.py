"""Results (``ctx.log_result``) reach MLflow as metrics or tags, by sync and by export; one agent per run
under `mini-mlflow run`. Checked through MLflow's own client against a real server and a FileStore."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mini_mlflow as mm
from mini_mlflow.api._context import RunContext
from mini_mlflow.cli._main import cli
from mini_mlflow.store import _meta
from mini_mlflow.store._layout import ms_from_iso
from mini_mlflow.sync import _cursor

from .sync_helpers import (
    ROOT,
    clean_env,
    local_history,
    make_run,
    remote_history,
    remote_run,
    same_points,
)

pytestmark = pytest.mark.timeout(180)

MAX = sys.float_info.max  # MLflow's SQL store keeps ±inf as ±max float


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def result_run(root: Path, experiment: str) -> tuple[mm.Run, RunContext]:
    run = make_run(root, experiment, "results", points=5, keys=("loss",), end=None)
    ctx = RunContext(run, "job", owns_run=False)
    ctx.log_results(
        {
            "accuracy": 0.93,
            "epochs": 12,
            "eval/f1": 0.5,
            "diverged": float("nan"),
            "ceiling": float("inf"),
            "best_model": "resnet",
            "flag": True,
            "nothing": None,
            "matrix": {"b": [1, 2], "a": 0},
            "loss": 0.125,  # also a metric series: sent as a tag, not blended into the series
            "huge": "x" * 9000,  # over MLflow's 8000 characters for a tag value
        }
    )
    return run, ctx


def mtime_ms(run: mm.Run, key: str) -> int:
    return os.stat(Path(run.run_dir) / "results" / f"{key}.json").st_mtime_ns // 1_000_000


def test_results_sync_as_metrics_and_tags_once_and_again_when_changed(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    run, ctx = result_run(root, "results-sync")
    url = mlflow_server.url

    first = run_cli("--root", str(root), "sync", "--all", "--to", url, "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["results"] == 10 and summary["points"] == 5 and summary["errors"] == []
    (report,) = summary["run_reports"]
    assert report["skipped_results"] == [
        "result 'huge': 9000 characters of text exceed MLflow's 8000 for a tag value"
    ]

    remote = remote_run(mlflow_client, "results-sync", run.run_id)
    rid = remote.info.run_id
    for key, value in {"accuracy": 0.93, "epochs": 12.0, "eval/f1": 0.5, "ceiling": MAX}.items():
        assert remote_history(mlflow_client, rid, key) == [(mtime_ms(run, key), 0, value)], key
    (nan_point,) = remote_history(mlflow_client, rid, "diverged")
    assert nan_point[:2] == (mtime_ms(run, "diverged"), 0) and math.isnan(nan_point[2])
    assert remote.data.metrics["accuracy"] == 0.93
    tags = remote.data.tags
    assert tags["mini_mlflow.result/best_model"] == "resnet"
    assert tags["mini_mlflow.result/flag"] == "true"
    assert tags["mini_mlflow.result/nothing"] == "null"
    assert tags["mini_mlflow.result/matrix"] == '{"a":0,"b":[1,2]}'
    assert tags["mini_mlflow.result/loss"] == "0.125"
    assert "mini_mlflow.result/huge" not in tags and "huge" not in remote.data.metrics
    assert same_points(remote_history(mlflow_client, rid, "loss"), local_history(root, run.run_id, "loss"))

    cursor = _cursor.load(run.run_dir, url)
    assert set(cursor.results) == {
        "accuracy", "epochs", "eval/f1", "diverged", "ceiling", "best_model", "flag", "nothing",
        "matrix", "loss", "huge",
    }  # fmt: skip

    # A rerun sends nothing and makes no request; rewriting a result with the same value sends nothing.
    ctx.log_result("epochs", 12)
    again = json.loads(run_cli("--root", str(root), "sync", "--all", "--to", url, "--json").output)
    assert again["requests"] == 0 and again["results"] == 0
    assert again["run_reports"][0]["skipped_results"] == []

    # A changed result (last write wins) is sent again, once: MLflow's latest value is the new one.
    ctx.log_result("accuracy", 0.95)
    ctx.log_result("best_model", "vit")
    later = mtime_ms(run, "accuracy") + 5_000
    os.utime(Path(run.run_dir) / "results" / "accuracy.json", ns=(later * 10**6, later * 10**6))
    changed = json.loads(run_cli("--root", str(root), "sync", "--all", "--to", url, "--json").output)
    assert changed["results"] == 2 and changed["points"] == 0
    history = remote_history(mlflow_client, rid, "accuracy")
    assert history[-1] == (later, 0, 0.95) and len(history) == 2
    fresh = mlflow_client.get_run(rid)
    assert fresh.data.metrics["accuracy"] == 0.95
    assert fresh.data.tags["mini_mlflow.result/best_model"] == "vit"
    run.end()
    final = json.loads(run_cli("--root", str(root), "sync", "--all", "--to", url, "--json").output)
    assert final["results"] == 0 and len(remote_history(mlflow_client, rid, "accuracy")) == 2
    assert mlflow_client.get_run(rid).info.status == "FINISHED"


def test_dry_run_counts_pending_results(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    result_run(root, "results-dry")
    out = run_cli("--root", str(root), "sync", "--all", "--to", "http://127.0.0.1:9", "--dry-run", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["run_reports"][0]["pending"]["results"] == 10  # "huge" is not sendable
    assert not list(root.glob("*/*/.sync/*.json"))


def test_export_writes_results_as_mlflow_metrics_and_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    root, dest = tmp_path / "mlruns", tmp_path / "exported"
    run, _ = result_run(root, "results-export")
    run.end()
    result = run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all")
    assert result.exit_code == 0, result.output
    assert "10 results" in result.output
    assert "result 'huge' not exported: 9000 characters" in result.output

    exp_id = Path(run.run_dir).parent.name
    metric_file = dest / exp_id / run.run_id / "metrics" / "eval" / "f1"
    assert metric_file.read_text() == f"{mtime_ms(run, 'eval/f1')} 0.5 0\n"

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=dest.resolve().as_uri())
    remote = client.get_run(run.run_id)
    assert remote.data.metrics["accuracy"] == 0.93 and remote.data.metrics["epochs"] == 12.0
    assert math.isnan(remote.data.metrics["diverged"]) and remote.data.metrics["ceiling"] == math.inf
    (point,) = client.get_metric_history(run.run_id, "accuracy")
    assert (point.step, point.timestamp, point.value) == (0, mtime_ms(run, "accuracy"), 0.93)
    assert remote.data.tags["mini_mlflow.result/matrix"] == '{"a":0,"b":[1,2]}'
    assert remote.data.tags["mini_mlflow.result/loss"] == "0.125"
    assert remote.data.tags["mini_mlflow.result/flag"] == "true"
    assert len(client.get_metric_history(run.run_id, "loss")) == 5  # the series, untouched


CHILD = """
import threading, time
import mini_mlflow as mm
ctx = mm.get_or_create_ctx("job")
for i in range(600):
    ctx.log_metric("loss", 1.0 / (i + 1), step=i)
    if i % 100 == 99:
        mm.flush()
        time.sleep(0.25)  # spread over several sync intervals: passes happen while the child trains
ctx.log_result("accuracy", 0.9)
ctx.log_result("best", "epoch-3")
print("threads:", sorted(t.name for t in threading.enumerate()))
"""


def test_mini_mlflow_run_syncs_each_point_once_from_one_agent(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    env = clean_env(
        PYTHONPATH=str(ROOT),
        MINI_MLFLOW_SYNC_URL=mlflow_server.url,
        MINI_MLFLOW_SYNC_INTERVAL="0.1",
    )
    mini = str(Path(sys.executable).parent / "mini-mlflow")
    cmd = [mini, "--root", str(root), "run", "-e", "one-agent", "-p", "lr=0.1", "--", str(script)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    # The attached child ran no sync thread of its own: the command's agent is the only one.
    threads = next(line for line in done.stdout.splitlines() if line.startswith("threads:"))
    assert "mini-mlflow-sync" not in threads

    (run_dir,) = [p.parent for p in root.glob("*/*/meta.yaml")]
    run_id = run_dir.name
    remote = remote_run(mlflow_client, "one-agent", run_id)  # exactly one remote run
    rid = remote.info.run_id
    local = local_history(root, run_id, "loss")
    assert len(local) == 600
    # Each point once. (The server stores an identical replay once, so this alone would not reveal a
    # second sender; the thread list above does.)
    assert same_points(remote_history(mlflow_client, rid, "loss"), local)
    assert len(remote_history(mlflow_client, rid, "accuracy")) == 1
    assert remote.info.status == "FINISHED"
    assert remote.data.params == {"lr": "0.1"}
    assert remote.data.tags["mini_mlflow.exit_code"] == "0"
    assert remote.data.tags["mini_mlflow.result/best"] == "epoch-3"
    assert remote.data.metrics["accuracy"] == 0.9
    cursor = _cursor.load(str(run_dir), mlflow_server.url)
    assert cursor.metrics == {"loss": (run_dir / "metrics" / "loss.jsonl").stat().st_size}
    assert cursor.status is not None and cursor.status[0] == "FINISHED"
    # Nothing is left to send: a later `mini-mlflow sync` finds the run up to date.
    again = run_cli("--root", str(root), "sync", "--all", "--to", mlflow_server.url, "--json")
    assert json.loads(again.output)["requests"] == 0, again.output


ENDS_THEN_WAITS = """
import os, sys, time
import mini_mlflow as mm
from mini_mlflow.sync import _cursor
ctx = mm.get_or_create_ctx("job")
ctx.log_metric("loss", 0.5, step=0)
run_dir = ctx.run.run_dir
ctx.run.end()  # the child ends the run itself: FINISHED on disk before the parent has its exit code
deadline = time.monotonic() + 60
while time.monotonic() < deadline:  # until the parent's agent has sent that status
    status = _cursor.load(run_dir, os.environ["MINI_MLFLOW_SYNC_URL"]).status
    if status is not None and status[0] == "FINISHED":
        sys.exit(3)
    time.sleep(0.02)
sys.exit(9)
"""


def test_mini_mlflow_run_sends_exit_code_after_the_child_ended_the_run(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    # The parent's agent must not stop watching a run because its status on disk is final: the parent
    # writes the exit code and its own status after that, and they must reach the server before the
    # command returns. Here the child holds its exit until the child's FINISHED was sent, so the parent
    # always writes after a pass that saw the run ended (the timing a loaded machine produced by chance).
    root = tmp_path / "mlruns"
    script = tmp_path / "train.py"
    script.write_text(ENDS_THEN_WAITS)
    env = clean_env(
        PYTHONPATH=str(ROOT), MINI_MLFLOW_SYNC_URL=mlflow_server.url, MINI_MLFLOW_SYNC_INTERVAL="0.05"
    )
    mini = str(Path(sys.executable).parent / "mini-mlflow")
    cmd = [mini, "--root", str(root), "run", "-e", "child-ends", "--", str(script)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr  # 9: the child's FINISHED never reached the server
    assert "Warning" not in done.stderr, done.stderr

    (run_dir,) = [p.parent for p in root.glob("*/*/meta.yaml")]
    meta = _meta.read_meta(str(run_dir / "meta.yaml"))
    assert meta["status"] == "FAILED"
    remote = remote_run(mlflow_client, "child-ends", run_dir.name)
    assert remote.data.tags["mini_mlflow.exit_code"] == "3"
    assert remote.info.status == "FAILED"
    assert remote.info.end_time == ms_from_iso(meta["end_time"])
    assert remote.data.metrics["loss"] == 0.5
    again = run_cli("--root", str(root), "sync", "--all", "--to", mlflow_server.url, "--json")
    assert json.loads(again.output)["requests"] == 0, again.output
