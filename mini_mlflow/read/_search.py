"""search_runs: validated index entries → run records, filtered and ordered with MLflow's grammar."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from .. import _config
from .._errors import InvalidInputError, NotFoundError
from ..store import _pending
from ..store._layout import normalize_experiment_id
from . import _index
from ._filter import Clause, Field, OrderKey, parse_clauses, parse_order_by
from ._query import Source, default_keys, record_getter, sort
from ._records import BrokenRun, RunRecord, SearchResult
from ._table import MISSING

RUN_VIEWS = {
    "active": "active",
    "active_only": "active",
    "deleted": "deleted",
    "deleted_only": "deleted",
    "all": "all",
}
MAX_RESULTS = 100_000


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


def broken_runs(index: _index.ExperimentIndex) -> list[BrokenRun]:
    """An experiment's run folders that cannot be read, then its stray entries."""
    exp_dir = index.exp_dir
    out = [BrokenRun(index.exp_id, os.path.join(exp_dir, n), why) for n, why in sorted(index.broken.items())]
    out += [BrokenRun(index.exp_id, os.path.join(exp_dir, n), why) for n, why in sorted(index.stray.items())]
    return out


def records_of(root: str, experiment_id: str, view: str) -> tuple[list[RunRecord], list[BrokenRun]]:
    """Run records (and broken folders) of one experiment, from its validated index."""

    def read() -> tuple[list[RunRecord], list[BrokenRun]]:
        found = Found([Source(_index.load_experiment(root, experiment_id), view)], [], [])
        return found.records(0, found.total, copy=False), found.broken

    return _index.recovering(root, read)


def resolve_experiments(root: str, experiment_ids: Iterable[int | str] | int | str | None) -> list[str]:
    """Normalized ids of the experiments to search (every experiment when None)."""
    if experiment_ids is None:
        return _index.experiment_ids(root)
    if isinstance(experiment_ids, (str, int)):
        experiment_ids = [experiment_ids]
    return [normalize_experiment_id(e) for e in experiment_ids]


