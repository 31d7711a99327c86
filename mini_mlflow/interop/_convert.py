"""Translation between our run model and MLflow's: statuses, times, param text, system tags, values.

Shared by the export (MLflow's FileStore layout) and the sync agent (MLflow's REST API), so both show a
run to MLflow the same way.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from ..read._run_view import RunView as RunView  # re-exported: sync plans with it
from ..read._run_view import load_run_view as load_run_view
from ..read._run_view import read_values
from ..store._layout import (
    MAX_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    TMP_MARK,
    VALUE_SUFFIX,
)

#: MLflow's RunStatus numbers, as FileStore meta.yaml stores them.
STATUS_NUMBERS = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}
STATUS_NAMES = {number: name for name, number in STATUS_NUMBERS.items()}
#: Tag on every remote run naming the local run it came from (how a rerun finds it again).
LOCAL_RUN_ID_TAG = "mini_mlflow.run_id"
#: Folder of a run holding ``log_result`` values (``<run>/results/<key>.json``).
RESULTS_DIR = "results"
#: Tag prefix under which a result that is not a lone number reaches MLflow.
RESULT_TAG_PREFIX = "mini_mlflow.result/"
_NON_FINITE_TEXT = ("NaN", "Infinity", "-Infinity")


def mlflow_value(value: Any) -> float:
    """A metric value from one of our lines (a float or "NaN"/"Infinity"/"-Infinity") as a float."""
    return value if isinstance(value, float) else float(value)


def metric_line_text(timestamp: int, value: float, step: int) -> str:
    """One line of a FileStore metric file: ``<timestamp_ms> <value> <step>`` (``str(float)``)."""
    return f"{timestamp} {float(value)} {step}\n"


def rest_value(value: float) -> float | str:
    """A metric value for MLflow's JSON API, which spells the non-finite ones as strings."""
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


@dataclass(frozen=True)
class ResultItem:
    """How one result of a run reaches MLflow (see :func:`load_results`)."""

    key: str
    #: ``"metric"`` (one point at step 0), ``"tag"`` (``mini_mlflow.result/<key>``) or ``"skipped"``.
    kind: str
    #: The metric's float, the tag's text, or why it was skipped.
    value: float | str
    #: The result file's modification time in ms: when the value was last logged.
    timestamp: int

    @property
    def mlflow_key(self) -> str:
        return self.key if self.kind == "metric" else RESULT_TAG_PREFIX + self.key

    @property
    def fingerprint_text(self) -> str:
        """What identifies the value sent (not its time: rewriting the same value sends nothing)."""
        return f"{self.kind}:{self.value!r}"


def load_results(run_dir: str, metric_keys: list[str]) -> list[ResultItem]:
    """The run's results, mapped to MLflow.

    A number (int or float, not bool; NaN/Infinity/-Infinity as their strings, as in metric files) is a
    metric named after the result with one point at step 0, timestamped with the result file's
    modification time. Anything else (text, bool, null, list, object), and a number whose key is also a
    metric series of the run (one point at step 0 would blend into that series), is the tag
    ``mini_mlflow.result/<key>``: a string as is, other values as compact JSON. A result that cannot be
    a tag (tag key over 250 characters, text over 8000) is skipped, with the reason as its value.
    """
    folder = os.path.join(run_dir, RESULTS_DIR)
    series = set(metric_keys)
    out = []
    for key, value in read_values(run_dir, RESULTS_DIR).items():
        try:
            stamp = os.stat(os.path.join(folder, key + VALUE_SUFFIX)).st_mtime_ns // 1_000_000
        except OSError:
            continue
        number = _result_number(value)
        if number is not None and key not in series:
            out.append(ResultItem(key, "metric", number, stamp))
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
        if len(RESULT_TAG_PREFIX) + len(key) > MAX_KEY_LENGTH:
            why = f"tag key {RESULT_TAG_PREFIX}{key} would exceed MLflow's {MAX_KEY_LENGTH} characters"
            out.append(ResultItem(key, "skipped", why, stamp))
        elif len(text) > MAX_TAG_VALUE_LENGTH:
            why = f"{len(text)} characters of text exceed MLflow's {MAX_TAG_VALUE_LENGTH} for a tag value"
            out.append(ResultItem(key, "skipped", why, stamp))
        else:
            out.append(ResultItem(key, "tag", text, stamp))
    return out


def _result_number(value: Any) -> float | None:
    if value.__class__ in (int, float):
        try:
            return float(value)
        except OverflowError:  # an int beyond a float's range stays exact as text
            return None
    if value in _NON_FINITE_TEXT:
        return float(value)  # float() reads all three spellings
    return None


def iter_artifacts(run_dir: str) -> list[tuple[str, str]]:
    """``(relative POSIX path, absolute path)`` of every regular file under the run's artifacts.

    Symlinks (to files or folders) are skipped: following one could read anything on the machine.
    """
    base = os.path.join(run_dir, "artifacts")
    if os.path.islink(base) or not os.path.isdir(base):
        return []
    out = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)) and TMP_MARK not in d)
        for name in sorted(files):
            path = os.path.join(folder, name)
            if TMP_MARK in name or os.path.islink(path) or not os.path.isfile(path):
                continue
            out.append((os.path.relpath(path, base).replace(os.sep, "/"), path))
    return out
