"""The buffer: points logged to one run and not yet on disk, drained into its metric files as JSON lines.

A logging call appends a tuple to the run's deque and returns; ``drain`` (called by the writer thread
in ``_writer``, or by a logging call that finds the buffer overdue or over its bound) pops them in
order, formats whole JSON lines and appends them with one ``write`` per metric file (``_run_files``).
Either way no point waits longer than ``flush_interval`` to reach the disk, and memory stays bounded.

Trouble writing (disk full, permissions, the run folder deleted) never raises into the logging call:
the lines are kept in memory (up to the bound) and retried on every pass, a warning is issued once per
cause, and the error is raised by ``flush()``/``end_run()``.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections import deque
from itertools import islice
from operator import itemgetter
from typing import Any

from .. import _log
from .._config import Settings
from .._errors import StorageError
from ..store import _files
from ..store._layout import METRIC_SUFFIX
from ..store._metric_lines import (
    Point,
    column_texts,
    format_lines,
    in_rounds,
    join_lines,
    load_fast_formatter,
)
from ._interrupts import HeldInterrupts
from ._run_files import FDS, MetricFiles, remove_heartbeat, write_heartbeat

_time = time.time

#: Points formatted per step of a drain. Small steps keep the working set in the CPU caches and bound
#: the time one C call holds the GIL: measured, 2,000 drains ~1.1 M points/s where 50,000 drained
#: ~0.6 M, and 16 threads logging flat out then held 90 MB instead of 250 MB (allocator high water).
_CHUNK = 2_000


_KEY = itemgetter(0)


def _period(keys: list[str]) -> int:
    """``k`` if ``keys`` is the same ``k`` distinct keys over and over (the last round may be cut
    short), else 0."""
    if len(keys) < 4:
        return 0
    try:
        k = keys.index(keys[0], 1)
    except ValueError:
        return 0
    pattern = keys[:k]
    rounds = -(-len(keys) // k)
    if (pattern * rounds)[: len(keys)] != keys or len(set(pattern)) != k:
        return 0
    return k


class PointBuffer:
    """Points logged to one run by this process and not yet on disk, and the state of writing them."""

    def __init__(self, run_dir: str, run_id: str, settings: Settings) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        #: The store root with links resolved, to match a reader's root whichever path it took.
        self.store_root = os.path.realpath(os.path.dirname(os.path.dirname(run_dir)))
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
        #: Metric key → its file's path (made once: a drain writes every key it holds).
        self._paths: dict[str, str] = {}
        #: The metric files this buffer appends to.
        self.files = MetricFiles(run_dir, settings.fsync)
        load_fast_formatter()
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

    def drain(self, timeout: float = -1) -> None:
        """Write every point queued before this call.

        Gives up, having written nothing, if another drainer held the lock for ``timeout`` seconds
        (-1: wait as long as it takes): the exit path then leaves the points to that drainer.
        """
        with HeldInterrupts():  # Ctrl-C here would keep the lock, or lose the points taken
            if not self.lock.acquire(timeout=timeout):
                return
            try:
                if self._held:
                    self._write({})  # retry what failed before, so lines stay in order
                if not self._held:  # while writes fail, points wait in the queue (bounded by on_due)
                    remaining = len(self.queue)
                    while remaining > 0:
                        n = min(remaining, _CHUNK)
                        self._write(self._group(n))
                        remaining -= n
                now = _time()
                if now >= self._heartbeat_due:
                    self._heartbeat(now)
                self.due = 0.0 if len(self.queue) > self.max_points else now + self.interval
            finally:
                self.lock.release()

    def _group(self, n: int) -> dict[str, Any]:
        # Bulk-pop at C speed (``iter(popleft, None)`` stops only after n items: None is never queued),
        # then group by key: a key's points, or the texts of its lines' columns.
        points = list(islice(iter(self.queue.popleft, None), n))
        keys = list(map(_KEY, points))
        period = _period(keys)
        if period:  # the same keys in the same order every step (log_metrics of one dict): slices, in C
            rounds = in_rounds(points, period)  # one step and time per round: formatted once for all keys
            texts = column_texts(points, period if rounds else 1)
            if texts is None:
                return {key: points[i::period] for i, key in enumerate(keys[:period])}
            steps, values, millis = texts
            if rounds:
                return {key: (steps, values[i::period], millis) for i, key in enumerate(keys[:period])}
            return {
                key: (steps[i::period], values[i::period], millis[i::period])
                for i, key in enumerate(keys[:period])
            }
        groups: dict[str, list[Point]] = {}  # otherwise one Python step per point
        get = groups.get
        for point in points:
            same_key = get(point[0])
            if same_key is None:
                groups[point[0]] = [point]
            else:
                same_key.append(point)
        return groups

    def _write(self, groups: dict[str, Any]) -> None:
        # Each key's lines are formatted right before their write: the write releases the GIL, so a
        # training loop waiting for it waits for one key's formatting, not for the whole drain's
        # (measured: one hold of ~0.4 ms per drain of 5 metrics × 250 steps; the loop's expected wait
        # grows with the square of a hold, so five short holds cost it about a fifth).
        held, counts = self._held, self._held_count
        if (groups or held) and self.files.open_count:
            self.files.check_open()
        for key in [*held, *(k for k in groups if k not in held)]:
            data = held.pop(key, b"")
            group = groups.get(key)
            if group is not None:
                data += join_lines(*group) if group.__class__ is tuple else format_lines(group)
            counts.pop(key, None)
            path = self._paths.get(key)
            if path is None:
                path = self._paths[key] = os.path.join(self.run_dir, "metrics", key + METRIC_SUFFIX)
            try:
                written = self.files.append(path, data)
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
        if FDS.over():
            self.files.close()

    @property
    def held_points(self) -> int:
        """Points formatted but not yet written because writes failed."""
        return sum(self._held_count.values())

    @property
    def pending_points(self) -> int:
        """Points logged and not yet on disk."""
        return self.held_points + len(self.queue)

    def _fail(self, action: str, path: str, exc: OSError) -> None:
        self.error = _files.storage_error(action, path, exc)
        self._warn_once(
            exc.errno,
            # strerror: the action, the path and the reason once (str() repeats the path, with the errno)
            f"mini_mlflow: run {self.run_id}: {self.error.strerror}; points are kept in memory and retried",
        )

    def _warn_once(self, cause: Any, message: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def _heartbeat(self, now: float) -> None:
        self._heartbeat_due = now + self.heartbeat_interval
        try:
            write_heartbeat(self.run_dir, self.heartbeat_interval, now)
        except OSError as exc:
            # Keyed by errno like metric writes: a read-only or full store is one cause, one warning.
            self._warn_once(exc.errno, f"mini_mlflow: heartbeat of {self.run_dir} failed: {exc}")

    # -- end of life -----------------------------------------------------------------------------

    def raise_error(self) -> None:
        cause = self.error
        if cause is None:  # points are dropped only while writes fail, and then the error stays set
            return
        parts = []
        pending = self.pending_points
        if pending:
            parts.append(f"{pending} points not yet written")
        if self.dropped:
            parts.append(f"{self.dropped} points dropped")
        summary = ", ".join(parts) or "a write failed"  # nothing pending: an fsync failed (end policy)
        raise StorageError(cause.errno, f"run {self.run_id}: {summary}: {cause.strerror}") from cause

    def sync_files(self) -> None:
        """fsync the metric files this buffer wrote to (the ``end`` fsync policy)."""
        for path, exc in self.files.sync():
            self._fail("fsync", path, exc)

    def close_files(self) -> None:
        self.files.close()

    def remove_heartbeat(self) -> None:
        remove_heartbeat(self.run_dir)

    def reset_after_fork(self) -> None:
        # The parent still owns these points; writing them from the child would duplicate them.
        self.queue.clear()
        self._held.clear()
        self._held_count.clear()
        self.lock = threading.Lock()
        self.files.close()  # the child's copies of the descriptors; the parent's stay open
