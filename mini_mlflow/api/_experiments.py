"""The experiment face (MLflow's names): where runs go, the current experiment, experiment tags and search."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

from .. import _config
from .._errors import InvalidInputError, NotFoundError
from ..read._entities import Experiment
from ..store import _experiments
from ..store._layout import normalize_experiment_id, validate_experiment_name

_lock = threading.Lock()
#: The current experiment's id (``set_experiment``); None: ``MLFLOW_EXPERIMENT_ID`` / ``_NAME`` or "0".
_experiment_id: str | None = None


def set_tracking_dir(path: str | os.PathLike[str] | None) -> None:
    """Use ``path`` as the store root (None: back to ``MINI_MLFLOW_TRACKING_DIR`` or ``./mlruns``)."""
    global _experiment_id
    with _lock:
        _config.set_tracking_dir(path)
        _experiment_id = None


def get_tracking_dir() -> str:
    """The store root new runs are created in."""
    return _config.tracking_dir()


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """MLflow's way to choose the store: a path, ``file:`` or ``mini-mlflow:`` URI is the local store;
    ``http(s)://`` logs to the local store and syncs to that server in the background (online mode).
    Any other scheme (``databricks``, ``sqlite:``, ...) raises ``InvalidInputError`` naming these."""
    global _experiment_id
    with _lock:
        _config.set_tracking_uri(uri)
        _experiment_id = None


def get_tracking_uri() -> str:
    """The tracking URI in effect: as set, else ``MLFLOW_TRACKING_URI``, else the local store's ``file:``."""
    return _config.tracking_uri()


def is_tracking_uri_set() -> bool:
    return _config.is_tracking_uri_set()


def _root() -> str:
    return os.path.abspath(get_tracking_dir())


def current_experiment_id() -> str:
    """The experiment runs start in: ``set_experiment``'s, else ``MLFLOW_EXPERIMENT_ID``/``_NAME``, else 0."""
    if _experiment_id is not None:
        return _experiment_id
    by_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if by_id:
        return normalize_experiment_id(by_id)
    by_name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if by_name:
        return _experiments.get_or_create_experiment(_root(), by_name)
    return _experiments.DEFAULT_EXPERIMENT_ID


def set_experiment(experiment_name: str | None = None, experiment_id: str | int | None = None) -> Experiment:
    """Make an experiment current (by name, created if missing; or by id, which must exist); return it."""
    global _experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidInputError("set_experiment takes exactly one of experiment_name and experiment_id")
    root = _root()
    if experiment_name is not None:
        validate_experiment_name(experiment_name)
        found = _experiments.get_or_create_experiment(root, experiment_name)
    else:
        found = normalize_experiment_id(experiment_id)  # type: ignore[arg-type]
        if not os.path.isfile(os.path.join(root, found, "meta.yaml")):
            if found != _experiments.DEFAULT_EXPERIMENT_ID:
                raise NotFoundError(f"no experiment with id {found} in {root}")
            _experiments.ensure_experiment(root, found)
    experiment = get_experiment(found)
    if experiment.lifecycle_stage == "deleted":
        raise InvalidInputError(
            f"experiment {experiment.name!r} (id {found}) is deleted: restore it or choose another"
        )
    with _lock:
        _experiment_id = found
    return experiment


def create_experiment(
    name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
) -> str:
    """Create an experiment and return its id (``artifact_location`` is ignored: artifacts live in each
    run's folder)."""
    return new_experiment(_root(), name, tags)


def new_experiment(root: str, name: str, tags: dict[str, Any] | None = None) -> str:
    os.makedirs(root, exist_ok=True)
    experiment_id = _experiments.create_experiment(root, name)
    for key, value in (tags or {}).items():
        set_tag_of_experiment(root, experiment_id, key, value)
    return experiment_id


def get_experiment(experiment_id: str | int) -> Experiment:
    """The experiment with this id; ``NotFoundError`` if there is none."""
    return experiment_of(_root(), experiment_id)


def experiment_of(root: str, experiment_id: str | int) -> Experiment:
    from ..read._as_mlflow import experiment_entity
    from ..store._meta import read_meta

    found = normalize_experiment_id(experiment_id)
    try:
        meta = read_meta(os.path.join(root, found, "meta.yaml"))
    except FileNotFoundError:
        if found == _experiments.DEFAULT_EXPERIMENT_ID and _unwritten_default(root):
            return experiment_entity(root, found, _DEFAULT_META)
        raise NotFoundError(f"no experiment with id {found} in {root}") from None
    return experiment_entity(root, found, meta)


