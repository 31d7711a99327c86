"""Read side: a derived binary cache of big metric histories, so a repeated read skips the JSON parse.

``<root>/.index/metrics/<run_id>/<hash of key>.bin`` holds the parsed steps (int64), values (float64)
and timestamps (int64) of the first ``consumed`` bytes of a metric file as packed arrays, behind a header
that records which file (inode, device) and which bytes it was built from. A read trusts the cache only
as far as the file proves it: same inode, at least ``consumed`` bytes long, the bytes at the start, at
the end and at a few offsets in between of that prefix hash as recorded, and a file that did not grow
still has the recorded mtime. Then only the bytes appended since (metric files are append-only) are
parsed, and the cache is extended. Anything else (a rewritten, truncated or replaced file, a garbage or
cut cache file, another format) means a full parse and a fresh cache. A torn last line is never cached.

Caches are written atomically (temporary file in the same folder + ``os.replace``), never through a
symbolic link, and failures to write them are ignored: a read-only store still reads, just slower.
Deleting them at any time is safe.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
import zlib
from array import array
from typing import Any, NamedTuple

from ..store._files import READ_FLAGS, folder_beneath, remove_stale_temporaries, replace_file
from ._metric_parse import MetricHistory, parse_columns

#: Metric files smaller than this are parsed directly (the parse is already fast; no cache file).
MIN_CACHE_BYTES = 1 << 20
CACHE_FOLDER = os.path.join(".index", "metrics")
#: The cache is rewritten once the bytes appended since it was written reach 1/EXTEND_RATIO of it.
EXTEND_RATIO = 16
_MAGIC = b"MMFC1" + (b"L" if sys.byteorder == "little" else b"B") + b"\n\0"
# magic, consumed, size seen, ino, dev, mtime_ns seen, count, skipped, payload crc32, fingerprint, key len
_HEADER = struct.Struct("<8sQQQQqQQI16sH")
_EDGE = 4096  # bytes hashed at each end of the cached prefix
_PROBES = 16  # short windows hashed in between (a rewrite that keeps both ends is still caught)
_PROBE = 64
_PREADV = hasattr(os, "preadv")


class Cached(NamedTuple):
    """What a cache file proves about the first ``consumed`` bytes of a metric file."""

    consumed: int
    skipped: int
    steps: list[int]
    values: list[float]
    timestamps: list[int]
    arrays: list[array[Any]]  #: the same three columns packed, reused when the cache is extended


def cache_path(root: str, run_id: str, key: str) -> str:
    """Where the cache of metric ``key`` of run ``run_id`` lives under the store ``root``."""
    name = hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()
    return os.path.join(root, CACHE_FOLDER, run_id, name + ".bin")


def fingerprint(fd: int, consumed: int) -> bytes | None:
    """A hash of the prefix's two ends and a few windows in between; None if it does not end a line."""
    edge = min(_EDGE, consumed)
    head = os.pread(fd, edge, 0)
    tail = os.pread(fd, edge, consumed - edge)
    if len(head) != edge or len(tail) != edge or not tail.endswith(b"\n"):
        return None
    digest = hashlib.blake2b(head, digest_size=16)
    digest.update(tail)
    for i in range(1, _PROBES + 1):
        at = consumed * i // (_PROBES + 2)
        digest.update(os.pread(fd, min(_PROBE, consumed - at), at))  # never past the covered part
    digest.update(consumed.to_bytes(8, "little"))
    return digest.digest()


def _load(cache_file: str, key: str, fd: int, st: os.stat_result) -> Cached | None:
    """The cache's arrays if it is intact and the metric file (open as ``fd``) still proves them."""
    try:
        cfd = os.open(cache_file, READ_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(cfd).st_mode):
            return None
        head = os.pread(cfd, _HEADER.size, 0)
        if len(head) != _HEADER.size:
            return None
        magic, consumed, size_seen, ino, dev, mtime, count, skipped, crc, mark, key_len = _HEADER.unpack(head)
        stored_key = os.pread(cfd, key_len, _HEADER.size)
        if magic != _MAGIC or stored_key != key.encode("utf-8") or (ino, dev) != (st.st_ino, st.st_dev):
            return None
        if consumed == 0 or consumed > st.st_size or (st.st_size == size_seen and st.st_mtime_ns != mtime):
            return None  # shorter than what we cached, or changed in place without growing
        if fingerprint(fd, consumed) != mark:
            return None
        nbytes = count * 8
        payload = os.pread(cfd, 3 * nbytes + 1, _HEADER.size + key_len)
    finally:
        os.close(cfd)
    if len(payload) != 3 * nbytes or zlib.crc32(payload) != crc:
        return None  # cut short, or garbage
    steps, values, stamps = array("q"), array("d"), array("q")
    view = memoryview(payload)
    steps.frombytes(view[:nbytes])
    values.frombytes(view[nbytes : 2 * nbytes])
    stamps.frombytes(view[2 * nbytes :])
    return Cached(
        consumed, skipped, steps.tolist(), values.tolist(), stamps.tolist(), [steps, values, stamps]
    )


def _folder_is_ours(root: str, run_id: str) -> bool:
    """Whether the run's cache folder exists with no symbolic link on the way (nothing read elsewhere)."""
    folder = root
    for part in (*CACHE_FOLDER.split(os.sep), run_id):
        folder = os.path.join(folder, part)
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return False
        except OSError:
            return False
    return True


