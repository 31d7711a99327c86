"""Background I/O failures: the loop keeps going, a warning appears once, flush()/end() raise, nothing is lost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.write._writer import WRITER

from conftest import read_jsonl


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
    metrics.mkdir()
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
        _log(run, 1000, 10_000)  # ~550 kB of lines: no room while the filler is there
        run._buffer.drain()
        _log(run, 11_000, 1000)
        run._buffer.drain()
    assert sum("no space left" in str(w.message) for w in caught) == 1
    assert not path.read_bytes().endswith(b"\n"), "no short write happened: the test proves nothing"
    with pytest.raises(mm.StorageError, match="not yet written.*no space left"):
        run.flush()
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
    with pytest.raises(mm.StorageError, match="dropped"):
        run.flush()
    metrics.unlink()
    metrics.mkdir()
    with pytest.raises(mm.StorageError, match="dropped") as ended:
        run.end()  # the loss is reported, not hidden...
    assert run.status == "FINISHED"  # ...but the run still ends: what was kept is on disk
    steps = [r["step"] for r in read_jsonl(metrics / "loss.jsonl")]
    assert steps[:10] == list(range(10)) and steps == sorted(steps) and len(steps) >= 1000
    # The count reported is exactly what is missing: every point logged is on disk or counted.
    dropped = int(re.search(r"(-?\d+) points dropped", str(ended.value)).group(1))  # type: ignore[union-attr]
    assert len(steps) + dropped == 50_000, (len(steps), dropped)


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
        run._buffer.due = 0.0  # as if a flush interval had passed
        _log(run, 500, 1)
        assert [r["step"] for r in read_jsonl(path)] == list(range(501)) and not run._buffer.queue
    finally:
        WRITER.register(run._buffer)
    run.end()


def test_flush_waits_for_a_drain_in_progress(store: Path) -> None:
    # flush() returns once every point logged before it is on disk, even while another thread (the
    # writer) is in the middle of a drain of the same run: it waits for that drain, then drains.
    run = mm.Run(runs_dir=store)
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
    thread.join()
    assert [r["step"] for r in read_jsonl(Path(run.run_dir) / "metrics" / "loss.jsonl")] == list(range(10))
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
