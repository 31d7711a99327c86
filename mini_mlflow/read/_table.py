"""Read side: an experiment's stored runs in memory, column by column, decoded when a search needs them.

A :class:`Main` wraps one columnar file (``_columns``): a search that filters on ``metrics.acc`` and
orders by it reads the run table's few columns and that one metric column, never the others, and a
:class:`~._records.RunRecord` is built only for a run that is returned. Keys are interned, so the
records of 100,000 runs share one ``"lr"``.
"""

from __future__ import annotations

import functools
import sys
from array import array
from collections.abc import Callable
from itertools import repeat
from typing import Any, TypeVar

from ._columns import FIELDS, ColumnFile, IndexFormatError, code_type, loads
from ._metric_agg import HIGH, LAST, LOW
from ._records import RunRecord

_F = TypeVar("_F", bound=Callable[..., Any])


def decoding(method: _F) -> _F:
    """A method reading the file: anything it finds out of shape is the file's fault (IndexFormatError:
    the index is rebuilt from the runs), never the caller's."""

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            main = args[0]
            if main.file is not None:
                main.file.damaged = True  # this file is rebuilt, not read again (see _index.recovering)
            if isinstance(exc, IndexFormatError):
                raise
            raise IndexFormatError(f"{method.__name__}: {type(exc).__name__}: {exc}") from exc

    return checked  # type: ignore[return-value]


#: What a column holds for a run that lacks the key.
MISSING: Any = object()
#: Keys beyond this many partial columns (keys some runs lack) are found per run through one map.
_SCAN_PARTIAL = 32


def _small(column: Any) -> bytes | None:
    """A column's codes as bytes, when they are one byte each (at most 256 distinct values)."""
    if column.codes is None or column.codes.typecode != "B":
        return None
    if column._small is None:
        column._small = column.codes.tobytes()
    return column._small  # type: ignore[no-any-return]


def _codes(cf: ColumnFile, spec: dict[str, Any], values: list[Any], n: int) -> array[int]:
    """A column's codes, checked against its distinct values (a crafted file must not index past them)."""
    typecode = code_type(len(values))
    codes = cf.array(spec["codes"], typecode)
    if len(codes) != n:
        raise IndexFormatError("codes do not match their rows")
    if typecode == "B":  # one C pass: every byte naming a value maps to 0, any other to 1
        if codes.tobytes().translate(bytes(i >= len(values) for i in range(256))).find(1) >= 0:
            raise IndexFormatError("codes out of range")
    elif codes and max(codes) >= len(values):
        raise IndexFormatError("codes out of range")
    return codes


class FieldColumn:
    """One record field of every row: distinct values and codes, or int64 values and rows without."""

    def __init__(self, cf: ColumnFile, spec: dict[str, Any]) -> None:
        if "vals" in spec:
            self.ints: array[int] | None = cf.array(spec["vals"], "q")
            self.none = frozenset(spec.get("none", ()))
            self.codes: array[int] | None = None
            self.values: list[Any] = []
        else:
            self.ints, self.none = None, frozenset()
            self.values = cf.json(spec["values"])
            if not isinstance(self.values, list):
                raise IndexFormatError("field values are not a list")
            self.codes = _codes(cf, spec, self.values, cf.n)
        self._small: bytes | None = None
        if len(self.ints if self.ints is not None else self.codes or ()) != cf.n:  # type: ignore[arg-type]
            raise IndexFormatError("field column does not match the row count")

    def get(self, row: int) -> Any:
        if self.codes is not None:
            return self.values[self.codes[row]]
        return None if row in self.none else self.ints[row]  # type: ignore[index]

    def small_codes(self) -> bytes | None:
        return _small(self)

    def take(self, rows: list[int]) -> list[Any]:
        """The values of ``rows``, in their order (C-level maps, no call per row)."""
        if self.codes is not None:
            return list(map(self.values.__getitem__, map(self.codes.__getitem__, rows)))
        ints = self.ints
        assert ints is not None  # a column has codes or ints
        out: list[Any] = list(map(ints.__getitem__, rows))
        if self.none:
            none = self.none
            out = [None if row in none else value for row, value in zip(rows, out, strict=True)]
        return out

    def column(self) -> list[Any]:
        """Every row's value."""
        if self.codes is not None:
            return list(map(self.values.__getitem__, self.codes))
        out: list[Any] = self.ints.tolist()  # type: ignore[union-attr]
        for row in self.none:
            out[row] = None
        return out


