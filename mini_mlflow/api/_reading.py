"""The reading face (MLflow's names): runs as MLflow's entities, metric histories and ``search_runs``.

Every reader sees this process's own writes (``store/_pending``): no flush is needed before reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError, NotFoundError
from ..read._entities import Run as RunEntity
from ..store._layout import normalize_experiment_id
from ._experiments import current_experiment_id, get_tracking_dir

if TYPE_CHECKING:
    from ..read._reader import MetricPoint, Store


def _store() -> Store:
    from ..read._reader import Store

    return Store(get_tracking_dir())


def get_run(run_id: str) -> RunEntity:
    """The run as MLflow's ``Run`` (``.info``, ``.data``, ``.inputs``); it also reads as the dict of
    earlier versions: ``get_run(id)["metrics"]``."""
    from ..read._as_mlflow import run_entity

    store = _store()
    return run_entity(store, store.find_run(run_id))


def get_parent_run(run_id: str) -> RunEntity | None:
    """The parent of a nested run, or None for a top-level run."""
    parent = get_run(run_id).info
    from ..store._meta import read_meta

    store = _store()
    meta = read_meta(os.path.join(store.find_run(parent.run_id), "meta.yaml"))
    parent_id = meta.get("parent_run_id")
    return get_run(str(parent_id)) if parent_id else None


def delete_run(run_id: str) -> None:
    """Mark a run deleted (``mini-mlflow restore`` brings it back; ``gc`` removes it for good)."""
    from ..store._operations import update_run_meta

    update_run_meta(_store().find_run(run_id), lifecycle_stage="deleted")


def list_runs(experiment_id: int | str | None = None) -> list[str]:
    """Run ids of an experiment (default: the current one), newest first."""
    return _store().list_runs(current_experiment_id() if experiment_id is None else experiment_id)


def get_metric_history(run_id: str, key: str) -> list[MetricPoint]:
    """Every point of a metric, in logged order (``.step``, ``.value``, ``.timestamp``)."""
    return _store().get_metric_history(run_id, key).points()


def search_runs(
    experiment_ids: Iterable[int | str] | int | str | None = None,
    filter_string: str = "",
    run_view_type: int | str = 1,
    max_results: int = 100_000,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    offset: int = 0,
) -> Any:
    """MLflow's ``search_runs``: a pandas DataFrame (MLflow's columns) or, with ``output_format="list"``,
    a list of runs that are MLflow ``Run`` entities (``.info``, ``.data``) and our records at once
    (``.run_id``, ``.metrics``, ``.params`` as logged).

    Args:
        experiment_ids: Experiments to search; by default the current experiment (``set_experiment``),
            or every experiment with ``search_all_experiments=True``.
        filter_string: MLflow's grammar, e.g. ``"metrics.acc > 0.9 AND params.optimizer = 'adam'"``.
        run_view_type: ``ViewType.ACTIVE_ONLY`` (1), ``DELETED_ONLY`` (2) or ``ALL`` (3), or a name.
        max_results: At most this many runs (1 to 100,000).
        order_by: e.g. ``["metrics.acc DESC"]``; default newest first.
        output_format: ``"pandas"`` (needs pandas) or ``"list"``.
        experiment_names: Experiments by name (unknown names are skipped, as in MLflow).
        root: Store root; default the current tracking dir.
        offset: Leave out the first ``offset`` matches (``MlflowClient``'s later pages).
    """
    from ..read._entities import run_view_name
    from ..read._search import search_runs as search
    from ..store._experiments import find_experiment_by_name

    if output_format not in ("pandas", "list"):
        raise InvalidInputError(f"invalid output_format {output_format!r}: must be 'pandas' or 'list'")
    store_root = get_tracking_dir() if root is None else os.fspath(root)
    ids: list[str] | None
    if experiment_names is not None:
        found = (find_experiment_by_name(store_root, n) for n in experiment_names)
        ids = [e for e in found if e is not None]
        if experiment_ids is not None:
            ids += list(_ids(experiment_ids))
    elif experiment_ids is not None:
        ids = list(_ids(experiment_ids))
    else:
        ids = None if search_all_experiments else [current_experiment_id()]
    if ids is not None:  # an id with no experiment behind it finds nothing, as in MLflow
        ids = [e for e in ids if os.path.isdir(os.path.join(store_root, e))]
    view = run_view_name(run_view_type)
    result = search(ids, filter_string, order_by, max_results, view, root=store_root, offset=offset)
    return result.to_pandas() if output_format == "pandas" else result


def _ids(experiment_ids: Iterable[int | str] | int | str) -> Iterable[str]:
    if isinstance(experiment_ids, (str, int)):
        experiment_ids = [experiment_ids]
    return (normalize_experiment_id(e) for e in experiment_ids)


def artifact_bytes(store: Store, run_id: str, rel: str) -> bytes:
    """The file ``rel`` (a validated artifact path) of run ``run_id``'s artifacts, never read through a
    planted link; ``FileNotFoundError`` when there is none (``NotFoundError`` for no such run)."""
    from ..store._files import check_inside, read_bytes

    artifacts = os.path.join(store.find_run(run_id), "artifacts")
    path = os.path.join(artifacts, rel)
    check_inside(artifacts, path)  # a folder on the way planted as a symlink: refused
    return read_bytes(path)


def load_table(
    artifact_file: str, run_ids: list[str] | None = None, extra_columns: list[str] | None = None
) -> Any:
    """The rows of a table logged with ``log_table`` by these runs (default: every run of the current
    experiment that has it), as one pandas DataFrame; ``extra_columns`` such as ``"run_id"`` added."""
    import json

    from ..read._records import pandas_module
    from ..store._layout import validate_artifact_path

    pd = pandas_module()
    rel = validate_artifact_path(artifact_file)  # no way out of the run's artifacts
    store = _store()
    ids = run_ids if run_ids is not None else store.list_runs(current_experiment_id())
    frames = []
    for run_id in ids:
        try:
            table = json.loads(artifact_bytes(store, run_id, rel))
        except FileNotFoundError:
            if run_ids is not None:
                raise NotFoundError(f"run {run_id} has no table {artifact_file!r}") from None
            continue
        frame = pd.DataFrame(table["data"], columns=table["columns"])
        for column in extra_columns or []:
            if column != "run_id":
                raise InvalidInputError(f"extra_columns: only 'run_id' is known, got {column!r}")
            frame["run_id"] = run_id
        frames.append(frame)
    if not frames:
        raise NotFoundError(f"no run has a table {artifact_file!r}")
    return pd.concat(frames, ignore_index=True)
