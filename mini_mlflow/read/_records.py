"""Run records: what search_runs returns (a snapshot of a run), and the broken folders it met."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .._errors import InvalidInputError
from ..store._layout import iso_from_ms
from ._entities import Metric, Param, RunData, RunInfo, RunTag, artifact_uri


@dataclass(slots=True)
class RunRecord:
    """One run as found by :func:`search_runs` (a snapshot; the files stay the source of truth)."""

    #: The run's id (its folder name).
    run_id: str
    #: The run's name, if any.
    run_name: str | None
    #: Id of its experiment.
    experiment_id: str
    #: RUNNING, FINISHED, FAILED, KILLED, or CRASHED for a RUNNING run whose writers are all gone.
    status: str
    #: Start and end, in ms since the epoch (end is None while running).
    start_time: int | None
    end_time: int | None
    #: ``active`` or ``deleted``.
    lifecycle_stage: str
    user: str | None
    parent_run_id: str | None
    #: Params as logged (JSON values), tags, and each metric's last logged value.
    params: dict[str, Any]
    tags: dict[str, Any]
    metrics: dict[str, float]
    #: The run's folder.
    run_dir: str
    #: The status as written in meta.yaml (``status`` shows CRASHED instead of a dead RUNNING).
    stored_status: str = ""
    #: Set when the run was written by a newer format_version than this reader knows.
    newer_format: int | None = None
    #: Problems found while reading (unreadable value files, skipped metric lines).
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_ms(self) -> int | None:
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def info(self) -> RunInfo:
        """MLflow's ``RunInfo`` of this record (a crashed run reads KILLED, as MLflow sees it)."""
        return RunInfo(
            run_id=self.run_id,
            experiment_id=self.experiment_id,
            user_id=self.user or "unknown",
            status=_mlflow_status(self.status),
            start_time=self.start_time or 0,
            end_time=self.end_time,
            lifecycle_stage=self.lifecycle_stage,
            artifact_uri=artifact_uri(self.run_dir),
            run_name=self.run_name,
        )

    @property
    def data(self) -> RunData:
        """MLflow's ``RunData``: params as MLflow's text, tags with MLflow's run name/parent/user tags."""
        return RunData(
            metrics=[Metric(k, v, 0, 0) for k, v in self.metrics.items()],
            params=[Param(k, _param_text(v)) for k, v in self.params.items()],
            tags=[RunTag(k, v) for k, v in _tag_texts(self).items()],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 UTC)."""
        return {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment_id": self.experiment_id,
            "status": self.status,
            "start_time": iso_from_ms(self.start_time),
            "end_time": iso_from_ms(self.end_time),
            "lifecycle_stage": self.lifecycle_stage,
            "user": self.user,
            "parent_run_id": self.parent_run_id,
            "params": dict(self.params),
            "tags": dict(self.tags),
            "metrics": dict(self.metrics),
            "path": self.run_dir,
            "newer_format": self.newer_format,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class BrokenRun:
    """A run folder that could not be read, and why."""

    experiment_id: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"experiment_id": self.experiment_id, "path": self.path, "broken": self.reason}


class SearchResult(list[RunRecord]):
    """The matching runs (a list), plus ``broken``: run folders that could not be read at all."""

    def __init__(self, records: Iterable[RunRecord] = (), broken: list[BrokenRun] | None = None) -> None:
        super().__init__(records)
        self.broken: list[BrokenRun] = broken or []

    def to_pandas(self) -> Any:
        """A pandas DataFrame in MLflow's shape: ``run_id, experiment_id, status, artifact_uri,
        start_time, end_time`` then ``metrics.<key>`` (NaN where missing), ``params.<key>`` and
        ``tags.<key>`` (None where missing) — what ``mlflow.search_runs()`` returns: the values of
        each record's ``.info`` and ``.data``, built column by column (MLflow's ``search_runs``
        returns up to 100,000 runs; entities and timestamps made one run at a time took ~0.7 ms each)."""
        pd = pandas_module()
        uris: dict[str, str] = {}
        columns: dict[str, Any] = {
            "run_id": [r.run_id for r in self],
            "experiment_id": [r.experiment_id for r in self],
            "status": [_mlflow_status(r.status) for r in self],
            "artifact_uri": [_artifact_uri(r.run_dir, uris) for r in self],
            "start_time": pd.to_datetime([r.start_time or 0 for r in self], unit="ms", utc=True),
            "end_time": pd.to_datetime([r.end_time for r in self], unit="ms", utc=True),
        }
        metrics: dict[str, None] = {}
        params: dict[str, None] = {}
        tags: dict[str, None] = {}
        tag_texts = [_tag_texts(r) for r in self]
        for r, texts in zip(self, tag_texts, strict=True):
            metrics.update(dict.fromkeys(r.metrics))
            params.update(dict.fromkeys(r.params))
            tags.update(dict.fromkeys(texts))
        nan = float("nan")
        for key in metrics:
            columns[f"metrics.{key}"] = [r.metrics.get(key, nan) for r in self]
        for key in params:
            columns[f"params.{key}"] = [
                None if (v := r.params.get(key, _MISSING)) is _MISSING else _param_text(v) for r in self
            ]
        for key in tags:
            columns[f"tags.{key}"] = [texts.get(key) for texts in tag_texts]
        return pd.DataFrame(columns)


def _artifact_uri(run_dir: str, known: dict[str, str]) -> str:
    """``artifact_uri(run_dir)``, made once per experiment folder (the run's own name is URI-safe)."""
    parent, name = os.path.split(run_dir)
    base = known.get(parent)
    if base is None:
        base = known[parent] = artifact_uri(parent)[: -len("/artifacts")]
    if name and name == quote(name):
        return f"{base}/{name}/artifacts"
    return artifact_uri(run_dir)


def _mlflow_status(status: str) -> str:
    """The status MLflow shows: a crashed run (RUNNING, its writers gone) reads KILLED."""
    return "KILLED" if status == "CRASHED" else status


def _tag_texts(record: RunRecord) -> dict[str, str]:
    """A record's tags as MLflow's text, with MLflow's run name, parent and user tags."""
    tags = {k: v if isinstance(v, str) else as_text(v) for k, v in record.tags.items()}
    for key, value in (
        ("mlflow.runName", record.run_name),
        ("mlflow.parentRunId", record.parent_run_id),
        ("mlflow.user", record.user),
    ):
        if value and key not in tags:
            tags[key] = value
    return tags


def _param_text(value: Any) -> str:
    """A param as MLflow's text: the string itself, else ``str`` of the logged value."""
    return value if isinstance(value, str) else str(value)


_MISSING = object()


def pandas_module() -> Any:
    """pandas, or a clear error saying how to get it."""
    try:
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise InvalidInputError(
            "a DataFrame needs pandas: pip install 'mini-mlflow[pandas]' (or pass output_format='list')"
        ) from None
    return pd


def as_text(value: Any) -> str:
    """How a param value reads as text: the string itself, or its JSON form (``0.01``, ``true``)."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, sort_keys=True)


#: Words in a metric's name that make its minimum the best value (``mini-mlflow compare``, the UI).
LOWER_IS_BETTER = ("loss", "err", "mse", "mae", "rmse", "perplexity", "ppl", "latency", "time", "wer", "cer")


def lower_is_better(key: str) -> bool:
    """Whether the best value of a metric is its minimum (loss, error, ...) rather than its maximum."""
    name = key.lower().rsplit("/", 1)[-1]
    return any(word in name for word in LOWER_IS_BETTER)
