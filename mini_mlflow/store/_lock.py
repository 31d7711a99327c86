"""Inter-process locks of the store: an advisory ``flock`` on a file opened through its folder's descriptor.

The lock file is opened (created if missing) by name inside a folder that is already open
(``dir_fd``, reached without following links: see ``_files.open_dir_beneath``) and with ``O_NOFOLLOW``,
so a folder swapped for a symlink at that very instant can never make a file appear outside the store,
and a link planted in the lock file's place is refused. A lock library would open the file by path:
that was the one way left to create something through a swapped folder.

``fcntl.flock`` from the standard library does the locking. The store is a POSIX format (``dir_fd``
and ``O_NOFOLLOW`` are POSIX too), so no lock library is needed. Each ``lock_in`` opens its own file
description, so two threads of one process exclude each other as two processes do; closing the
descriptor releases the lock, also when the process dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ._files import SymlinkRefusedError

_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
#: Seconds between two tries while another holder keeps the lock (doubling up to the last value).
_POLL = (0.001, 0.05)


def _open(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, _LOCK_FLAGS, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkRefusedError(name) from None
        raise


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def lock_in(dir_fd: int, name: str, timeout: float = 60) -> Iterator[None]:
    """Hold the lock file ``name`` of the open folder ``dir_fd`` (``timeout`` < 0: wait as long as it takes).

    Raises:
        TimeoutError: another holder kept it for ``timeout`` seconds.
        SymlinkRefusedError: ``name`` is a symbolic link.
    """
    fd = _open(dir_fd, name)
    try:
        if timeout < 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
        elif not _try(fd):
            deadline = time.monotonic() + timeout
            pause = _POLL[0]
            while not _try(fd):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the lock {name!r} stayed held by another process for {timeout:g} s")
                time.sleep(min(pause, left))
                pause = min(pause * 2, _POLL[1])
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def try_lock_in(dir_fd: int, name: str) -> Iterator[bool]:
    """Take the lock file ``name`` of ``dir_fd`` if it is free: yields True if held, False if not."""
    fd = _open(dir_fd, name)
    try:
        yield _try(fd)
    finally:
        os.close(fd)
