"""Crash-consistent file primitives shared by the writer, the store and the reader.

Every file in a store is either append-only (whole lines in one ``write``), write-once (created complete
under a temporary name and linked into place, so no reader ever sees it half written), or replaced whole
(temporary file in the same folder + ``os.replace``). The temporary names contain ``#``, which no key can
contain, so they never shadow a key and readers skip them.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from ._errors import StorageError
from ._layout import TMP_MARK

_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _tmp_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{TMP_MARK}.{os.getpid()}.{os.urandom(4).hex()}.{name}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_atomic(path: str, data: bytes, fsync: bool = False) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a mix."""
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(path))


def create_once(path: str, data: bytes) -> bytes | None:
    """Create ``path`` holding ``data`` unless it exists; return the existing content if it does.

    The content is written under a temporary name and hard-linked into place, so the file appears
    complete or not at all, and of two racing writers exactly one wins.
    """
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            with open(path, "rb") as existing:
                return existing.read()
        return None
    finally:
        _unlink_quietly(tmp)


def open_append(path: str) -> int:
    """Open ``path`` for appending (created if missing; a symlink in its place is refused)."""
    return os.open(path, _APPEND_FLAGS | _NOFOLLOW, 0o644)


def append_fd(fd: int, data: bytes) -> int:
    """Append ``data`` (whole lines) with as few ``write`` calls as the kernel allows; return bytes written.

    ``O_APPEND`` makes the kernel place each write at the current end, so whole lines from several
    processes never interleave on a local file system. A short write (disk full) returns fewer bytes;
    the caller keeps the rest and writes it first next time, completing the torn line.
    """
    written = 0
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError:
            if written:
                return written
            raise
        written += n
        view = view[n:]
    return written


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the data files were synced
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- YAML (imported lazily: the logging hot path never needs it) --------------------------------


def dump_yaml(data: dict[str, Any]) -> bytes:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text: str = yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text.encode("utf-8")


def load_yaml(data: bytes) -> Any:
    """Parse YAML with a safe loader only: nothing in a store can construct Python objects."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(data, Loader=loader)  # noqa: S506 - a safe loader, chosen above


def storage_error(action: str, path: str, exc: OSError) -> StorageError:
    """Wrap an ``OSError`` in a ``StorageError`` that says what was being done, where, and why."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    err = StorageError(exc.errno or 0, f"{action} failed for {path}: {reason}")
    err.filename = path
    return err
