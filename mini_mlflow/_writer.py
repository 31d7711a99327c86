"""The writer: moves buffered points from memory to ``metrics/<key>.jsonl``, in the background.

One daemon thread per process wakes every half flush interval and drains every live run's buffer,
turning points into whole JSON lines and appending them with one ``write`` per metric file. A training
loop that holds the GIL can starve that thread, so a logging call that finds its run's buffer overdue
(nothing drained for a whole flush interval) or over its bound drains it itself: either way no point
waits longer than ``flush_interval`` to reach the disk, and memory stays bounded.

Trouble writing (disk full, permissions, the run folder deleted) never raises into the logging call:
the lines are kept in memory (up to the bound) and retried on every pass, a warning is issued once per
cause, and the error is raised by ``flush()``/``end_run()``.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
import warnings
from collections import deque
from itertools import compress
from typing import Any

from . import _files, _log
from ._config import Settings
from ._errors import StorageError
from ._layout import HEARTBEAT_FILE, META_FILE, METRIC_SUFFIX

_time = time.time

#: Points formatted per step of a drain: bounds the time the drainer holds the GIL in one go.
_CHUNK = 50_000
#: Metric files a run keeps open between drains. Every syscall releases the GIL, and a training loop
#: that holds it makes each re-acquisition costly, so an open descriptor (one write per drain instead
#: of open+write+close) is what keeps the loop's overhead low.
_FDS_PER_RUN = 16
#: Above this many open descriptors in the process, runs close theirs after every drain.
_FDS_PER_PROCESS = 256


class _FdBudget:
    """Counts metric-file descriptors held open across all runs of the process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.open += n


_FDS = _FdBudget()

#: Re-opening an existing metric file: no O_CREAT (a new file goes through the checked walk).
_REOPEN_FLAGS = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)

Point = tuple[str, float, int, Any]  # key, value, step, timestamp (float seconds or int ms)


def hostname() -> str:
    """This machine's name (what ``socket.gethostname()`` returns, without importing socket)."""
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "localhost")


def format_point(step: int, value: float, timestamp: Any) -> str:
    """One metric point as a JSONL line; NaN and ±inf become the strings "NaN", "Infinity", "-Infinity"."""
    if timestamp.__class__ is float:
        timestamp = int(timestamp * 1000)
    if value - value == 0.0:  # finite: nan - nan and inf - inf are nan
        return f'{{"step":{step},"value":{value!r},"timestamp":{timestamp}}}\n'
    text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return f'{{"step":{step},"value":"{text}","timestamp":{timestamp}}}\n'


