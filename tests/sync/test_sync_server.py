"""Sync against a real MLflow tracking server, verified through MLflow's own client."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mini_mlflow as mm
from mini_mlflow.cli._main import cli
from mini_mlflow.interop._convert import load_run_view
from mini_mlflow.store import _experiments
from mini_mlflow.store._layout import ms_from_iso

from .sync_helpers import (
    ROOT,
    assert_run_equal,
    clean_env,
    free_port,
    local_history,
    make_run,
    remote_history,
    remote_run,
    same_points,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def sync_all(root: Path, url: str, *extra: str) -> Any:
    return run_cli("--root", str(root), "sync", "--all", "--to", url, *extra)


def test_round_trip_verified_by_mlflow_client(tmp_path: Path, mlflow_server: Any, mlflow_client: Any) -> None:
    root = tmp_path / "mlruns"
    parent = make_run(root, "vision", "parent", points=2500, keys=("train/loss", "acc"), end=None)
    parent.log_params({"lr": 0.001, "layers": [64, 32], "opt": "adam", "wd": None, "flag": True})
    parent.set_tags({"team": "ml", "note": "ünïcode ✓"})
    parent.log_metric("odd", float("nan"), step=0, timestamp=1_763_900_000_000)
    parent.log_metric("odd", float("inf"), step=1, timestamp=1_763_900_000_001)
    parent.log_metric("odd", float("-inf"), step=2, timestamp=1_763_900_000_002)
    parent.log_metric("odd", -0.0, step=3, timestamp=1_763_900_000_003)
    parent.log_text("hello artifacts", "notes/readme.txt")
    parent.log_dict({"a": 1}, "config.json")
    child = mm.Run(
        experiment_id=parent.experiment_id, name="child", runs_dir=root, parent_run_id=parent.run_id
    )
    child.log_metric("x", 2.0, step=5, timestamp=1_763_900_000_500)
    child.end("FAILED")
    parent.end("FINISHED")
    other = make_run(root, "nlp", "other", points=3)

    result = sync_all(root, mlflow_server.url)
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.output

    remote_parent = assert_run_equal(mlflow_client, root, "vision", parent)
    assert remote_parent.data.params == {
        "lr": "0.001",
        "layers": "[64, 32]",
        "opt": "adam",
        "wd": "None",
        "flag": "True",
    }  # what mlflow.log_param would have stored for the same Python values
    assert remote_parent.data.tags["note"] == "ünïcode ✓"
    assert remote_parent.data.tags["mlflow.runName"] == "parent"
    assert remote_parent.info.status == "FINISHED"
    meta = mm.Store(root).get_run(parent.run_id)["metadata"]
    assert remote_parent.info.start_time == ms_from_iso(meta["start_time"])
    assert remote_parent.info.end_time == ms_from_iso(meta["end_time"])
    assert remote_parent.info.user_id == meta["user"]
    assert len(mlflow_client.get_metric_history(remote_parent.info.run_id, "train/loss")) == 2500
    odd = sorted(mlflow_client.get_metric_history(remote_parent.info.run_id, "odd"), key=lambda m: m.step)
    assert math.isnan(odd[0].value)
    assert odd[1].value == sys.float_info.max and odd[2].value == -sys.float_info.max  # MLflow's SQL store
    assert odd[3].value == 0.0

    remote_child = assert_run_equal(mlflow_client, root, "vision", child)
    assert remote_child.info.status == "FAILED"
    assert remote_child.data.tags["mlflow.parentRunId"] == remote_parent.info.run_id
    assert_run_equal(mlflow_client, root, "nlp", other)

    artifacts = mlflow_client.list_artifacts(remote_parent.info.run_id, "notes")
    assert [(a.path, a.file_size) for a in artifacts] == [("notes/readme.txt", 15)]
    fetched = mlflow_client.download_artifacts(remote_parent.info.run_id, "config.json", str(tmp_path))
    assert json.loads(Path(fetched).read_text()) == {"a": 1}

    # A second pass finds nothing to do, makes no request and duplicates nothing.
    again = sync_all(root, mlflow_server.url, "--json")
    summary = json.loads(again.output)
    assert again.exit_code == 0 and summary["requests"] == 0 and summary["points"] == 0
    assert len(mlflow_client.get_metric_history(remote_parent.info.run_id, "train/loss")) == 2500


def test_live_run_is_synced_incrementally(tmp_path: Path, mlflow_server: Any, mlflow_client: Any) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "live", "live", points=100, end=None)
    run.log_param("a", 1)
    assert sync_all(root, mlflow_server.url).exit_code == 0
    remote = remote_run(mlflow_client, "live", run.run_id)
    assert remote.info.status == "RUNNING"
    assert len(remote_history(mlflow_client, remote.info.run_id, "loss")) == 100

    for i in range(100, 250):
        run.log_metric("loss", float(i), step=i, timestamp=1_763_900_000_000 + i)
    run.log_param("b", "two")
    run.set_tag("phase", "second")
    run.flush()
    # A line still being written (no newline yet) is left for the next pass.
    metrics_file = Path(run.run_dir) / "metrics" / "loss.jsonl"
    with open(metrics_file, "ab") as f:
        f.write(b'{"step":250,"value":2.5,"timest')
    result = sync_all(root, mlflow_server.url, "--json")
    assert json.loads(result.output)["points"] == 150
    assert len(remote_history(mlflow_client, remote.info.run_id, "loss")) == 250
    with open(metrics_file, "ab") as f:
        f.write(b'amp":1763900000250}\n')
    run.end()
    result = sync_all(root, mlflow_server.url, "--json")
    assert json.loads(result.output)["points"] == 1
    final = assert_run_equal(mlflow_client, root, "live", run)
    assert final.info.status == "FINISHED" and final.data.params == {"a": "1", "b": "two"}
    assert final.data.tags["phase"] == "second"


def test_param_conflict_is_reported_and_other_runs_still_sync(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    clash = make_run(root, "clash", "clash", points=5, end=None)
    clash.log_param("lr", 0.1)
    assert sync_all(root, mlflow_server.url).exit_code == 0
    remote = remote_run(mlflow_client, "clash", clash.run_id)
    mlflow_client.log_param(remote.info.run_id, "seed", "7")  # someone else wrote it on the server
    clash.log_params({"seed": 8, "batch": 32})
    for i in range(5, 1500):
        clash.log_metric("loss", 0.5, step=i, timestamp=1_763_900_000_000 + i)
    clash.end()
    fine = make_run(root, "clash", "fine", points=50)

    result = sync_all(root, mlflow_server.url)
    assert result.exit_code == 1
    assert "param 'seed'" in result.output and "'8'" in result.output and "'7'" in result.output
    remote = remote_run(mlflow_client, "clash", clash.run_id)
    assert remote.data.params == {"lr": "0.1", "seed": "7", "batch": "32"}  # the rest of the batch went in
    assert len(remote_history(mlflow_client, remote.info.run_id, "loss")) == 1500
    assert remote.info.status == "FINISHED"
    assert_run_equal(mlflow_client, root, "clash", fine)
    # Reported again on the next pass: a conflict is never silently dropped.
    again = sync_all(root, mlflow_server.url)
    assert again.exit_code == 1 and "param 'seed'" in again.output


def test_a_4xx_for_one_run_does_not_stop_the_others(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    gone = make_run(root, "gone", "gone", points=5, end=None)
    assert sync_all(root, mlflow_server.url).exit_code == 0
    mlflow_client.delete_run(remote_run(mlflow_client, "gone", gone.run_id).info.run_id)
    gone.log_metric("loss", 9.0, step=99, timestamp=1_763_900_009_999)
    gone.end()
    later = make_run(root, "gone", "later", points=20)
    result = sync_all(root, mlflow_server.url)
    assert result.exit_code == 1
    assert f"run {gone.run_id}" in result.output or gone.run_id in result.output
    assert "400" in result.output
    assert_run_equal(mlflow_client, root, "gone", later)


def test_coalesce_sends_the_last_value_per_step(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    run = mm.Run(experiment_id=_experiments.get_or_create_experiment(str(root), "coal"), runs_dir=root)
    for step in range(10):
        for j in range(3):
            run.log_metric("m", step * 10 + j, step=step, timestamp=1_763_900_000_000 + step * 3 + j)
    run.end()
    assert sync_all(root, mlflow_server.url, "--coalesce").exit_code == 0
    remote = remote_run(mlflow_client, "coal", run.run_id)
    points = remote_history(mlflow_client, remote.info.run_id, "m")
    assert [(s, v) for _, s, v in points] == [(step, float(step * 10 + 2)) for step in range(10)]


def test_dry_run_contacts_no_server_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "dry", "dry", points=30)
    run_files = sorted(p for p in Path(run.run_dir).rglob("*"))
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = sync_all(root, nowhere, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would send 0 params" in result.output
    pending = json.loads(sync_all(root, nowhere, "--dry-run", "--json").output)["run_reports"][0]["pending"]
    size = (Path(run.run_dir) / "metrics" / "loss.jsonl").stat().st_size
    tags = load_run_view(str(root), run.run_dir, "dry").tags  # mlflow.runName, mlflow.user, source...
    expected = {"params": 0, "tags": len(tags), "metric_bytes": size, "results": 0, "artifacts": 0}
    assert pending == {**expected, "status": 1}
    assert sorted(p for p in Path(run.run_dir).rglob("*")) == run_files  # no .sync cursor either


def test_watch_delivers_each_new_point_of_a_live_run(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "watched", "watched", points=1, end=None)
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mini_mlflow",
            "--root",
            str(root),
            "sync",
            "--watch",
            "--all",
            "--to",
            mlflow_server.url,
            "--interval",
            "0.5",
        ],
        env=clean_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        remote = wait_until(lambda: _find(mlflow_client, "watched", run.run_id), timeout=60)
        # Each new point reaches the server while the run is live (no wall-clock bound on how fast: it
        # would measure the machine's load, not the watcher).
        for i in range(1, 4):
            run.log_metric("loss", 100.0 + i, step=i, timestamp=1_763_900_000_000 + i)
            run.flush()
            wait_until(lambda i=i: len(remote_history(mlflow_client, remote, "loss")) == i + 1, timeout=60)
        run.end()
        wait_until(lambda: mlflow_client.get_run(remote).info.status == "FINISHED", timeout=60)
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
        assert watcher.returncode == 0, err
        assert "+1 points" in out
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert_run_equal(mlflow_client, root, "watched", run)


def _find(client: Any, experiment: str, run_id: str) -> str | None:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.`mini_mlflow.run_id` = '{run_id}'")
    return runs[0].info.run_id if runs else None


def test_online_mode_syncs_from_a_background_thread(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    go = tmp_path / "go"
    code = f"""
