"""Derived run index: per-experiment run records, checked against the files on every read.

The files stay the source of truth. ``<root>/.index/`` only caches what is slow to recompute, keyed by
file-system signatures (inode, size, mtime):

* ``<experiment>.json`` — the listing of an experiment, column by column (fast to load): each run's
  folder mtime, meta fields, params, tags and last metric values;
* ``<experiment>/<run>.json`` — per run, the signatures of meta.yaml, the params/tags/metrics folders
  and every metric file, with per-metric count/min/max and the byte offset read so far.

A full sweep ``lstat``-s every run folder once. Replacing meta.yaml (status, lifecycle) or a
heartbeat changes the folder's mtime, which triggers a re-check of that run. Runs that are not finished,
or changed in the last ``SETTLED_S`` seconds, are checked deeply on every read; a grown metric file is
parsed only from where the last read stopped (metric files are append-only; a fingerprint of the bytes
already read tells a rewritten file), and a listing facing a big backlog reads just the last point. An
mtime within ``RACY_NS`` of the moment it was read is not trusted (file-system clocks are coarse), so
that part is re-read.

Between full sweeps (at most ``SWEEP_S`` apart) a read skips the runs that were finished and settled at
the last sweep, as long as the experiment folder's mtime has not moved: adding, removing or renaming a
run folder moves it, and so does every meta.yaml replaced through ``store._operations.update_run_meta`` (which
touches the experiment folder after the rename). On 10,000 runs the sweep's ``lstat``-s are most of a
warm search; a meta.yaml replaced behind mini_mlflow's back is seen at the next sweep.

Index files are written atomically and only when something changed; a missing, stale, garbage or
foreign-version index is rebuilt, and deleting ``.index/`` is always safe.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from ..store._files import folder_beneath, read_bytes, remove_stale_temporaries, write_atomic
from ..store._layout import FORMAT_VERSION, META_FILE, TMP_MARK, iso_from_ms
from ..store._meta import read_meta_file
from ._reader import heartbeat_state
from ._records import RunRecord
from ._scan import RACY_NS, build_run, sig_of

INDEX_DIR = ".index"
INDEX_VERSION = 3
#: A finished run whose folder changed less than this long ago is still checked deeply (a second
#: process sharing the run may still be flushing; its heartbeat touches the folder while it lives).
SETTLED_S = 30
#: Seconds at most between full sweeps (``lstat`` of every run folder) of one experiment.
SWEEP_S = 5
#: A save that re-checked at least this many runs also rebuilds the in-memory index compactly.
COMPACT_AFTER = 1000
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
META_COLUMNS = (
    "run_id",
    "run_name",
    "status",
    "start_time",
    "end_time",
    "user",
    "lifecycle_stage",
    "parent_run_id",
    "format_version",
)


class ExperimentIndex:
    """The validated records of one experiment (kept in memory between calls of a process)."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {"name": None, "lifecycle_stage": "active", "broken": None}
        self.info_sig: list[int] | None = None
        self.info_at = 0
        self.d: dict[str, int] = {}  #: run folder mtime_ns when last checked
        self.ok: dict[str, bool] = {}  #: True: finished and settled, trust it while ``d`` is unchanged
        self.records: dict[str, RunRecord] = {}
        self.broken: dict[str, str] = {}
        self.stray: dict[str, str] = {}
        self.details: dict[str, dict[str, Any]] = {}
        #: ``[experiment folder mtime_ns, time_ns just before it was read]`` at the last full sweep.
        self.swept: list[int] | None = None


_MEMORY: dict[tuple[str, str], ExperimentIndex] = {}


