"""A process reads its own writes on every read path, whichever face logged them (store/_pending)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mini_mlflow as mm
from mini_mlflow._config import resolve
from mini_mlflow.read._search import search_runs
from mini_mlflow.write._writer import WRITER

from conftest import wait_until

SLOW = resolve(flush_interval=3600, heartbeat_interval=3600)


@contextmanager
def writer_stopped(run: mm.Run) -> Iterator[mm.Run]:
    """No writer thread while the body runs, so only a reader can write ``run``'s points. A long flush
    interval is not enough: each pass drains every run with points queued, and the passes follow the
    shortest interval of the runs open in the process (any test's run left open makes them frequent)."""
    WRITER.stop()
    try:
        yield run
    finally:
        WRITER.register(run._buffer)  # starts the thread again


def test_every_reader_sees_points_a_run_object_has_not_written_yet(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = mm.Run(runs_dir=root, settings=SLOW)
    with writer_stopped(run):
        run.log_metric("accuracy", 0.95, step=3)
        metric_file = Path(run.run_dir) / "metrics" / "accuracy.jsonl"
        assert not metric_file.exists()  # still in the buffer: what follows is the readers' doing
        tracker = mm.ExperimentTracker(experiment_id=0, runs_dir=root)
        assert tracker.get_run(run.run_id)["metrics"] == {"accuracy": 0.95}
        run.log_metric("accuracy", 0.97, step=4)
        history = mm.Store(root).get_metric_history(run.run_id, "accuracy")
        assert [(p.step, p.value) for p in history.points()] == [(3, 0.95), (4, 0.97)]
        run.log_metric("loss", 0.5)
        found = search_runs(root=root, filter_string="metrics.loss < 1")
        assert [r.run_id for r in found] == [run.run_id]
        assert found[0].metrics == {"accuracy": 0.97, "loss": 0.5}
        run.log_metric("loss", 0.25)
        assert mm.Store(str(root) + "/.").get_run(run.run_id)["metrics"]["loss"] == 0.25  # another spelling
    run.end()


def test_the_fluent_readers_see_a_run_that_is_not_on_this_threads_stack(store: Path) -> None:
    run = mm.Run(runs_dir=store, settings=SLOW)  # never pushed on the active-run stack
    run.log_metric("acc", 0.5)
    assert mm.get_run(run.run_id)["metrics"] == {"acc": 0.5}
    run.log_metric("acc", 0.6, step=1)
    assert [p.value for p in mm.get_metric_history(run.run_id, "acc")] == [0.5, 0.6]
    run.log_metric("acc", 0.7, step=2)
    assert search_runs()[0].metrics == {"acc": 0.7}
    run.end()


def test_a_reader_of_another_store_does_not_drain_this_one(tmp_path: Path) -> None:
    mm.Run(runs_dir=tmp_path / "b", settings=SLOW).end()
    run = mm.Run(runs_dir=tmp_path / "a", settings=SLOW)
    with writer_stopped(run):
        run.log_metric("acc", 0.5)
        assert len(search_runs(root=tmp_path / "b")) == 1
        assert not (Path(run.run_dir) / "metrics" / "acc.jsonl").exists()  # store a was left alone
    run.end()


def _frames_of(thread: threading.Thread) -> list[str]:
    frame = sys._current_frames().get(thread.ident) if thread.ident else None
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def test_a_reader_waits_for_a_drain_that_has_taken_the_points_and_not_yet_written_them(
    tmp_path: Path,
) -> None:
    # The writer thread's drain takes the queued points, then formats and writes them: a reader in that
    # moment found the queue empty and read the file without them (a Kedro dataset loaded {} right after
    # saving, in CI under load). Here a drain is held half-way, exactly there.
    root = tmp_path / "runs"
    run = mm.Run(runs_dir=root, settings=SLOW)
    with writer_stopped(run):
        run.log_metric("m", 1.0, step=0)
        buffer = run._buffer
        got: dict[str, Any] = {}
        with buffer.lock:
            taken = buffer._group(len(buffer.queue))  # off the queue, not yet on disk
            assert not buffer.queue and not buffer._held
            reader = threading.Thread(
                target=lambda: got.update(points=mm.Store(root).get_metric_history(run.run_id, "m").points())
            )
            reader.start()
            # Either the reader finished (it did not wait: the bug) or it waits for the drain's lock.
            wait_until(lambda: not reader.is_alive() or "drain" in _frames_of(reader), timeout=60)
            buffer._write(taken)
        reader.join(60)
        assert [(p.step, p.value) for p in got["points"]] == [(0, 1.0)]
    run.end()
