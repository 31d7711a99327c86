"""The writer: one daemon thread per process that drains every live run's buffer in the background.

It wakes every ``PASS_SHARE`` of the shortest flush interval (at least once per heartbeat interval)
and visits only the runs with points waiting or a heartbeat due, so thousands of idle runs cost it
nothing. A training loop that holds the GIL can starve it; then the logging calls drain their own
buffers (see ``_buffer.PointBuffer.on_due``).
"""

from __future__ import annotations

import heapq
import os
import threading
import time
import warnings
from itertools import compress
from typing import Any

from ..store import _pending
from ._buffer import PointBuffer
from ._run_files import FDS

_time = time.time

#: The pause between passes, as a share of the shortest flush interval of the runs. A point is written
#: within that share of the interval; the rest (20 ms at the default 0.1 s) covers the GIL hand-offs
#: and the pass itself before a logging call, finding the buffer overdue, drains it on the training
#: thread. Fewer passes cost training less: a pass after a sleep runs on cold caches and took ~0.3 ms
#: of this thread's CPU however few points it wrote (measured in a BoringModel training: 0.8 instead
#: of a half cut the thread's CPU per step by about a third).
PASS_SHARE = 0.8


def _pause(buffer: PointBuffer) -> float:
    """The longest the thread may sleep for this run: a share of its flush interval, and never longer
    than its heartbeat interval (a run flushing every minute still beats every 10 s: readers judge a
    run silent for 3 beats, at least 30 s, as crashed)."""
    return min(buffer.interval * PASS_SHARE, buffer.heartbeat_interval)


class Writer:
    """The process's one background writer thread, draining every registered buffer."""

    def __init__(self) -> None:
        self._buffers: dict[int, PointBuffer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        #: Set to end the thread's wait early: a run whose flush interval is shorter than that wait
        #: registered (a process whose only run flushed hourly slept most of an hour, and a run started
        #: meanwhile was neither written nor beaten by this thread).
        self._wake = threading.Event()
        #: How long the thread's current wait lasts at most.
        self._sleep = 0.0
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
            if _pause(buffer) < self._sleep:
                self._wake.set()
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

    def drain_for_readers(self, root: str, run_id: str | None) -> None:
        """Drain the buffers of ``root``'s runs (or of run ``run_id`` only) that hold unwritten points."""
        real = os.path.realpath(root)
        for buffer in self.buffers():
            mine = buffer.store_root == real and (run_id is None or buffer.run_id == run_id)
            # A drain in progress (its lock held) has taken points off the queue and not yet written
            # them: the reader waits for it (drain() takes the lock), or it read a file without them
            # (seen in CI under load: a Kedro dataset loaded {} right after saving).
            if mine and (buffer.queue or buffer._held or buffer.lock.locked()):
                buffer.drain()

    def _take_snapshot(self) -> tuple[list[PointBuffer], list[Any], list[Any], float]:
        with self._lock:
            if self._snapshot is None:
                buffers = list(self._buffers.values())
                period = min(map(_pause, buffers), default=0.2 * PASS_SHARE)
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
        stop, wake = self._stop, self._wake
        while True:
            self._sleep = self._take_snapshot()[3]
            wake.wait(self._sleep)
            wake.clear()
            if stop.is_set():
                return
            buffers, queues, held, _ = self._take_snapshot()
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
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                warnings.warn(
                    "mini_mlflow: the writer thread did not stop in time", RuntimeWarning, stacklevel=2
                )

    def reset_after_fork(self) -> None:
        FDS.lock = threading.Lock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sleep = 0.0
        self._thread = None
        for buffer in self._buffers.values():
            buffer.reset_after_fork()
        self._buffers.clear()
        self._snapshot = None
        self._beats = []


WRITER = Writer()
_pending.register(WRITER.drain_for_readers)
