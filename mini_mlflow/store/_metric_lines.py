"""The metric line format: points → whole JSON lines, one per point (read back by ``read/_metric_parse``).

``{"step":1,"value":0.5,"timestamp":1700000000000}``; NaN and ±inf are the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` (JSON has no literal for them), timestamps integer milliseconds.
"""

from __future__ import annotations

from operator import itemgetter
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
_STEP, _VALUE, _STAMP = itemgetter(2), itemgetter(1), itemgetter(3)
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


def column_texts(points: list[Point], period: int = 1) -> tuple[list[bytes], list[bytes], list[bytes]] | None:
    """Each point's step, value and millisecond timestamp as JSON text, one C call per column (None
    without orjson, or when a value is NaN or ±inf, or a number does not fit: then format_point).

    With ``period``: the points are whole rounds of ``period`` keys, each round logged at one step and
    one time (``log_metrics``); then steps and times come back once per round, for every key.
    """
    if not _dumps:
        return None
    try:
        value_array = _dumps(list(map(_VALUE, points)))
        # orjson writes NaN and ±inf as null; such a batch takes the slow path for their strings.
        if b"null" in value_array:
            return None
        values = value_array[1:-1].split(b",")
        rounds = points[::period] if period > 1 else points
        steps, stamps = list(map(_STEP, rounds)), list(map(_STAMP, rounds))
        if set(map(type, stamps)) == {float}:  # seconds from time.time(), the usual case
            millis = list(map(int, map(_TO_MS, stamps)))
        else:
            millis = [t if t.__class__ is int else int(t * 1000) for t in stamps]
        return _dumps(steps)[1:-1].split(b","), values, _dumps(millis)[1:-1].split(b",")
    except TypeError:  # orjson.JSONEncodeError: e.g. a step beyond 64 bits
        return None


def in_rounds(points: list[Point], period: int) -> bool:
    """Whether ``points`` are whole rounds of ``period`` points, each at one step and one time."""
    if period < 2 or len(points) % period:
        return False
    steps, stamps = list(map(_STEP, points)), list(map(_STAMP, points))
    first_steps, first_stamps = steps[::period], stamps[::period]
    return all(
        steps[i::period] == first_steps and stamps[i::period] == first_stamps for i in range(1, period)
    )


def join_lines(steps: list[bytes], values: list[bytes], millis: list[bytes]) -> bytes:
    """Whole JSON lines from the texts of their columns (see :func:`column_texts`)."""
    # The numbers are slotted between the constant pieces: no Python-level work per point.
    parts = _SLOTS * len(values)
    parts[1::6] = steps
    parts[3::6] = values
    parts[5::6] = millis
    return b"".join(parts)[2:] + b"}\n"  # type: ignore[arg-type]


def format_lines(points: list[Point]) -> bytes:
    """The JSON lines of one metric's points, in order (all points have the same key)."""
    texts = column_texts(points)
    if texts is not None:
        return join_lines(*texts)
    return "".join([format_point(step, value, stamp) for _, value, step, stamp in points]).encode()
