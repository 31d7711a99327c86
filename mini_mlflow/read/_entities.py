"""MLflow's entities (Run with .info/.data, Experiment, Metric, ...): the shapes MLflow's API answers with.

The classes take MLflow's constructor arguments and offer MLflow's attributes, so code written against
``mlflow.entities`` runs unchanged on ``mini_mlflow.entities``. Two of them also read as the dicts that
earlier mini_mlflow versions returned: ``get_run(id)["metrics"]`` and ``get_experiment_by_name(name)
["experiment_id"]`` keep working (a :class:`Run` and an :class:`Experiment` are read-only mappings too).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from .._errors import InvalidInputError


def artifact_uri(run_dir: str, artifact_path: str | None = None) -> str:
    """``file:///<run folder>/artifacts[/<path>]``, as MLflow's local stores spell an artifact location."""
    from pathlib import Path  # here: pathlib costs milliseconds at import, and logging never needs it

    uri = Path(os.path.abspath(run_dir), "artifacts").as_uri()
    return f"{uri}/{artifact_path.strip('/')}" if artifact_path else uri


class _Entity:
    """Equality by attributes and MLflow's ``<Name: a=..., b=...>`` repr."""

    _fields: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in sorted(self._fields))
        return f"<{type(self).__name__}: {body}>"

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        # MLflow's entities iterate as (property, value) pairs: dict(entity) works.
        return ((f, getattr(self, f)) for f in self._fields)


class RunStatus:
    """MLflow's run statuses, as numbers, with their names."""

    RUNNING, SCHEDULED, FINISHED, FAILED, KILLED = 1, 2, 3, 4, 5
    _NAMES: ClassVar[dict[int, str]] = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}

    @staticmethod
    def to_string(status: int) -> str:
        if status not in RunStatus._NAMES:
            raise InvalidInputError(f"unknown run status {status!r}: must be one of 1 to 5")
        return RunStatus._NAMES[status]

    @staticmethod
    def from_string(name: str) -> int:
        for number, known in RunStatus._NAMES.items():
            if known == name:
                return number
        raise InvalidInputError(
            f"unknown run status {name!r}: must be one of {list(RunStatus._NAMES.values())}"
        )

    @staticmethod
    def is_terminated(status: int) -> bool:
        return status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)

    @staticmethod
    def all_status() -> list[int]:
        return list(RunStatus._NAMES)


class ViewType:
    """Which lifecycle stages a search covers."""

    ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
    _NAMES: ClassVar[dict[int, str]] = {1: "active_only", 2: "deleted_only", 3: "all"}

    @staticmethod
    def from_string(name: str) -> int:
        for number, known in ViewType._NAMES.items():
            if known == str(name).lower():
                return number
        raise InvalidInputError(
            f"unknown view type {name!r}: must be one of {list(ViewType._NAMES.values())}"
        )

    @staticmethod
    def to_string(view: int) -> str:
        return ViewType._NAMES[view]


def run_view_name(view: int | str) -> str:
    """A view type (a ``ViewType`` number or name, or ours: "active", "deleted", "all") → our name."""
    if isinstance(view, str) and view.lower() in ("active", "deleted", "all"):
        return view.lower()
    number = view if isinstance(view, int) and not isinstance(view, bool) else None
    if number is None and isinstance(view, str):
        number = ViewType.from_string(view)
    if number not in ViewType._NAMES:
        raise InvalidInputError(
            f"unknown run view type {view!r}: must be ViewType.ACTIVE_ONLY, DELETED_ONLY or ALL"
        )
    return {1: "active", 2: "deleted", 3: "all"}[number]


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"


class Metric(_Entity):
    """One metric point."""

    _fields = ("key", "value", "timestamp", "step", "run_id")

    def __init__(
        self, key: str, value: float, timestamp: int, step: int, run_id: str | None = None, **_: Any
    ) -> None:
        self.key, self.value, self.timestamp, self.step, self.run_id = key, value, timestamp, step, run_id


class Param(_Entity):
    _fields = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


class RunTag(_Entity):
    _fields = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


ExperimentTag = RunTag
InputTag = RunTag


class FileInfo(_Entity):
    """An artifact: its path relative to the run's artifact root, whether a folder, its size."""

    _fields = ("path", "is_dir", "file_size")

    def __init__(self, path: str, is_dir: bool, file_size: int | None) -> None:
        self.path, self.is_dir, self.file_size = path, is_dir, file_size


class RunInfo(_Entity):
    """A run's metadata; times in ms since the epoch."""

    _fields = (
        "run_id",
        "experiment_id",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "lifecycle_stage",
        "artifact_uri",
        "run_name",
    )

    def __init__(
        self,
        run_id: str,
        experiment_id: str,
        user_id: str,
        status: str,
        start_time: int,
        end_time: int | None,
        lifecycle_stage: str,
        artifact_uri: str | None = None,
        run_name: str | None = None,
    ) -> None:
        self.run_id, self.experiment_id, self.user_id, self.status = run_id, experiment_id, user_id, status
        self.start_time, self.end_time, self.lifecycle_stage = start_time, end_time, lifecycle_stage
        self.artifact_uri, self.run_name = artifact_uri, run_name

    @property
    def run_uuid(self) -> str:
        """MLflow's old name for ``run_id``."""
        return self.run_id