class KeyColumn:
    """One param, tag or metric key: the rows that have it (ascending) and their values."""

    def __init__(self, cf: ColumnFile, spec: dict[str, Any], metric: bool) -> None:
        self.rows = cf.array(spec["rows"], "I")
        self.full = len(self.rows) == cf.n  # every run has it: row number = position
        if metric:
            self.vals: array[float] | None = cf.array(spec["vals"], "d")
            self.codes: array[int] | None = None
            self.values: list[Any] = []
            count = len(self.vals)
        else:
            self.vals = None
            self.values = cf.json(spec["values"])
            if not isinstance(self.values, list):
                raise IndexFormatError("key values are not a list")
            self.codes = _codes(cf, spec, self.values, len(self.rows))
            count = len(self.codes)
        if count != len(self.rows) or (self.rows and self.rows[-1] >= cf.n):
            raise IndexFormatError("key column does not match its rows")
        self._pos: dict[int, int] | None = None
        self._decoded: list[Any] | None = None
        self._small: bytes | None = None

    def position(self, row: int) -> int:
        """Where ``row`` sits in this column, -1 if it lacks the key."""
        if self.full:
            return row
        return self._where().get(row, -1)

    def positions_of(self, rows: list[int]) -> list[int]:
        """Where each of ``rows`` sits in this column, -1 for a row that lacks the key."""
        if self.full:
            return list(rows)
        return list(map(self._where().get, rows, repeat(-1, len(rows))))

    def _where(self) -> dict[int, int]:
        """Row → position (built once, for a column some rows lack)."""
        if self._pos is None:
            self._pos = dict(zip(self.rows, range(len(self.rows)), strict=True))
        return self._pos

    def at(self, position: int) -> Any:
        if self.vals is not None:
            return self.vals[position]
        return self.values[self.codes[position]]  # type: ignore[index]

    def get(self, row: int) -> Any:
        position = self.position(row)
        return MISSING if position < 0 else self.at(position)

    def small_codes(self) -> bytes | None:
        return _small(self)

    def decoded(self) -> list[Any]:
        """Every value of a param or tag column, in position order (built once)."""
        if self._decoded is None:
            self._decoded = list(map(self.values.__getitem__, self.codes))  # type: ignore[arg-type]
        return self._decoded


