"""search_runs' engine: MLflow's filter and order evaluated on the index's columns, records built last.

Each clause of a filter becomes a mask over an experiment's stored rows (one byte per run), computed in
C-level passes over one column: a metric comparison maps the clause's bound comparison over the float64
values, a param or tag comparison is decided once per distinct value and then looked up per code. The
masks are ANDed as integers. A metric comparison is applied to the rows the other clauses left instead,
when they left fewer than half. Runs changed since the columnar file (the delta, a few) are filtered as
records, with the very predicates of ``_filter``, so both paths answer alike. Stored rows are in the
default order already; an ``order_by`` sorts only the matches, and a record is built only for a run
that is returned.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from itertools import compress, repeat
from operator import ge, itemgetter, le
from typing import Any

from .._errors import InvalidInputError
from ._filter import EXPERIMENT_ONLY_ATTRIBUTES, Clause, Field, OrderKey, predicate_of
from ._index import current_status
from ._index_state import ExperimentIndex
from ._records import RunRecord, as_text
from ._table import MISSING, KeyColumn, Main

#: MLflow's system tags that name a run's own fields: a filter on them works without the tag on disk.
SYSTEM_TAGS = {"mlflow.runName": "run_name", "mlflow.parentRunId": "parent_run_id", "mlflow.user": "user"}
_KIND = {"metrics": "x", "params": "p", "tags": "t"}
_DEFAULT = [
    OrderKey(Field("attributes", "start_time"), True),
    OrderKey(Field("attributes", "run_id"), False),
]
#: ``v <op> x`` as a method of ``x`` (the clause's number), to map over a float64 column in C.
_FLIPPED = {"=": "__eq__", "!=": "__ne__", "<": "__gt__", "<=": "__ge__", ">": "__lt__", ">=": "__le__"}


def record_getter(f: Field) -> Callable[[RunRecord], Any]:
    """A field's value in a record (MISSING-free: None when absent), as the filter and sort read it."""
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


