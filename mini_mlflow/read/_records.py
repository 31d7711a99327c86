"""Run records: what search_runs returns (a snapshot of a run), and the broken folders it met."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
            status="KILLED" if self.status == "CRASHED" else self.status,
            start_time=self.start_time or 0,
            end_time=self.end_time,
            lifecycle_stage=self.lifecycle_stage,
            artifact_uri=artifact_uri(self.run_dir),
            run_name=self.run_name,
        )

    @property
    def data(self) -> RunData:
        """MLflow's ``RunData``: params as MLflow's text, tags with MLflow's run name/parent/user tags."""
        tags = {k: v if isinstance(v, str) else as_text(v) for k, v in self.tags.items()}
        system = {"mlflow.runName": self.run_name, "mlflow.parentRunId": self.parent_run_id}
        system["mlflow.user"] = self.user
        for key, value in system.items():
            if value and key not in tags:
                tags[key] = value
        return RunData(
            metrics=[Metric(k, v, 0, 0) for k, v in self.metrics.items()],
            params=[Param(k, v if isinstance(v, str) else str(v)) for k, v in self.params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
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
        ``tags.<key>`` (None where missing) — what ``mlflow.search_runs()`` returns."""
        pd = pandas_module()
        infos = [r.info for r in self]
        datas = [r.data for r in self]
        columns: dict[str, list[Any]] = {
            "run_id": [i.run_id for i in infos],
            "experiment_id": [i.experiment_id for i in infos],
            "status": [i.status for i in infos],
            "artifact_uri": [i.artifact_uri for i in infos],
            "start_time": [pd.to_datetime(i.start_time, unit="ms", utc=True) for i in infos],
            "end_time": [pd.to_datetime(i.end_time, unit="ms", utc=True) for i in infos],
        }
        for prefix, missing in (("metrics", float("nan")), ("params", None), ("tags", None)):
            keys: dict[str, None] = {}
            for d in datas:
                keys.update(dict.fromkeys(getattr(d, prefix)))
            for key in keys:
                columns[f"{prefix}.{key}"] = [getattr(d, prefix).get(key, missing) for d in datas]
        return pd.DataFrame(columns)


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
