"""Crash-consistent file primitives shared by the writer, the store and the reader.

Every file in a store is either append-only (whole lines in one ``write``), write-once (created complete
under a temporary name and linked into place, so no reader ever sees it half written), or replaced whole
(temporary file in the same folder + ``os.replace``). The temporary names contain ``#``, which no key can
contain, so they never shadow a key and readers skip them.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from .._errors import StorageError
from ._layout import META_FILE, TMP_MARK

_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_COPY_CHUNK = 1 << 20
_SENDFILE_CHUNK = 1 << 30
#: A file created (or truncated) for streaming writes; a symlink in its place is refused.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | _NOFOLLOW


def _tmp_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{TMP_MARK}.{os.getpid()}.{os.urandom(4).hex()}.{name}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def replace_file(
    path: str, fill: Callable[[int], None], fsync: bool = False, dir_fd: int | None = None
) -> None:
    """Replace ``path`` with what ``fill`` writes to a descriptor: a temporary file, then a rename.

    Readers see the old file or the new one, never a mix. With ``dir_fd``, ``path`` is a name in that
    open folder (see :func:`open_dir_beneath`): the file lands in that very folder even if its path is
    swapped for a symlink meanwhile.
    """
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644, dir_fd=dir_fd)
    try:
        try:
            fill(fd)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _unlink_quietly(tmp, dir_fd)
        raise
    if fsync:
        if dir_fd is None:
            fsync_dir(os.path.dirname(path))
        else:
            os.fsync(dir_fd)


def write_atomic(path: str, data: bytes, fsync: bool = False, dir_fd: int | None = None) -> None:
    """Replace ``path`` with ``data`` (see :func:`replace_file`)."""
    replace_file(path, lambda fd: _write_all(fd, data), fsync, dir_fd)


def _copy_fd(source: int, fd: int) -> None:
    """Copy from ``source``'s position to its end, in the kernel where it can (``sendfile``)."""
    if hasattr(os, "sendfile"):
        sent = 0
        try:
            while n := os.sendfile(fd, source, None, _SENDFILE_CHUNK):
                sent += n
            return
        except OSError:
            if sent:  # a failure mid-copy is real (disk full); one at the start may be "not supported"
                raise
    while chunk := os.read(source, _COPY_CHUNK):
        _write_all(fd, chunk)


def copy_atomic(src: str, path: str, dir_fd: int | None = None) -> None:
    """Replace ``path`` with a copy of the file ``src``, streamed (bounded memory), as in ``write_atomic``."""

    def fill(fd: int) -> None:
        source = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            _copy_fd(source, fd)
        finally:
            os.close(source)

    replace_file(path, fill, False, dir_fd)


def create_once(path: str, data: bytes, dir_fd: int | None = None) -> bytes | None:
    """Create ``path`` holding ``data`` unless it exists; return the existing content if it does.

    The content is written under a temporary name and hard-linked into place, so the file appears
    complete or not at all, and of two racing writers exactly one wins. ``dir_fd`` as for
    :func:`write_atomic`; an existing file that is a symlink is refused, never read through.
    """
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            try:
                return read_bytes(path, dir_fd)  # O_NOFOLLOW, as every read of a store's file
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SymlinkRefusedError(path) from None
                raise
        return None
    finally:
        _unlink_quietly(tmp, dir_fd)


def open_append(path: str) -> int:
    """Open ``path`` for appending (created if missing; a symlink in its place is refused)."""
    return os.open(path, _APPEND_FLAGS | _NOFOLLOW, 0o644)


#: How the read side opens a store's files: a file planted as a symbolic link is refused (ELOOP), so
#: nothing outside the store is read through it.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | _NOFOLLOW


def open_binary(path: str) -> BinaryIO:
    """``open(path, "rb")`` for a store's file, refusing one planted as a symbolic link (ELOOP)."""
    return os.fdopen(os.open(path, READ_FLAGS), "rb")


