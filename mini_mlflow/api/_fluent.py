"""The fluent API (MLflow's names and signatures): ``start_run`` / ``log_*`` / ``end_run`` on this thread's
active run, or on the run named by ``run_id=``.

As in MLflow, a logging call with no active run starts one. ``synchronous=True`` writes the call's data
before returning; otherwise logging is buffered (the writer thread puts it on disk within the flush
interval), which is what MLflow's ``synchronous=False`` promises and our default.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._config import ATTACH_RUN_ID, claim_attached_run_id, resolve
from .._errors import ActiveRunExistsError, InvalidInputError, NoActiveRunError, NotFoundError
from ..store import _operations
from ..store._layout import normalize_experiment_id, validate_run_id
from ..write import _registry
from ..write._direct import DirectRun, run_for
from ..write._run import Run
from ._experiments import current_experiment_id, get_tracking_dir

if TYPE_CHECKING:
    from ..read._entities import Run as RunEntity

_state = _registry._state  # the thread-local stack; read directly on the hot path
#: ``enable_system_metrics_logging()``: every run started from now on samples system metrics.
_system_metrics_on = False


def start_run(
    run_id: str | None = None,
    experiment_id: str | int | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> Run:
    """Start (or, given an existing ``run_id``, resume) a run and make it this thread's active run.

    Use it as a context manager to end the run with FINISHED, FAILED (exception) or KILLED (Ctrl-C).
    ``description`` is the run's note (MLflow's ``mlflow.note.content`` tag); ``log_system_metrics``
    samples CPU, memory, disk, network and GPUs as ``system/...`` metrics while the run is live.
    """
    parent = _registry.active()
    if parent is not None and not nested:
        raise ActiveRunExistsError(
            f"Run {parent.run_id} is already an active run in this thread; "
            "end it first, or pass nested=True to start a child run"
        )
    if run_id is not None:
        try:
            validate_run_id(run_id)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"{exc} (start_run's first argument is run_id, as in MLflow: name a run with run_name=)"
            ) from None
    if parent_run_id is not None:
        validate_run_id(parent_run_id)
        if parent is not None and parent.run_id != parent_run_id:
            raise ActiveRunExistsError(
                f"parent_run_id {parent_run_id} is not this thread's active run {parent.run_id}"
            )
    if experiment_id is None:
        experiment_id = current_experiment_id()
    else:
        normalize_experiment_id(experiment_id)
    attached = None
    if run_id is None and parent is None:
        run_id = attached = claim_attached_run_id()  # the run `mini-mlflow run` created for us, once
        if run_id is not None:
            experiment_id = 0  # it already lives in the experiment that command chose
    root = get_tracking_dir()
    if run_id is not None and _operations.find_run_dir(os.path.abspath(root), run_id) is None:
        if attached is not None:
            raise NotFoundError(
                f"invalid {ATTACH_RUN_ID}={attached}: must be a run id of the store {root} (it is set by "
                "mini-mlflow run for the run it created)"
            )
        # MLflow's rule: start_run(run_id=) resumes. A new run under a made-up id (or a name passed
        # first by mistake, which is usually a valid id too) would hide the typo in a fresh run.
        raise NotFoundError(
            f"Run with id={run_id} not found in {root}: start_run(run_id=...) resumes an existing "
            "run; name a new run with run_name=, or give a new run its id with "
            "mini_mlflow.init(project, run_id=...)"
        )
    all_tags = dict(tags or {})
    tag_name = all_tags.pop("mlflow.runName", None)  # MLflow: run_name= wins over the tag
    run_name = run_name if run_name is not None or tag_name is None else str(tag_name)
    if description is not None:
        all_tags["mlflow.note.content"] = description
    if log_system_metrics is None and _system_metrics_on:
        log_system_metrics = True
    run = Run(
        run_id=run_id,
        experiment_id=experiment_id,
        name=run_name,
        runs_dir=root,
        tags=all_tags,
        parent_run_id=parent_run_id or (parent.run_id if parent is not None else None),
        # None leaves MINI_MLFLOW_SYSTEM_METRICS in charge; True/False overrides it for this run
        settings=None
        if log_system_metrics is None
        else resolve(tracking_dir=root, system_metrics=log_system_metrics),
    )
    _registry.push(run)
    return run


def active_run() -> Run | None:
    """This thread's active run, or None (it has MLflow's ``.info`` and ``.data``)."""
    return _registry.active()


def last_active_run() -> RunEntity | None:
    """The active run, else the run this process ended last, as MLflow's ``Run`` (None if neither)."""
    run = _registry.active()
    folder = run.run_dir if run is not None else _registry.last_ended_dir
    if folder is None:
        return None
    from ..read._as_mlflow import run_entity
    from ..read._reader import Store

    return run_entity(Store(os.path.dirname(os.path.dirname(folder))), folder)


def _active_or_start() -> Run:
    run = _registry.active()
    return run if run is not None else start_run()


def _target(run_id: str | None) -> Run | DirectRun:
    """The run a call with ``run_id=`` writes to: the active (or a new) run when None."""
    if run_id is None:
        return _active_or_start()
    return run_for(get_tracking_dir(), run_id)