import os, time
import mini_mlflow as mm
mm.set_experiment("online")
run = mm.start_run(run_name="online")
for i in range(200):
    mm.log_metric("loss", 1.0 / (i + 1), step=i)
mm.flush()
while not os.path.exists({str(go)!r}):
    time.sleep(0.05)
for i in range(200, 300):
    mm.log_metric("loss", 1.0 / (i + 1), step=i)
print(run.run_id)
"""  # exits without end_run: the exit hook ends the run and the last pass sends its status
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=clean_env(
            PYTHONPATH=str(ROOT),
            MINI_MLFLOW_TRACKING_DIR=str(root),
            MINI_MLFLOW_SYNC_URL=mlflow_server.url,
            MINI_MLFLOW_SYNC_INTERVAL="0.3",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_dirs = wait_until(lambda: list(root.glob("1/*/meta.yaml")), timeout=30)
        run_id = run_dirs[0].parent.name
        remote = wait_until(lambda: _find(mlflow_client, "online", run_id), timeout=30)
        wait_until(lambda: len(remote_history(mlflow_client, remote, "loss")) == 200, timeout=30)
        assert mlflow_client.get_run(remote).info.status == "RUNNING"  # synced while still training
        go.write_text("")
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.strip() == run_id
        assert "Warning" not in err, err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    final = mlflow_client.get_run(remote)
    assert final.info.status == "FINISHED"
    assert same_points(remote_history(mlflow_client, remote, "loss"), local_history(root, run_id, "loss"))
    assert len(local_history(root, run_id, "loss")) == 300


def test_offline_setting_keeps_the_process_off_the_network(tmp_path: Path) -> None:
    code = """
