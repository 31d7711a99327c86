"""Settings: arguments > ``MINI_MLFLOW_*`` environment variables > defaults, resolved when a run starts.

Nothing is read at import time, so a script may set variables after ``import mini_mlflow``.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

from ._errors import InvalidInputError
from ._tracking_uri import parse as parse_tracking_uri

FSYNC_POLICIES = ("never", "end", "flush")


#: Bounds of every "seconds" setting: below a millisecond the background threads would spin, and
#: beyond a day a timer overflows the platform's time_t (``Event.wait(1e308)`` raises OverflowError).
MIN_SECONDS, MAX_SECONDS = 0.001, 86_400.0
_SECONDS = f"a number of seconds > 0 (from {MIN_SECONDS:g} to {MAX_SECONDS:g})"


def _positive_float(text: str) -> float:
    value = float(text)
    if not MIN_SECONDS <= value <= MAX_SECONDS:  # NaN fails every comparison
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
    from urllib.parse import urlsplit

    text = text.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError
    parts = urlsplit(text)  # ValueError for a malformed host ("http://[::1")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError
    _ = parts.port  # ValueError for a port that is not a number from 0 to 65535
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


class _Spec(NamedTuple):
    field: str
    env: str
    parse: Callable[[str], Any]
    allowed: str
    default: Any
    meaning: str = ""


#: The settings table (mirrored in README.md).
SPECS: tuple[_Spec, ...] = (
    _Spec(
        "tracking_dir",
        "MINI_MLFLOW_TRACKING_DIR",
        _nonempty,
        "a directory path",
        "mlruns",
        "root folder of the store",
    ),
    _Spec(
        "flush_interval",
        "MINI_MLFLOW_FLUSH_INTERVAL",
        _positive_float,
        _SECONDS,
        0.1,
        "seconds between background writes; the most a SIGKILL can lose",
    ),
    _Spec(
        "max_buffer",
        "MINI_MLFLOW_MAX_BUFFER",
        _positive_int,
        "a whole number of points > 0",
        1_000_000,
        "points held in memory per run before a logging call writes them itself",
    ),
    _Spec(
        "fsync",
        "MINI_MLFLOW_FSYNC",
        _fsync,
        "one of never, end, flush",
        "end",
        "when files are fsynced: never, at the end of a run, or on every flush",
    ),
    _Spec(
        "heartbeat_interval",
        "MINI_MLFLOW_HEARTBEAT",
        _positive_float,
        _SECONDS,
        10.0,
        "seconds between heartbeats of a live run; a silent RUNNING run is shown as crashed",
    ),
    _Spec(
        "sync_url",
        "MINI_MLFLOW_SYNC_URL",
        _url,
        "an http:// or https:// URL",
        None,
        "MLflow tracking server to sync runs to; unset means local only",
    ),
    _Spec(
        "sync_interval",
        "MINI_MLFLOW_SYNC_INTERVAL",
        _positive_float,
        _SECONDS,
        5.0,
        "seconds between passes of the sync agent",
    ),
    _Spec(
        "offline",
        "MINI_MLFLOW_OFFLINE",
        _bool,
        "true or false (1/0, yes/no)",
        False,
        "never contact a server, even when a sync URL is set",
    ),
    _Spec(
        "log_level",
        "MINI_MLFLOW_LOG_LEVEL",
        _log_level,
        "one of " + ", ".join(LOG_LEVELS),
        "WARNING",
        "level of mini_mlflow's own log messages",
    ),
    _Spec(
        "system_metrics",
        "MINI_MLFLOW_SYSTEM_METRICS",
        _bool,
        "true or false (1/0, yes/no)",
        False,
        "sample CPU, memory, disk, network and NVIDIA GPU use as system/... metrics (global rank 0 only)",
    ),
    _Spec(
        "system_metrics_interval",
        "MINI_MLFLOW_SYSTEM_METRICS_INTERVAL",
        _positive_float,
        _SECONDS,
        10.0,
        "seconds between two samples of the system metrics",
    ),
)
#: Variables read elsewhere (not run settings), known so that they are not warned about.
OTHER_VARIABLES = (
    "MINI_MLFLOW_RUN_ID",
    "MINI_MLFLOW_EXPERIMENT_NAME",
    "MINI_MLFLOW_EXPERIMENT_ID",
    # Set by `mini-mlflow run` for its child (see the ATTACH_* names below).
    "MINI_MLFLOW_PARAMS",
    "MINI_MLFLOW_INPUTS",
    "MINI_MLFLOW_SECRETS_FILES",
)
#: What `mini-mlflow run` hands its child: the run to attach to, injected params and inputs (JSON
#: objects), and the secrets files to read (``os.pathsep``-separated paths; never the secrets themselves).
ATTACH_RUN_ID = "MINI_MLFLOW_RUN_ID"
ATTACH_PARAMS = "MINI_MLFLOW_PARAMS"
ATTACH_INPUTS = "MINI_MLFLOW_INPUTS"
ATTACH_SECRETS_FILES = "MINI_MLFLOW_SECRETS_FILES"
KNOWN_VARIABLES = frozenset([*(spec.env for spec in SPECS), *OTHER_VARIABLES])


class Settings(NamedTuple):
    """Effective settings of one run (immutable)."""

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
    #: Sample system metrics (CPU, memory, disk, network, GPUs) into the run on a background thread.
    system_metrics: bool = False
    #: Seconds between two samples of the system metrics.
    system_metrics_interval: float = 10.0


_warned_unknown: set[str] = set()


#: What code chose (``set_tracking_dir`` / ``set_tracking_uri``): it wins over the environment.
_tracking_dir: str | None = None
_sync_url: str | None = None
_tracking_uri: str | None = None
#: MLflow's variable, read after ours: a local URI is the store, an http(s) one turns on online mode.
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"


def set_tracking_dir(path: str | os.PathLike[str] | None) -> None:
    """Choose the store root in code (None: back to the environment, then ``./mlruns``)."""
    global _tracking_dir, _sync_url, _tracking_uri
    _tracking_dir = None if path is None else os.fspath(path)
    _sync_url = _tracking_uri = None


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Choose the store (or, for http(s), the server to sync to) with an MLflow tracking URI."""
    global _tracking_dir, _sync_url, _tracking_uri
    target = parse_tracking_uri(uri)
    _tracking_dir, _sync_url = target.local_dir, target.server_url
    _tracking_uri = os.fspath(uri)


