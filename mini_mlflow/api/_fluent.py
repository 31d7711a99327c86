"""The fluent API: module-level ``start_run`` / ``log_*`` / ``end_run`` acting on this thread's active run."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import _config
from .._config import claim_attached_run_id
from .._errors import ActiveRunExistsError, NoActiveRunError
from ..store import _experiments
from ..store._layout import normalize_experiment_id, validate_experiment_name
from ..write import _registry
from ..write._run import Run

if TYPE_CHECKING:
    from ..read._reader import MetricPoint

_state = _registry._state  # the thread-local stack; read directly on the hot path
_lock = threading.Lock()
_experiment_id: str | None = None


def _no_active_run() -> NoActiveRunError:
    return NoActiveRunError("No active run: call start_run() first (or use a Run object)")


def set_tracking_dir(path: str | os.PathLike[str] | None) -> None:
    """Use ``path`` as the store root (None: back to ``MINI_MLFLOW_TRACKING_DIR`` or ``./mlruns``)."""
    global _experiment_id
    with _lock:
        _config.set_tracking_dir(path)
        _experiment_id = None


def get_tracking_dir() -> str:
    """The store root new runs are created in."""
    return _config.tracking_dir()


def set_experiment(name: str) -> str:
    """Make ``name`` the current experiment (creating it if missing) and return its id."""
    global _experiment_id
    validate_experiment_name(name)
    experiment_id = _experiments.get_or_create_experiment(os.path.abspath(get_tracking_dir()), name)
    with _lock:
        _experiment_id = experiment_id
    return experiment_id


def get_experiment_by_name(name: str) -> dict[str, Any] | None:
    """The experiment's metadata (id, name, lifecycle stage, times), or None if there is none."""
    from ..read._reader import Store

    return Store(get_tracking_dir()).get_experiment_by_name(name)


def start_run(
    run_name: str | None = None,
    experiment_id: int | str | None = None,
    run_id: str | None = None,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
) -> Run:
    """Start (or, given an existing ``run_id``, resume) a run and make it this thread's active run.

    Use it as a context manager to end the run with FINISHED, FAILED (exception) or KILLED (Ctrl-C).
    """
    parent = _registry.active()
    if parent is not None and not nested:
        raise ActiveRunExistsError(
            f"Run {parent.run_id} is already an active run in this thread; "
            "end it first, or pass nested=True to start a child run"
        )
    if experiment_id is None:
        experiment_id = _experiment_id if _experiment_id is not None else 0
    else:
        normalize_experiment_id(experiment_id)
    if run_id is None and parent is None:
        run_id = claim_attached_run_id()  # the run `mini-mlflow run` created for this process, once
        if run_id is not None:
            experiment_id = 0  # it already lives in the experiment that command chose
    run = Run(
        run_id=run_id,
        experiment_id=experiment_id,
        name=run_name,
        runs_dir=get_tracking_dir(),
        tags=tags,
        parent_run_id=parent.run_id if parent is not None else None,
    )
    _registry.push(run)
    return run


def active_run() -> Run | None:
    """This thread's active run, or None."""
    return _registry.active()


def _active() -> Run:
    run = _registry.active()
    if run is None:
        raise _no_active_run()
    return run


def end_run(status: str = "FINISHED") -> None:
    """End this thread's active run with ``status`` (FINISHED, FAILED or KILLED)."""
    _active().end(status)


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    """Log a metric point to the active run (non-blocking; see ``Run.log_metric``)."""
    _state.log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None) -> None:
    """Log several metrics at one step to the active run."""
    _state.log_metrics(metrics, step, timestamp)


def log_param(key: str, value: Any) -> None:
    _active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _active().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _active().set_tags(tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _active().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _active().log_artifacts(local_dir, artifact_path)


def log_dict(dictionary: Any, artifact_file: str) -> None:
    _active().log_dict(dictionary, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    _active().log_text(text, artifact_file)


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


# -- reading (sees this process's own writes: see store/_pending) ------------------------------------


def list_runs(experiment_id: int | str | None = None) -> list[str]:
    """Run ids of an experiment (default: the current one), newest first."""
    if experiment_id is None:
        experiment_id = _experiment_id if _experiment_id is not None else 0
    from ..read._reader import Store

    return Store(get_tracking_dir()).list_runs(experiment_id)


def get_run(run_id: str) -> dict[str, Any]:
    """``{"metadata", "params", "tags", "metrics"}`` of a run; metrics hold each key's last value."""
    from ..read._reader import Store

    return Store(get_tracking_dir()).get_run(run_id)


def get_metric_history(run_id: str, key: str) -> list[MetricPoint]:
    """Every point of a metric, in logged order."""
    from ..read._reader import Store

    history = Store(get_tracking_dir()).get_metric_history(run_id, key)
    return history.points()