import threading, sys
import mini_mlflow as mm
with mm.start_run():
    mm.log_metric("a", 1.0)
print(sorted(t.name for t in threading.enumerate()), "httpx" in sys.modules)
"""
    env = clean_env(
        PYTHONPATH=str(ROOT),
        MINI_MLFLOW_TRACKING_DIR=str(tmp_path / "mlruns"),
        MINI_MLFLOW_SYNC_URL=f"http://127.0.0.1:{free_port()}",
        MINI_MLFLOW_OFFLINE="true",
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mini-mlflow-sync" not in out.stdout and out.stdout.strip().endswith("False")
    assert not any(p.name == ".sync" for p in (tmp_path / "mlruns").rglob("*"))
    assert os.path.isdir(tmp_path / "mlruns")


def test_online_mode_with_an_unreachable_server_keeps_training(tmp_path: Path) -> None:
    code = """
import mini_mlflow as mm
with mm.start_run() as run:
    for i in range(20_000):
        mm.log_metric("loss", 1.0 / (i + 1), step=i)
print(run.run_id)
"""
    env = clean_env(
        PYTHONPATH=str(ROOT),
        MINI_MLFLOW_TRACKING_DIR=str(tmp_path / "mlruns"),
        MINI_MLFLOW_SYNC_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        MINI_MLFLOW_SYNC_INTERVAL="0.2",
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    assert len(mm.Store(tmp_path / "mlruns").get_metric_history(run_id, "loss")) == 20_000  # local: all
    assert mm.Store(tmp_path / "mlruns").get_run(run_id)["metadata"]["status"] == "FINISHED"
    assert out.stderr.count("Warning: mini_mlflow: background sync") == 1, out.stderr  # once per cause
    assert "Traceback" not in out.stderr