def tracking_uri() -> str:
    """The tracking URI in effect: as set in code, else MLflow's variable, else the local store's."""
    if _tracking_uri is not None:
        return _tracking_uri
    env = os.environ.get(MLFLOW_TRACKING_URI)
    if env and not os.environ.get("MINI_MLFLOW_TRACKING_DIR"):
        return env
    from pathlib import Path

    return Path(os.path.abspath(tracking_dir())).as_uri()


def is_tracking_uri_set() -> bool:
    return _tracking_uri is not None or _tracking_dir is not None or bool(os.environ.get(MLFLOW_TRACKING_URI))


def _mlflow_uri_target() -> tuple[str | None, str | None]:
    """``(local dir, server url)`` from ``MLFLOW_TRACKING_URI``, or ``(None, None)`` when unset."""
    text = os.environ.get(MLFLOW_TRACKING_URI)
    if not text:
        return None, None
    try:
        target = parse_tracking_uri(text)
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"{MLFLOW_TRACKING_URI}: {exc} (set MINI_MLFLOW_TRACKING_DIR to choose a local store instead)"
        ) from None
    return target.local_dir, target.server_url


def tracking_dir() -> str:
    """The store root that runs and reads use when none is given."""
    return resolve().tracking_dir


def resolve(**overrides: Any) -> Settings:
    """Build ``Settings`` from keyword overrides (None = not given), the environment and defaults."""
    _warn_unknown_variables()
    overrides = dict(overrides)
    # Code's choice (set_tracking_dir/uri) comes before the environment; MLflow's variable after ours.
    if overrides.get("tracking_dir") is None:
        if _tracking_dir is not None:
            overrides["tracking_dir"] = _tracking_dir
        elif not os.environ.get("MINI_MLFLOW_TRACKING_DIR") and _tracking_uri is None:
            overrides["tracking_dir"] = _mlflow_uri_target()[0]
    if overrides.get("sync_url") is None:
        if _sync_url is not None:
            overrides["sync_url"] = _sync_url
        elif not os.environ.get("MINI_MLFLOW_SYNC_URL") and _tracking_uri is None:
            overrides["sync_url"] = _mlflow_uri_target()[1]
    values: dict[str, Any] = {}
    for spec in SPECS:
        given = overrides.get(spec.field)
        if given is not None:
            text = str(given) if not isinstance(given, bool) else str(given).lower()
            values[spec.field] = _parse(spec, text, f"argument {spec.field}")
            continue
        env_text = os.environ.get(spec.env)
        values[spec.field] = spec.default if not env_text else _parse(spec, env_text, spec.env)
    names = set(Settings._fields)
    unknown = set(overrides) - names
    if unknown:
        raise InvalidInputError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
    return Settings(**values)


def _parse(spec: _Spec, text: str, source: str) -> Any:
    try:
        return spec.parse(text)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"invalid {source}={_shown(spec, text)}: must be {spec.allowed}") from None


def _shown(spec: _Spec, text: str) -> str:
    return _quote(text, url=spec.parse is _url)


