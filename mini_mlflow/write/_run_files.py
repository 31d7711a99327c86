"""The files a live run keeps writing: its metric files and its heartbeat.

Every write into a run reaches its folder through real folders below the store root (a planted symlink
is refused, never followed, and one swapped in mid-write cannot redirect it: ``store._files.run_folder``).
Metric files stay open between drains (a bounded number per run and per process) and are dropped when
deleted, moved or replaced under us, so nothing is ever written into the void.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ..store import _files
from ..store._layout import HEARTBEAT_FILE, META_FILE

_time = time.time

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

    def over(self) -> bool:
        return self.open > _FDS_PER_PROCESS


FDS = _FdBudget()

#: Re-opening an existing metric file: no O_CREAT (a new file goes through the checked walk).
_REOPEN_FLAGS = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def hostname() -> str:
    """This machine's name (what ``socket.gethostname()`` returns, without importing socket)."""
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "localhost")


class MetricFiles:
    """The metric files of one run that this process appends to."""

    def __init__(self, run_dir: str, fsync: str) -> None:
        self.run_dir = run_dir
        self._metrics_dir = os.path.join(run_dir, "metrics")
        self.fsync = fsync
        # Metric files are opened beneath the store root without following symlinks (see _open).
        self._root, self._run_rel = _files.run_root_and_rel(run_dir)
        self._real_run_dir = os.path.realpath(run_dir)
        self._touched: set[str] = set()
        self._fds: dict[str, int] = {}  # path -> open descriptor, in least-recently-used order
        self._metrics_folder: tuple[int, int] | None = None
        #: When the open descriptors were last checked against their paths.
        self.checked = 0.0

    @property
    def open_count(self) -> int:
        return len(self._fds)

    def append(self, path: str, data: bytes) -> int:
        """Append whole lines to a metric file; return the bytes written (short on a full disk)."""
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
            FDS.add(-1)
            raise
        self._fds[path] = fd  # most recently used last
        if len(self._fds) > _FDS_PER_RUN:
            oldest = next(iter(self._fds))
            os.close(self._fds.pop(oldest))
            FDS.add(-1)
        return written

    def check_open(self) -> None:
        """Drop descriptors of files deleted or replaced under us, so nothing is written into the void.

        One stat of the metrics folder per drain catches a deleted run or metrics folder; where each
        open file really is (or, without /proc, its link count) is checked about once a second, for
        single files or key folders deleted or moved by hand.
        """
        try:
            st = os.stat(self._metrics_dir)
            folder: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            folder = None
        if folder is None or folder != self._metrics_folder:
            self.close()
            self._metrics_folder = folder
            return
        now = _time()
        if now - self.checked < 1.0:
            return
        self.checked = now
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
                FDS.add(-1)

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
        FDS.add(1)
        if not self._fds:
            try:
                st = os.stat(self._metrics_dir)
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

    def close(self) -> None:
        """Close the metric files kept open between drains."""
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        FDS.add(-len(self._fds))
        self._fds.clear()

    def sync(self) -> list[tuple[str, OSError]]:
        """fsync the files written since the last call (the ``end`` policy); return the failures."""
        failed = []
        for path in self._touched:
            try:
                fd = self._fds.get(path)
                if fd is not None:
                    os.fsync(fd)
                else:
                    _files.fsync_path(path)
            except OSError as exc:
                failed.append((path, exc))
        self._touched.clear()
        return failed


def heartbeat_path(run_dir: str) -> str:
    """One file per process, so ranks sharing a run each prove their own life."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in hostname())
    return os.path.join(run_dir, f"{HEARTBEAT_FILE}-{os.getpid()}@{host}")


def write_heartbeat(run_dir: str, interval: float, now: float) -> None:
    """Replace this process's heartbeat file of a run (raises OSError on failure)."""
    beat = {"time": int(now * 1000), "interval": interval, "pid": os.getpid(), "host": hostname()}
    with _files.run_folder(run_dir) as fd:  # a run folder swapped for a symlink: never written through
        _files.write_atomic(os.path.basename(heartbeat_path(run_dir)), json.dumps(beat).encode(), dir_fd=fd)


def remove_heartbeat(run_dir: str) -> None:
    try:
        with _files.run_folder(run_dir) as fd:
            os.unlink(os.path.basename(heartbeat_path(run_dir)), dir_fd=fd)
    except OSError:
        pass
