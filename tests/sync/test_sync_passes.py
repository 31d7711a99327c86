"""How long one sync pass runs: bounded by what it planned, by a time slice per run, and by the stop event.

A writer faster than the server (the soak logs ~100 times faster than MLflow takes points) must not keep
one pass, and so every other run, waiting forever; Ctrl-C on ``sync --watch`` must stop after the batch
in flight with the cursor saved.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mini_mlflow.sync import MlflowRestClient, SyncAgent, select_runs
from mini_mlflow.sync._cursor import load as load_cursor

from .sync_helpers import ROOT, assert_run_equal, clean_env, make_run, remote_history, remote_run
from conftest import python_child, wait_until

pytestmark = pytest.mark.timeout(180)


def _agent(root: Path, url: str, **kwargs: Any) -> SyncAgent:
    return SyncAgent(str(root), MlflowRestClient(url), **kwargs)


def _lines(run_dir: str, key: str = "loss") -> int:
    return (Path(run_dir) / "metrics" / f"{key}.jsonl").read_bytes().count(b"\n")


def test_a_time_slice_per_run_keeps_every_run_moving(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    big = make_run(root, "slices", "big", points=5000)
    small = make_run(root, "slices", "small", points=10)
    agent = _agent(root, mlflow_server.url)
    targets = select_runs(str(root), all_runs=True)
    assert [t.run_dir for t in targets] == sorted([big.run_dir, small.run_dir])

    summary = agent.sync(targets, run_slice=0.0)  # one batch per run and pass
    reports = {r.run_id: r for r in summary.runs}
    assert reports[big.run_id].points == 1000 and reports[big.run_id].unfinished
    assert reports[small.run_id].points == 10 and not reports[small.run_id].unfinished
    remote_big = remote_run(mlflow_client, "slices", big.run_id)
    # The final status waits until every line is on the server: FINISHED there means complete.
    assert remote_big.info.status == "RUNNING"
    assert len(remote_history(mlflow_client, remote_big.info.run_id, "loss")) == 1000
    assert load_cursor(big.run_dir, agent.url).metrics["loss"] == len(
        b"".join((Path(big.run_dir) / "metrics" / "loss.jsonl").read_bytes().splitlines(True)[:1000])
    )
    assert_run_equal(mlflow_client, root, "slices", small)

    passes = 1
    while any(r.unfinished for r in summary.runs):
        summary = agent.sync(targets, run_slice=0.0)
        passes += 1
        assert summary.ok, summary.errors
    assert passes == 5
    assert_run_equal(mlflow_client, root, "slices", big)  # every point once, status FINISHED
    agent.client.close()


def test_a_pass_reads_only_what_it_planned_while_the_file_grows(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "growing", "growing", points=3000, end=None)
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    step = [3000]

    def writer_faster_than_the_server(_acked: int) -> None:  # 2,000 new lines per 1,000 sent
        with open(path, "ab") as f:
            for _ in range(2000):
                i = step[0]
                f.write(
                    json.dumps({"step": i, "value": float(i), "timestamp": 1_763_900_000_000 + i}).encode()
                )
                f.write(b"\n")
                step[0] += 1

    agent = _agent(root, mlflow_server.url, on_progress=writer_faster_than_the_server)
    summary = agent.sync(select_runs(str(root), all_runs=True))
    assert summary.ok and summary.total("points") == 3000  # ends: the growth waits for the next pass
    assert _lines(run.run_dir) == 3000 + 3 * 2000
    agent.on_progress = None
    summary = agent.sync(select_runs(str(root), all_runs=True))
    assert summary.total("points") == 6000
    run.end()
    assert agent.sync(select_runs(str(root), all_runs=True)).ok
    assert_run_equal(mlflow_client, root, "growing", run)
    agent.client.close()


def test_stop_ends_a_pass_after_the_batch_in_flight_with_the_cursor_saved(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    first = make_run(root, "stopped", "first", points=4000)
    second = make_run(root, "stopped", "second", points=10)
    agent = _agent(root, mlflow_server.url)
    batches = []

    def stop_after_two(acked: int) -> None:
        batches.append(acked)
        if len(batches) == 2:
            agent.client.stop.set()  # what SIGINT does to `sync --watch`

    agent.on_progress = stop_after_two
    targets = sorted(select_runs(str(root), all_runs=True), key=lambda t: t.run_dir != first.run_dir)
    summary = agent.sync(targets)
    assert summary.fatal_kind == "interrupted"
    assert [r.points for r in summary.runs] == [2000]  # the second run was not started
    remote = remote_run(mlflow_client, "stopped", first.run_id)
    assert len(remote_history(mlflow_client, remote.info.run_id, "loss")) == 2000
    assert load_cursor(first.run_dir, agent.url).metrics["loss"] == sum(batches)
    agent.client.close()

    again = _agent(root, mlflow_server.url)
    summary = again.sync(select_runs(str(root), all_runs=True))
    assert summary.ok and summary.total("points") == 2000 + 10
    assert_run_equal(mlflow_client, root, "stopped", first)
    assert_run_equal(mlflow_client, root, "stopped", second)
    again.client.close()


def test_reading_starts_small_and_still_gets_past_a_line_longer_than_the_first_read(tmp_path: Path) -> None:
    from mini_mlflow.sync._lines import FIRST_CHUNK, read_points
    from mini_mlflow.sync._summary import RunReport

    path = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"step": i, "value": i / 2, "timestamp": 1_763_900_000_000 + i}) for i in range(20000)
    ]
    garbage = "x" * (3 * FIRST_CHUNK)  # no newline within the first read
    path.write_text(garbage + "\n" + "\n".join(lines) + "\n" + '{"step": 20000, "val')
    report = RunReport("r")
    chunks = list(read_points("m", str(path), 0, report))
    points = [point for chunk in chunks for point, _ in chunk]
    assert [p["step"] for p in points] == list(range(20000))
    assert report.skipped_lines == 1
    assert chunks[-1][-1][1] == path.stat().st_size - len('{"step": 20000, "val')  # the torn tail waits
    assert len(chunks[0]) < 10000  # read in growing pieces, not at once
    limited = list(read_points("m", str(path), 0, RunReport("r"), limit=len(garbage) + 1 + len(lines[0]) + 1))
    assert [p["step"] for chunk in limited for p, _ in chunk] == [0]  # never past the planned size


def _slow_batches(seconds: float) -> Any:
    """A proxy fault that forwards every request, each log-batch after ``seconds``: a slow server."""

    def fault(n: int, method: str, path: str) -> None:
        if "log-batch" in path:
            time.sleep(seconds)
        return None

    return fault


def test_sync_watch_gives_each_run_a_time_slice(tmp_path: Path, mlflow_client: Any, make_proxy: Any) -> None:
    # 5 batches of the big run take more than the watch slice (2 s) at 0.7 s each: the small run must not
    # wait for all of them. Measured through the command itself, so the slice `sync --watch` really uses
    # is the one under test (a slower machine only makes the big run's share smaller).
    root = tmp_path / "mlruns"
    big = make_run(root, "sliced", "big", points=5000)
    small = make_run(root, "sliced", "small", points=10)
    proxy = make_proxy(fault=_slow_batches(0.7))
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mini_mlflow",
            "--root",
            str(root),
            "sync",
            "--all",
            "--watch",
            "--to",
            proxy.url,
            "--interval",
            "600",
        ],
        env=clean_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        sent = {}
        while len(sent) < 2:  # the first pass: one line per run
            line = watcher.stdout.readline()
            assert line, watcher.stderr.read() if watcher.stderr else ""
            run_id, _, rest = line.split(" ", 1)[1].partition(": ")
            sent[run_id] = int(rest.split()[0].lstrip("+"))
        assert sent[small.run_id] == 10
        assert 1000 <= sent[big.run_id] < 5000, sent  # its slice ended the pass for it, not its backlog
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=60)


def test_online_mode_gives_each_run_a_time_slice(tmp_path: Path, mlflow_client: Any, make_proxy: Any) -> None:
    proxy = make_proxy(fault=_slow_batches(0.7))
    code = """
        import sys, time, mini_mlflow as mm
        big = mm.Run(name="big")     # started first: the background pass takes it first
        small = mm.Run(name="small")
        for i in range(5000):
            big.log_metric("loss", 1.0 / (i + 1), step=i, timestamp=1_763_900_000_000 + i)
        for i in range(10):
            small.log_metric("loss", float(i), step=i, timestamp=1_763_900_000_000 + i)
        big.flush(); small.flush()
        print(big.run_id, small.run_id, flush=True)
        time.sleep(600)
    """
    child = python_child(
        code,
        tmp_path,
        env={
            "MINI_MLFLOW_TRACKING_DIR": str(tmp_path / "mlruns"),
            "MINI_MLFLOW_SYNC_URL": proxy.url,
            "MINI_MLFLOW_SYNC_INTERVAL": "0.5",
        },
    )
    try:
        assert child.stdout is not None
        big_id, small_id = child.stdout.readline().split()
        exp = wait_until(lambda: mlflow_client.get_experiment_by_name("Default"), timeout=120)

        def remote_count(run_id: str) -> int | None:
            runs = mlflow_client.search_runs([exp.experiment_id], f"tags.`mini_mlflow.run_id` = '{run_id}'")
            return len(mlflow_client.get_metric_history(runs[0].info.run_id, "loss")) if runs else None

        wait_until(lambda: remote_count(small_id) == 10, timeout=120)
        assert (remote_count(big_id) or 0) < 5000  # the small run did not wait for the big one's backlog
    finally:
        child.kill()
        child.communicate()


def test_ctrl_c_stops_sync_after_the_batch_in_flight_with_the_cursor_saved(
    tmp_path: Path, mlflow_client: Any, make_proxy: Any, mlflow_server: Any
) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "interrupted", "long", points=6000)
    proxy = make_proxy(fault=_slow_batches(0.5))
    syncing = subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", "--root", str(root), "sync", "--all", "--to", proxy.url],
        env=clean_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        remote = wait_until(lambda: _remote_or_none(mlflow_client, "interrupted", run.run_id), timeout=120)
        wait_until(
            lambda: len(remote_history(mlflow_client, remote.info.run_id, "loss")) >= 1000, timeout=120
        )
        syncing.send_signal(signal.SIGINT)  # Ctrl-C, as a user gives it, in the middle of the pass
        _, err = syncing.communicate(timeout=120)
    finally:
        if syncing.poll() is None:
            syncing.kill()
    on_server = len(remote_history(mlflow_client, remote.info.run_id, "loss"))
    assert 1000 <= on_server < 6000, (on_server, err)  # stopped within the pass, after whole batches
    cursor = load_cursor(run.run_dir, proxy.url)
    lines = (Path(run.run_dir) / "metrics" / "loss.jsonl").read_bytes().splitlines(True)
    assert cursor.metrics["loss"] == len(b"".join(lines[:on_server]))  # exactly what the server holds
    again = _agent(root, proxy.url)
    assert again.sync(select_runs(str(root), all_runs=True)).ok
    assert_run_equal(mlflow_client, root, "interrupted", run)  # every point once: none lost, none twice
    again.client.close()


def _remote_or_none(client: Any, experiment: str, run_id: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.`mini_mlflow.run_id` = '{run_id}'")
    return runs[0] if runs else None