#: Experiment 0 before anything is logged to it: MLflow's "Default", which every store has (MLflow
#: writes it when it opens a store; we write it on first use, as reading must not write).
_DEFAULT_META = {"name": _experiments.DEFAULT_EXPERIMENT_NAME, "lifecycle_stage": "active"}


def _unwritten_default(root: str) -> bool:
    """Experiment 0 is not written yet and no other experiment took its name."""
    return _experiments.default_is_unwritten(root) and (
        _experiments.find_experiment_by_name(root, _experiments.DEFAULT_EXPERIMENT_NAME) is None
    )


def get_experiment_by_name(name: str) -> Experiment | None:
    """The experiment called ``name``, or None."""
    return experiment_by_name(_root(), name)


def experiment_by_name(root: str, name: str) -> Experiment | None:
    validate_experiment_name(name)
    found = _experiments.find_experiment_by_name(root, name)
    if found is None and name == _experiments.DEFAULT_EXPERIMENT_NAME and _unwritten_default(root):
        found = _experiments.DEFAULT_EXPERIMENT_ID
    return None if found is None else experiment_of(root, found)


def search_experiments(
    view_type: int | str = 1,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
) -> list[Experiment]:
    """Experiments of the store, filtered and ordered with MLflow's grammar.

    Filters name ``name``, ``creation_time``, ``last_update_time`` (attributes) and ``tags.<key>``;
    order by those (default: newest first, as MLflow).
    """
    return experiments_matching(_root(), view_type, max_results, filter_string, order_by)


def experiments_matching(
    root: str,
    view_type: int | str = 1,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
) -> list[Experiment]:
    from ..read._as_mlflow import experiment_entity
    from ..read._entities import run_view_name
    from ..read._filter import Field, parse_filter, parse_order_by

    view = run_view_name(view_type)
    found = [experiment_entity(root, e, meta) for e, meta in _experiments.iter_experiments(root) if meta]
    if _unwritten_default(root):
        found.append(experiment_entity(root, _experiments.DEFAULT_EXPERIMENT_ID, _DEFAULT_META))
    found = [e for e in found if view == "all" or (e.lifecycle_stage == "deleted") == (view == "deleted")]

    def get(field: Field) -> Callable[[Experiment], Any]:
        if field.entity == "tags":
            return lambda e: e.tags.get(field.key)
        name = {"run_name": "name", "experiment_id": "experiment_id"}.get(field.key, field.key)
        if name not in ("name", "experiment_id", "creation_time", "last_update_time", "lifecycle_stage"):
            raise InvalidInputError(
                f"search_experiments filters on name, creation_time, last_update_time or tags.<key>, "
                f"not {field.entity}.{field.key}"
            )
        return lambda e: getattr(e, name)

    predicate = parse_filter(filter_string or "", get)
    if predicate is not None:
        found = [e for e in found if predicate(e)]
    keys = parse_order_by(order_by) or []
    found.sort(key=lambda e: (-(e.creation_time or 0), -int(e.experiment_id)))
    for order in reversed(keys):
        getter = get(order.field)
        present = [e for e in found if getter(e) is not None]
        present.sort(key=getter, reverse=order.descending)
        found = present + [e for e in found if getter(e) is None]  # missing values last, either way
    return found if max_results is None else found[:max_results]


def delete_experiment(experiment_id: str | int) -> None:
    """Mark an experiment deleted (its runs stay on disk; ``mini-mlflow gc`` removes them for good)."""
    set_experiment_stage(_root(), experiment_id, "deleted")


def set_experiment_stage(root: str, experiment_id: str | int, stage: str) -> None:
    found = normalize_experiment_id(experiment_id)
    experiment_of(root, found)  # NotFoundError if missing
    _experiments.update_experiment_meta(root, found, lifecycle_stage=stage)


def set_experiment_tag(key: str, value: Any) -> None:
    """Set a tag on the current experiment."""
    set_tag_of_experiment(_root(), current_experiment_id(), key, value)


def set_experiment_tags(tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        set_experiment_tag(key, value)


def set_tag_of_experiment(root: str, experiment_id: str, key: str, value: Any) -> None:
    from ..store._operations import tag_json

    if experiment_id == _experiments.DEFAULT_EXPERIMENT_ID:
        _experiments.ensure_experiment(root, experiment_id)  # "0" exists once something needs it
    text = json.loads(tag_json(key, value))  # the tag rules (length, characters) of a run's tags
    _experiments.write_experiment_tag(root, experiment_id, key, text)
