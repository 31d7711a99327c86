"""Read side: an experiment's index files under ``.index/``: loaded, saved whole, discarded when damaged.

The columnar file (``<experiment>.cols``, see ``_columns``) holds every run as of its last compaction;
the delta (``<experiment>.delta``, JSON) the runs changed, added or removed since, tied to that file by
its id. Both are written through a descriptor of ``.index/`` opened without following links, each
replaced whole (temporary file + rename): a reader in another process sees an old file or a new one,
never half of one, and a delta beside another columnar file is ignored (its runs are checked again).
"""

from __future__ import annotations

import os
from typing import Any

from ..store._files import (
    folder_beneath,
    open_dir_beneath,
    read_bytes,
    remove_stale_temporaries,
    write_atomic,
)
from ._columns import FIELDS, Builder, ColumnFile, IndexFormatError, dumps, loads
from ._index_state import DELTA_VERSION, INDEX_DIR, Entry, ExperimentIndex
from ._records import RunRecord
from ._scan import Scanned, encode_detail
from ._table import Main, decoded_detail

_SUFFIX, _DELTA = ".cols", ".delta"


def load(root: str, exp_id: str) -> ExperimentIndex:
    """The index as the files under ``.index/`` hold it (an empty one if they are missing or garbage)."""
    try:
        top = open_dir_beneath(root, INDEX_DIR, fixed=1)  # never created, never through a link
    except OSError:
        return ExperimentIndex(root, exp_id)
    try:
        try:
            main = Main(ColumnFile.open(exp_id + _SUFFIX, top))
        except (OSError, IndexFormatError):
            main = Main(None)
        index = ExperimentIndex(root, exp_id, main)
        try:
            if main.extra:
                index.set_extra(main.extra)
            _read_delta(index, read_bytes(exp_id + _DELTA, dir_fd=top))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no delta, or garbage: the runs it held are re-checked
    finally:
        os.close(top)
    return index


def _read_delta(index: ExperimentIndex, data: bytes) -> None:
    doc = loads(data)
    if not isinstance(doc, dict) or doc.get("v") != DELTA_VERSION or doc.get("main") != index.main.id:
        return  # another version, or written beside another columnar file
    delta: dict[str, Entry | None] = {}
    for name, run in doc["runs"].items():
        if run is None:
            delta[str(name)] = None
            continue
        fields, (params, tags, metrics) = run["f"], run["v"]
        record = RunRecord(
            name, fields[0], index.exp_id, fields[1], fields[2], fields[3], fields[4], fields[5],
            fields[6], dict(params), dict(tags), {k: float(v) for k, v in metrics.items()},
            f"{index.exp_dir}/{name}", fields[1], fields[7], list(run["w"]),
        )  # fmt: skip
        delta[str(name)] = Entry(int(run["d"]), bool(run["ok"]), record, decoded_detail(dict(run["det"])))
    index.set_extra(doc["extra"])
    index.delta = delta


def _delta_bytes(index: ExperimentIndex) -> bytes:
    runs: dict[str, Any] = {}
    for name, entry in index.delta.items():
        if entry is None:
            runs[name] = None
            continue
        r = entry.record
        fields = [getattr(r, "stored_status" if f == "status" else f) for f in FIELDS]
        runs[name] = {
            "d": entry.d, "ok": int(entry.ok), "f": fields, "v": [r.params, r.tags, r.metrics],
            "w": r.warnings, "det": loads(encode_detail(entry.detail)),
        }  # fmt: skip
    return dumps({"v": DELTA_VERSION, "main": index.main.id, "extra": index.extra(), "runs": runs})


def builder_of(index: ExperimentIndex, skip: set[str]) -> Builder:
    """A builder holding every run of the index but those in ``skip`` (about to be added again)."""
    builder = Builder()
    main, delta = index.main, index.delta
    fields = [main.field(f) for f in FIELDS] if main.n else []
    for row, name in enumerate(main.names):
        if name in delta or name in skip:
            continue
        builder.add(
            name, main.d[row], bool(main.ok[row]), tuple(f.get(row) for f in fields),
            main.values_of(row), main.warnings(row), main.raw_detail(row),
        )  # fmt: skip
    for name, entry in delta.items():
        if entry is not None and name not in skip:
            add_entry(builder, name, entry)
    return builder


def add_entry(builder: Builder, name: str, entry: Entry) -> None:
    r = entry.record
    fields = tuple(getattr(r, "stored_status" if f == "status" else f) for f in FIELDS)
    builder.add(
        name,
        entry.d,
        entry.ok,
        fields,
        (r.params, r.tags, r.metrics),
        r.warnings,
        encode_detail(entry.detail),
    )


def add_scanned(builder: Builder, name: str, scanned: Scanned, ok: bool) -> None:
    values = (scanned.params, scanned.tags, scanned.metrics)
    detail = scanned.encoded if scanned.encoded is not None else encode_detail(scanned.detail)
    builder.add(name, scanned.d, ok, scanned.fields, values, scanned.warnings, detail)  # type: ignore[arg-type]


def save(root: str, index: ExperimentIndex, builder: Builder | None = None, write: bool = True) -> bool:
    """Write the delta, or (with ``builder``: every run) a new columnar file and an empty delta;
    True if written. Through real folders only: a link planted at ``.index`` is refused and nothing
    is written elsewhere. A store that cannot be written keeps the new columns in memory."""
    exp_id = index.exp_id
    data = builder.encode(index.extra(), os.urandom(8).hex()) if builder is not None else b""
    if builder is not None:
        index.main.close()
        index.main, index.delta, index.unsettled = Main(ColumnFile.from_bytes(data)), {}, None
    if not write:
        return False
    try:
        with folder_beneath(root, INDEX_DIR) as top:
            remove_stale_temporaries(top)
            _remove_old_format(top, exp_id)
            if builder is not None:
                write_atomic(exp_id + _SUFFIX, data, dir_fd=top)
                try:  # read it lazily from the file, so the bytes in memory can go
                    written = Main(ColumnFile.open(exp_id + _SUFFIX, top))
                    if written.id == index.main.id:
                        index.main = written
                except (OSError, IndexFormatError):
                    pass
            write_atomic(exp_id + _DELTA, _delta_bytes(index), dir_fd=top)
    except OSError:
        return False  # a read-only store still lists fine, just without a cache
    index.saved_swept = index.swept
    return True


def discard(root: str, exp_id: str) -> None:
    """Delete an experiment's index files (damaged: they are rebuilt from the run folders)."""
    try:
        top = open_dir_beneath(root, INDEX_DIR, fixed=1)
    except OSError:
        return
    try:
        for name in (exp_id + _SUFFIX, exp_id + _DELTA):
            try:
                os.unlink(name, dir_fd=top)
            except OSError:
                pass
    finally:
        os.close(top)


def _remove_old_format(top: int, exp_id: str) -> None:
    """Files of the index's first format (a JSON summary, one JSON file per run): deleted, once."""
    try:
        os.unlink(exp_id + ".json", dir_fd=top)
    except OSError:
        pass
    try:
        sub = os.open(exp_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
    except OSError:
        return
    try:
        for name in os.listdir(sub):
            if name.endswith(".json"):
                try:
                    os.unlink(name, dir_fd=sub)
                except OSError:
                    pass
    finally:
        os.close(sub)
    try:
        os.rmdir(exp_id, dir_fd=top)
    except OSError:
        pass