class PointBuffer:
    """Points logged to one run by this process and not yet on disk, and the state of writing them."""

    def __init__(self, run_dir: str, run_id: str, settings: Settings) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        # Metric files are opened beneath the store root without following symlinks (see _open).
        self._root = os.path.dirname(os.path.dirname(run_dir))
        self._run_rel = os.path.relpath(run_dir, self._root).replace(os.sep, "/")
        self._real_run_dir = os.path.realpath(run_dir)
        self.queue: deque[Point] = deque()
        self.interval = settings.flush_interval
        self.max_points = settings.max_buffer
        self.fsync = settings.fsync
        self.heartbeat_interval = settings.heartbeat_interval
        #: Wall-clock time after which a logging call drains the buffer itself.
        self.due = _time() + self.interval
        self._heartbeat_due = 0.0
        # One drainer at a time, so the lines of a metric reach its file in the order they were logged.
        self.lock = threading.Lock()
        #: Bytes a failed or short write left behind, per metric key; written first on the next pass.
        self._held: dict[str, bytes] = {}
        self._held_count: dict[str, int] = {}
        self._touched: set[str] = set()
        self._fds: dict[str, int] = {}  # path -> open descriptor, in least-recently-used order
        self._metrics_folder: tuple[int, int] | None = None
        self._fds_checked = 0.0
        self.error: StorageError | None = None
        self.dropped = 0
        self._warned: set[Any] = set()

    # -- called from logging threads -----------------------------------------------------------

    def on_due(self, now: float) -> None:
        """A logging call found the buffer overdue or over its bound: drain it here."""
        if len(self.queue) > self.max_points and self.error is not None:
            self._drop_excess()
        self.drain()
        if self.due <= now:  # nothing could be written; don't retry on every call
            self.due = now + self.interval

    def _drop_excess(self) -> None:
        # Only reached while writes fail and memory is at its bound: losing points is then unavoidable,
        # so the newest are dropped, counted, warned about, and reported by flush()/end_run().
        excess = len(self.queue) - self.max_points
        for _ in range(excess):
            self.queue.pop()
        self.dropped += excess
        self._warn_once(
            "dropped",
            f"mini_mlflow: run {self.run_id}: {self.dropped} points dropped: the store cannot be "
            f"written and {self.max_points} points are already held in memory",
        )

    # -- draining --------------------------------------------------------------------------------

    def drain(self, timeout: float = -1) -> bool:
        """Write every point queued before this call.

        Returns False, having written nothing, if another drainer held the lock for ``timeout``
        seconds (-1: wait as long as it takes).
        """
        if not self.lock.acquire(timeout=timeout):
            return False
        try:
            if self._held:
                self._write({})  # retry what failed before, so lines stay in order
            if not self._held:  # while writes fail, points wait in the queue (bounded by on_due)
                remaining = len(self.queue)
                while remaining > 0:
                    n = min(remaining, _CHUNK)
                    self._write(self._format(n))
                    remaining -= n
            now = _time()
            if now >= self._heartbeat_due:
                self._heartbeat(now)
            self.due = 0.0 if len(self.queue) > self.max_points else now + self.interval
        finally:
            self.lock.release()
        return True

    def _format(self, n: int) -> dict[str, list[str]]:
        pop = self.queue.popleft
        groups: dict[str, list[str]] = {}
        get = groups.get
        for _ in range(n):
            key, value, step, timestamp = pop()
            if timestamp.__class__ is float:
                timestamp = int(timestamp * 1000)
            if value - value == 0.0:
                line = f'{{"step":{step},"value":{value!r},"timestamp":{timestamp}}}\n'
            else:
                line = format_point(step, value, timestamp)
            lines = get(key)
            if lines is None:
                groups[key] = [line]
            else:
                lines.append(line)
        return groups

    def _write(self, groups: dict[str, list[str]]) -> None:
        held, counts = self._held, self._held_count
        if (groups or held) and self._fds:
            self._check_open_files()
        for key in [*held, *(k for k in groups if k not in held)]:
            lines = groups.get(key, ())
            data = held.pop(key, b"") + "".join(lines).encode("utf-8")
            counts.pop(key, None)
            path = os.path.join(self.run_dir, "metrics", key + METRIC_SUFFIX)
            try:
                written = self._append(path, data)
            except OSError as exc:
                written = 0
                self._fail("write metric", path, exc)
            if written < len(data):
                if written:  # a short write (disk full part-way): the rest completes the torn line
                    self._fail("write metric", path, OSError(28, "No space left on device"))
                held[key] = data[written:]
                counts[key] = data.count(b"\n", written)
        if not held and self.error is not None and not self.dropped:
            self.error = None  # recovered: everything held has reached the disk
            _log.info("run %s: writing recovered; everything held is on disk", self.run_id)
        if _FDS.open > _FDS_PER_PROCESS:
            self.close_files()

    @property
    def held_points(self) -> int:
        """Points formatted but not yet written because writes failed."""
        return sum(self._held_count.values())

    @property
    def pending_points(self) -> int:
        """Points logged and not yet on disk."""
        return self.held_points + len(self.queue)

    def _append(self, path: str, data: bytes) -> int:
        fd = self._fds.pop(path, None)
        if fd is None:
            fd = self._open(path)
        try:
            written = _files.append_fd(fd, data)
            if self.fsync == "flush":
                os.fsync(fd)
            else:
                self._touched.add(path)
        except OSError:
            os.close(fd)
            _FDS.add(-1)
            raise
        self._fds[path] = fd  # most recently used last
        if len(self._fds) > _FDS_PER_RUN:
            oldest = next(iter(self._fds))
            os.close(self._fds.pop(oldest))
            _FDS.add(-1)
        return written

    def _check_open_files(self) -> None:
        """Drop descriptors of files deleted or replaced under us, so nothing is written into the void.

        One stat of the metrics folder per drain catches a deleted run or metrics folder; where each
        open file really is (or, without /proc, its link count) is checked about once a second, for
        single files or key folders deleted or moved by hand.
        """
        try:
            st = os.stat(os.path.join(self.run_dir, "metrics"))
            folder: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            folder = None
        if folder is None or folder != self._metrics_folder:
            self.close_files()
            self._metrics_folder = folder
            return
        now = _time()
        if now - self._fds_checked < 1.0:
            return
        self._fds_checked = now
        for path, fd in list(self._fds.items()):
            # Still the file at its path? /proc tells deleted, renamed and moved-away alike (a key's
            # folder moved out of the run would otherwise keep receiving its points).
            where = _files.opened_path(fd)
            if where is not None:
                alive = where == os.path.join(self._real_run_dir, path[len(self.run_dir) + 1 :])
                if alive:
                    continue
            try:
                alive = where is None and os.fstat(fd).st_nlink > 0
            except OSError:
                alive = False
            if not alive:
                del self._fds[path]
                os.close(fd)
                _FDS.add(-1)

    def _open(self, path: str) -> int:
        rel = path[len(self.run_dir) + 1 :]  # metrics/<key>.jsonl
        fd = self._reopen(path, rel)
        if fd is None:
            # A symlink planted anywhere below the store root (metrics/, a key's folder, the file)
            # is refused, never followed: the writer cannot be steered outside the store.
            try:
                fd = _files.open_append_beneath(
                    self._root, f"{self._run_rel}/{rel}", fixed=2, guard=META_FILE
                )
            except FileNotFoundError:
                raise FileNotFoundError(2, "the run folder was deleted") from None
        _FDS.add(1)
        if not self._fds:
            try:
                st = os.stat(os.path.join(self.run_dir, "metrics"))
                self._metrics_folder = (st.st_dev, st.st_ino)
            except OSError:
                self._metrics_folder = None
        return fd

    def _reopen(self, path: str, rel: str) -> int | None:
        """Fast path for a file that exists: one open, then ask the kernel where it really is.

        Files are re-opened often (only ``_FDS_PER_RUN`` stay open), and each syscall costs a GIL
        hand-over against a busy training loop, so this avoids the folder-by-folder walk unless the
        file is new or did not resolve to where it should (then the walk decides, refusing symlinks).
        """
        try:
            fd = os.open(path, _REOPEN_FLAGS)
        except OSError:
            return None
        if _files.opened_path(fd) == os.path.join(self._real_run_dir, rel):
            return fd
        os.close(fd)
        return None

    def close_files(self) -> None:
        """Close the metric files kept open between drains."""
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        _FDS.add(-len(self._fds))
        self._fds.clear()

    def _fail(self, action: str, path: str, exc: OSError) -> None:
        self.error = _files.storage_error(action, path, exc)
        self._warn_once(
            exc.errno,
            f"mini_mlflow: run {self.run_id}: {self.error}; points are kept in memory and retried",
        )

    def _warn_once(self, cause: Any, message: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def _heartbeat(self, now: float) -> None:
        self._heartbeat_due = now + self.heartbeat_interval
        import json

        beat = {
            "time": int(now * 1000),
            "interval": self.heartbeat_interval,
            "pid": os.getpid(),
            "host": hostname(),
        }
        path = self._heartbeat_path()
        try:
            if os.path.islink(self.run_dir):  # a run folder swapped for a symlink: never write there
                raise _files.SymlinkRefusedError(self.run_dir)
            _files.write_atomic(path, json.dumps(beat).encode())
        except OSError as exc:
            # Keyed by errno like metric writes: a read-only or full store is one cause, one warning.
            self._warn_once(exc.errno, f"mini_mlflow: heartbeat of {path} failed: {exc}")

    # -- end of life -----------------------------------------------------------------------------

    def flush(self, timeout: float = -1) -> None:
        """Drain everything queued so far; raise ``StorageError`` if any of it is not on disk."""
        self.drain(timeout)
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is None and not self.dropped:
            return
        parts = []
        pending = self.pending_points
        if pending:
            parts.append(f"{pending} points not yet written")
        if self.dropped:
            parts.append(f"{self.dropped} points dropped")
        cause = self.error
        detail = f": {cause.strerror}" if cause is not None else ""
        err = StorageError(
            cause.errno if cause is not None else 0,
            f"run {self.run_id}: {', '.join(parts) or 'a write failed'}{detail}",
        )
        raise err from cause

    def sync_files(self) -> None:
        """fsync the metric files this buffer wrote to (the ``end`` fsync policy)."""
        for path in self._touched:
            try:
                fd = self._fds.get(path)
                if fd is not None:
                    os.fsync(fd)
                else:
                    _files.fsync_path(path)
            except OSError as exc:
                self._fail("fsync", path, exc)
        self._touched.clear()

    def _heartbeat_path(self) -> str:
        # One file per process, so ranks sharing a run each prove their own life.
        host = "".join(c if c.isalnum() or c in "-_." else "_" for c in hostname())
        return os.path.join(self.run_dir, f"{HEARTBEAT_FILE}-{os.getpid()}@{host}")

    def remove_heartbeat(self) -> None:
        try:
            os.unlink(self._heartbeat_path())
        except OSError:
            pass

    def reset_after_fork(self) -> None:
        # The parent still owns these points; writing them from the child would duplicate them.
        self.queue.clear()
        self._held.clear()
        self._held_count.clear()
        self.lock = threading.Lock()
        self.close_files()  # the child's copies of the descriptors; the parent's stay open


class Writer:
    """The process's one background writer thread, draining every registered buffer."""

    def __init__(self) -> None:
        self._buffers: dict[int, PointBuffer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # (buffers, their queues, their held bytes, pass period), rebuilt after (un)registering.
        self._snapshot: tuple[list[PointBuffer], list[Any], list[Any], float] | None = None
        # Heap of (heartbeat due, id(buffer)): idle runs are visited only when their beat is due.
        self._beats: list[tuple[float, int]] = []

    def register(self, buffer: PointBuffer) -> None:
        with self._lock:
            self._buffers[id(buffer)] = buffer
            self._snapshot = None
            heapq.heappush(self._beats, (buffer._heartbeat_due, id(buffer)))
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._loop, name="mini-mlflow-writer", daemon=True)
                self._thread.start()

    def unregister(self, buffer: PointBuffer) -> None:
        with self._lock:
            self._buffers.pop(id(buffer), None)
            self._snapshot = None  # its heap entry is dropped when it comes up

    def buffers(self) -> list[PointBuffer]:
        with self._lock:
            return list(self._buffers.values())

    def _take_snapshot(self) -> tuple[list[PointBuffer], list[Any], list[Any], float]:
        with self._lock:
            if self._snapshot is None:
                buffers = list(self._buffers.values())
                period = min((b.interval for b in buffers), default=0.2) / 2
                self._snapshot = (buffers, [b.queue for b in buffers], [b._held for b in buffers], period)
            return self._snapshot

    def _due_beats(self, now: float) -> list[PointBuffer]:
        """Buffers whose heartbeat is due (each taken off the heap; put back by ``_loop``)."""
        due = []
        with self._lock:
            beats = self._beats
            while beats and beats[0][0] <= now:
                _, key = heapq.heappop(beats)
                buffer = self._buffers.get(key)
                if buffer is None:
                    continue  # the run ended
                if buffer._heartbeat_due <= now:
                    due.append(buffer)
                else:  # a drain for new points wrote the beat meanwhile
                    heapq.heappush(beats, (buffer._heartbeat_due, key))
        return due

    def _loop(self) -> None:
        stop = self._stop
        while True:
            buffers, queues, held, period = self._take_snapshot()
            if stop.wait(period):
                return
            # Visit only runs with points queued or held (found by C-level scans of their queues and
            # held bytes, no Python per run) or a heartbeat due: with 10,000 runs open in a process,
            # draining each on every pass kept this thread busy holding the GIL all the time.
            todo = {id(b): b for b in compress(buffers, queues)}
            todo.update((id(b), b) for b in compress(buffers, held))
            beats = self._due_beats(_time())
            todo.update((id(b), b) for b in beats)
            for buffer in todo.values():
                try:
                    buffer.drain()
                except Exception as exc:  # never let the writer die: the data stays queued
                    buffer._warn_once(("writer", type(exc)), f"mini_mlflow: writer error: {exc!r}")
            if beats:
                now = _time()
                with self._lock:
                    for buffer in beats:
                        due = buffer._heartbeat_due
                        heapq.heappush(
                            self._beats, (due if due > now else now + buffer.heartbeat_interval, id(buffer))
                        )

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                warnings.warn(
                    "mini_mlflow: the writer thread did not stop in time", RuntimeWarning, stacklevel=2
                )

    def reset_after_fork(self) -> None:
        _FDS.lock = threading.Lock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        for buffer in self._buffers.values():
            buffer.reset_after_fork()
        self._buffers.clear()
        self._snapshot = None
        self._beats = []


WRITER = Writer()