def _quote(text: str, url: bool = False) -> str:
    """The refused value for a message: quoted with escapes, cut short, a URL's secrets masked."""
    if url or "@" in text:  # a URL with credentials, even in the wrong variable
        try:
            text = mask_url(text) or ""
        except ValueError:
            return "(a value that is not a URL; not shown, it may hold credentials)"
    shown = repr(text)
    return shown if len(shown) <= 80 else f"{shown[:60]}...' ({len(text)} characters)"


def _warn_unknown_variables() -> None:
    for name in os.environ:
        if name.startswith("MINI_MLFLOW_") and name not in KNOWN_VARIABLES and name not in _warned_unknown:
            _warned_unknown.add(name)
            close = _closest_variable(name)
            hint = f"; did you mean {close}?" if close else ""
            warnings.warn(f"unknown environment variable {name}{hint}", stacklevel=3)


def _closest_variable(name: str) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1)
    return close[0] if close else None


def unknown_variables() -> list[tuple[str, str | None]]:
    """Every set ``MINI_MLFLOW_*`` variable that nothing reads, with the closest known name (or None)."""
    return [
        (name, _closest_variable(name))
        for name in sorted(os.environ)
        if name.startswith("MINI_MLFLOW_") and name not in KNOWN_VARIABLES
    ]


# -- explaining settings (mini-mlflow doctor, the README table) -------------------------------------


class SettingRow(NamedTuple):
    """One setting as resolved now: its value, where the value came from, and any problem with it."""

    #: Argument name (a field of ``Settings``).
    field: str
    #: Environment variable.
    env: str
    #: Effective value (the default when the given value is invalid).
    value: Any
    #: ``argument``, ``environment`` or ``default``.
    source: str
    #: Why the given value was refused, or None.
    problem: str | None
    default: Any
    allowed: str
    meaning: str


def explain(**overrides: Any) -> list[SettingRow]:
    """Each setting's effective value and source; unlike ``resolve`` it reports bad values, never raises."""
    rows = []
    for spec in SPECS:
        given, source = overrides.get(spec.field), "argument"
        if given is None:
            given, source = os.environ.get(spec.env) or None, "environment"
        value, problem = spec.default, None
        if given is None:
            source = "default"
        else:
            text = str(given) if not isinstance(given, bool) else str(given).lower()
            where = spec.env if source == "environment" else f"argument {spec.field}"
            try:
                value = _parse(spec, text, where)
            except InvalidInputError as exc:
                problem = str(exc)
        rows.append(
            SettingRow(spec.field, spec.env, value, source, problem, spec.default, spec.allowed, spec.meaning)
        )
    return rows


def mask_url(url: str | None) -> str | None:
    """``https://user:pw@host/x?token=t`` → ``https://user:****@host/x?token=****``: safe to print."""
    if not url:
        return url
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:****@{host}" if ":" in userinfo else f"****@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "****") for k, _v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _shown_default(value: Any) -> str:
    if value is None:
        return "unset"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def settings_table_markdown() -> str:
    """The settings table as Markdown (README.md's configuration table is this text)."""
    lines = ["| argument | variable | default | meaning |", "|---|---|---|---|"]
    for spec in SPECS:
        lines.append(
            f"| `{spec.field}` | `{spec.env}` | {_shown_default(spec.default)} | "
            f"{spec.meaning}; allowed: {spec.allowed} |"
        )
    return "\n".join(lines) + "\n"


# -- attaching to the run `mini-mlflow run` created ---------------------------------------------------

_attach_lock = threading.Lock()
_attach_claimed: set[str] = set()


def claim_attached_run_id() -> str | None:
    """The run id in ``MINI_MLFLOW_RUN_ID``, the first time a run is started without an id; then None.

    `mini-mlflow run` creates the run and sets the variable, so the child's first ``start_run()``,
    ``init()`` or ``get_or_create_ctx()`` resumes that run. Later runs of the same process are new
    runs: a script that trains several models in a row does not pour them all into one run.
    """
    run_id = os.environ.get(ATTACH_RUN_ID)
    if not run_id:
        return None
    from .store._layout import validate_run_id

    try:
        validate_run_id(run_id)
    except InvalidInputError:
        raise InvalidInputError(
            f"invalid {ATTACH_RUN_ID}={_quote(run_id)}: must be a run id (a letter or digit, then up to "
            "255 letters, digits, '_' or '-'); it is set by mini-mlflow run"
        ) from None
    with _attach_lock:
        if run_id in _attach_claimed:
            return None
        _attach_claimed.add(run_id)
    return run_id


def injected(variable: str, run_id: str) -> dict[str, Any]:
    """The JSON object in ``variable`` (params or inputs given to `mini-mlflow run`) when ``run_id`` is
    the run that command created, else ``{}``."""
    text = os.environ.get(variable)
    if not text or os.environ.get(ATTACH_RUN_ID) != run_id:
        return {}
    import json

    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidInputError(f"invalid {variable}: must be a JSON object (it is set by mini-mlflow run)")
    return value
