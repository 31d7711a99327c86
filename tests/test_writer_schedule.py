"""The writer thread's schedule, on a writer of the test's own (the process's writer stays out of it):
its pause between passes, what wakes it early, which runs a pass visits (points queued, bytes held
back, a heartbeat due), and a prompt stop.

The mutation run of ``write/_writer.py`` found the schedule checked only through liveness ("written
sooner or later"): a pause twice as long, a wake-up that never came or a run never visited for its
held bytes all passed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow._config import resolve
from mini_mlflow.write._buffer import PointBuffer
from mini_mlflow.write._writer import PASS_SHARE, WRITER, Writer

from conftest import python_child, read_jsonl, wait_until


def _buffer(store: Path, name: str, interval: float, heartbeat: float = 10.0) -> PointBuffer:
    run_dir = store / "0" / name
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "meta.yaml").write_text(f"run_id: {name}\n")
    return PointBuffer(str(run_dir), name, resolve(flush_interval=interval, heartbeat_interval=heartbeat))


def test_the_pause_is_a_share_of_the_shortest_flush_interval_and_at_most_a_heartbeat(store: Path) -> None:
    writer = Writer()
    assert writer._take_snapshot()[3] == pytest.approx(0.2 * PASS_SHARE)  # no run yet
    slow = _buffer(store, "slow", 3600.0, heartbeat=3600.0)
    beating = _buffer(store, "beating", 3600.0, heartbeat=5.0)
    fast = _buffer(store, "fast", 0.5)
    try:
        writer.register(slow)
        assert writer._take_snapshot()[3] == pytest.approx(3600.0 * PASS_SHARE)
        writer.register(beating)  # flushes hourly but must beat every 5 s: readers would think it dead
        assert writer._take_snapshot()[3] == pytest.approx(5.0)
        writer.register(fast)
        buffers, queues, held, pause = writer._take_snapshot()
        assert pause == pytest.approx(0.5 * PASS_SHARE) and 0.5 * PASS_SHARE < 0.5
        assert sorted(b.run_id for b in buffers) == ["beating", "fast", "slow"]
        assert queues[buffers.index(fast)] is fast.queue and held[buffers.index(fast)] is fast._held
        writer.unregister(fast)
        writer.unregister(beating)
        assert writer._take_snapshot()[3] == pytest.approx(3600.0 * PASS_SHARE)
    finally:
        writer.stop()


def test_a_run_with_a_shorter_interval_wakes_a_sleeping_writer_and_no_other_does(store: Path) -> None:
    writer = Writer()
    slow = _buffer(store, "slow", 3600.0, heartbeat=3600.0)
    try:
        writer.register(slow)
        thread = writer._thread
        assert thread is not None and thread.name == "mini-mlflow-writer" and thread.daemon
        wait_until(lambda: writer._sleep == pytest.approx(3600.0 * PASS_SHARE), timeout=30)
        writer._wake.clear()
        writer.register(_buffer(store, "as-slow", 3600.0, heartbeat=3600.0))
        assert not writer._wake.is_set()  # not sooner than its own pause: no wake-up
        path = store / "0" / "fast" / "metrics" / "m.jsonl"
        fast = _buffer(store, "fast", 0.05)
        fast.queue.append(("m", 1.0, 0, time.time()))
        writer.register(fast)
        assert writer._thread is thread  # the same thread, woken
        wait_until(lambda: path.exists() and path.read_bytes().endswith(b"\n"), timeout=30)
        assert [r["value"] for r in read_jsonl(path)] == [1.0]
    finally:
        writer.stop()


def test_a_woken_writer_goes_back_to_its_pauses(store: Path) -> None:
    # After a wake-up the thread must wait again: a wake left set would make it pass without a pause,
    # spinning on a core for the rest of the process.
    writer = Writer()
    try:
        writer.register(_buffer(store, "slow", 3600.0, heartbeat=3600.0))
        wait_until(lambda: writer._sleep > 1000, timeout=30)
        writer.register(_buffer(store, "fast", 0.25))  # woken: its pause is 0.2 s
        wait_until(lambda: writer._sleep == pytest.approx(0.25 * PASS_SHARE), timeout=30)
        passes = itertools.count()
        take = writer._take_snapshot

        def counted() -> tuple[object, ...]:
            next(passes)
            return take()

        writer._take_snapshot = counted  # type: ignore[method-assign]  # two calls per pass
        began = time.monotonic()
        time.sleep(1.0)
        calls, elapsed = next(passes), time.monotonic() - began
        # At most one pass per pause (plus the one in progress): a bound on what the thread did,
        # whatever the load; a spinning thread makes thousands of passes in that time.
        assert calls <= 2 * (elapsed / (0.25 * PASS_SHARE) + 2), (calls, elapsed)
    finally:
        writer.stop()


def test_stop_wakes_the_thread_at_once(store: Path) -> None:
    writer = Writer()
    writer.register(_buffer(store, "slow", 3600.0, heartbeat=3600.0))
    wait_until(lambda: writer._sleep > 1000, timeout=30)
    began = time.monotonic()
    writer.stop(timeout=30)
    assert writer._thread is not None and not writer._thread.is_alive()
    assert time.monotonic() - began < 25  # woken, not waiting out its 48-minute pause


def test_bytes_held_back_are_written_by_the_thread_without_new_points(store: Path) -> None:
    # A write failed (its bytes are held); the folder comes back; nothing new is logged and nobody
    # flushes: the writer's next pass must still visit the run for its held bytes.
    # No heartbeat due for an hour: a beat's visit would write the held bytes too.
    run = mm.Run(runs_dir=store, settings=resolve(flush_interval=0.05, heartbeat_interval=3600))
    metrics = Path(run.run_dir) / "metrics"
    run.log_metric("loss", 0.0, step=0)
    run.flush()
    shutil.rmtree(metrics)
    metrics.write_text("blocked")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.log_metric("loss", 1.0, step=1)
        run._buffer.drain()
        assert run._buffer.held_points == 1 and not run._buffer.queue
        metrics.unlink()
        metrics.mkdir(exist_ok=True)  # the thread's retry may make it first: then it wrote
        path = metrics / "loss.jsonl"
        wait_until(lambda: path.exists() and path.read_bytes().endswith(b"\n"), timeout=30)
    assert [r["step"] for r in read_jsonl(path)] == [1]
    run.end()


def test_a_pass_beats_only_the_runs_whose_heartbeat_is_due(store: Path) -> None:
    writer = Writer()
    due, later = _buffer(store, "due", 3600.0, heartbeat=0.2), _buffer(store, "later", 3600.0, heartbeat=3600)
    try:
        now = time.time()
        due._heartbeat_due, later._heartbeat_due = now - 1, now + 3600
        writer._beats = []
        writer._buffers = {id(due): due, id(later): later}
        import heapq

        heapq.heappush(writer._beats, (due._heartbeat_due, id(due)))
        heapq.heappush(writer._beats, (later._heartbeat_due, id(later)))
        heapq.heappush(writer._beats, (now - 2, 12345))  # a run that ended: dropped
        assert writer._due_beats(now) == [due]
        assert writer._beats == [(later._heartbeat_due, id(later))]
        due._heartbeat_due = now + 5  # a drain beat it meanwhile: back on the heap, not beaten
        heapq.heappush(writer._beats, (now - 1, id(due)))
        assert writer._due_beats(now) == []
        assert sorted(writer._beats) == sorted([(now + 5, id(due)), (later._heartbeat_due, id(later))])
        assert writer._due_beats(now + 5) == [due]  # due exactly now: beaten
    finally:
        writer.stop()


def test_an_idle_run_is_beaten_on_its_own_interval(store: Path) -> None:
    writer = Writer()
    buffer = _buffer(store, "idle", 3600.0, heartbeat=0.3)
    beats = []
    real = buffer._heartbeat

    def counted(now: float) -> None:
        beats.append(now)
        real(now)

    buffer._heartbeat = counted  # type: ignore[method-assign]
    try:
        buffer._heartbeat_due = time.time() + 0.3
        writer.register(buffer)
        wait_until(lambda: len(beats) >= 3, timeout=60)
        # Each beat came at least one interval after the one before: re-queued for later, not at once.
        assert all(b - a >= 0.3 - 0.01 for a, b in itertools.pairwise(beats))
    finally:
        writer.stop()


FORK_AND_LIST_DESCRIPTORS = """
import os
import mini_mlflow as mm
run = mm.Run(runs_dir=os.environ["MINI_MLFLOW_TRACKING_DIR"])
run.log_metric("m", 1.0, step=0)
run.flush()  # the metric file stays open between drains
path = os.path.join(os.path.realpath(run.run_dir), "metrics", "m.jsonl")
def held():
    return [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == path]
assert held(), "the parent keeps its metric file open: the premise"
pid = os.fork()
if pid == 0:
    os._exit(0 if not held() else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), len(held()))
run.end()
"""


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc/self/fd"), reason="fork and /proc")
def test_a_forked_child_holds_none_of_the_parents_metric_files(tmp_path: Path) -> None:
    # The child's copies of the parent's descriptors are closed at the fork: a long-lived child (a
    # data-loader worker) must not keep files open that the parent writes, moves or deletes.
    proc = python_child(
        FORK_AND_LIST_DESCRIPTORS, tmp_path, env={"MINI_MLFLOW_TRACKING_DIR": str(tmp_path / "mlruns")}
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split() == ["0", "1"]  # none in the child; the parent's own still open


def test_after_a_fork_the_child_writer_holds_nothing(store: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    writer = Writer()
    writer.register(_buffer(store, "parent", 3600.0))
    try:
        writer.reset_after_fork()  # what the child runs (os.register_at_fork)
        assert writer.buffers() == [] and writer._beats == [] and writer._thread is None
        assert writer._sleep == 0.0 and writer._snapshot is None and not writer._wake.is_set()
    finally:
        writer.stop()
    assert WRITER is not writer and isinstance(threading.current_thread(), threading.Thread)