class Main:
    """An experiment's runs as stored in its columnar file (none when ``cf`` is None)."""

    def __init__(self, cf: ColumnFile | None) -> None:
        self.file = cf
        self.n = cf.n if cf is not None else 0
        self.id: str = cf.header.get("id", "") if cf is not None else ""
        self.extra: dict[str, Any] = dict(cf.header.get("extra") or {}) if cf is not None else {}
        self._names: list[str] | None = None
        self._pos: dict[str, int] | None = None
        self._d: array[int] | None = None
        self._ok: bytes | None = None
        self._fields: dict[str, FieldColumn] = {}
        self._keys: dict[str, KeyColumn | None] = {}
        self._key_names: dict[str, list[str]] = {}
        self._offsets: tuple[array[int], array[int]] | None = None
        self._warnings: dict[int, list[str]] | None = None
        self._by_row: list[list[tuple[str, str, int]]] | None = None
        #: Search masks that depend on these columns only (the run views), kept while they live.
        self.masks: dict[str, bytes] = {}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    @property
    @decoding
    def names(self) -> list[str]:
        if self._names is None:
            self._names = self.file.names() if self.file is not None else []
        return self._names

    @decoding
    def row_of(self, name: str) -> int:
        """The row of run folder ``name``, -1 if it is not stored."""
        return self.positions().get(name, -1)

    @decoding
    def positions(self) -> dict[str, int]:
        """Run folder name → row, for every stored run."""
        if self._pos is None:
            self._pos = {n: i for i, n in enumerate(self.names)}
        return self._pos

    @property
    @decoding
    def d(self) -> array[int]:
        if self._d is None:
            self._d = self._array("d", "q")
        return self._d

    @property
    @decoding
    def ok(self) -> bytes:
        if self._ok is None:
            self._ok = self.file.blob(self.file.cols["ok"]) if self.file is not None else b""
            if len(self._ok) != self.n:
                raise IndexFormatError("ok does not match the row count")
        return self._ok

    def _array(self, col: str, typecode: str) -> array[int]:
        if self.file is None:
            return array(typecode)
        out = self.file.array(self.file.cols[col], typecode)
        if len(out) != self.n:
            raise IndexFormatError(f"{col} does not match the row count")
        return out

    @decoding
    def field(self, name: str) -> FieldColumn:
        column = self._fields.get(name)
        if column is None:
            if self.file is None:
                raise IndexFormatError("no file")
            column = self._fields[name] = FieldColumn(self.file, self.file.cols["f." + name])
        return column

    @decoding
    def key_names(self, kind: str) -> list[str]:
        """Keys of ``kind`` (``p``, ``t``, ``x``) that some stored run has, sorted."""
        names = self._key_names.get(kind)
        if names is None:
            cols = self.file.cols if self.file is not None else {}
            prefix = kind + "."
            names = sorted(sys.intern(c[2:]) for c in cols if c.startswith(prefix))
            self._key_names[kind] = names
        return names

    @decoding
    def key(self, kind: str, key: str) -> KeyColumn | None:
        name = f"{kind}.{key}"
        if name not in self._keys:
            spec = self.file.cols.get(name) if self.file is not None else None
            self._keys[name] = KeyColumn(self.file, spec, kind == "x") if spec is not None else None  # type: ignore[arg-type]
        return self._keys[name]

    @decoding
    def raw_detail(self, row: int) -> bytes:
        if self._offsets is None:
            spec = self.file.cols["detail"]  # type: ignore[union-attr]
            starts, ends = self.file.array(spec["starts"], "q"), self.file.array(spec["ends"], "q")  # type: ignore[union-attr]
            if len(starts) != self.n or len(ends) != self.n:
                raise IndexFormatError("detail offsets do not match the row count")
            self._offsets = (starts, ends)
        start, end = self._offsets[0][row], self._offsets[1][row]
        return self.file.blob_part(self.file.cols["detail"]["data"], start, end - start)  # type: ignore[union-attr]

    @decoding
    def detail(self, row: int) -> dict[str, Any]:
        return decode_detail(self.raw_detail(row))

    @decoding
    def warnings(self, row: int) -> list[str]:
        if self._warnings is None:
            raw = self.file.json(self.file.cols["warnings"]) if self.file is not None else {}
            self._warnings = {int(r): w for r, w in raw.items()}
        return list(self._warnings.get(row, ()))

    @decoding
    def values_of(self, row: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
        """A row's params, tags and last metric values, keys in order."""
        out: tuple[dict[str, Any], dict[str, Any], dict[str, float]] = ({}, {}, {})
        partial: list[tuple[str, str, KeyColumn]] = []
        for i, kind in enumerate(("p", "t", "x")):
            target = out[i]
            for key in self.key_names(kind):
                column = self.key(kind, key)
                if column is None:
                    continue
                if column.full:
                    target[key] = column.at(row)
                else:
                    partial.append((kind, key, column))
        if partial:
            if len(partial) <= _SCAN_PARTIAL:
                found = [(k, key, c.position(row)) for k, key, c in partial]
            else:
                found = [(k, key, p) for k, key, p in self._partial_by_row(partial)[row]]
            for kind, key, position in found:
                if position >= 0:
                    column = self.key(kind, key)
                    out["ptx".index(kind)][key] = column.at(position)  # type: ignore[union-attr]
            for target in out:
                if len(target) > 1:
                    items = sorted(target.items())
                    target.clear()
                    target.update(items)
        return out

    @decoding
    def _values_of_rows(
        self, rows: list[int]
    ) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, float]]]:
        """Params, tags and last metric values of many rows, read key column by key column."""
        columns = [[(key, self.key(kind, key)) for key in self.key_names(kind)] for kind in ("p", "t", "x")]
        partial = sum(1 for kind in columns for _, c in kind if c is not None and not c.full)
        if partial > _SCAN_PARTIAL:
            return [self.values_of(row) for row in rows]
        per_kind = []
        for kind in columns:
            keys, cells, complete = [], [], True
            for key, column in kind:
                if column is None:
                    continue
                keys.append(key)
                if column.full and column.vals is not None:
                    cells.append(list(map(column.vals.__getitem__, rows)))
                elif column.full:  # a few rows' values, without decoding the whole column
                    codes = map(column.codes.__getitem__, rows)  # type: ignore[union-attr,index]
                    cells.append(list(map(column.values.__getitem__, codes)))
                else:
                    cells.append(list(map(column.get, rows)))
                    complete = False
            by_row = list(zip(*cells, strict=True)) if cells else [()] * len(rows)
            if complete:
                per_kind.append([dict(zip(keys, one, strict=True)) for one in by_row])
            else:
                per_kind.append(
                    [{k: v for k, v in zip(keys, one, strict=True) if v is not MISSING} for one in by_row]
                )
        return list(zip(*per_kind, strict=True))  # type: ignore[arg-type]

    def _partial_by_row(self, partial: list[tuple[str, str, KeyColumn]]) -> list[list[tuple[str, str, int]]]:
        """For many keys that few runs have: each row's ``(kind, key, position)``, built once."""
        if self._by_row is None:
            by_row: list[list[tuple[str, str, int]]] = [[] for _ in range(self.n)]
            for kind, key, column in partial:
                for position, row in enumerate(column.rows):
                    by_row[row].append((kind, key, position))
            self._by_row = by_row
        return self._by_row

    @decoding
    def records(self, rows: list[int], experiment_id: str, exp_dir: str) -> list[RunRecord]:
        """Fresh records of many rows, read column by column."""
        name_of = self.names.__getitem__ if self._names is not None else self.file.name  # type: ignore[union-attr]
        fields = zip(*(self.field(f).take(rows) for f in FIELDS), strict=True)  # a tuple per row, in C
        values = self._values_of_rows(rows)
        warnings = self.warnings
        return [
            RunRecord(
                name,
                run_name,
                experiment_id,
                status,
                start,
                end,
                stage,
                user,
                parent,
                params,
                tags,
                metrics,
                f"{exp_dir}/{name}",
                status,
                newer,
                warnings(row),
            )
            for row, name, (run_name, status, start, end, stage, user, parent, newer), (
                params,
                tags,
                metrics,
            ) in zip(rows, map(name_of, rows), fields, values, strict=True)
        ]

    @decoding
    def record(self, row: int, experiment_id: str, exp_dir: str) -> RunRecord:
        """The run at ``row`` as a fresh record (the caller may keep or change it)."""
        name = self.names[row] if self._names is not None else self.file.name(row)  # type: ignore[union-attr]
        run_name, status, start, end, stage, user, parent, newer = (self.field(f).get(row) for f in FIELDS)
        params, tags, metrics = self.values_of(row)
        return RunRecord(
            name, run_name, experiment_id, status, start, end, stage, user, parent,
            params, tags, metrics, f"{exp_dir}/{name}", status, newer, self.warnings(row),
        )  # fmt: skip


def decode_detail(raw: bytes) -> dict[str, Any]:
    try:
        detail = loads(raw)
    except ValueError as exc:
        raise IndexFormatError("a run's detail is not JSON") from exc
    if not isinstance(detail, dict):
        raise IndexFormatError("a run's detail is not a mapping")
    return decoded_detail(detail)


def decoded_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A detail read from JSON: metric values spelled "NaN", "Infinity", "-Infinity" as floats again."""
    for agg in (detail.get("x") or {}).values():
        for i in (LAST, LOW, HIGH):
            if isinstance(agg[i], str):
                agg[i] = float(agg[i])
    return detail
