"""Paths and naming rules of the on-disk format (see docs/format.md).

Everything that turns a caller's string into a path goes through here, so one place decides what can
never escape the store: keys, run ids, experiment ids and artifact paths.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
import time

from .._errors import InvalidInputError

#: Version of the on-disk format written into every meta.yaml.
FORMAT_VERSION = 1

#: Statuses a run can have on disk.
RUN_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")
#: Statuses a run can be ended with.
END_STATUSES = ("FINISHED", "FAILED", "KILLED")

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500

# MLflow's key rule (mlflow/utils/validation.py): word characters (Unicode), '/', '.', '-', ' ', ':'.
_KEY_RE = re.compile(r"^[/\w.\- :]*$")
# MLflow's run-id rule.
_RUN_ID_RE = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
_EXPERIMENT_ID_RE = re.compile(r"^[0-9]{1,18}$", re.ASCII)
# Suffixes of the files keys map to; an inner path component with one would collide with a key's file.
_KEY_SUFFIXES = (".json", ".jsonl")

#: Marks a temporary file; '#' cannot occur in a key, so a temporary name never shadows one.
TMP_MARK = "#tmp"

METRIC_SUFFIX = ".jsonl"
VALUE_SUFFIX = ".json"
META_FILE = "meta.yaml"
HEARTBEAT_FILE = ".heartbeat"
LOCK_FILE = ".lock"


def validate_key(key: object, kind: str = "key") -> str:
    """Return ``key`` if it is a valid MLflow metric/param/tag key, else raise ``InvalidInputError``."""
    if not isinstance(key, str):
        raise InvalidInputError(f"{kind} must be a str, got {type(key).__name__}: {key!r}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"invalid {kind} {key!r}: must be 1 to {MAX_KEY_LENGTH} characters long (got {len(key)})"
        )
    # fullmatch, not match: '$' also matches before a trailing newline, so "loss\n" slipped through.
    if not _KEY_RE.fullmatch(key):
        raise InvalidInputError(
            f"invalid {kind} {key!r}: may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'"
        )
    if posixpath.normpath(key) != key or key == "." or key.startswith(("..", "/")):
        raise InvalidInputError(
            f"invalid {kind} {key!r}: must be a normalized relative path "
            "(no leading '/', no '.' or '..' parts, no '//', no trailing '/')"
        )
    parts = key.split("/")
    for part in parts[:-1]:
        if part.endswith(_KEY_SUFFIXES):
            raise InvalidInputError(
                f"invalid {kind} {key!r}: a folder part may not end in .json or .jsonl ({part!r})"
            )
    return key


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` if it matches MLflow's run-id rule, else raise ``InvalidInputError``."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):  # no trailing newline
        raise InvalidInputError(
            f"invalid run id {run_id!r}: must match ^[a-zA-Z0-9][\\w\\-]{{0,255}}$ "
            "(a letter or digit, then up to 255 letters, digits, '_' or '-')"
        )
    return run_id


def normalize_experiment_id(experiment_id: object) -> str:
    """Return the on-disk form (a digit string) of an experiment id given as int or str."""
    if isinstance(experiment_id, bool):
        raise InvalidInputError(f"invalid experiment id {experiment_id!r}: must be an int or digits")
    if isinstance(experiment_id, int) and experiment_id >= 0:
        experiment_id = str(experiment_id)
    if isinstance(experiment_id, str) and _EXPERIMENT_ID_RE.fullmatch(experiment_id):
        return str(int(experiment_id))  # "007" and "7" are the same experiment
    raise InvalidInputError(
        f"invalid experiment id {experiment_id!r}: must be a non-negative integer or a string of digits "
        "(use set_experiment(name) to create one by name)"
    )


def validate_experiment_name(name: object) -> str:
    """Return ``name`` if usable as an experiment name, else raise ``InvalidInputError``."""
    if not isinstance(name, str):
        raise InvalidInputError(f"experiment name must be a str, got {type(name).__name__}")
    if not name.strip() or len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidInputError(
            f"invalid experiment name {name!r}: must be 1 to {MAX_EXPERIMENT_NAME_LENGTH} characters "
            "and not only spaces"
        )
    check_text(name, "experiment name")
    return name


def check_text(text: str, what: str) -> str:
    """Refuse strings that cannot be stored as UTF-8 text (NUL, lone surrogates)."""
    if "\x00" in text:
        raise InvalidInputError(f"invalid {what} {text!r}: must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"invalid {what} {text!r}: must be valid Unicode (no lone surrogates)"
        ) from None
    return text


def validate_artifact_path(path: object) -> str:
    """Return a normalized relative POSIX path for an artifact, or '' for the artifact root.

    Refuses absolute paths, '..' parts, Windows drive or backslash paths and NUL, so that an artifact can
    never be written outside its run's ``artifacts/`` folder.
    """
    if path is None or path == "":
        return ""
    if not isinstance(path, str):
        raise InvalidInputError(f"artifact path must be a str, got {type(path).__name__}")
    bad = (
        path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or re.match(r"^[A-Za-z]:", path) is not None
        or ".." in path.split("/")
    )
    if bad:
        raise InvalidInputError(
            f"invalid artifact path {path!r}: must be a relative path inside the run's artifacts "
            "(no leading '/', no '..', no backslashes or drive letters)"
        )
    norm = posixpath.normpath(path)
    return "" if norm == "." else norm


# -- paths -------------------------------------------------------------------------------------


def experiment_dir(root: str, experiment_id: str) -> str:
    return os.path.join(root, experiment_id)


def run_dir(root: str, experiment_id: str, run_id: str) -> str:
    return os.path.join(root, experiment_id, run_id)


def metric_path(rdir: str, key: str) -> str:
    return os.path.join(rdir, "metrics", key + METRIC_SUFFIX)


def param_path(rdir: str, key: str) -> str:
    return os.path.join(rdir, "params", key + VALUE_SUFFIX)


def tag_path(rdir: str, key: str) -> str:
    return os.path.join(rdir, "tags", key + VALUE_SUFFIX)


# -- time --------------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_from_ms(ms: int | None) -> str | None:
    """``1763884800123`` → ``'2025-11-23T08:00:00.123Z'`` (ISO 8601, UTC, millisecond precision)."""
    if ms is None:
        return None
    seconds, millis = divmod(int(ms), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


#: Day (``YYYY-MM-DD``) → its first millisecond since the epoch, for the times this module writes.
_DAYS: dict[str, int] = {}


def ms_from_iso(text: str | None) -> int | None:
    """Inverse of :func:`iso_from_ms`; accepts any ISO 8601 string with a zone (``Z`` included)."""
    if text is None:
        return None
    text = str(text)
    # What iso_from_ms writes (``2025-11-23T08:00:00.123Z``), read with integers; anything else (or a
    # field out of range) takes the general path below, which gives the same number for this form.
    if (
        len(text) == 24
        and text[10] == "T"
        and text[19] == "."
        and text[23] == "Z"
        and text[13] == text[16] == ":"
    ):
        day = _DAYS.get(text[:10])
        clock = text[11:13] + text[14:16] + text[17:19] + text[20:23]
        if day is not None and clock.isdigit() and clock.isascii():
            h, m, s = int(clock[0:2]), int(clock[2:4]), int(clock[4:6])
            if h < 24 and m < 60 and s < 60:
                return day + ((h * 60 + m) * 60 + s) * 1000 + int(clock[6:9])
    from datetime import datetime, timedelta, timezone

    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    ms = round(value.timestamp() * 1000)
    if len(text) == 24 and text.endswith("Z") and text[10] == "T" and value.utcoffset() == timedelta(0):
        midnight = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        if len(_DAYS) < 4096 and text[:10] == midnight.strftime("%Y-%m-%d"):
            _DAYS[text[:10]] = round(midnight.timestamp() * 1000)
    return ms


def walk_keys(folder: str, suffix: str) -> tuple[list[str], list[str]]:
    """Keys stored under ``folder`` as ``<key><suffix>`` files, and the folders walked ('.' first).

    ``/`` in a key is a sub-folder. Symbolic links (files, sub-folders, or ``folder`` itself) and
    temporary files are passed over: a reader never leaves the store through a planted link.
    """
    if os.path.islink(folder):
        return [], ["."]
    keys: list[str] = []
    rels: list[str] = []
    pending = ["."]
    while pending:
        rel = pending.pop()
        rels.append(rel)
        try:
            entries = os.scandir(folder if rel == "." else f"{folder}/{rel}")
        except OSError:
            continue
        with entries:
            for e in entries:
                if TMP_MARK in e.name:
                    continue
                sub = e.name if rel == "." else f"{rel}/{e.name}"
                if e.is_dir(follow_symlinks=False):
                    pending.append(sub)
                elif e.name.endswith(suffix) and e.is_file(follow_symlinks=False):
                    # Interned: 10,000 runs then share one "lr" string, so a search's dict lookups
                    # hit by identity instead of comparing 10,000 scattered copies (measured: the
                    # process that built the index searched 1.5x slower than one that loaded it).
                    keys.append(sys.intern(sub[: -len(suffix)]))
    return sorted(keys), rels
