"""Background I/O failures: the loop keeps going, a warning appears once, flush()/end() raise, nothing is lost."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow._config import resolve
from mini_mlflow.write._run_files import heartbeat_path
from mini_mlflow.write._writer import WRITER, Writer

from conftest import read_jsonl, wait_until


def _log(run: mm.Run, start: int, count: int, key: str = "loss") -> None:
    for i in range(start, start + count):
        run.log_metric(key, float(i), step=i)


def test_unwritable_metrics_folder_warns_once_keeps_points_and_recovers(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    _log(run, 0, 100)
    run.flush()
    metrics = Path(run.run_dir) / "metrics"
    shutil.rmtree(metrics)
    metrics.write_text("not a folder")  # every append now fails with ENOTDIR
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for chunk in range(5):
            _log(run, 100 + chunk * 100, 100)  # never raises inside the loop
            run._buffer.drain()
    relevant = [w for w in caught if "kept in memory" in str(w.message)]
    assert len(relevant) == 1, [str(w.message) for w in caught]
    assert "metric" in str(relevant[0].message)
    with pytest.raises(mm.StorageError, match="500 points not yet written"):
        run.flush()
    with pytest.raises(OSError):  # StorageError is an OSError
        run.end()
    assert run.status == "RUNNING"  # still open, data still held
    metrics.unlink()
    metrics.mkdir(exist_ok=True)  # the writer thread's retry may have made it first
    _log(run, 600, 10)
    run.end()
    rows = read_jsonl(metrics / "loss.jsonl")
    assert [r["step"] for r in rows] == list(range(100, 610))  # first 100 went with the old folder


def test_run_folder_deleted_under_a_live_run(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    run.log_param("p", 1)
    _log(run, 0, 10)
    run.flush()
    rdir = Path(run.run_dir)
    saved = (rdir / "meta.yaml").read_bytes()
    shutil.rmtree(rdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _log(run, 10, 10)  # no exception in the loop
        run.set_tag("t", "v")  # kept for retry, not raised
        with pytest.raises(mm.StorageError, match="deleted"):
            run.flush()
        with pytest.raises(mm.StorageError, match="deleted"):
            run.log_text("x", "a.txt")
        with pytest.raises(mm.StorageError):
            run.end()
    assert not rdir.exists(), "a deleted run folder must not be re-created piecemeal"
    rdir.mkdir()
    (rdir / "meta.yaml").write_bytes(saved)
    run.end()  # the user restored the folder: everything held is written
    assert [r["step"] for r in read_jsonl(rdir / "metrics" / "loss.jsonl")] == list(range(10, 20))
    assert mm.Store(store).get_run(run.run_id)["tags"] == {"t": "v"}


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root); the test is skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(fs: Path) -> Path:
    """Fill the file system completely with one file; return it (delete it to give the space back)."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_disk_full_keeps_points_and_writes_them_when_space_returns(tiny_fs: Path) -> None:
    run = mm.Run(runs_dir=tiny_fs / "mlruns")
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    _log(run, 0, 1000)
    run._buffer.drain()
    # The file's last page is partly used: once the disk is full, the next append fills that page and
    # stops there, so a line is torn on disk (a short write). That is the case the writer must complete.
    assert path.stat().st_size % 4096 != 0
    filler = _fill(tiny_fs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _log(run, 1000, 1000)  # one chunk of a drain (~55 kB): more than the page left
        run._buffer.drain()
        assert not path.read_bytes().endswith(b"\n"), "no short write happened: the test proves nothing"
        # The short write was this drain's only failure (no write raised): warned at once, by its cause.
        assert [str(w.message) for w in caught] == [
            f"mini_mlflow: run {run.run_id}: write metric failed for {path}: no space left on device; "
            "points are kept in memory and retried"
        ]
        assert run._buffer.error is not None and run._buffer.error.errno == errno.ENOSPC
        _log(run, 2000, 9000)  # ~500 kB more: no room while the filler is there
        run._buffer.drain()
        _log(run, 11_000, 1000)
        run._buffer.drain()
    assert sum("no space left" in str(w.message) for w in caught) == 1
    with pytest.raises(mm.StorageError, match="not yet written.*no space left") as failed:
        run.flush()
    assert failed.value.errno == errno.ENOSPC
    filler.unlink()
    run.end()
    rows = read_jsonl(path)  # every line parses: the torn line was completed, not left or repeated
    assert [r["step"] for r in rows] == list(range(12_000))
    assert mm.Store(tiny_fs / "mlruns").get_run(run.run_id)["metadata"]["status"] == "FINISHED"


def test_points_beyond_the_bound_are_dropped_loudly_while_the_disk_fails(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINI_MLFLOW_MAX_BUFFER", "1000")
    run = mm.Run(runs_dir=store)
    metrics = Path(run.run_dir) / "metrics"
    metrics.rmdir()
    metrics.write_text("blocked")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _log(run, 0, 10)
        run._buffer.drain()  # fails: 10 points held
        for i in range(10, 50_000):
            run.log_metric("loss", float(i), step=i)
            if i % 5000 == 0:
                run._buffer.due = 0.0  # as if a flush interval had passed
    assert any("dropped" in str(w.message) for w in caught)
    assert len(run._buffer.queue) <= 1000 + 5000
    with pytest.raises(mm.StorageError) as failed:
        run.flush()
    assert re.fullmatch(
        rf"run {run.run_id}: \d+ points not yet written, \d+ points dropped: "
        rf"write metric failed for {re.escape(str(metrics / 'loss.jsonl'))}: Not a directory",
        str(failed.value.strerror),
    ), failed.value.strerror
    metrics.unlink()
    metrics.mkdir(exist_ok=True)  # the writer thread's retry may have made it first
    with pytest.raises(mm.StorageError, match="dropped") as ended:
        run.end()  # the loss is reported, not hidden...
    assert run.status == "FINISHED"  # ...but the run still ends: what was kept is on disk
    steps = [r["step"] for r in read_jsonl(metrics / "loss.jsonl")]
    assert steps[:10] == list(range(10)) and steps == sorted(steps) and len(steps) >= 1000
    # The count reported is exactly what is missing: every point logged is on disk or counted.
    dropped = int(re.search(r"(-?\d+) points dropped", str(ended.value)).group(1))  # type: ignore[union-attr]
    assert len(steps) + dropped == 50_000, (len(steps), dropped)
    assert ended.value.strerror == (
        f"run {run.run_id}: {dropped} points dropped: "
        f"write metric failed for {metrics / 'loss.jsonl'}: Not a directory"
    )


def test_a_logging_call_drains_an_overdue_buffer_itself(store: Path) -> None:
    # The writer thread may not get the CPU (a loop holding the GIL, a busy machine): then the logging
    # call that finds the buffer overdue writes it, so the points reach the disk all the same.
    run = mm.Run(runs_dir=store)
    WRITER.unregister(run._buffer)  # no writer thread for this run: only the logging calls write
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    try:
        run._buffer.due = float("inf")  # not due, however long the calls below take
        _log(run, 0, 500)
        assert not path.exists() and len(run._buffer.queue) == 500  # not due yet: nothing written
        # As if a flush interval had just passed: a time, not 0.0, which also means "over the memory
        # bound" to the buffer (a drain for that reason alone would hide a broken time check).
        run._buffer.due = time.time() - 0.001
        _log(run, 500, 1)
        assert [r["step"] for r in read_jsonl(path)] == list(range(501)) and not run._buffer.queue
    finally:
        WRITER.register(run._buffer)
    run.end()


def test_flush_waits_for_a_drain_in_progress(store: Path) -> None:
    # flush() returns once every point logged before it is on disk, even while another thread (the
    # writer) is in the middle of a drain of the same run: it waits for that drain, then drains.
    run = mm.Run(runs_dir=store)
    WRITER.unregister(
        run._buffer
    )  # only flush() writes: a writer pass must not hide a flush that did not wait
    try:
        _log(run, 0, 10)
        held, release = threading.Event(), threading.Event()

        def drainer() -> None:
            with run._buffer.lock:  # as the writer thread holds it during a drain
                held.set()
                release.wait(30)

        thread = threading.Thread(target=drainer)
        thread.start()
        held.wait(30)
        threading.Timer(0.2, release.set).start()
        run.flush()
        assert release.is_set(), "flush() returned while the drain in progress still held the run"
        path = Path(run.run_dir) / "metrics" / "loss.jsonl"
        assert [r["step"] for r in read_jsonl(path)] == list(range(10))  # written before flush() returned
        thread.join()
    finally:
        WRITER.register(run._buffer)
    run.end()


def test_metric_file_deleted_by_hand_is_recreated(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    _log(run, 0, 10)
    run.flush()
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    path.unlink()
    run._buffer.files.checked = 0.0  # as if the once-a-second check were due
    _log(run, 10, 10)
    run.end()
    assert [r["step"] for r in read_jsonl(path)] == list(range(10, 20))


def _blocked(run: mm.Run) -> Path:
    """Make every metric append of ``run`` fail (ENOTDIR): its metrics folder becomes a file."""
    metrics = Path(run.run_dir) / "metrics"
    shutil.rmtree(metrics)
    metrics.write_text("blocked")
    return metrics


def _unblocked(metrics: Path) -> None:
    metrics.unlink()
    metrics.mkdir(exist_ok=True)  # the writer thread's retry may have made it first


def test_memory_holds_exactly_max_buffer_points_while_writes_fail(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound is max_buffer points in the queue: reaching it drops nothing (and warns of nothing);
    # one point beyond it drops exactly one, the newest.
    monkeypatch.setenv("MINI_MLFLOW_MAX_BUFFER", "100")
    run = mm.Run(runs_dir=store)
    WRITER.unregister(run._buffer)  # only the calls below drain: the counts are exact
    try:
        metrics = _blocked(run)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _log(run, 0, 5)
            run._buffer.drain()  # fails: 5 points held as bytes, the error recorded
            run._buffer.due = float("inf")
            _log(run, 5, 99)
            run._buffer.due = 0.0  # as if a flush interval had passed
            _log(run, 104, 1)  # the queue now holds exactly max_buffer points
            assert len(run._buffer.queue) == 100 and run._buffer.dropped == 0
            assert not [w for w in caught if "dropped" in str(w.message)]
            run._buffer.due = 0.0
            _log(run, 105, 1)  # one beyond the bound
            assert len(run._buffer.queue) == 100 and run._buffer.dropped == 1
        _unblocked(metrics)
        with pytest.raises(mm.StorageError, match="1 points dropped"):
            run.flush()
        steps = [r["step"] for r in read_jsonl(metrics / "loss.jsonl")]
        assert steps == list(range(105)), "the newest point is the one dropped"
    finally:
        WRITER.register(run._buffer)
    with pytest.raises(mm.StorageError, match="dropped"):
        run.end()


def test_after_recovery_a_burst_beyond_the_bound_is_written_not_dropped(
    store: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Once the held bytes reach the disk the error is cleared by the drain itself (not only by a
    # flush() the program may never call): a later burst beyond the bound is then written, since
    # points are dropped only while writes fail.
    monkeypatch.setenv("MINI_MLFLOW_MAX_BUFFER", "100")
    monkeypatch.setenv("MINI_MLFLOW_LOG_LEVEL", "INFO")
    caplog.set_level("INFO", logger="mini_mlflow")
    run = mm.Run(runs_dir=store)
    WRITER.unregister(run._buffer)
    try:
        metrics = _blocked(run)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _log(run, 0, 10)
            run._buffer.drain()
        (warning,) = [str(w.message) for w in caught]
        path = metrics / "loss.jsonl"
        assert warning == (
            f"mini_mlflow: run {run.run_id}: write metric failed for {path}: Not a directory; "
            "points are kept in memory and retried"
        )
        assert run._buffer.error is not None and run._buffer.error.errno == errno.ENOTDIR
        _unblocked(metrics)
        run._buffer.drain()  # the held points reach the disk
        assert run._buffer.error is None
        assert f"run {run.run_id}: writing recovered; everything held is on disk" in caplog.messages
        run._buffer.due = float("inf")
        _log(run, 10, 150)  # a burst between two passes: more than max_buffer points queued
        run._buffer.due = 0.0
        _log(run, 160, 1)
        assert run._buffer.dropped == 0 and not run._buffer.queue
    finally:
        WRITER.register(run._buffer)
    run.end()
    assert [r["step"] for r in read_jsonl(path)] == list(range(161))


def test_flush_names_the_cause_of_a_failed_write_by_its_errno(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    metrics = _blocked(run)
    _log(run, 0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mm.StorageError) as failed:
            run.flush()
    assert failed.value.errno == errno.ENOTDIR
    assert failed.value.strerror == (
        f"run {run.run_id}: 3 points not yet written: "
        f"write metric failed for {metrics / 'loss.jsonl'}: Not a directory"
    )
    _unblocked(metrics)
    run.end()


def test_a_failing_heartbeat_warns_once_and_the_run_goes_on(store: Path) -> None:
    # The beat is replaced by a rename: a folder in its place makes every beat fail (EISDIR).
    run = mm.Run(runs_dir=store)
    beat = Path(heartbeat_path(run.run_dir))
    beat.unlink()
    (beat / "in-the-way").mkdir(parents=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            run._buffer._heartbeat_due = 0.0  # due now
            _log(run, i, 1)
            run._buffer.drain()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith(f"mini_mlflow: heartbeat of {run.run_dir} failed: ")
    shutil.rmtree(beat)
    run.end()
    assert [r["step"] for r in read_jsonl(Path(run.run_dir) / "metrics" / "loss.jsonl")] == [0, 1, 2]


def test_an_exception_in_a_drain_is_warned_about_and_the_writer_goes_on(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not an OSError (those are handled in the drain): a bug or MemoryError in the writer thread. The
    # thread must survive it, warn once, and write the points on its next pass.
    run = mm.Run(runs_dir=store, settings=resolve(flush_interval=0.05))
    real_drain, failed = run._buffer.drain, []

    def drain_failing_once(timeout: float = -1) -> None:
        # Only in a background thread: a logging call that finds the buffer overdue drains it too.
        if not failed and threading.current_thread() is not threading.main_thread():
            failed.append(threading.current_thread().name)
            raise MemoryError("no room for this drain")
        real_drain(timeout)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setattr(run._buffer, "drain", drain_failing_once)
        _log(run, 0, 10)
        path = Path(run.run_dir) / "metrics" / "loss.jsonl"
        wait_until(lambda: path.exists() and len(read_jsonl(path)) == 10, timeout=60)
    assert failed == ["mini-mlflow-writer"]  # the writer thread, by the name a py-spy dump shows
    assert [str(w.message) for w in caught if "writer" in str(w.message)] == [
        "mini_mlflow: writer error: MemoryError('no room for this drain')"
    ]
    monkeypatch.undo()
    run.end()


def test_stopping_the_writer_warns_only_when_its_thread_does_not_stop(store: Path) -> None:
    writer = Writer()
    run = mm.Run(runs_dir=store, settings=resolve(flush_interval=0.05))
    WRITER.unregister(run._buffer)
    try:
        writer.register(run._buffer)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            writer.stop(timeout=30)  # an idle thread stops at once
        assert not caught and writer._thread is not None and not writer._thread.is_alive()
        writer.register(run._buffer)  # a new thread
        with run._buffer.lock:  # as a drain stuck on a hung disk holds it
            _log(run, 0, 1)  # queued: the thread's next pass blocks on the lock
            wait_until(lambda: "drain" in _frames_of(writer._thread), timeout=60)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                writer.stop(timeout=0.2)
        assert [str(w.message) for w in caught] == ["mini_mlflow: the writer thread did not stop in time"]
        writer._thread.join(30)
        assert not writer._thread.is_alive()
    finally:
        WRITER.register(run._buffer)
    run.end()


def _frames_of(thread: threading.Thread | None) -> list[str]:
    """The function names on ``thread``'s stack now."""
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names