def _load_detail(root: str, exp_id: str, name: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(read_bytes(os.path.join(root, INDEX_DIR, exp_id, name + ".json")))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("v") == INDEX_VERSION else None


def _load(root: str, exp_id: str) -> ExperimentIndex:
    try:
        data = read_bytes(os.path.join(root, INDEX_DIR, exp_id + ".json"))
    except OSError:
        return ExperimentIndex()
    return _from_summary(root, exp_id, data)


def _from_summary(root: str, exp_id: str, data: bytes) -> ExperimentIndex:
    """The index held in an experiment's summary file (an empty one if it is garbage or foreign)."""
    index = ExperimentIndex()
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != INDEX_VERSION:
            return index
        exp_dir = os.path.join(root, exp_id)
        names = doc["names"]
        cols = doc["m"]
        p_cols, t_cols, x_cols = doc["p"], doc["t"], doc["x"]
        params: list[dict[str, Any]] = [{} for _ in names]
        tags: list[dict[str, Any]] = [{} for _ in names]
        metrics: list[dict[str, float]] = [{} for _ in names]
        for target, sparse in ((params, p_cols), (tags, t_cols), (metrics, x_cols)):
            # in key order, as a run's own files list them: a record reads the same built or loaded
            for name, (rows, vals) in sorted(sparse.items()):
                key = sys.intern(name)  # shared with the filter's key: lookups match by identity
                for i, v in zip(rows, vals, strict=False):
                    target[i][key] = v
        warnings = doc["w"]
        records = index.records
        rows = zip(names, *(cols[c] for c in META_COLUMNS[1:]), params, tags, metrics, strict=True)
        for name, run_name, status, start, end, user, stage, parent, version, p, t, x in rows:
            records[name] = RunRecord(
                name,
                run_name,
                exp_id,
                status,
                start,
                end,
                stage,
                user,
                parent,
                p,
                t,
                x,
                f"{exp_dir}/{name}",
                status,
                version if isinstance(version, int) and version > FORMAT_VERSION else None,
                warnings.get(name) or [],
            )
        index.d = dict(zip(names, doc["d"], strict=True))
        index.ok = {name: bool(ok) for name, ok in zip(names, doc["ok"], strict=True)}
        index.broken, index.stray = dict(doc["b"]), dict(doc["stray"])
        index.info, index.info_sig, index.info_at = doc["e"], doc["es"], doc["eat"]
        swept = doc.get("sw")
        if isinstance(swept, list) and len(swept) == 2 and all(type(v) is int for v in swept):
            index.swept = swept
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return ExperimentIndex()  # garbage or foreign: start over
    return index


def _save(root: str, exp_id: str, index: ExperimentIndex, dirty_details: list[str]) -> bytes | None:
    """Write the changed run details and the summary; the summary's bytes, or None if not written."""
    try:
        # Through real folders only (a link planted or swapped in is refused: nothing leaves the store).
        with folder_beneath(root, INDEX_DIR) as top, folder_beneath(root, f"{INDEX_DIR}/{exp_id}") as sub:
            remove_stale_temporaries(top)
            for name in dirty_details:
                detail = index.details.get(name)
                if detail is None:
                    try:
                        os.unlink(name + ".json", dir_fd=sub)
                    except FileNotFoundError:
                        pass
                    continue
                data = json.dumps({"v": INDEX_VERSION, **detail}, separators=(",", ":")).encode()
                write_atomic(name + ".json", data, dir_fd=sub)
            data = _summary(index)
            write_atomic(exp_id + ".json", data, dir_fd=top)
    except OSError:
        return None  # a read-only store still lists fine, just without a cache
    return data


def _summary(index: ExperimentIndex) -> bytes:
    """The summary file's bytes: every run's record in columns."""
    names = list(index.records)
    recs = [index.records[n] for n in names]
    sparse: dict[str, dict[str, list[list[Any]]]] = {"p": {}, "t": {}, "x": {}}
    for i, r in enumerate(recs):
        for short, values in (("p", r.params), ("t", r.tags), ("x", r.metrics)):
            for key, v in values.items():
                col = sparse[short].setdefault(key, [[], []])
                col[0].append(i)
                col[1].append(v)
    m_cols = {
        c: [getattr(r, "stored_status" if c == "status" else c) for r in recs] for c in META_COLUMNS[:-1]
    }
    m_cols["run_id"] = names
    m_cols["format_version"] = [r.newer_format or FORMAT_VERSION for r in recs]
    doc = {
        "v": INDEX_VERSION,
        "e": index.info,
        "es": index.info_sig,
        "eat": index.info_at,
        "sw": index.swept,
        "names": names,
        "d": [index.d[n] for n in names],
        "ok": [int(index.ok[n]) for n in names],
        "m": m_cols,
        **sparse,
        "w": {n: r.warnings for n, r in zip(names, recs, strict=True) if r.warnings},
        "b": index.broken,
        "stray": index.stray,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _check_info(root: str, exp_id: str, index: ExperimentIndex, now_ns: int) -> bool:
    path = os.path.join(root, exp_id, META_FILE)
    sig = sig_of(path)
    if sig is not None and sig == index.info_sig and sig[2] < index.info_at - RACY_NS:
        return False
    raw, broken = read_meta_file(path)
    info = {
        "name": None if raw is None or raw.get("name") is None else str(raw["name"]),
        "lifecycle_stage": str((raw or {}).get("lifecycle_stage") or "active"),
        "broken": broken,
    }
    changed = info != index.info or sig != index.info_sig
    index.info, index.info_sig, index.info_at = info, sig, now_ns
    return changed


def experiment_info(root: str, exp_id: str) -> dict[str, Any]:
    """``{"name", "lifecycle_stage", "broken"}`` of an experiment, without checking its runs."""
    key = (os.path.abspath(root), exp_id)
    index = _MEMORY.get(key)
    if index is None:
        index = ExperimentIndex()
        raw, broken = read_meta_file(os.path.join(root, exp_id, META_FILE))
        return {
            "name": None if raw is None or raw.get("name") is None else str(raw["name"]),
            "lifecycle_stage": str((raw or {}).get("lifecycle_stage") or "active"),
            "broken": broken,
        }
    _check_info(root, exp_id, index, time.time_ns())
    return dict(index.info)


def _can_skip_sweep(exp_dir: str, index: ExperimentIndex, now_ns: int) -> bool:
    """True if the last full sweep is recent and the experiment folder has not changed since."""
    if index.swept is None or now_ns - index.swept[1] > SWEEP_S * 1_000_000_000:
        return False
    mtime, read_at = index.swept
    if mtime >= read_at - RACY_NS:
        return False  # changed just before that sweep: a later change may carry the same mtime
    try:
        return os.stat(exp_dir).st_mtime_ns == mtime
    except OSError:
        return False


def load_experiment(root: str, exp_id: str, save: bool = True, only: str | None = None) -> ExperimentIndex:
    """The validated index of one experiment (``only``: check just that run folder)."""
    key = (os.path.abspath(root), exp_id)
    index = _MEMORY.get(key) or _load(root, exp_id)
    now_ns = time.time_ns()
    dirty = _check_info(root, exp_id, index, now_ns)
    exp_dir = os.path.join(root, exp_id)
    sweep = only is None and not _can_skip_sweep(exp_dir, index, now_ns)
    if sweep:
        try:
            # Read before listing: a change made after this moves the folder's mtime past it.
            swept: list[int] | None = [os.stat(exp_dir).st_mtime_ns, now_ns]
            names = os.listdir(exp_dir)
        except OSError:
            swept, names = None, []
        index.swept = swept  # saved with the summary when something else changed (not worth a write)
    elif only is None:
        # Only the runs not yet trusted at the last sweep; the rest cannot have changed (see above).
        settled_at_sweep = index.swept[1] - SETTLED_S * 1_000_000_000  # type: ignore[index]
        names = [n for n, m in index.d.items() if not (index.ok.get(n) and m < settled_at_sweep)]
    else:
        names = [only] if os.path.lexists(f"{exp_dir}/{only}") else []
    seen = set(names)
    stray: dict[str, str] = {}
    dirty_details: list[str] = []
    settled_before = now_ns - SETTLED_S * 1_000_000_000
    # Runs whose folder mtime is all we need to check: finished, settled, untouched since.
    trusted = (
        {n: m for n, m in index.d.items() if index.ok.get(n) and m < settled_before} if only is None else {}
    )
    lstat = os.lstat
    for name in names:
        if name == META_FILE or name[0] == "." or TMP_MARK in name:
            seen.discard(name)
            continue
        path = f"{exp_dir}/{name}"
        try:
            st = lstat(path)
        except OSError:
            seen.discard(name)
            if not sweep and only is None:
                index.swept = None  # gone without the experiment folder changing: sweep next time
            continue
        mode = st.st_mode & 0o170000
        if mode != 0o040000:  # not a folder: a symbolic link or a stray file
            seen.discard(name)
            if mode == 0o120000:
                stray[name] = f"{path}: a symbolic link (not followed: nothing outside the store is read)"
            else:
                stray[name] = f"{path}: a stray file in the experiment folder (not a run)"
            continue
        mtime = st.st_mtime_ns
        if trusted.get(name) == mtime:
            continue  # finished, settled and untouched: trusted without opening anything
        old = index.details.get(name)
        if old is None and name in index.d:
            old = _load_detail(root, exp_id, name)
        try:
            record, broken, detail = build_run(path, name, exp_id, old, now_ns, root, listing=only is None)
        except OSError as exc:  # vanished or unreadable while we looked: report it, keep listing
            record, broken, detail = None, f"{path}: {exc}", {"at": now_ns}
        before = (index.records.get(name), index.broken.get(name))
        settled = record is not None and record.stored_status in TERMINAL and not detail.get("r")
        if index.d.get(name) != mtime or index.ok.get(name) != settled:
            dirty = True  # the summary must remember it, or every later process re-checks the run
        index.d[name] = mtime
        index.ok[name] = settled
        index.details[name] = detail
        if record is None:
            index.records.pop(name, None)
            index.broken[name] = str(broken)
        else:
            index.broken.pop(name, None)
            if record != before[0]:  # an unchanged run keeps its record (and where it sits in memory)
                index.records[name] = record
        if (
            before != (index.records.get(name), index.broken.get(name))
            or old is None
            or old.get("x") != detail.get("x")
        ):
            dirty = True
            dirty_details.append(name)
    if sweep:
        for name in [n for n in index.d if n not in seen]:
            for table in (index.d, index.ok, index.records, index.broken, index.details):
                table.pop(name, None)  # type: ignore[attr-defined]
            dirty_details.append(name)
            dirty = True
        if stray != index.stray:
            index.stray, dirty = stray, True
    _MEMORY[key] = index
    summary = _save(root, exp_id, index, dirty_details) if dirty and save else None
    if summary is not None:
        # Settled runs' details are on disk now; keeping 10,000 of them in memory only slows the
        # garbage collector. They are read back if a run ever needs checking again.
        for name in [n for n in index.details if index.ok.get(n) and n != only]:
            del index.details[name]
        if len(dirty_details) >= COMPACT_AFTER:
            # Records built while checking thousands of runs sit scattered among the garbage of that
            # work, and every later search of this process paid for it in cache misses (measured: 10,000
            # runs searched in ~1.25-1.5x the time of a process that loaded the summary; a copy made
            # right here, while they live, was no better). So the next call reads the summary just
            # written back from disk, as a new process would (~0.15 s once), into memory freed by then.
            del _MEMORY[key]
    return index


def experiment_ids(root: str) -> list[str]:
    """Experiment folders of a store (digit names), in numeric order."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted((n for n in names if n.isdigit() and os.path.isdir(os.path.join(root, n))), key=int)


def current_status(record: RunRecord) -> str:
    """The status to show: the stored one, or CRASHED for a RUNNING run whose writers are gone."""
    if record.stored_status == "RUNNING":
        raw = {"start_time": iso_from_ms(record.start_time)}
        if heartbeat_state(record.run_dir, raw) == "crashed":
            return "CRASHED"
    return record.stored_status


def metric_summary(root: str, exp_id: str, name: str) -> dict[str, list[Any]]:
    """Per metric ``[ino, size, mtime, offset, count, last, min, max, last_step, skipped, mark, behind]``
    of one run, every file read to its end."""
    index = load_experiment(root, exp_id, only=name)
    detail = index.details.get(name) or {}
    return dict(detail.get("x", {}))
