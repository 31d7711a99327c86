"""A live run's files: the metric-file descriptors it holds (bounded per run and per process, counted
exactly, all closed at the end and after a failed write), files moved or deleted under it, and the
heartbeat's name and content.

The mutation run of ``write/_run_files.py`` found these checked only loosely: the bounds were proven
to hold, but not to be the bounds, and the descriptor count could drift without any test noticing.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
import warnings
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.write import _run_files
from mini_mlflow.write._run_files import FDS, _FdBudget, heartbeat_path, hostname, write_heartbeat

from conftest import read_jsonl


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="descriptors listed in /proc")


def test_the_process_budget_is_256_descriptors_counted_exactly() -> None:
    budget = _FdBudget()
    assert budget.open == 0 and not budget.over()
    budget.add(256)
    assert not budget.over()  # at the bound
    budget.add(1)
    assert budget.over()
    budget.add(-257)
    assert budget.open == 0


def test_a_run_keeps_16_metric_files_open_and_closes_all_at_its_end(store: Path) -> None:
    before_fds, before_count = _fds(), FDS.open
    run = mm.Run(runs_dir=store)
    for step in range(3):
        run.log_metrics({f"k{i:02d}": float(i) for i in range(40)}, step=step)
    run.flush()
    assert run._buffer.files.open_count == 16
    assert FDS.open - before_count == 16
    run.end()
    assert FDS.open == before_count
    assert _fds() - before_fds == set()
    for i in range(40):
        assert [r["step"] for r in read_jsonl(Path(run.run_dir) / "metrics" / f"k{i:02d}.jsonl")] == [0, 1, 2]


def test_a_failed_write_closes_its_descriptor_and_keeps_the_count(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    run.log_metric("ok", 1.0, step=0)
    run.flush()
    full = Path(run.run_dir) / "metrics" / "full.jsonl"
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full: every write fails, ENOSPC
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    before_fds, before_count = _fds(), FDS.open
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            run.log_metric("full", 1.0, step=step)
            run._buffer.drain()
    assert FDS.open == before_count
    assert _fds() - before_fds == set()
    assert [str(w.message) for w in caught if "No space" in str(w.message) or "no space" in str(w.message)]
    full.unlink()
    run.end()
    assert [r["step"] for r in read_jsonl(full)] == [0, 1, 2]  # held, then written once space was back


def test_a_metric_file_moved_away_by_hand_is_not_written_through(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    run.log_metric("loss", 0.0, step=0)
    run.flush()
    metrics = Path(run.run_dir) / "metrics"
    moved = metrics / "moved-away.jsonl"
    (metrics / "loss.jsonl").rename(moved)
    before_count, before_fds = FDS.open, _fds()
    run._buffer.files.checked = 0.0  # as if the once-a-second check were due
    run.log_metric("loss", 1.0, step=1)
    run.flush()
    assert len(_fds() - before_fds) == len(before_fds - _fds())  # the moved file's descriptor was closed
    assert [r["step"] for r in read_jsonl(moved)] == [0]  # the old descriptor was dropped
    assert [r["step"] for r in read_jsonl(metrics / "loss.jsonl")] == [1]
    assert FDS.open == before_count  # one closed, one opened
    run.end()


def test_a_deleted_run_folder_is_named_in_the_failure(store: Path) -> None:
    import shutil

    run = mm.Run(runs_dir=store)
    run.log_metric("loss", 0.0, step=0)
    run.flush()
    run._buffer.files.close()  # the next write opens the file again, finding the folder gone
    saved = (Path(run.run_dir) / "meta.yaml").read_bytes()
    shutil.rmtree(run.run_dir)
    run.log_metric("loss", 1.0, step=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mm.StorageError) as caught:
            run.flush()
    assert caught.value.strerror == (
        f"run {run.run_id}: 1 points not yet written: write metric failed for "
        f"{Path(run.run_dir) / 'metrics' / 'loss.jsonl'}: the run folder was deleted"
    )
    assert caught.value.errno == errno.ENOENT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mm.StorageError):
            run.end()
    assert not Path(run.run_dir).exists()
    Path(run.run_dir).mkdir()
    (Path(run.run_dir) / "meta.yaml").write_bytes(saved)
    run.end()  # restored: the point held is written
    assert [r["step"] for r in read_jsonl(Path(run.run_dir) / "metrics" / "loss.jsonl")] == [1]


def test_the_hostname_is_the_machines() -> None:
    assert hostname() == socket.gethostname()


def test_a_heartbeat_names_its_process_and_host_and_holds_the_time_in_ms(tmp_path: Path) -> None:
    run_dir = tmp_path / "0" / "abc"
    run_dir.mkdir(parents=True)
    (run_dir / "meta.yaml").write_text("run_id: abc\n")
    write_heartbeat(str(run_dir), 10.0, 1_763_884_800.1237)
    path = Path(heartbeat_path(str(run_dir)))
    assert path.parent == run_dir
    assert path.name.startswith(f".heartbeat-{os.getpid()}@")
    assert json.loads(path.read_bytes()) == {
        "time": 1_763_884_800_123,
        "interval": 10.0,
        "pid": os.getpid(),
        "host": hostname(),
    }


@pytest.mark.parametrize(
    ("host", "in_name"),
    [
        ("gpu-01.cluster_x", "gpu-01.cluster_x"),
        ("node/1:a b", "node_1_a_b"),
        ("ünï", "ünï"),
        ("../x", ".._x"),
    ],
)
def test_a_heartbeat_file_name_keeps_only_safe_characters_of_the_host(
    monkeypatch: pytest.MonkeyPatch, host: str, in_name: str
) -> None:
    # The host name of this machine cannot be changed here: the function that reads it is replaced.
    monkeypatch.setattr(_run_files, "hostname", lambda: host)
    assert heartbeat_path("/s/0/abc") == f"/s/0/abc/.heartbeat-{os.getpid()}@{in_name}"


def test_a_metrics_folder_replaced_by_hand_gets_the_next_points_at_once(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    run.log_metric("loss", 0.0, step=0)
    run.flush()
    metrics = Path(run.run_dir) / "metrics"
    metrics.rename(metrics.with_name("metrics-old"))
    metrics.mkdir()  # a new folder in its place: one stat per drain tells, before any write
    run._buffer.files.checked = time.time()  # the once-a-second check of each file just ran: not it
    run.log_metric("loss", 1.0, step=1)
    run.flush()
    assert [r["step"] for r in read_jsonl(metrics / "loss.jsonl")] == [1]
    assert [r["step"] for r in read_jsonl(metrics.with_name("metrics-old") / "loss.jsonl")] == [0]
    run.end()


def test_each_open_file_is_checked_again_once_a_second_of_the_clock(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clock is the module's own (a fake one here): the check's schedule, not the machine's speed.
    clock = [1_000_000.0]
    monkeypatch.setattr(_run_files, "_time", lambda: clock[0])
    run = mm.Run(runs_dir=store)
    run.log_metric("loss", 0.0, step=0)
    run.flush()
    files = run._buffer.files
    files.checked = clock[0]
    metrics = Path(run.run_dir) / "metrics"
    (metrics / "loss.jsonl").rename(metrics / "moved-away.jsonl")
    clock[0] += 1.0  # one second after the last check: due
    run.log_metric("loss", 1.0, step=1)
    run.flush()
    assert files.checked == clock[0]
    assert [r["step"] for r in read_jsonl(metrics / "loss.jsonl")] == [1]
    assert [r["step"] for r in read_jsonl(metrics / "moved-away.jsonl")] == [0]
    run.end()