def _save(
    root: str,
    run_id: str,
    key: str,
    fd: int,
    st: os.stat_result,
    consumed: int,
    skipped: int,
    h: MetricHistory,
    old: Cached | None,
    packed: tuple[array[int], array[float], array[int]] | None = None,
) -> None:
    """Write the cache of the first ``consumed`` bytes (parsed as ``h``) atomically; errors propagate.

    With ``old``, the cache being extended, only the points after its packed arrays are packed;
    ``packed`` is ``h`` already packed by the parser (no second conversion of a million numbers).
    """
    mark = fingerprint(fd, consumed)
    if mark is None:
        return
    try:
        if packed is not None and old is None:
            parts: list[array[Any]] = list(packed)
        elif old is None:
            parts = [array("q", h.steps), array("d", h.values), array("q", h.timestamps)]
        else:
            parts, done = old.arrays, len(old.arrays[1])  # (old.values is h.values, extended)
            parts[0].extend(h.steps[done:])
            parts[1].extend(h.values[done:])
            parts[2].extend(h.timestamps[done:])
    except OverflowError:
        return  # a step or timestamp beyond int64: not cacheable, parsed every time
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    key_bytes = key.encode("utf-8")
    header = _HEADER.pack(
        _MAGIC,
        consumed,
        st.st_size,
        st.st_ino,
        st.st_dev,
        st.st_mtime_ns,
        len(h),
        skipped,
        crc,
        mark,
        len(key_bytes),
    )
    chunks: list[bytes | array[Any]] = [header + key_bytes, *parts]

    def fill(out: int) -> None:
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view:
                view = view[os.write(out, view) :]

    # Through real folders only: a link planted or swapped in is refused (OSError), never written through.
    with folder_beneath(root, "/".join((*CACHE_FOLDER.split(os.sep), run_id))) as folder:
        remove_stale_temporaries(folder)
        replace_file(os.path.basename(cache_path(root, run_id, key)), fill, dir_fd=folder)


def read_from(fd: int, start: int, size: int) -> bytearray:
    """The bytes of ``fd`` from ``start`` to its end, read straight into one mutable buffer.

    ``size`` is the expected end (from ``fstat``); a file that grows while we read is followed to its
    new end, so the caller never sees less than what it stat-ed.
    """
    buf = bytearray(max(0, size - start))
    got = 0
    view = memoryview(buf)
    while got < len(buf):
        n = os.preadv(fd, [view[got:]], start + got) if _PREADV else _pread_into(fd, view[got:], start + got)
        if not n:
            break
        got += n
    view.release()
    del buf[got:]
    while True:  # to the end, even if the file grows while we read
        chunk = os.pread(fd, 1 << 20, start + len(buf))
        if not chunk:
            return buf
        buf += chunk


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    chunk = os.pread(fd, len(view), offset)
    view[: len(chunk)] = chunk
    return len(chunk)


def read_metric(
    fd: int,
    key: str,
    root: str | None,
    run_id: str | None,
    min_bytes: int = MIN_CACHE_BYTES,
    offset: int = 0,
    write: bool = True,
) -> tuple[MetricHistory, int, bool]:
    """Every complete point of the metric file open as ``fd``, using and refreshing its cache.

    Args:
        fd: the metric file, open for reading.
        key: the metric key (recorded in the cache to tell keys apart).
        root: the store root holding ``.index/``; None reads without a cache.
        run_id: the run the metric belongs to.
        min_bytes: files smaller than this are parsed without a cache.
        offset: without a cache, read from this byte offset (the start of a line) on.
        write: write or extend the cache when it was missing, stale or short (False: only use it).

    Returns:
        ``(history, consumed, torn)``: the points of the ``consumed`` bytes read from ``offset``
        (whole lines; the history's ``skipped_lines`` counts only unreadable whole lines), and whether
        a torn last line follows them.
    """
    st = os.fstat(fd)
    use_cache = root is not None and run_id is not None and st.st_size >= min_bytes and not offset
    cached = None
    if use_cache and _folder_is_ours(root, run_id):  # type: ignore[arg-type]
        cached = _load(cache_path(root, run_id, key), key, fd, st)  # type: ignore[arg-type]
    start = cached.consumed if cached else offset
    data = read_from(fd, start, st.st_size)
    end = data.rfind(b"\n") + 1
    torn = bool(data[end:].strip())
    del data[end:]  # whole lines only; the parser may change the buffer (it is ours)
    fresh, packed = parse_columns(data, key) if end else (MetricHistory(key), None)
    del data
    consumed = start + end
    if not use_cache:
        return fresh, end, torn
    if cached is None:
        history = fresh
    else:
        history = MetricHistory(key, cached.steps, cached.values, cached.timestamps, cached.skipped)
        history.steps += fresh.steps
        history.values += fresh.values
        history.timestamps += fresh.timestamps
        history.skipped_lines += fresh.skipped_lines
    # Extending means rewriting the whole cache file: worth it once the tail costs more to parse than
    # that (a run still logging is read again and again; a small tail is cheap to parse each time).
    if write and consumed >= min_bytes and (cached is None or end * EXTEND_RATIO >= cached.consumed):
        try:  # describe the file as it is after our read: a later same-size, other-mtime file was changed
            after = os.fstat(fd)
            _save(root, run_id, key, fd, after, consumed, history.skipped_lines, history, cached, packed)  # type: ignore[arg-type]
        except OSError:
            pass  # a read-only or full store: reading still works, without the cache
    return history, consumed, torn