def end_run(status: str = "FINISHED") -> None:
    """End this thread's active run with ``status`` (FINISHED, FAILED or KILLED); no-op without one."""
    run = _registry.active()
    if run is not None:
        run.end(status)


def _synchronous(target: Run | DirectRun, synchronous: bool | None) -> None:
    if synchronous is not None and not isinstance(synchronous, bool):
        raise InvalidInputError(
            f"synchronous must be True, False or None, got {synchronous!r} (pass timestamp= by keyword)"
        )
    if synchronous and isinstance(target, Run):
        target.flush()


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    model_id: str | None = None,
    dataset: Any = None,
) -> None:
    """Log a metric point (non-blocking; see ``Run.log_metric``). ``model_id``/``dataset`` are ignored."""
    if run_id is None and synchronous is None:
        try:
            return _state.log_metric(key, value, step, timestamp)  # type: ignore[no-any-return]
        except NoActiveRunError:
            _active_or_start()
            return _state.log_metric(key, value, step, timestamp)  # type: ignore[no-any-return]
    target = _target(run_id)
    if isinstance(target, Run):
        target.log_metric(key, value, step, timestamp)
    else:
        target.log_metrics({key: value}, step, timestamp)
    _synchronous(target, synchronous)
    return None


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    model_id: str | None = None,
    dataset: Any = None,
) -> None:
    """Log several metrics at one step (and one timestamp)."""
    if run_id is None and synchronous is None:
        try:
            return _state.log_metrics(metrics, step, timestamp)  # type: ignore[no-any-return]
        except NoActiveRunError:
            _active_or_start()
            return _state.log_metrics(metrics, step, timestamp)  # type: ignore[no-any-return]
    target = _target(run_id)
    target.log_metrics(metrics, step, timestamp)
    _synchronous(target, synchronous)
    return None


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Log a param (write-once) to the active run, starting one if needed; returns ``value``."""
    target = _active_or_start()
    target.log_param(key, value)
    _synchronous(target, synchronous)
    return value


def log_params(params: Mapping[str, Any], synchronous: bool | None = None, run_id: str | None = None) -> None:
    target = _target(run_id)
    target.log_params(params)
    _synchronous(target, synchronous)


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    target = _active_or_start()
    target.set_tag(key, value)
    _synchronous(target, synchronous)


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    target = _active_or_start()
    target.set_tags(tags)
    _synchronous(target, synchronous)


def delete_tag(key: str) -> None:
    """Remove a tag of the active run (``NotFoundError`` if it has none by that key)."""
    from ..store._operations import delete_tag as remove

    remove(_active_or_start().run_dir, key)


def log_artifact(
    local_path: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    target = _target(run_id)
    if isinstance(target, Run):
        target.log_artifact(local_path, artifact_path)
    else:
        target.log_artifact(os.fspath(local_path), artifact_path)


def log_artifacts(
    local_dir: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    target = _target(run_id)
    if isinstance(target, DirectRun):
        raise InvalidInputError("log_artifacts with run_id= works for runs open in this process")
    target.log_artifacts(local_dir, artifact_path)


def log_dict(dictionary: Any, artifact_file: str, run_id: str | None = None) -> None:
    target = _target(run_id)
    if isinstance(target, DirectRun):
        import json

        target.write_artifact(artifact_file, json.dumps(dictionary, indent=2).encode())
        return
    target.log_dict(dictionary, artifact_file)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    target = _target(run_id)
    if isinstance(target, DirectRun):
        target.write_artifact(artifact_file, str(text).encode("utf-8"))
        return
    target.log_text(text, artifact_file)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """``file:`` URI of the active run's artifacts (or of ``artifact_path`` in them)."""
    from ..read._entities import artifact_uri
    from ..store._layout import validate_artifact_path

    return artifact_uri(_active_or_start().run_dir, validate_artifact_path(artifact_path) or None)


def flush() -> None:
    """Write everything every open run of this process has logged; raise ``StorageError`` on failure."""
    errors = []
    for run in _registry.open_runs():
        try:
            run.flush()
        except OSError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def flush_async_logging() -> None:
    """MLflow's name for :func:`flush`."""
    flush()


def flush_artifact_async_logging() -> None:
    """Artifacts are written when logged: nothing to wait for."""


def enable_system_metrics_logging() -> None:
    """Every run started from now on samples system metrics (as ``log_system_metrics=True``)."""
    global _system_metrics_on
    _system_metrics_on = True


def disable_system_metrics_logging() -> None:
    global _system_metrics_on
    _system_metrics_on = False


def autolog(*args: Any, **kwargs: Any) -> None:
    """Not in mini_mlflow's own API: use ``mini_mlflow.integrations`` (a logger or callback per
    framework), or MLflow's ``mlflow.autolog()`` with the tracking URI ``mini-mlflow:<store>``."""
    if not kwargs.get("disable") and not kwargs.get("silent"):
        warnings.warn(
            "mini_mlflow.autolog() logs nothing: use mini_mlflow.integrations (Lightning, Transformers, "
            "Keras, Optuna, XGBoost, LightGBM, ...) or MLflow's autolog with "
            "mlflow.set_tracking_uri('mini-mlflow:./mlruns')",
            RuntimeWarning,
            stacklevel=2,
        )