class Source:
    """One experiment's runs in a search: stored rows (ints) and changed runs (records)."""

    def __init__(self, index: ExperimentIndex, view: str) -> None:
        self.index = index
        main = index.main
        self.n = main.n
        keep = bytearray(_view_mask(main, view))
        for name in index.delta:  # stored rows changed since: the delta's records stand for them
            row = main.row_of(name)
            if row >= 0:
                keep[row] = 0
        self.mask = bytes(keep)
        self.changed = [
            e.record
            for e in index.delta.values()
            if e is not None
            and (view == "all" or (e.record.lifecycle_stage == "deleted") == (view == "deleted"))
        ]
        for record in self.changed:
            if record.stored_status == "RUNNING":
                record.status = current_status(record)
        self._status: dict[int, str] = {}

    # -- values ---------------------------------------------------------------------------------------

    def status(self, row: int) -> str:
        """A stored row's status as shown: CRASHED for a RUNNING run whose writers are gone."""
        got = self._status.get(row)
        if got is None:
            stored = self.index.main.field("status").get(row)
            got = current_status(self.record(row)) if stored == "RUNNING" else stored
            self._status[row] = got
        return got

    def getter(self, f: Field) -> Callable[[Any], Any]:
        """A field's value for a stored row (int) or a changed run (record); None when absent."""
        on_record = record_getter(f)
        if not self.n:
            return on_record  # nothing stored: every reference is a record
        on_row = self.row_getter(f)

        def get(ref: Any) -> Any:
            return on_row(ref) if ref.__class__ is int else on_record(ref)

        return get

    def row_getter(self, f: Field) -> Callable[[int], Any]:
        """A field's value for a stored row; None when absent."""
        main = self.index.main
        if f.entity in _KIND:
            column = main.key(_KIND[f.entity], sys.intern(f.key))
            attribute = SYSTEM_TAGS.get(f.key) if f.entity == "tags" else None
            fallback = self.row_getter(Field("attributes", attribute)) if attribute else None
            if column is None:
                return fallback or (lambda row: None)
            if column.full:  # every run has it: an indexed read, in C
                return column.vals.__getitem__ if column.vals is not None else column.decoded().__getitem__

            def key_value(row: int) -> Any:
                value = column.get(row)  # type: ignore[union-attr]
                if value is MISSING:
                    return fallback(row) if fallback is not None else None
                return value

            return key_value
        if f.key == "run_id":
            return main.names.__getitem__ if main.n else (lambda row: None)
        if f.key == "experiment_id":
            return lambda row: self.index.exp_id
        if f.key == "status":
            return self.status
        return main.field(f.key).get

    def record(self, row: int) -> RunRecord:
        return self.index.main.record(row, self.index.exp_id, self.index.exp_dir)

    def records(self, rows: list[int]) -> list[RunRecord]:
        """Fresh records of stored rows, with the status shown (CRASHED for a dead RUNNING run)."""
        if not rows:
            return []
        out = self.index.main.records(rows, self.index.exp_id, self.index.exp_dir)
        for row, record in zip(rows, out, strict=True):
            if record.stored_status == "RUNNING":
                record.status = self.status(row)
        return out

    # -- filtering ------------------------------------------------------------------------------------

    def match(self, clauses: list[Clause]) -> tuple[list[int], list[RunRecord]]:
        """Stored rows (ascending: the default order) and changed runs that pass every clause."""
        mask, n = self.mask, self.n
        tests = [(clause, self._row_test(clause)) for clause in clauses]
        late = [test for _, test in tests if test is not None]
        for clause, test in tests:
            if test is None:
                if not any(mask):
                    break
                mask = _and(mask, self._clause_mask(clause))
        # A metric compared with a number costs one C call per stored row as a mask, two per row as a
        # test of the rows the other clauses left: the test wins once they left fewer than half.
        if late and n and mask.count(1) * 2 >= n:
            for clause, test in tests:
                if test is not None:
                    mask = _and(mask, self._clause_mask(clause))
            late = []
        rows = list(compress(range(n), mask)) if n else []
        for vals, keep in late:
            rows = list(compress(rows, map(keep, map(vals.__getitem__, rows))))
        checks = [predicate_of(c, record_getter(c.field)) for c in clauses]
        changed = [r for r in self.changed if all(check(r) for check in checks)]
        return rows, changed

    def _row_test(self, clause: Clause) -> tuple[Any, Callable[[float], bool]] | None:
        """``(values, test)`` for a metric compared with a number on a column every stored run has (the
        test as ``_key_mask`` applies it), else None. ``!=`` is left to masks (NaN never matches it)."""
        f, op, x = clause.field, clause.op, clause.value
        if (
            f.entity != "metrics"
            or op not in _FLIPPED
            or op == "!="
            or not isinstance(x, float)
            or not self.n
        ):
            return None
        column = self.index.main.key("x", sys.intern(f.key))
        if column is None or not column.full or column.vals is None:
            return None
        return column.vals, getattr(x, _FLIPPED[op])

    def _clause_mask(self, clause: Clause) -> bytes:
        f, main, n = clause.field, self.index.main, self.n
        if f.entity in _KIND and not (f.entity == "tags" and f.key in SYSTEM_TAGS):
            column = main.key(_KIND[f.entity], sys.intern(f.key))
            if column is None:
                return bytes(n)  # no stored run has the key: none matches (MLflow's rule)
            return _key_mask(column, clause, n)
        if f.entity == "attributes" and f.key in ("run_name", "lifecycle_stage", "user", "parent_run_id"):
            field = main.field(f.key)
            test = predicate_of(clause, _same)
            if field.codes is None:
                return _rows_mask(n, field.get, test)
            return _coded_mask(field.codes, field.values, test, field.small_codes())
        test = predicate_of(clause, _same)
        return _rows_mask(n, self.row_getter(f), test)


def _same(value: Any) -> Any:
    return value


def _view_mask(main: Main, view: str) -> bytes:
    """Stored rows in the run view (kept with the columns: it changes only with them)."""
    cached = main.masks.get(view)
    if cached is None:
        if view == "all" or not main.n:
            cached = b"\x01" * main.n
        else:
            stage = main.field("lifecycle_stage")
            wanted = view == "deleted"
            cached = _coded_mask(
                stage.codes, stage.values, lambda s: (s == "deleted") == wanted, stage.small_codes()
            )
        main.masks[view] = cached
    return cached