class Found:
    """The runs a search matched, in order, as references: records are built for the ones read."""

    def __init__(
        self, sources: list[Source], clauses: list[Clause], keys: list[OrderKey], need: int | None = None
    ) -> None:
        """``need``: only the first ``need`` matches will be read (their records): the others are
        counted, and not put in order."""
        self.broken: list[BrokenRun] = [b for s in sources for b in broken_runs(s.index)]
        matched = [s.match(clauses) for s in sources]
        single = len(sources) == 1
        items: list[Any] = []
        for source, (rows, changed) in zip(sources, matched, strict=True):
            if single:
                items += rows
                items += changed
            else:
                items += [(source, ref) for ref in [*rows, *changed]]
        getter: Callable[[Field], Callable[[Any], Any]]
        if single and not matched[0][1]:
            getter = sources[0].row_getter  # stored rows only: read straight from the columns
        else:
            getter = self._getter(sources)
            items = sort(items, default_keys(), getter)  # stored rows are in the default order; others not
        if keys:
            items = sort(items, keys, getter, need)
        self.items = items
        self.sources = sources
        self.total = len(items)
        self._rows_only = single and not matched[0][1]  # every match a stored row of one experiment

    @staticmethod
    def _getter(sources: list[Source]) -> Callable[[Field], Callable[[Any], Any]]:
        if len(sources) == 1:
            return sources[0].getter

        def getter(f: Field) -> Callable[[Any], Any]:
            each = {id(s): s.getter(f) for s in sources}
            return lambda item: each[id(item[0])](item[1])

        return getter

    def records(self, start: int, stop: int, copy: bool = True) -> list[RunRecord]:
        """Records of the matches ``start`` to ``stop`` (fresh copies unless ``copy`` is False)."""
        page = self.items[start:stop]
        refs: list[tuple[Source, Any]] = (
            [(self.sources[0], item) for item in page] if len(self.sources) == 1 else page
        )
        built: dict[tuple[int, int], RunRecord] = {}
        for source in self.sources:  # stored rows: built column by column, per experiment
            rows = [ref for s, ref in refs if s is source and ref.__class__ is int]
            for row, record in zip(rows, source.records(rows), strict=True):
                built[id(source), row] = record
        return [
            built[id(source), ref] if ref.__class__ is int else _copy(ref) if copy else ref
            for source, ref in refs
        ]

    def table(
        self,
        text: Callable[[Any], Any] | None = None,
        non_finite: Callable[[float], Any] | None = None,
    ) -> dict[str, Any]:
        """Every match as columns, without building records: what a runs table needs (the web UI's).

        ``runs`` holds the record fields (``status`` as shown: CRASHED for a dead RUNNING run); ``params``,
        ``tags`` and ``metrics`` map each key to ``[positions, values]`` of the matches that have it.
        ``text`` gives each param and tag value as shown (called once per distinct stored value), and
        ``non_finite`` each NaN or ±inf metric value; values are given as they are without them.
        """
        # Every match a stored row of one experiment: its columns are read for the rows, in item order.
        whole = len(self.sources) == 1 and self._rows_only
        groups, changed = ([], []) if whole else self._groups()
        runs: dict[str, list[Any]] = {}
        for name, attribute in TABLE_FIELDS:
            if whole:
                runs[name] = _field_of_rows(self.sources[0], attribute, self.items)
                continue
            column: list[Any] = [None] * self.total
            for source, at, rows in groups:
                for i, value in zip(at, _field_of_rows(source, attribute, rows), strict=True):
                    column[i] = value
            get = record_getter(Field("attributes", attribute))
            for i, record in changed:
                column[i] = get(record)
            runs[name] = column
        out: dict[str, Any] = {"count": self.total, "runs": runs}
        for entity, kind in (("params", "p"), ("tags", "t"), ("metrics", "x")):
            metric = kind == "x"
            keys: dict[str, None] = {}
            for source in self.sources:
                keys.update(dict.fromkeys(source.index.main.key_names(kind)))
                for record in source.changed:
                    keys.update(dict.fromkeys(getattr(record, entity)))
            columns = {}
            for key in sorted(keys):
                if whole:
                    positions, values = _key_of_rows(self.sources[0], kind, key, self.items, text)
                else:
                    every: list[Any] = [MISSING] * self.total
                    for source, at, rows in groups:
                        where, got = _key_of_rows(source, kind, key, rows, text)
                        for j, value in zip(where, got, strict=True):
                            every[at[j]] = value
                    for i, record in changed:
                        value = getattr(record, entity).get(key, MISSING)
                        if value is not MISSING and text is not None and not metric:
                            value = text(value)
                        every[i] = value
                    positions = [i for i, v in enumerate(every) if v is not MISSING]
                    values = [every[i] for i in positions]
                if metric and non_finite is not None and values and not math.isfinite(sum(values)):
                    values = [v if v - v == 0 else non_finite(v) for v in values]
                columns[key] = [positions, values]
            out[entity] = columns
        return out

    def _groups(self) -> tuple[list[tuple[Source, list[int], list[int]]], list[tuple[int, RunRecord]]]:
        """The matches split by where they come from: per experiment ``(source, places, stored rows)``,
        and ``(place, record)`` of the runs changed since their experiment's columnar file was written."""
        single = len(self.sources) == 1
        by_source: dict[int, tuple[Source, list[int], list[int]]] = {}
        changed = []
        for i, item in enumerate(self.items):
            source, ref = (self.sources[0], item) if single else item
            if ref.__class__ is int:
                group = by_source.get(id(source))
                if group is None:
                    group = by_source[id(source)] = (source, [], [])
                group[1].append(i)
                group[2].append(ref)
            else:
                changed.append((i, ref))
        return list(by_source.values()), changed


#: The record fields of a runs table: its names for them, and the records'.
TABLE_FIELDS = (
    ("id", "run_id"), ("name", "run_name"), ("exp", "experiment_id"), ("status", "status"),
    ("start", "start_time"), ("end", "end_time"), ("user", "user"), ("parent", "parent_run_id"),
    ("stage", "lifecycle_stage"),
)  # fmt: skip


