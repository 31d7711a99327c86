"""Terminal charts of metric histories: sampled by seeking into the file, drawn in braille dots.

A chart is at most a few hundred columns wide, so a metric file is sampled at evenly spaced byte
offsets instead of being parsed whole: drawing a 1,000,000-point metric reads a few hundred lines.
A run resumed from a checkpoint is the exception: its file is parsed whole, so that the points the
resume superseded (``resumes.json``) are left out, as ``get_metric_history`` leaves them.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..read._reader import parse_metric_lines
from ..read._resumes import drop_superseded
from ..store._files import open_binary

#: Files up to this size are parsed whole (exact min/max per column).
WHOLE_FILE_BYTES = 1 << 20
_WINDOW = 512
# Braille dot bits by (x, y) inside a 2×4 cell.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def sample_points(
    path: str, samples: int, resumes: list[dict[str, Any]] | None = None, key: str = ""
) -> list[tuple[int, float]]:
    """About ``samples`` (step, value) points spread over the file, always with its last point.

    ``resumes``: the run's resume records; the points they supersede in metric ``key`` are not drawn.
    """
    size = os.path.getsize(path)
    with open_binary(path) as f:
        if size <= WHOLE_FILE_BYTES or resumes:
            history = parse_metric_lines(f.read(), key)
            if resumes:
                history = drop_superseded(history, resumes)
            whole = list(zip(history.steps, history.values, strict=True))
            if size <= WHOLE_FILE_BYTES:
                return whole
            every = max(1, len(whole) // samples)  # as evenly spread as the byte samples below
            return whole[::every] + ([whole[-1]] if (len(whole) - 1) % every else [])
        points: list[tuple[int, float]] = []
        last_offset = -1
        for i in range(samples + 1):
            offset = min(size - 1, size * i // samples)
            f.seek(max(0, offset - 1))
            window = f.read(_WINDOW * 2)
            start = window.find(b"\n") + 1 if offset else 0
            if offset and start == 0:
                continue
            absolute = max(0, offset - 1) + start
            if absolute <= last_offset:
                continue
            end = window.find(b"\n", start)
            if end < 0:
                continue
            last_offset = absolute
            history = parse_metric_lines(window[start : end + 1])
            points += zip(history.steps, history.values, strict=True)
        tail = _last_line(f, size)
        if tail is not None and (not points or points[-1] != tail):
            points.append(tail)
        return points


def _last_line(f: object, size: int) -> tuple[int, float] | None:
    import io

    assert isinstance(f, io.BufferedReader)
    f.seek(max(0, size - _WINDOW * 4))
    data = f.read()
    lines = data.split(b"\n")
    for line in reversed(lines[1:-1] if size > _WINDOW * 4 else lines[:-1]):
        history = parse_metric_lines(line + b"\n")
        if history.values:
            return history.steps[0], history.values[0]
    return None


def braille_chart(points: list[tuple[int, float]], width: int, height: int) -> list[str]:
    """Lines of a ``width``×``height`` character chart with a y-axis label column on the left."""
    finite = [(s, v) for s, v in points if math.isfinite(v)]
    if not finite:
        return ["(no finite values to draw)"]
    values = [v for _, v in finite]
    low, high = min(values), max(values)
    labels = [_label(high), _label(low)]
    label_width = max(len(x) for x in labels)
    cols = max(4, width - label_width - 2)
    dots_x, dots_y = cols * 2, height * 4
    span = (high - low) or 1.0
    grid = [[0] * cols for _ in range(height)]
    n = len(finite)
    previous: int | None = None
    for x in range(dots_x):
        if n >= dots_x:  # several points per dot column: draw their whole range
            chunk = values[x * n // dots_x : max(x * n // dots_x + 1, (x + 1) * n // dots_x)]
        else:  # fewer points than columns: interpolate between neighbours
            t = x * (n - 1) / max(1, dots_x - 1)
            i = min(int(t), n - 1)
            chunk = [values[i] + (values[min(i + 1, n - 1)] - values[i]) * (t - i)]
        top = round((max(chunk) - low) / span * (dots_y - 1))
        bottom = round((min(chunk) - low) / span * (dots_y - 1))
        if previous is not None:  # connect to the previous column so the line stays continuous
            top, bottom = max(top, previous), min(bottom, previous)
        previous = round((chunk[-1] - low) / span * (dots_y - 1))
        for y in range(bottom, top + 1):
            grid[(dots_y - 1 - y) // 4][x // 2] |= _DOTS[x % 2][(dots_y - 1 - y) % 4]
    lines = []
    for i, row in enumerate(grid):
        label = labels[0] if i == 0 else labels[1] if i == height - 1 else ""
        lines.append(f"{label:>{label_width}} ┤" + "".join(chr(0x2800 + bits) for bits in row))
    first, last = finite[0][0], finite[-1][0]
    axis = f"step {first}"
    end = f"{last}"
    pad = max(1, cols - len(axis) - len(end))
    lines.append(" " * (label_width + 2) + axis + " " * pad + end)
    return lines


def _label(value: float) -> str:
    return f"{value:.4g}"