def _and(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    """Bytewise AND of two 0/1 masks (as integers: one C operation)."""
    n = len(a)
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(n, "little")


def _coded_mask(
    codes: Any, values: list[Any], test: Callable[[Any], bool], small: bytes | None = None
) -> bytes:
    """A mask over rows whose code's value passes ``test`` (decided once per distinct value).

    ``small``: the same codes one byte each (at most 256 distinct values), mapped in one C call."""
    passing = frozenset(i for i, v in enumerate(values) if test(v))
    if not passing:
        return bytes(len(codes))
    if small is not None:
        return small.translate(bytes(i in passing for i in range(256)))
    return bytes(map(passing.__contains__, codes))


def _rows_mask(n: int, get: Callable[[int], Any], test: Callable[[Any], bool]) -> bytes:
    return bytes(test(v) if v is not None else False for v in map(get, range(n)))


def _key_mask(column: KeyColumn, clause: Clause, n: int) -> bytes:
    if column.vals is not None and isinstance(clause.value, float) and clause.op in _FLIPPED:
        x = clause.value
        hits = bytes(map(getattr(x, _FLIPPED[clause.op]), column.vals))
        if clause.op == "!=":  # NaN differs from everything, yet never matches
            hits = _and(hits, bytes(map(float.__eq__, column.vals, column.vals)))
    else:
        test = predicate_of(clause, _same)
        if column.codes is not None:
            hits = _coded_mask(column.codes, column.values, test, column.small_codes())
        else:
            hits = bytes(map(test, column.vals))  # type: ignore[arg-type]
    if column.full:
        return hits
    mask = bytearray(n)
    for row in compress(column.rows, hits):
        mask[row] = 1
    return bytes(mask)


# -- ordering -----------------------------------------------------------------------------------------


def sort(
    items: list[Any],
    keys: list[OrderKey],
    getter: Callable[[Field], Callable[[Any], Any]],
    need: int | None = None,
) -> list[Any]:
    """Stable multi-key sort; missing values go last and NaN just before them, in either direction.

    ``need``: only the first ``need`` items must come out in order (a search returning 1,000 runs of
    20,000 matches); the others follow them, all there, in no particular order."""
    for order in reversed(keys):
        get = getter(order.field)
        values = list(map(get, items))
        kinds = set(map(type, values))
        if kinds == {str} or (kinds <= {float, int} and _no_nan(values, kinds)):
            # numbers only (no NaN) or text only, none missing: one stable sort of positions, in C
            last = order is keys[0]
            if last and need is not None and need < len(items):
                items = _first_in_order(items, values, need, order.descending)
                continue
            ranked = sorted(range(len(items)), key=values.__getitem__, reverse=order.descending)
            items = list(map(items.__getitem__, ranked))
            continue
        present, nan, missing = [], [], []
        for item, value in zip(items, values, strict=True):
            if value is None:
                missing.append(item)
            elif value != value:  # NaN
                nan.append(item)
            else:
                present.append((value, item))
        if present and not all(v.__class__ in (int, float) for v, _ in present):
            present = [(as_text(v), item) for v, item in present]  # mixed types: compare as text
        present.sort(key=itemgetter(0), reverse=order.descending)
        items = [item for _, item in present] + nan + missing
    return items


def _first_in_order(items: list[Any], values: list[Any], need: int, descending: bool) -> list[Any]:
    """``items`` with their first ``need`` as a stable sort by ``values`` puts them, then the rest.

    The value the ``need``-th item has (one sort of the bare values, no key function) picks every item
    at or before it, ties included; only those are sorted by position, which keeps the tied ones in
    their order, as the full stable sort would."""
    cut = sorted(values, reverse=descending)[need - 1]
    inside = map(le if descending else ge, repeat(cut), values)  # cut <= value: at or before it
    first = sorted(compress(range(len(items)), inside), key=values.__getitem__, reverse=descending)[:need]
    rest = bytearray(b"\x01") * len(items)
    for i in first:
        rest[i] = 0
    return [*map(items.__getitem__, first), *compress(items, rest)]


def _no_nan(values: list[Any], kinds: set[type]) -> bool:
    if float not in kinds:
        return True
    total = sum(values)
    return bool(total == total)  # NaN (or both infinities) make the sum NaN


def default_keys() -> list[OrderKey]:
    return list(_DEFAULT)
