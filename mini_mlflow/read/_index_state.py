"""Read side: the state of one experiment's index in memory: its columnar file (``_table.Main``), the
runs changed since (the delta), broken and stray folders, and the last sweep.

Records and details are read from whichever holds the run; ``put`` records a look at a run and says
whether that changed anything (a run read again unchanged, NaN metrics included, changes nothing, so
nothing is written). The files are ``_index_files``; how each read checks the index against the run
folders is ``_index``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from ._columns import FIELDS, dumps
from ._records import RunRecord
from ._scan import Old, Scanned
from ._table import Main

INDEX_DIR = ".index"
DELTA_VERSION = 1


class Entry(NamedTuple):
    """A run's state in the delta: folder mtime when checked, settled flag, record, detail."""

    d: int
    ok: bool
    record: RunRecord
    detail: dict[str, Any]


class ExperimentIndex:
    """The validated runs of one experiment (kept in memory between calls of a process)."""

    def __init__(self, root: str, exp_id: str, main: Main | None = None) -> None:
        self.exp_id = exp_id
        self.exp_dir = os.path.join(root, exp_id)
        self.main = main if main is not None else Main(None)
        #: Runs changed since the columnar file was written: their state, or None when gone.
        self.delta: dict[str, Entry | None] = {}
        self.broken: dict[str, str] = {}  #: folder name → why it cannot be read
        self.broken_d: dict[str, int] = {}
        self.stray: dict[str, str] = {}  #: links and files among the run folders
        self.info: dict[str, Any] = {"name": None, "lifecycle_stage": "active", "broken": None}
        self.info_sig: list[int] | None = None
        self.info_at = 0
        #: ``[experiment folder mtime_ns, time_ns just before it was read]`` at the last full sweep.
        self.swept: list[int] | None = None
        self.saved_swept: list[int] | None = None
        #: Main rows to re-check between sweeps, for one threshold (computed once per sweep).
        self.unsettled: tuple[int, list[int]] | None = None

    # -- what the index holds ----------------------------------------------------------------------

    def state(self, name: str) -> tuple[int, bool] | None:
        """``(folder mtime_ns when checked, settled)`` of a known folder, None for a new one."""
        if name in self.delta:
            entry = self.delta[name]
            return None if entry is None else (entry.d, entry.ok)
        row = self.main.row_of(name)
        if row >= 0:
            return self.main.d[row], bool(self.main.ok[row])
        d = self.broken_d.get(name)
        return None if d is None else (d, False)

    def names(self) -> Iterator[str]:
        """Every run folder the index holds a record for."""
        delta = self.delta
        for name in self.main.names:
            if name not in delta:
                yield name
        for name, entry in delta.items():
            if entry is not None:
                yield name

    def record(self, name: str) -> RunRecord | None:
        if name in self.delta:
            entry = self.delta[name]
            return None if entry is None else entry.record
        row = self.main.row_of(name)
        return self.main.record(row, self.exp_id, self.exp_dir) if row >= 0 else None

    def detail(self, name: str) -> dict[str, Any] | None:
        if name in self.delta:
            entry = self.delta[name]
            return None if entry is None else entry.detail
        row = self.main.row_of(name)
        return self.main.detail(row) if row >= 0 else None

    def old(self, name: str) -> Old | None:
        """How the index last saw a run, for a re-check that reads only what changed."""
        record, detail = self.record(name), self.detail(name)
        if record is None or detail is None:
            return None
        return Old(detail, record.params, record.tags, record.warnings)

    def column(self, field: str) -> list[Any]:
        """One record field (``run_id`` or a stored field: status as stored) of every run, in no set
        order but the same for every field, without building records."""
        main, delta = self.main, self.delta
        rows = [r for r, name in enumerate(main.names) if name not in delta] if delta else range(main.n)
        if not main.n:
            stored: list[Any] = []
        elif field == "run_id":
            stored = [main.names[r] for r in rows]
        else:
            get = main.field(field).get
            stored = list(map(get, rows))
        attribute = "stored_status" if field == "status" else field
        return stored + [getattr(e.record, attribute) for e in delta.values() if e is not None]

    def newest_start(self) -> int | None:
        """The latest start time of any run (stored rows come newest first)."""
        starts = [e.record.start_time for e in self.delta.values() if e is not None]
        main = self.main
        for row, name in enumerate(main.names):
            if name not in self.delta:  # the first row not replaced or removed since
                starts.append(main.field("start_time").get(row))
                break
        found = [s for s in starts if s is not None]
        return max(found) if found else None

    @property
    def records(self) -> Mapping[str, RunRecord]:
        """Run folder → record, built when asked for (``show`` and the UI read one)."""
        return _Records(self)

    @property
    def details(self) -> Mapping[str, dict[str, Any]]:
        """Run folder → detail (``x``: per metric ``[ino, size, mtime, offset, count, last, min, max,
        last_step, skipped, mark, behind, tail_bad]``)."""
        return _Details(self)

    def put(self, name: str, scanned: Scanned, ok: bool) -> bool:
        """Record a look at a run; True if that changed what the index holds."""
        if scanned.fields is None:
            changed = self.broken.get(name) != scanned.broken or self.state(name) is not None
            self.broken[name] = str(scanned.broken)
            self.broken_d[name] = scanned.d
            if name in self.delta or self.main.row_of(name) >= 0:
                self.delta[name] = None
            return changed or self.broken_d.get(name) != scanned.d
        self.broken.pop(name, None)
        self.broken_d.pop(name, None)
        record = RunRecord(
            name, scanned.fields[0], self.exp_id, scanned.fields[1], scanned.fields[2],
            scanned.fields[3], scanned.fields[4], scanned.fields[5], scanned.fields[6],
            scanned.params, scanned.tags, scanned.metrics, f"{self.exp_dir}/{name}",
            scanned.fields[1], scanned.fields[7], scanned.warnings,
        )  # fmt: skip
        if self.state(name) == (scanned.d, ok):
            before = self.record(name)
            old_detail = self.detail(name) or {}
            if (
                before is not None
                and _same_record(before, record)
                and _same_detail(old_detail, scanned.detail)
            ):
                return False
        self.delta[name] = Entry(scanned.d, ok, record, scanned.detail)
        return True

    def remove(self, name: str) -> None:
        self.broken.pop(name, None)
        self.broken_d.pop(name, None)
        if self.main.row_of(name) >= 0:
            self.delta[name] = None
        else:
            self.delta.pop(name, None)

    def needs_compaction(self, at_least: int) -> bool:
        """Whether the delta is big enough to fold into a new columnar file."""
        return len(self.delta) >= max(at_least, self.main.n // 64)

    def extra(self) -> dict[str, Any]:
        """What both files record beside the runs: experiment info, sweep, broken and stray folders."""
        return {
            "e": self.info, "es": self.info_sig, "eat": self.info_at, "sw": self.swept,
            "b": self.broken, "bd": self.broken_d, "stray": self.stray,
        }  # fmt: skip

    def set_extra(self, extra: dict[str, Any]) -> None:
        self.info, self.info_sig, self.info_at = dict(extra["e"]), extra["es"], int(extra["eat"])
        swept = extra.get("sw")
        if isinstance(swept, list) and len(swept) == 2 and all(type(v) is int for v in swept):
            self.swept = self.saved_swept = swept
        self.broken = {str(k): str(v) for k, v in extra["b"].items()}
        self.broken_d = {str(k): int(v) for k, v in extra["bd"].items()}
        self.stray = {str(k): str(v) for k, v in extra["stray"].items()}


def _same_record(a: RunRecord, b: RunRecord) -> bool:
    """Equal records, NaN equal to NaN (a run with a NaN metric is unchanged when read again)."""
    return a == b or dumps(_record_state(a)) == dumps(_record_state(b))


def _record_state(r: RunRecord) -> list[Any]:
    return [[getattr(r, f) for f in FIELDS], r.stored_status, r.params, r.tags, r.metrics, r.warnings]


def _same_detail(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("r", "ps", "ts", "xs", "x")
    if all(a.get(k) == b.get(k) for k in keys):
        return True
    return dumps([a.get(k) for k in keys]) == dumps([b.get(k) for k in keys])  # NaN equal to NaN


class _Records(Mapping[str, RunRecord]):
    def __init__(self, index: ExperimentIndex) -> None:
        self.index = index

    def __getitem__(self, name: str) -> RunRecord:
        record = self.index.record(name)
        if record is None:
            raise KeyError(name)
        return record

    def __iter__(self) -> Iterator[str]:
        return self.index.names()

    def __len__(self) -> int:
        return sum(1 for _ in self.index.names())


class _Details(Mapping[str, dict[str, Any]]):
    def __init__(self, index: ExperimentIndex) -> None:
        self.index = index

    def __getitem__(self, name: str) -> dict[str, Any]:
        detail = self.index.detail(name)
        if detail is None:
            raise KeyError(name)
        return detail

    def __iter__(self) -> Iterator[str]:
        return self.index.names()

    def __len__(self) -> int:
        return sum(1 for _ in self.index.names())
