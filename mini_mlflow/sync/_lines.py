"""Reading metric files for sync: whole lines after an acknowledged byte offset, as REST points.

A line still being written (no newline yet) is left for the next pass; a line that does not parse is
skipped and counted, and the offset moves past it, so one bad line never blocks a run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from ..store._files import open_binary
from ..store._layout import METRIC_SUFFIX, walk_keys
from ._summary import RunReport

READ_CHUNK = 4 << 20
#: The first read of a file: about 2,000 lines, two batches.
FIRST_CHUNK = 128 << 10
_SPECIAL = ("NaN", "Infinity", "-Infinity")


def read_points(
    key: str, path: str, offset: int, report: RunReport, coalesce: bool = False, limit: int | None = None
) -> Iterable[list[tuple[dict[str, Any], int]]]:
    """Chunks of ``(point, end offset of its line)`` after ``offset``; only whole lines.

    ``limit`` (the size seen when the pass was planned) bounds the read: a file that grows faster than
    the server takes it would otherwise keep one pass, and every other run, waiting forever.
    """
    # Small first, then growing: a pass cut short by its time slice has parsed little it did not send.
    # (Coalescing keeps whole chunks, so the last value per step is taken over as many lines as can be.)
    chunk = READ_CHUNK if coalesce else FIRST_CHUNK
    with open_binary(path) as f:
        f.seek(offset)
        while True:
            want = chunk if limit is None else min(chunk, limit - offset)
            data = f.read(want)
            grown, chunk = chunk, min(chunk * 4, READ_CHUNK)
            end = data.rfind(b"\n")
            if end < 0:
                if len(data) == want and grown < chunk:  # a long line: read it with a bigger chunk
                    f.seek(offset)
                    continue
                return  # nothing, or a line still being written: the next pass takes it
            body = data[: end + 1]
            points = _parse_lines(key, body, offset, report)
            if coalesce:
                points = _coalesce(points, offset, offset + end + 1)
            yield points
            offset += end + 1
            f.seek(offset)


# -- files -----------------------------------------------------------------------------------


def metric_files(run_dir: str) -> list[tuple[str, str]]:
    folder = os.path.join(run_dir, "metrics")
    out = []
    for key in walk_keys(folder, METRIC_SUFFIX)[0]:
        path = os.path.join(folder, key + METRIC_SUFFIX)
        if not os.path.islink(path):
            out.append((key, path))
    return out


def size_of(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _parse_lines(key: str, body: bytes, offset: int, report: RunReport) -> list[tuple[dict[str, Any], int]]:
    lines = body.split(b"\n")[:-1]
    out: list[tuple[dict[str, Any], int]] = []
    pos = offset
    try:  # fast path: the chunk as one JSON array
        rows = json.loads(b"[" + b",".join(lines) + b"]")
        for line, row in zip(lines, rows, strict=False):
            pos += len(line) + 1
            out.append((_point(key, row), pos))
        return out
    except (ValueError, KeyError, TypeError):
        out, pos = [], offset
    for line in lines:
        pos += len(line) + 1
        try:
            out.append((_point(key, json.loads(line)), pos))
        except (ValueError, KeyError, TypeError):
            if line.strip():
                report.skipped_lines += 1
    return out


def _point(key: str, row: dict[str, Any]) -> dict[str, Any]:
    value, step, stamp = row["value"], row["step"], row["timestamp"]
    if step.__class__ is not int or stamp.__class__ is not int:
        raise TypeError
    if value.__class__ not in (float, int) and value not in _SPECIAL:
        raise TypeError
    return {"key": key, "value": value, "timestamp": stamp, "step": step}


def _coalesce(
    points: list[tuple[dict[str, Any], int]], start: int, end: int
) -> list[tuple[dict[str, Any], int]]:
    """Keep the last value at each step; the cursor moves past the chunk only with its last point."""
    last = {point["step"]: i for i, (point, _) in enumerate(points)}
    kept = [points[i][0] for i in sorted(last.values())]
    return [(point, end if i == len(kept) - 1 else start) for i, point in enumerate(kept)]
