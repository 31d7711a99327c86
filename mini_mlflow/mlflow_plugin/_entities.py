"""Our entities (read/_entities) as MLflow's own classes, and MLflow's errors for what the store lacks."""

from __future__ import annotations

from typing import Any

from mlflow.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    InputTag,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunTag,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    NOT_IMPLEMENTED,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
)

from .._errors import InvalidInputError, NotFoundError
from ..read import _entities as ours


def not_supported(what: str) -> MlflowException:
    """MLflow's error for a feature the native store does not hold (traces, logged models, registry)."""
    return MlflowException(f"{what} is not supported by the mini-mlflow store", error_code=NOT_IMPLEMENTED)


def mlflow_error(exc: Exception) -> MlflowException:
    """One of our errors as the MLflow error its message deserves (the server answers 4xx, never 500)."""
    if isinstance(exc, NotFoundError):
        return MlflowException(str(exc), error_code=RESOURCE_DOES_NOT_EXIST)
    if isinstance(exc, InvalidInputError) and "already exists" in str(exc):
        return MlflowException(str(exc), error_code=RESOURCE_ALREADY_EXISTS)
    return MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE)


def run(entity: Any) -> Run:
    """Our ``Run`` (or a search record with ``.info``/``.data``) as MLflow's ``Run``."""
    info: ours.RunInfo = entity.info
    data: ours.RunData = entity.data
    metrics = [Metric(m.key, m.value, m.timestamp, m.step) for m in data._metric_objs]
    inputs = getattr(entity, "inputs", None)
    dataset_inputs = [
        DatasetInput(
            Dataset(**{f: getattr(d.dataset, f) for f in ours.Dataset._fields}),
            [InputTag(t.key, t.value) for t in d.tags],
        )
        for d in (inputs.dataset_inputs if inputs is not None else [])
    ]
    return Run(
        RunInfo(
            run_id=info.run_id,
            experiment_id=info.experiment_id,
            user_id=info.user_id,
            status=info.status,
            start_time=info.start_time,
            end_time=info.end_time,
            lifecycle_stage=info.lifecycle_stage,
            artifact_uri=info.artifact_uri,
            run_name=info.run_name or "",
        ),
        RunData(
            metrics=metrics,
            params=[Param(k, v) for k, v in data.params.items()],
            tags=[RunTag(k, v) for k, v in data.tags.items()],
        ),
        RunInputs(dataset_inputs=dataset_inputs),
    )


def experiment(entity: ours.Experiment) -> Experiment:
    return Experiment(
        experiment_id=entity.experiment_id,
        name=entity.name,
        artifact_location=entity.artifact_location,
        lifecycle_stage=entity.lifecycle_stage,
        tags=[ExperimentTag(k, v) for k, v in entity.tags.items()],
        creation_time=entity.creation_time,
        last_update_time=entity.last_update_time,
    )


def metric(entity: ours.Metric) -> Metric:
    return Metric(entity.key, entity.value, entity.timestamp, entity.step)