class RunData(_Entity):
    """A run's params and tags (text) and each metric's latest value."""

    _fields = ("metrics", "params", "tags")

    def __init__(
        self,
        metrics: list[Metric] | None = None,
        params: list[Param] | None = None,
        tags: list[RunTag] | None = None,
    ) -> None:
        self._metric_objs = list(metrics or [])
        latest: dict[str, Metric] = {}
        for m in self._metric_objs:  # MLflow's rule: the highest step, then the latest timestamp
            old = latest.get(m.key)
            if old is None or (m.step, m.timestamp) >= (old.step, old.timestamp):
                latest[m.key] = m
        self.metrics: dict[str, float] = {k: m.value for k, m in latest.items()}
        self.params: dict[str, str] = {p.key: p.value for p in params or []}
        self.tags: dict[str, str] = {t.key: t.value for t in tags or []}


class Dataset(_Entity):
    """A dataset a run used (MLflow's ``log_input``)."""

    _fields = ("name", "digest", "source_type", "source", "schema", "profile")

    def __init__(
        self,
        name: str,
        digest: str,
        source_type: str,
        source: str,
        schema: str | None = None,
        profile: str | None = None,
    ) -> None:
        self.name, self.digest, self.source_type, self.source = name, digest, source_type, source
        self.schema, self.profile = schema, profile


class DatasetInput(_Entity):
    _fields = ("dataset", "tags")

    def __init__(self, dataset: Dataset, tags: list[RunTag] | None = None) -> None:
        self.dataset, self.tags = dataset, list(tags or [])


class RunInputs(_Entity):
    _fields = ("dataset_inputs",)

    def __init__(self, dataset_inputs: list[DatasetInput] | None = None, model_inputs: Any = None) -> None:
        self.dataset_inputs = list(dataset_inputs or [])
        self.model_inputs: list[Any] = list(model_inputs or [])


class Run(_Entity, Mapping[str, Any]):
    """A run as MLflow's ``get_run`` returns it: ``.info``, ``.data``, ``.inputs``.

    It also reads as the dict of earlier mini_mlflow versions (``run["metrics"]``, ``run["params"]``
    with the values as logged, ``run["tags"]``, ``run["metadata"]``).
    """

    _fields = ("info", "data", "inputs")

    def __init__(
        self,
        run_info: RunInfo,
        run_data: RunData,
        run_inputs: RunInputs | None = None,
        run_outputs: Any = None,
        *,
        legacy: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.info, self.data = run_info, run_data
        self.inputs = run_inputs if run_inputs is not None else RunInputs()
        self.outputs = run_outputs
        self._read_legacy = legacy
        self._legacy_dict: dict[str, Any] | None = None

    @property
    def _legacy(self) -> dict[str, Any]:
        """The dict of earlier versions: read from the store when first asked for, else built here."""
        if self._legacy_dict is None:
            if self._read_legacy is not None:
                self._legacy_dict = self._read_legacy()
            else:
                info = self.info
                self._legacy_dict = {
                    "metadata": {"run_id": info.run_id, "run_name": info.run_name, "status": info.status},
                    "params": dict(self.data.params),
                    "tags": dict(self.data.tags),
                    "metrics": dict(self.data.metrics),
                }
        return self._legacy_dict

    def __getitem__(self, key: str) -> Any:
        return self._legacy[key]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(("metadata", "params", "tags", "metrics"))

    def __len__(self) -> int:
        return 4

    __eq__ = _Entity.__eq__
    __hash__ = None  # type: ignore[assignment]

    def to_dictionary(self) -> dict[str, Any]:
        return {
            "info": dict(self.info),
            "data": {"metrics": self.data.metrics, "params": self.data.params, "tags": self.data.tags},
        }


class Experiment(_Entity, Mapping[str, Any]):
    """An experiment as MLflow's ``get_experiment`` returns it (it also reads as its meta.yaml dict)."""

    _fields = ("experiment_id", "name", "artifact_location", "lifecycle_stage", "tags")

    def __init__(
        self,
        experiment_id: str,
        name: str,
        artifact_location: str,
        lifecycle_stage: str,
        tags: list[RunTag] | dict[str, str] | None = None,
        creation_time: int | None = None,
        last_update_time: int | None = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.experiment_id, self.name = experiment_id, name
        self.artifact_location, self.lifecycle_stage = artifact_location, lifecycle_stage
        self.tags: dict[str, str] = (
            dict(tags) if isinstance(tags, dict) else {t.key: t.value for t in tags or []}
        )
        self.creation_time, self.last_update_time = creation_time, last_update_time
        self._meta = (
            meta
            if meta is not None
            else {
                "experiment_id": experiment_id,
                "name": name,
                "lifecycle_stage": lifecycle_stage,
            }
        )

    def __getitem__(self, key: str) -> Any:
        return self._meta[key]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self._meta)

    def __len__(self) -> int:
        return len(self._meta)

    __eq__ = _Entity.__eq__
    __hash__ = None  # type: ignore[assignment]