def read_bytes(path: str, dir_fd: int | None = None) -> bytes:
    """The whole file (plain ``os`` calls: measurably cheaper than ``open()`` on thousands of files)."""
    fd = os.open(path, READ_FLAGS, dir_fd=dir_fd)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_small(name: str, dir_fd: int) -> bytes:
    """A small file in an open folder, usually in one ``read`` (a regular file reads short only at its
    end); never through a symbolic link."""
    fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    try:
        data = os.read(fd, 8192)
        if len(data) < 8192:
            return data
        chunks = [data]
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class SymlinkRefusedError(OSError):
    """A folder or file below the store root is a symlink: following it could leave the store."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, "is a symbolic link; refusing to follow it out of the store", path)


def _open_dir_nofollow(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        # O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR (Linux) or ELOOP: tell them apart.
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            try:
                if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise SymlinkRefusedError(name) from None
            except FileNotFoundError:
                pass
        raise


def open_dir_beneath(root: str, rel: str, fixed: int, guard: str | None = None) -> int:
    """Open the folder ``root/rel`` without following any symlink below ``root``; return its descriptor.

    ``os.open(..., O_NOFOLLOW)`` only guards the last component; a planted ``metrics -> /elsewhere``
    would still be followed. Here every folder below ``root`` is opened relative to its parent with
    ``O_NOFOLLOW``, so the folder is reached only through real folders. A file then created or replaced
    through the descriptor (``dir_fd=``) stays there even if a path on the way is swapped for a symlink
    at that instant: no check-then-write window. The caller closes the descriptor.

    Args:
        root: Trusted folder (the store root; it may itself be a symlink the user chose).
        rel: ``/``-separated folder path below ``root`` (missing folders are created past ``fixed``).
        fixed: How many leading folders of ``rel`` must exist (never created: e.g. the run folder).
        guard: A file that must exist in the last fixed folder before anything is created below it
            (the run's meta.yaml: a run folder deleted under a live run is not re-created piecemeal).
    """
    parts = [part for part in rel.split("/") if part]
    fd = os.open(root, _DIR_FLAGS)
    try:
        for i, part in enumerate(parts):
            try:
                try:
                    sub = _open_dir_nofollow(part, fd)
                except FileNotFoundError:
                    if i < fixed:
                        raise
                    if guard is not None and i == fixed:
                        os.stat(guard, dir_fd=fd, follow_symlinks=False)  # FileNotFoundError if gone
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    sub = _open_dir_nofollow(part, fd)
            except SymlinkRefusedError:
                raise SymlinkRefusedError(os.path.join(root, *parts[: i + 1])) from None  # full path
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def folder_beneath(root: str, rel: str, fixed: int = 0, guard: str | None = None) -> Iterator[int]:
    """:func:`open_dir_beneath` as a context: the folder's descriptor, closed at the end."""
    fd = open_dir_beneath(root, rel, fixed, guard)
    try:
        yield fd
    finally:
        os.close(fd)


def run_root_and_rel(run_dir: str) -> tuple[str, str]:
    """A run folder is ``<store root>/<experiment>/<run>``: the trusted root and the path below it."""
    root = os.path.dirname(os.path.dirname(run_dir))
    return root, os.path.relpath(run_dir, root).replace(os.sep, "/")


@contextmanager
def run_folder(run_dir: str, sub: str = "") -> Iterator[int]:
    """A descriptor of the folder ``sub`` of a run (the run folder itself if empty), for ``dir_fd=``.

    Reached from the store root without following any symlink (``SymlinkRefusedError``); missing
    folders below the run folder are created while its meta.yaml exists; a run folder that is gone
    raises ``FileNotFoundError`` (it is never re-created piecemeal).
    """
    root, rel = run_root_and_rel(run_dir)
    try:
        fd = open_dir_beneath(root, f"{rel}/{sub}" if sub else rel, fixed=2, guard=META_FILE)
    except FileNotFoundError:
        raise FileNotFoundError(2, "the run folder was deleted", run_dir) from None
    try:
        yield fd
    finally:
        os.close(fd)


def remove_stale_temporaries(dir_fd: int, older_than_s: float = 600) -> None:
    """Remove the temporary files a killed process left in a folder (a live writer renames its own in ms)."""
    cutoff = time.time() - older_than_s
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return
    for name in names:
        if TMP_MARK in name:
            try:
                if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(name, dir_fd=dir_fd)
            except OSError:
                pass


def exists_in(name: str, dir_fd: int) -> bool:
    """Whether ``name`` exists in the open folder ``dir_fd`` (a symlink counts; it is not followed)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def open_append_beneath(root: str, rel: str, fixed: int, guard: str | None = None) -> int:
    """Open the file ``root/rel`` for appending without following any symlink below ``root``.

    The folders are reached as in :func:`open_dir_beneath` (same ``fixed`` and ``guard``); the file is
    created if missing and refused if it is a symlink.
    """
    folder, _, name = rel.rpartition("/")
    fd = open_dir_beneath(root, folder, fixed, guard)
    try:
        return os.open(name, _APPEND_FLAGS | _NOFOLLOW, 0o644, dir_fd=fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkRefusedError(os.path.join(root, rel)) from None
        raise
    finally:
        os.close(fd)


def opened_path(fd: int) -> str | None:
    """The path the kernel resolved for an open descriptor (Linux ``/proc``), or None if unknown."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def check_inside(base: str, path: str) -> None:
    """Raise ``SymlinkRefusedError`` unless the folder of ``path`` resolves inside ``base``.

    A clear early answer (the reader's metric lookup, an artifact's destination): a planted symlink in
    place of ``metrics/`` or a key's folder is named. Writes do not rely on it (a link swapped in right
    after the check would win); they go through :func:`open_dir_beneath`. ``base`` must not be a link.
    """
    if os.path.islink(base):
        raise SymlinkRefusedError(base)
    real_base = os.path.realpath(base)
    folder = os.path.dirname(path)
    real = os.path.realpath(folder)
    if real != real_base and not real.startswith(real_base + os.sep):
        probe = folder  # name the component that is the symlink, for a clear message
        while probe != base and len(probe) > len(base) and not os.path.islink(probe):
            probe = os.path.dirname(probe)
        raise SymlinkRefusedError(probe if os.path.islink(probe) else folder)


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


def _unlink_quietly(path: str, dir_fd: int | None = None) -> None:
    try:
        os.unlink(path, dir_fd=dir_fd)
    except OSError:
        pass


def storage_error(action: str, path: str, exc: OSError) -> StorageError:
    """Wrap an ``OSError`` in a ``StorageError`` that says what was being done, where, and why."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    err = StorageError(exc.errno or 0, f"{action} failed for {path}: {reason}")
    err.filename = path
    return err
