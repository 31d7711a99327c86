"""search_runs: validated index entries → run records, filtered and ordered with MLflow's grammar."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from .. import _config
from .._errors import InvalidInputError, NotFoundError
from ..store import _pending
from ..store._layout import normalize_experiment_id
from . import _index
from ._filter import EXPERIMENT_ONLY_ATTRIBUTES, Field, OrderKey, parse_filter, parse_order_by
from ._records import BrokenRun, RunRecord, SearchResult, as_text

RUN_VIEWS = {
    "active": "active",
    "active_only": "active",
    "deleted": "deleted",
    "deleted_only": "deleted",
    "all": "all",
}
MAX_RESULTS = 100_000
#: MLflow's system tags that name a run's own fields: a filter on them works without the tag on disk.
SYSTEM_TAGS = {"mlflow.runName": "run_name", "mlflow.parentRunId": "parent_run_id", "mlflow.user": "user"}


def _copy(r: RunRecord) -> RunRecord:
    return RunRecord(
        r.run_id,
        r.run_name,
        r.experiment_id,
        r.status,
        r.start_time,
        r.end_time,
        r.lifecycle_stage,
        r.user,
        r.parent_run_id,
        dict(r.params),
        dict(r.tags),
        dict(r.metrics),
        r.run_dir,
        r.stored_status,
        r.newer_format,
        list(r.warnings),
    )


def _getter(f: Field) -> Callable[[RunRecord], Any]:
    key = sys.intern(f.key)  # the records' keys are interned too: lookups match by identity
    if f.entity == "metrics":
        return lambda r: r.metrics.get(key)
    if f.entity == "params":
        return lambda r: r.params.get(key)
    if f.entity == "tags":
        attribute = SYSTEM_TAGS.get(key)
        if attribute is not None:  # MLflow's system tags: the run's own field unless the tag is set
            return lambda r: r.tags.get(key, getattr(r, attribute))
        return lambda r: r.tags.get(key)
    if key in EXPERIMENT_ONLY_ATTRIBUTES:
        raise InvalidInputError(f"{key} is an experiment attribute; runs have start_time and end_time")
    return lambda r: getattr(r, key)


def _sort(records: list[RunRecord], keys: list[OrderKey]) -> list[RunRecord]:
    """Stable multi-key sort; missing values go last and NaN just before them, in either direction."""
    for order in reversed(keys):
        get = _getter(order.field)
        values = [get(r) for r in records]
        present, nan, missing = [], [], []
        for value, r in zip(values, records, strict=True):
            if value is None:
                missing.append(r)
            elif value != value:  # NaN
                nan.append(r)
            else:
                present.append((value, r))
        if present and not all(v.__class__ in (int, float) for v, _ in present):
            present = [(as_text(v), r) for v, r in present]  # mixed types: compare as text
        present.sort(key=itemgetter(0), reverse=order.descending)
        records = [r for _, r in present] + nan + missing
    return records


def records_of(root: str, experiment_id: str, view: str) -> tuple[list[RunRecord], list[BrokenRun]]:
    """Run records (and broken folders) of one experiment, from its validated index."""
    index = _index.load_experiment(root, experiment_id)
    exp_dir = os.path.join(root, experiment_id)
    records = []
    for r in index.records.values():
        if view != "all" and (r.lifecycle_stage == "deleted") != (view == "deleted"):
            continue
        if r.stored_status == "RUNNING":
            r.status = _index.current_status(r)
        records.append(r)
    broken = [
        BrokenRun(experiment_id, os.path.join(exp_dir, n), why) for n, why in sorted(index.broken.items())
    ]
    broken += [
        BrokenRun(experiment_id, os.path.join(exp_dir, n), why) for n, why in sorted(index.stray.items())
    ]
    return records, broken


def resolve_experiments(root: str, experiment_ids: Iterable[int | str] | int | str | None) -> list[str]:
    """Normalized ids of the experiments to search (every experiment when None)."""
    if experiment_ids is None:
        return _index.experiment_ids(root)
    if isinstance(experiment_ids, (str, int)):
        experiment_ids = [experiment_ids]
    return [normalize_experiment_id(e) for e in experiment_ids]


def search_runs(
    experiment_ids: Iterable[int | str] | int | str | None = None,
    filter_string: str = "",
    order_by: list[str] | None = None,
    max_results: int = 1000,
    run_view: str = "active",
    output: str = "list",
    *,
    root: str | os.PathLike[str] | None = None,
    copy: bool = True,
) -> Any:
    """Find runs with MLflow's filter and order grammar, served from a self-validating index.

    Args:
        experiment_ids: Experiments to search; every experiment of the store when None.
        filter_string: e.g. ``"metrics.acc > 0.9 AND params.optimizer IN ('adam', 'sgd')"``;
            metrics compare their last logged value, params/tags compare as text.
        order_by: e.g. ``["metrics.acc DESC", "start_time"]``; default newest first.
        max_results: At most this many runs (1 to 100,000).
        run_view: ``"active"``, ``"deleted"`` or ``"all"``.
        output: ``"list"`` (a :class:`SearchResult` of :class:`RunRecord`) or ``"pandas"``.
        root: Store root; default the current tracking dir.
        copy: False returns every match (ignoring ``max_results``) as the index's own records, to be
            read and not changed (the CLI uses it to count and show a page without copying).

    Returns:
        A ``SearchResult`` (a list of ``RunRecord`` with ``.broken`` and ``.to_pandas()``), or a
        DataFrame when ``output="pandas"``.

    Raises:
        InvalidInputError: a malformed filter or order (the message points at the token), bad arguments.
    """
    root = _config.tracking_dir() if root is None else os.fspath(root)
    _pending.drain(root)  # this process's own unwritten points first: a search sees every write
    view = RUN_VIEWS.get(str(run_view).lower()) if isinstance(run_view, str) else None
    if view is None:
        raise InvalidInputError(f"invalid run_view {run_view!r}: must be one of active, deleted, all")
    if output not in ("list", "pandas"):
        raise InvalidInputError(f"invalid output {output!r}: must be 'list' or 'pandas'")
    if (
        isinstance(max_results, bool)
        or not isinstance(max_results, int)
        or not 1 <= max_results <= MAX_RESULTS
    ):
        raise InvalidInputError(
            f"invalid max_results {max_results!r}: must be an int from 1 to {MAX_RESULTS}"
        )
    if not isinstance(filter_string, str):
        raise InvalidInputError(f"filter_string must be a str, got {type(filter_string).__name__}")
    if isinstance(order_by, str):
        order_by = [order_by]
    predicate = parse_filter(filter_string, _getter)
    keys = parse_order_by(order_by)
    records: list[RunRecord] = []
    broken: list[BrokenRun] = []
    for experiment_id in resolve_experiments(root, experiment_ids):
        if not os.path.isdir(os.path.join(root, experiment_id)):
            if experiment_ids is not None:
                raise NotFoundError(f"no experiment {experiment_id} in {root}")
            continue
        found, bad = records_of(root, experiment_id, view)
        records += found
        broken += bad
    if predicate is not None:
        records = [r for r in records if predicate(r)]
    default = [
        OrderKey(Field("attributes", "start_time"), True),
        OrderKey(Field("attributes", "run_id"), False),
    ]
    records = _sort(_sort(records, default), keys) if keys else _sort(records, default)
    if not copy:  # the CLI only reads them, and wants every match for its count
        return SearchResult(records, broken)
    # copies: the index's records stay private to it
    result = SearchResult([_copy(r) for r in records[:max_results]], broken)
    return result.to_pandas() if output == "pandas" else result
