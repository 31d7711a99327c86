"""The metric line format: points → whole JSON lines, one per point (read back by ``read/_metric_parse``).

``{"step":1,"value":0.5,"timestamp":1700000000000}``; NaN and ±inf are the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` (JSON has no literal for them), timestamps integer milliseconds.
"""

from __future__ import annotations

from typing import Any

Point = tuple[str, float, int, Any]  # key, value, step, timestamp (float seconds or int ms)


def format_point(step: int, value: float, timestamp: Any) -> str:
    """One metric point as a JSONL line; NaN and ±inf become the strings "NaN", "Infinity", "-Infinity"."""
    if timestamp.__class__ is float:
        timestamp = int(timestamp * 1000)
    if value - value == 0.0:  # finite: nan - nan and inf - inf are nan
        return f'{{"step":{step},"value":{value!r},"timestamp":{timestamp}}}\n'
    text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return f'{{"step":{step},"value":"{text}","timestamp":{timestamp}}}\n'


#: ``orjson.dumps`` (formats floats ~10x faster than ``repr``); False without orjson, None until looked up.
_dumps: Any = None
#: The constant pieces of a run of JSON lines; the None slots take step, value and timestamp.
_SLOTS = [b'}\n{"step":', None, b',"value":', None, b',"timestamp":', None]
_TO_MS = (1000.0).__mul__


def load_fast_formatter() -> None:
    """Use orjson for formatting lines when it is installed (called when a run starts, not at import)."""
    global _dumps
    if _dumps is None:
        dumps: Any = False
        try:
            from orjson import dumps
        except ImportError:
            pass
        _dumps = dumps


def format_lines(points: list[Point]) -> bytes:
    """The JSON lines of one metric's points, in order (all points have the same key)."""
    if _dumps:
        try:
            _, values, steps, stamps = zip(*points, strict=True)
            if set(map(type, stamps)) == {float}:  # seconds from time.time(), the usual case
                millis = list(map(int, map(_TO_MS, stamps)))
            else:
                millis = [t if t.__class__ is int else int(t * 1000) for t in stamps]
            value_array = _dumps(values)
            # orjson writes NaN and ±inf as null; such a batch takes the slow path for their strings.
            if b"null" not in value_array:
                # Each column is formatted by one C call, split into numbers and slotted between the
                # constant pieces: no Python-level work per point.
                parts = _SLOTS * len(points)
                parts[1::6] = _dumps(steps)[1:-1].split(b",")
                parts[3::6] = value_array[1:-1].split(b",")
                parts[5::6] = _dumps(millis)[1:-1].split(b",")
                return b"".join(parts)[2:] + b"}\n"  # type: ignore[arg-type]
        except TypeError:  # orjson.JSONEncodeError: e.g. a step beyond 64 bits
            pass
    return "".join([format_point(step, value, stamp) for _, value, step, stamp in points]).encode()
