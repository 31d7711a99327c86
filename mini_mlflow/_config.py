"""Settings: arguments > ``MINI_MLFLOW_*`` environment variables > defaults, resolved when a run starts.

Nothing is read at import time, so a script may set variables after ``import mini_mlflow``.
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass, fields
from typing import Any, Callable

from ._errors import InvalidInputError

FSYNC_POLICIES = ("never", "end", "flush")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError
    return value


def _fsync(text: str) -> str:
    text = text.strip().lower()
    if text not in FSYNC_POLICIES:
        raise ValueError
    return text


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _url(text: str) -> str:
    text = text.strip()
    if not text.startswith(("http://", "https://")) or len(text) <= len("https://"):
        raise ValueError
    return text.rstrip("/")


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _log_level(text: str) -> str:
    upper = text.strip().upper()
    if upper not in LOG_LEVELS:
        raise ValueError
    return upper


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError
    return text


@dataclass(frozen=True)
class _Spec:
    field: str
    env: str
    parse: Callable[[str], Any]
    allowed: str
    default: Any


#: The settings table (mirrored in README.md).
SPECS: tuple[_Spec, ...] = (
    _Spec("tracking_dir", "MINI_MLFLOW_TRACKING_DIR", _nonempty, "a directory path", "mlruns"),
    _Spec(
        "flush_interval",
        "MINI_MLFLOW_FLUSH_INTERVAL",
        _positive_float,
        "a number of seconds > 0",
        0.1,
    ),
    _Spec(
        "max_buffer",
        "MINI_MLFLOW_MAX_BUFFER",
        _positive_int,
        "a whole number of points > 0",
        1_000_000,
    ),
    _Spec("fsync", "MINI_MLFLOW_FSYNC", _fsync, "one of never, end, flush", "end"),
    _Spec(
        "heartbeat_interval",
        "MINI_MLFLOW_HEARTBEAT",
        _positive_float,
        "a number of seconds > 0",
        10.0,
    ),
    _Spec("sync_url", "MINI_MLFLOW_SYNC_URL", _url, "an http:// or https:// URL", None),
    _Spec(
        "sync_interval",
        "MINI_MLFLOW_SYNC_INTERVAL",
        _positive_float,
        "a number of seconds > 0",
        5.0,
    ),
    _Spec("offline", "MINI_MLFLOW_OFFLINE", _bool, "true or false (1/0, yes/no)", False),
    _Spec("log_level", "MINI_MLFLOW_LOG_LEVEL", _log_level, "one of " + ", ".join(LOG_LEVELS), "WARNING"),
)
#: Variables read elsewhere (not run settings), known so that they are not warned about.
OTHER_VARIABLES = ("MINI_MLFLOW_RUN_ID", "MINI_MLFLOW_EXPERIMENT_NAME", "MINI_MLFLOW_EXPERIMENT_ID")
KNOWN_VARIABLES = frozenset([*(spec.env for spec in SPECS), *OTHER_VARIABLES])


@dataclass(frozen=True)
class Settings:
    """Effective settings of one run."""

    #: Root folder of the store.
    tracking_dir: str = "mlruns"
    #: Seconds between background flushes; also the most a SIGKILL can lose.
    flush_interval: float = 0.1
    #: Points held in memory per run before a logging call waits for the writer.
    max_buffer: int = 1_000_000
    #: When files are fsynced: ``never``, at ``end`` of a run, or on every ``flush``.
    fsync: str = "end"
    #: Seconds between heartbeats of a live run.
    heartbeat_interval: float = 10.0
    #: MLflow tracking server that a background agent syncs to while the run is live (online mode).
    sync_url: str | None = None
    #: Seconds between passes of the sync agent.
    sync_interval: float = 5.0
    #: Never contact a server, even when ``sync_url`` is set.
    offline: bool = False
    #: Level of mini_mlflow's own log messages.
    log_level: str = "WARNING"


_warned_unknown: set[str] = set()


def resolve(**overrides: Any) -> Settings:
    """Build ``Settings`` from keyword overrides (None = not given), the environment and defaults."""
    _warn_unknown_variables()
    values: dict[str, Any] = {}
    for spec in SPECS:
        given = overrides.get(spec.field)
        if given is not None:
            text = str(given) if not isinstance(given, bool) else str(given).lower()
            values[spec.field] = _parse(spec, text, f"argument {spec.field}")
            continue
        text = os.environ.get(spec.env)
        values[spec.field] = (
            spec.default if text is None or text == "" else _parse(spec, text, spec.env)
        )
    names = {f.name for f in fields(Settings)}
    unknown = set(overrides) - names
    if unknown:
        raise InvalidInputError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
    return Settings(**values)


def _parse(spec: _Spec, text: str, source: str) -> Any:
    try:
        return spec.parse(text)
    except (TypeError, ValueError):
        raise InvalidInputError(f"invalid {source}={text!r}: must be {spec.allowed}") from None


def _warn_unknown_variables() -> None:
    for name in os.environ:
        if name.startswith("MINI_MLFLOW_") and name not in KNOWN_VARIABLES and name not in _warned_unknown:
            _warned_unknown.add(name)
            close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.warn(f"unknown environment variable {name}{hint}", stacklevel=3)
