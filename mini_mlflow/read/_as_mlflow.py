"""The store's runs and experiments as MLflow's entities (what the MLflow-shaped API answers with)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..store import _pending
from ..store._files import read_bytes
from ..store._layout import METRIC_SUFFIX, VALUE_SUFFIX, walk_keys
from ..store._meta import to_ms
from ._entities import (
    Dataset,
    DatasetInput,
    Experiment,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunTag,
    artifact_uri,
)
from ._metric_parse import MetricHistory
from ._reader import Store, last_point
from ._run_view import load_run_view


def run_entity(store: Store, run_dir: str) -> Run:
    """One run folder as MLflow's ``Run`` (raises ``ValueError`` if its meta.yaml is broken).

    Params are MLflow's text (``str`` of the logged value); tags include MLflow's system tags
    (``mlflow.runName``, ``mlflow.user``, ``mlflow.source.name``, ``mlflow.parentRunId``); each metric is
    its last logged point. A RUNNING run whose writers are all gone reads as KILLED, as MLflow sees it
    through sync and export.
    """
    _pending.drain(store.root, os.path.basename(run_dir))  # this process's unwritten points first
    view = load_run_view(store.root, run_dir, "")
    tags = dict(view.tags)
    if view.parent_run_id:
        tags.setdefault("mlflow.parentRunId", view.parent_run_id)
    metrics = []
    for key in view.metric_keys:
        point = last_point(os.path.join(run_dir, "metrics", key + METRIC_SUFFIX))
        if point is not None:
            metrics.append(Metric(key, point.value, point.timestamp, point.step, run_id=view.run_id))
    info = RunInfo(
        run_id=view.run_id,
        experiment_id=view.experiment_id,
        user_id=view.user,
        status=view.status,
        start_time=view.start_ms,
        end_time=view.end_ms,
        lifecycle_stage=view.lifecycle_stage,
        artifact_uri=artifact_uri(run_dir),
        run_name=view.run_name or None,
    )
    data = RunData(
        metrics=metrics,
        params=[Param(k, v) for k, v in view.params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )

    def legacy() -> dict[str, Any]:
        return store.get_run(view.run_id)  # the dict earlier versions returned, read when asked for

    return Run(info, data, run_inputs(run_dir), legacy=legacy)


def run_inputs(run_dir: str) -> RunInputs:
    """The datasets a run recorded with ``log_input`` (``inputs/<digest>.json``)."""
    folder = os.path.join(run_dir, "inputs")
    found = []
    for key in walk_keys(folder, VALUE_SUFFIX)[0]:
        try:
            doc = json.loads(read_bytes(os.path.join(folder, key + VALUE_SUFFIX)))
            dataset = Dataset(**{k: doc["dataset"].get(k) for k in Dataset._fields})
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue  # an unreadable record: skipped, as an unreadable param is
        tags = [RunTag(str(k), str(v)) for k, v in (doc.get("tags") or {}).items()]
        found.append(DatasetInput(dataset, tags))
    return RunInputs(found)


def experiment_entity(root: str, experiment_id: str, meta: dict[str, Any]) -> Experiment:
    """An experiment folder's meta.yaml (and tags) as MLflow's ``Experiment``."""
    return Experiment(
        experiment_id=experiment_id,
        name=str(meta.get("name")),
        artifact_location=Path(os.path.abspath(os.path.join(root, experiment_id))).as_uri(),
        lifecycle_stage=str(meta.get("lifecycle_stage") or "active"),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags := meta.get("tags"), dict) else {},
        creation_time=to_ms(meta.get("creation_time")),
        last_update_time=to_ms(meta.get("last_update_time")),
        meta={**meta, "experiment_id": experiment_id},
    )


def metric_entities(history: MetricHistory, run_id: str) -> list[Metric]:
    """A metric's whole history as MLflow's ``Metric`` objects, in logged order."""
    key = history.key
    return [
        Metric(key, value, stamp, step, run_id=run_id)
        for step, value, stamp in zip(history.steps, history.values, history.timestamps, strict=True)
    ]
