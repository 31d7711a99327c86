"""Caller values to stored ones: metric values, steps, timestamps and end statuses, or a clear error.

The hot path calls these only for values that are not already of the stored type.
"""

from __future__ import annotations

from typing import Any

from .._errors import InvalidInputError, InvalidValueError
from ..store._layout import END_STATUSES


def to_float(key: str, value: Any) -> float:
    """A caller's metric value as a float (bools, None and strings are refused)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise InvalidValueError(
            f"metric {key!r}: value {value!r} is not a real number (got {type(value).__name__}); "
            "metric values must be int or float (NaN and ±inf are allowed)"
        )
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        raise InvalidValueError(
            f"metric {key!r}: value {value!r} is too large for a float (at most about 1.8e308)"
        ) from None
    except (TypeError, ValueError):
        raise InvalidValueError(
            f"metric {key!r}: value {value!r} is not a real number (got {type(value).__name__}); "
            "metric values must be int or float (NaN and ±inf are allowed)"
        ) from None


def to_step(key: str, step: Any) -> int:
    """A caller's step as an int (anything with ``__index__``, e.g. numpy ints; not bools)."""
    if not isinstance(step, bool):
        try:
            return int(step.__index__())
        except (AttributeError, TypeError):
            pass
    raise InvalidValueError(f"metric {key!r}: step {step!r} must be an int")


def to_timestamp(key: str, timestamp: Any) -> int:
    """A caller's timestamp as integer milliseconds since the epoch."""
    if not isinstance(timestamp, (bool, int, float)) and hasattr(timestamp, "__index__"):
        timestamp = timestamp.__index__()  # numpy integers, as steps take them
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or timestamp - timestamp != 0:
        # timestamp - timestamp is NaN for NaN and ±inf, which int() cannot take
        raise InvalidValueError(
            f"metric {key!r}: timestamp {timestamp!r} must be a finite number of milliseconds (int)"
        )
    return int(timestamp)


def status_for_exception(exc_type: type[BaseException] | None, exc: BaseException | None) -> str:
    """The honest end status for a block left with this exception (None: left normally)."""
    if exc_type is None:
        return "FINISHED"
    if issubclass(exc_type, KeyboardInterrupt):
        return "KILLED"
    if issubclass(exc_type, SystemExit):  # sys.exit(0) / sys.exit() is a normal end
        code = exc.code if isinstance(exc, SystemExit) else None
        return "FINISHED" if code is None or code == 0 else "FAILED"
    return "FAILED"


def check_status(status: Any) -> str:
    """An end status in canonical upper case, or a clear error."""
    if isinstance(status, str) and status.upper() in END_STATUSES:
        return status.upper()
    raise InvalidInputError(f"Invalid status {status!r}: must be one of {', '.join(END_STATUSES)}")
