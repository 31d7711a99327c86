"""MLflow 3's logged models on the native store, so MLflow's flavors (``mlflow.sklearn.log_model``,
autologging) can log a model: its record is ``<root>/models/<model_id>.json``; its files go under the
source run's artifacts (``artifacts/models/<model_id>/``), where ``mini-mlflow show``, export and sync
see them, or under ``<root>/models/<model_id>/`` for a model logged without a run."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from ..read._reader import Store
from ..store import _files
from ..store._lock import lock_in

FOLDER = "models"


class LoggedModels:
    """The logged models of one store root."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _write(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, sort_keys=True).encode("utf-8") + b"\n"
        with _files.folder_beneath(self.root, FOLDER) as fd:
            _files.write_atomic(f"{record['model_id']}.json", data, dir_fd=fd)

    def _read(self, model_id: str) -> dict[str, Any]:
        if not model_id.startswith("m-") or not model_id[2:].isalnum():
            raise MlflowException(f"invalid logged model id {model_id!r}", error_code=RESOURCE_DOES_NOT_EXIST)
        try:
            record: dict[str, Any] = json.loads(
                _files.read_bytes(os.path.join(self.root, FOLDER, f"{model_id}.json"))
            )
        except FileNotFoundError:
            raise MlflowException(f"no logged model {model_id}", error_code=RESOURCE_DOES_NOT_EXIST) from None
        return record

    def _update(self, model_id: str, **changes: Any) -> LoggedModel:
        with _files.folder_beneath(self.root, FOLDER) as fd, lock_in(fd, ".lock"):
            record = self._read(model_id)
            for key, value in changes.items():
                if isinstance(value, dict) and isinstance(record.get(key), dict):
                    record[key] = {**record[key], **value}
                else:
                    record[key] = value
            record["last_updated_timestamp"] = int(time.time() * 1000)
            self._write(record)
        return self.entity(record)

    @staticmethod
    def entity(record: dict[str, Any]) -> LoggedModel:
        return LoggedModel(
            experiment_id=record["experiment_id"],
            model_id=record["model_id"],
            name=record["name"],
            artifact_location=record["artifact_location"],
            creation_timestamp=record["creation_timestamp"],
            last_updated_timestamp=record["last_updated_timestamp"],
            model_type=record.get("model_type"),
            source_run_id=record.get("source_run_id"),
            status=LoggedModelStatus(record["status"]),
            tags=dict(record.get("tags") or {}),
            params=dict(record.get("params") or {}),
        )

    def create(
        self,
        experiment_id: str,
        name: str | None,
        source_run_id: str | None,
        tags: list[Any] | None,
        params: list[Any] | None,
        model_type: str | None,
    ) -> LoggedModel:
        model_id = f"m-{uuid.uuid4().hex}"
        if source_run_id:
            folder = Path(Store(self.root).find_run(source_run_id), "artifacts", FOLDER, model_id)
        else:
            folder = Path(self.root, FOLDER, model_id, "artifacts")
        now = int(time.time() * 1000)
        record = {
            "experiment_id": str(experiment_id),
            "model_id": model_id,
            "name": name or model_id,
            "artifact_location": folder.as_uri(),
            "creation_timestamp": now,
            "last_updated_timestamp": now,
            "model_type": model_type,
            "source_run_id": source_run_id,
            "status": LoggedModelStatus.PENDING.value,
            "tags": {t.key: t.value for t in tags or []},
            "params": {p.key: p.value for p in params or []},
            "lifecycle_stage": "active",
        }
        self._write(record)
        return self.entity(record)

    def get(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        record = self._read(model_id)
        if record.get("lifecycle_stage") == "deleted" and not allow_deleted:
            raise MlflowException(f"logged model {model_id} is deleted", error_code=RESOURCE_DOES_NOT_EXIST)
        return self.entity(record)

    def finalize(self, model_id: str, status: Any) -> LoggedModel:
        return self._update(model_id, status=LoggedModelStatus(status).value)

    def set_tags(self, model_id: str, tags: list[Any]) -> None:
        self._update(model_id, tags={t.key: t.value for t in tags})

    def delete_tag(self, model_id: str, key: str) -> None:
        with _files.folder_beneath(self.root, FOLDER) as fd, lock_in(fd, ".lock"):
            record = self._read(model_id)
            record.get("tags", {}).pop(key, None)
            self._write(record)

    def delete(self, model_id: str) -> None:
        self._update(model_id, lifecycle_stage="deleted")

    def add_output(self, model_id: str, run_id: str, step: int) -> None:
        record = self._read(model_id)
        outputs = [*record.get("outputs", []), {"run_id": run_id, "step": step}]
        self._update(model_id, outputs=outputs)

    def search(self, experiment_ids: list[str]) -> list[LoggedModel]:
        folder = os.path.join(self.root, FOLDER)
        found = []
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if not name.endswith(".json"):
                continue
            try:
                record = self._read(name[: -len(".json")])
            except (MlflowException, OSError, ValueError):
                continue
            if record["experiment_id"] in experiment_ids and record.get("lifecycle_stage") != "deleted":
                found.append(self.entity(record))
        return sorted(found, key=lambda m: -m.creation_timestamp)