def _field_of_rows(source: Source, attribute: str, rows: list[int]) -> list[Any]:
    """A record field of stored rows, read a column at a time."""
    if not rows:
        return []
    main = source.index.main
    if attribute == "run_id":
        return list(map(main.names.__getitem__, rows))
    if attribute == "experiment_id":
        return [source.index.exp_id] * len(rows)
    got = main.field(attribute).take(rows)
    if attribute == "status" and "RUNNING" in got:
        got = [source.status(row) if v == "RUNNING" else v for v, row in zip(got, rows, strict=True)]
    return got


def _key_of_rows(
    source: Source, kind: str, key: str, rows: list[int], text: Callable[[Any], Any] | None
) -> tuple[list[int], list[Any]]:
    """``(positions in rows, values)`` of the stored rows that have a key (a param, tag or metric)."""
    column = source.index.main.key(kind, key) if rows else None
    if column is None:
        return [], []
    where = column.positions_of(rows)
    if column.full:
        positions = list(range(len(rows)))
    else:
        positions = [i for i, p in enumerate(where) if p >= 0]
        where = [where[i] for i in positions]
    if column.vals is not None:
        return positions, list(map(column.vals.__getitem__, where))
    codes: Any = column.codes  # a param or tag column: distinct values and a code per run
    shown = column.values if text is None else [text(v) for v in column.values]  # once per distinct value
    return positions, list(map(shown.__getitem__, map(codes.__getitem__, where)))


def find(
    experiment_ids: Iterable[int | str] | int | str | None,
    filter_string: str,
    order_by: list[str] | None,
    run_view: str,
    root: str,
    need: int | None = None,
) -> Found:
    """Every run of the experiments that matches, in order (the engine of :func:`search_runs`);
    ``need``: only the first ``need`` are put in order (see :class:`Found`).

    Raises:
        InvalidInputError: a malformed filter, order or run view.
        NotFoundError: a named experiment does not exist.
    """
    _pending.drain(root)  # this process's own unwritten points first: a search sees every write
    view = RUN_VIEWS.get(str(run_view).lower()) if isinstance(run_view, str) else None
    if view is None:
        raise InvalidInputError(f"invalid run_view {run_view!r}: must be one of active, deleted, all")
    if not isinstance(filter_string, str):
        raise InvalidInputError(f"filter_string must be a str, got {type(filter_string).__name__}")
    if isinstance(order_by, str):
        order_by = [order_by]
    clauses = parse_clauses(filter_string)
    keys = parse_order_by(order_by)
    for f in [c.field for c in clauses] + [k.field for k in keys]:
        record_getter(f)  # refuses what a run does not have (an experiment's own attributes)
    sources = []
    for experiment_id in resolve_experiments(root, experiment_ids):
        if not os.path.isdir(os.path.join(root, experiment_id)):
            if experiment_ids is not None:
                raise NotFoundError(f"no experiment {experiment_id} in {root}")
            continue
        sources.append(Source(_index.load_experiment(root, experiment_id), view))
    return Found(sources, clauses, keys, need)


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
    offset: int = 0,
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
        copy: False returns every match (ignoring ``max_results``) as records to be read and not
            changed (the CLI uses it to count and show a page).
        offset: Leave out the first ``offset`` matches (a page further on): only the runs returned
            are put in order and read.

    Returns:
        A ``SearchResult`` (a list of ``RunRecord`` with ``.broken`` and ``.to_pandas()``), or a
        DataFrame when ``output="pandas"``.

    Raises:
        InvalidInputError: a malformed filter or order (the message points at the token), bad arguments.
    """
    root = _config.tracking_dir() if root is None else os.fspath(root)
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

    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInputError(f"invalid offset {offset!r}: must be an int ≥ 0")
    end = offset + max_results

    def read() -> SearchResult:
        found = find(experiment_ids, filter_string, order_by, run_view, root, None if not copy else end)
        if not copy:  # the CLI only reads them, and wants every match for its count
            return SearchResult(found.records(0, found.total, copy=False), found.broken)
        return SearchResult(found.records(offset, end), found.broken)

    result = _index.recovering(root, read)
    return result.to_pandas() if output == "pandas" and copy else result
