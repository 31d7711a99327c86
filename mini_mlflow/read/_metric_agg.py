"""Read side: what the index keeps per metric file (last point, count/min/max), read incrementally.

Metric files are append-only, so an aggregate records how far it has read (``offset``) and a
fingerprint of those bytes (``mark``); a later look parses only what was appended, once it has checked
that the bytes already read are still the same (a truncated, rewritten or replaced file is read again
from the start). A listing needs only each file's last point: a file it has not read before, or one
with more than ``LIVE_PARSE_BYTES`` unread, costs one ``pread`` of its tail, and ``behind`` says that
count/min/max wait for a full look (``show``).
"""

from __future__ import annotations

import os
from typing import Any

from ..store._files import READ_FLAGS
from ._columns import loads as _loads
from ._metric_cache import fingerprint, read_metric

_SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}

#: An mtime this close to the moment it was read may hide a later write in the same clock tick.
RACY_NS = 2_000_000_000

#: Fields of an aggregate (a list, as stored in the index). ``TAIL_BAD``: unreadable whole lines after
#: the last point, seen by the last tail read (a listing's warning counts them until a full look).
INO, SIZE, MTIME, OFFSET, COUNT, LAST, LOW, HIGH, LAST_STEP, SKIPPED, MARK, BEHIND, TAIL_BAD = range(13)
#: A listing parses at most this many new bytes of a metric file per look (about 15,000 points, ~15 ms);
#: past that it reads only the last point, and count/min/max catch up when the run is shown. A live run
#: logging half a million points a second thus costs a listing a few small reads, not seconds of parsing.
LIVE_PARSE_BYTES = 1 << 20
#: Bytes read from a file's end to find its last point (more only when its last line is longer).
TAIL_BYTES = 1024


def sig_of(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def empty(sig: list[int]) -> list[Any]:
    return [*sig, 0, 0, None, None, None, None, 0, "", 0, 0]


def _mark(fd: int, offset: int) -> str:
    """A fingerprint of the first ``offset`` bytes (both ends and windows between), "" for none."""
    if not offset:
        return ""
    mark = fingerprint(fd, offset)
    return mark.hex() if mark is not None else "?"


def _point(line: bytes) -> tuple[int, float] | None:
    """``(step, value)`` of one line by the reader's rules, None if it is unreadable."""
    try:
        row = _loads(line)  # (NaN spelled bare too: the stdlib reads what orjson refuses)
        step, raw, stamp = row["step"], row["value"], row["timestamp"]
    except (ValueError, KeyError, TypeError):
        return None
    if step.__class__ is not int or stamp.__class__ is not int:
        return None
    cls = raw.__class__
    if cls is float:
        return step, raw
    if cls is int:
        try:
            return step, float(raw)
        except OverflowError:
            return None
    value = _SPECIAL.get(raw) if cls is str else None
    return None if value is None else (step, value)


def tail_point(fd: int, size: int) -> tuple[tuple[int, float] | None, int]:
    """``((step, value) or None, unreadable whole lines after it)`` of a file, reading only its tail."""
    chunk = TAIL_BYTES
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
        if start:
            lines = lines[1:]  # the first may be the end of a longer line
        bad = 0
        for line in reversed(lines):
            point = _point(line)
            if point is not None:
                return point, bad
            if line.strip():
                bad += 1
        if start == 0:
            return None, bad
        chunk *= 8


def look_tail(fd: int, st: os.stat_result, old: list[Any] | None = None) -> list[Any]:
    """A listing's look at a metric file open as ``fd``: signature and last point, count/min/max kept
    from ``old`` (the same file, read up to ``old[OFFSET]``) and marked behind."""
    size = st.st_size
    if old is None and size:  # the common case, in one read: the file's last line is a point
        data = os.pread(fd, min(size, TAIL_BYTES), max(0, size - TAIL_BYTES))
        end = data.rfind(b"\n")
        start = data.rfind(b"\n", 0, end) + 1
        if end > 0 and (start or size <= TAIL_BYTES):
            point = _point(data[start:end])
            if point is not None:
                return [st.st_ino, size, st.st_mtime_ns, 0, 0, point[1], None, None, point[0], 0, "", 1, 0]
    sig = [st.st_ino, size, st.st_mtime_ns]
    agg = [*sig, *old[3:]] if old is not None else empty(sig)
    point, bad = tail_point(fd, size)
    agg[LAST_STEP], agg[LAST] = point if point is not None else (None, None)
    agg[TAIL_BAD] = bad
    agg[BEHIND] = 1
    return agg


def update_metric(
    path: str, old: list[Any] | None, cache: tuple[str, str, str] | None = None, listing: bool = False
) -> list[Any]:
    """The aggregate of a metric file after a look: ``listing`` needs the last point only.

    count/min/max/skipped cover the first ``offset`` bytes (whole lines), whose fingerprint is
    ``mark``: a later look parses only what follows, after checking that the covered bytes are still
    the same. A listing that meets a file it has not read, or more than ``LIVE_PARSE_BYTES`` unread,
    reads only the tail (see :func:`look_tail`). ``cache`` is ``(root, run_id, key)``: a big file read
    from its start is taken from the metric cache when ``get_metric_history`` left a valid one (the
    index does not write that cache; it keeps what it needs, count, min and max, itself).
    """
    if old is not None and len(old) != TAIL_BAD + 1:
        old = None  # another layout: start over
    if old is not None:
        sig = sig_of(path)
        if sig is None:
            return empty([0, 0, 0])
        if old[:3] == sig and (listing or not old[BEHIND]):
            return old  # unchanged: not even opened
    fd = os.open(path, READ_FLAGS)
    try:
        st = os.fstat(fd)
        sig = [st.st_ino, st.st_size, st.st_mtime_ns]
        same_file = (
            old is not None
            and old[INO] == sig[0]
            and sig[1] >= old[OFFSET]
            and (sig[1] != old[SIZE] or sig[2] == old[MTIME] or old[BEHIND])  # changed in place?
            and old[MARK] != "?"
            and old[MARK] == _mark(fd, old[OFFSET])
        )
        if listing and (not same_file or old is None or sig[1] - old[OFFSET] > LIVE_PARSE_BYTES):
            return look_tail(fd, st, old if same_file else None)
        agg = [*sig, *old[3:]] if same_file and old is not None else empty(sig)
        root, run_id, key = cache if cache is not None and agg[OFFSET] == 0 else (None, None, "")
        history, consumed, _ = read_metric(fd, key, root, run_id, offset=agg[OFFSET], write=False)
        agg[BEHIND] = agg[TAIL_BAD] = 0
        if consumed:
            agg[OFFSET] += consumed
            agg[MARK] = _mark(fd, agg[OFFSET])
    finally:
        os.close(fd)
    if not consumed:
        return agg
    agg[SKIPPED] += history.skipped_lines
    values = history.values
    if values:
        agg[COUNT] += len(values)
        agg[LAST] = values[-1]
        agg[LAST_STEP] = history.steps[-1]
        # sum() is NaN when a NaN (or both infinities) is present; otherwise min/max need no filter
        total = sum(values)
        finite = values if total == total else [v for v in values if v == v]
        if finite:
            low, high = min(finite), max(finite)
            agg[LOW] = low if agg[LOW] is None else min(agg[LOW], low)
            agg[HIGH] = high if agg[HIGH] is None else max(agg[HIGH], high)
    return agg


def unreadable(agg: list[Any]) -> int:
    """Unreadable lines a look has seen in the file: those parsed, and those after the last point."""
    return int(agg[SKIPPED]) + (int(agg[TAIL_BAD]) if agg[BEHIND] else 0)
