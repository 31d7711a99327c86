"""Derived run index: per-experiment run records, checked against the files on every read.

The files stay the source of truth. ``<root>/.index/`` only caches what is slow to recompute: per
experiment a columnar file and a small delta (``_index_files``, ``_columns``), keyed by file-system
signatures (inode, size, mtime).

A full sweep ``stat``-s every run folder once. Replacing meta.yaml (status, lifecycle) or a heartbeat
changes the folder's mtime, which triggers a re-check of that run. Runs that are not finished, or
changed in the last ``SETTLED_S`` seconds, are checked deeply on every read; a grown metric file is read
only from where the last read stopped (metric files are append-only; a fingerprint of the bytes already
read tells a rewritten file), and a listing reads just the last point of a file it has not read or of a
big backlog. An mtime within ``RACY_NS`` of the moment it was read is not trusted (file-system clocks are
coarse), so that part is re-read. Runs this process ended itself, with no other writer, are settled at
once (``store._pending``): the writing process does not wait ``SETTLED_S`` to trust its own runs, and
its first read takes the look at each such run taken at its end (while its folder is unchanged) instead
of opening the run again.

Between full sweeps (at most ``SWEEP_S`` apart) a read skips the runs that were finished and settled at
the last sweep, as long as the experiment folder's mtime has not moved: adding, removing or renaming a
run folder moves it, and so does every meta.yaml replaced through ``store._operations.update_run_meta``
(which touches the experiment folder after the rename). A meta.yaml replaced behind mini_mlflow's back
is seen at the next sweep.
"""

from __future__ import annotations

import errno
import gc
import os
import stat
import time
from array import array
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..store import _pending
from ..store._layout import META_FILE, TMP_MARK, iso_from_ms
from ..store._meta import read_meta_file
from . import _index_files
from ._columns import Builder, IndexFormatError
from ._folder_stat import folder_mtimes
from ._index_files import add_entry, add_scanned, builder_of
from ._index_state import INDEX_DIR, ExperimentIndex
from ._reader import heartbeat_state
from ._records import RunRecord
from ._scan import RACY_NS, Old, Scanned, scan_run, sig_of
from ._scan_workers import Failed, looks
from ._table import Main

__all__ = ["INDEX_DIR", "ExperimentIndex"]

#: A finished run whose folder changed less than this long ago is still checked deeply (a second
#: process sharing the run may still be flushing; its heartbeat touches the folder while it lives).
SETTLED_S = 30
#: Seconds at most between full sweeps (a ``stat`` of every run folder) of one experiment.
SWEEP_S = 5
#: A read that (re-)checks at least this many runs writes a new columnar file rather than a delta.
COMPACT_AFTER = 1000
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
_S = 1_000_000_000

_MEMORY: dict[tuple[str, str], ExperimentIndex] = {}


def _load(root: str, exp_id: str) -> ExperimentIndex:
    """The index as its files hold it, not checked against the runs (what a new process starts from)."""
    return _index_files.load(root, exp_id)


def _load_detail(root: str, exp_id: str, name: str) -> dict[str, Any] | None:
    """A run's detail as the index files hold it (None if they hold none)."""
    return _load(root, exp_id).detail(name)


def _can_skip_sweep(exp_fd: int | None, index: ExperimentIndex, now_ns: int) -> bool:
    """True if the last full sweep is recent and the experiment folder has not changed since."""
    if exp_fd is None or index.swept is None or now_ns - index.swept[1] > SWEEP_S * _S:
        return False
    mtime, read_at = index.swept
    if mtime >= read_at - racy_ns(mtime):
        return False  # changed in the clock tick of that sweep: a later change may carry the same mtime
    try:
        return os.fstat(exp_fd).st_mtime_ns == mtime
    except OSError:
        return False


#: How long after a run ended here its folder's mtime is still racy, on a file system that stamps
#: times finer than a millisecond (ext4, XFS, btrfs, tmpfs: the kernel's clock ticks every few ms).
FINE_RACY_NS = 50_000_000


def racy_ns(mtime_ns: int) -> int:
    """How long an mtime may hide a later change made in the same clock tick: ``FINE_RACY_NS`` when
    the mtime has digits below the millisecond (a fine clock), ``RACY_NS`` when it has none (a file
    system with coarse times, or, one time in a thousand, a fine one by chance: the safe side)."""
    return FINE_RACY_NS if mtime_ns % 1_000_000 else RACY_NS


class _Trust:
    """Which known runs a read may take as they are: finished, and unchanged since long enough."""

    def __init__(self, root: str, exp_id: str, now_ns: int, take_looks: bool = True) -> None:
        self.now_ns = now_ns
        self.settled_before = now_ns - SETTLED_S * _S
        #: Runs this process ended (no other writer): folder name → the folder's mtime after the end.
        self.ended = _pending.ended_runs(root, exp_id)
        #: Looks at runs ended here taken at their end (``_pending``): used for runs the index does not
        #: know yet, while their folder is as it was then.
        self.looked = _pending.take_looked(root, exp_id) if take_looks else {}

    def ended_here(self, name: str, d: int) -> bool:
        """Ended by this process and untouched since (past the clock tick of that end)."""
        ended = self.ended.get(name)
        return ended == d and ended < self.now_ns - min(racy_ns(ended), RACY_NS)

    def looked_at_end(self, name: str, exp_fd: int) -> Scanned | None:
        """The look taken when this process ended run ``name``, if its folder has not changed since."""
        looked = self.looked.pop(name, None)
        if looked is None or not self.ended_here(name, looked.d):
            return None
        try:
            st = os.stat(name, dir_fd=exp_fd, follow_symlinks=False)
        except OSError:
            return None
        return looked if st.st_mtime_ns == looked.d and stat.S_ISDIR(st.st_mode) else None

    def settled(self, name: str, d: int) -> bool:
        """A finished run whose folder mtime is ``d``: settled by age, or ended here and not touched."""
        return d < self.settled_before or self.ended_here(name, d)

    def ok(self, name: str, scanned: Scanned) -> bool:
        """Whether a look's result may be trusted later on its folder mtime alone."""
        if scanned.fields is None or scanned.fields[1] not in TERMINAL:
            return False
        # Otherwise: nothing changed in the last clock ticks, or we wrote its files ourselves.
        return not scanned.detail.get("r") or self.ended_here(name, scanned.d)


def _unsettled(index: ExperimentIndex, trust: _Trust) -> list[str]:
    """Runs a read between sweeps checks: not settled at the last sweep (or broken)."""
    assert index.swept is not None
    threshold = index.swept[1] - SETTLED_S * _S
    main = index.main
    if index.unsettled is None or index.unsettled[0] != threshold:
        index.unsettled = (threshold, _unsettled_positions(main.d, main.ok, threshold))
    names = main.names
    ok, d = main.ok, main.d
    out = [
        names[r]
        for r in index.unsettled[1]
        if names[r] not in index.delta and not (ok[r] and trust.ended_here(names[r], d[r]))
    ]
    for name, entry in index.delta.items():
        if entry is not None and not (entry.ok and (entry.d < threshold or trust.ended_here(name, entry.d))):
            out.append(name)
    return out + list(index.broken)


def _all_settled(d: array[int], ok: bytes, before: int) -> bool:
    """Whether every stored run is finished and settled, its folder mtime older than ``before`` (the
    usual store, told by C loops without a row in Python)."""
    return b"\0" not in ok and (not d or max(d) < before)


def _unsettled_positions(d: array[int], ok: bytes, threshold: int) -> list[int]:
    """Rows not finished and settled (folder mtime older than ``threshold``). The usual store has
    none, told by C loops (~1 ms for 100,000 rows; the row loop took ~9 ms of each new process's read)."""
    if _all_settled(d, ok, threshold):
        return []
    return [r for r in range(len(d)) if not ok[r] or d[r] >= threshold]


def forget(root: str, exp_id: str) -> None:
    """Drop an experiment's index from memory and disk: the next read rebuilds it from the runs."""
    index = _MEMORY.pop((os.path.abspath(root), exp_id), None)
    if index is not None:
        index.main.close()
    _index_files.discard(root, exp_id)


def forget_damaged(root: str) -> None:
    """Forget every index of the store whose columnar file turned out damaged while it was read."""
    top = os.path.abspath(root)
    for (where, exp_id), index in list(_MEMORY.items()):
        if where == top and index.main.file is not None and index.main.file.damaged:
            forget(root, exp_id)


_T = TypeVar("_T")


def recovering(root: str, read: Callable[[], _T]) -> _T:
    """``read()``; if it met a damaged index file, that index is rebuilt and ``read()`` runs again.

    Files are checked (CRC-32) as they are read, so damage shows up mid-search; the index is derived, so
    the answer is then computed from the run folders, never refused.
    """
    try:
        return read()
    except IndexFormatError:
        forget_damaged(root)
        return read()


def load_experiment(root: str, exp_id: str, save: bool = True, only: str | None = None) -> ExperimentIndex:
    """The validated index of one experiment (``only``: check just that run folder, fully)."""
    try:
        return _load_experiment(root, exp_id, save, only)
    except IndexFormatError:  # the files were damaged: start over from the run folders
        forget(root, exp_id)
        return _load_experiment(root, exp_id, save, only)


def _load_experiment(root: str, exp_id: str, save: bool, only: str | None) -> ExperimentIndex:
    key = (os.path.abspath(root), exp_id)
    index = _MEMORY.get(key) or _load(root, exp_id)
    now_ns = time.time_ns()
    dirty = check_info(root, index, now_ns)
    exp_dir = os.path.join(root, exp_id)
    try:
        exp_fd: int | None = os.open(exp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        exp_fd = None
    try:
        trust = _Trust(root, exp_id, now_ns, take_looks=only is None)
        sweep = only is None and not _can_skip_sweep(exp_fd, index, now_ns)
        removed: list[str] = []
        if sweep:
            names, removed, stray = _sweep(index, exp_fd, exp_dir, now_ns, trust)
            if stray != index.stray:
                index.stray, dirty = stray, True
            if index.saved_swept is None or now_ns - index.saved_swept[1] > SWEEP_S * _S:
                dirty = True  # record the sweep, so the next process may skip one
        elif only is None:
            names = _unsettled(index, trust)
        else:
            names = [only] if exp_fd is not None and _exists(only, exp_fd) else []
        for name in removed:
            index.remove(name)
            dirty = True
        if exp_fd is not None:
            dirty = _check(root, index, exp_fd, names, now_ns, trust, only, save) or dirty
    finally:
        if exp_fd is not None:
            os.close(exp_fd)
    _MEMORY[key] = index
    if dirty and save:
        builder = builder_of(index, set()) if index.needs_compaction(COMPACT_AFTER) else None
        _index_files.save(root, index, builder)
    return index


def _exists(name: str, exp_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=exp_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _sweep(
    index: ExperimentIndex, exp_fd: int | None, exp_dir: str, now_ns: int, trust: _Trust
) -> tuple[list[str], list[str], dict[str, str]]:
    """A ``stat`` of every run folder the index knows: ``(runs to check, runs gone, stray entries)``."""
    if exp_fd is None:
        index.swept = None
        return [], [*index.names(), *index.broken], {}
    try:
        mtime = os.fstat(exp_fd).st_mtime_ns
        unchanged = (
            index.swept is not None and index.swept[0] == mtime and mtime < index.swept[1] - racy_ns(mtime)
        )
        # The folder's entries are what the index knows unless its mtime moved (an entry added or removed)
        listed = None if unchanged else _entry_types(exp_fd)
        index.swept = [mtime, now_ns]  # read before the names: a change after this moves the mtime past it
    except OSError:
        index.swept = None
        return [], [*index.names(), *index.broken], {}
    main, delta = index.main, index.delta
    # The usual run, in one tight pass (100,000 of them cost little more than their ``lstat``): stored
    # in the columnar file, finished, settled by age, its folder untouched. Any other goes on below.
    rest = _unsettled_rows(main, delta, folder_mtimes(main.names, exp_fd), trust.settled_before)
    rest += [name for name, entry in delta.items() if entry is not None]
    rest += [*index.broken, *index.stray]
    if listed is not None:  # and what the listing holds that the columnar file does not
        stored = main.positions()
        rest += [name for name in listed if name not in stored or name in delta]
    rest = list(dict.fromkeys(rest))
    check: list[str] = []
    seen: set[str] = set()
    stray: dict[str, str] = {}
    lstat = os.stat
    for name in rest:
        if name == META_FILE or name[0] == "." or TMP_MARK in name:
            continue
        known = index.state(name)
        if known is None and listed is not None and listed.get(name, False):
            seen.add(name)  # a folder the index does not know, as the listing says: looked at anyway
            check.append(name)
            continue
        try:
            st = lstat(name, dir_fd=exp_fd, follow_symlinks=False)
        except OSError:
            continue
        mode = st.st_mode & 0o170000
        if mode != stat.S_IFDIR:  # a symbolic link or a stray file: never a run
            path = f"{exp_dir}/{name}"
            if mode == stat.S_IFLNK:
                stray[name] = f"{path}: a symbolic link (not followed: nothing outside the store is read)"
            else:
                stray[name] = f"{path}: a stray file in the experiment folder (not a run)"
            continue
        seen.add(name)
        if known is not None and known[1] and known[0] == st.st_mtime_ns and trust.settled(name, known[0]):
            continue  # finished, settled and untouched: trusted without opening anything
        check.append(name)
    # Only a run that went on to ``rest`` can be gone: the others were just found in place.
    known_runs = (name for name in [*rest, *index.broken] if name not in seen)
    gone = list(dict.fromkeys(n for n in known_runs if n in index.broken or index.state(n) is not None))
    return check, gone, stray


def _unsettled_rows(main: Main, delta: dict[str, Any], mtimes: list[int], settled_before: int) -> list[str]:
    """Stored runs a sweep looks at further: not finished and settled by age at an unchanged mtime
    (ended here, changed, gone, broken). Runs the delta holds are left to the delta's own pass."""
    d_col, ok_col, names = main.d, main.ok, main.names
    if _all_settled(d_col, ok_col, settled_before) and array("q", mtimes) == d_col:
        return []  # the usual sweep: nothing moved, all finished and settled (C loops, no row in Python)
    out = [
        names[row]
        for row, (now, was, ok) in enumerate(zip(mtimes, d_col, ok_col, strict=True))
        if not (ok and now == was and was < settled_before)
    ]
    if delta:
        out = [name for name in out if name not in delta]
    return out


def _entry_types(exp_fd: int) -> dict[str, bool]:
    """The experiment folder's entries, each with whether the listing says it is a folder (not a
    link): a run folder the index does not know then costs no ``stat`` of its own (a look follows)."""
    with os.scandir(exp_fd) as entries:
        return {entry.name: entry.is_dir(follow_symlinks=False) for entry in entries}


def _check(
    root: str,
    index: ExperimentIndex,
    exp_fd: int,
    names: list[str],
    now_ns: int,
    trust: _Trust,
    only: str | None,
    save_index: bool,
) -> bool:
    """Look at each run of ``names``; True if the index changed. Many at once make a new file."""
    builder = builder_of(index, set(names)) if len(names) >= COMPACT_AFTER and only is None else None
    dirty = builder is not None
    collect = builder is not None and gc.isenabled()
    if collect:  # thousands of runs read, then packed: nothing they allocate is garbage until the
        gc.disable()  # new file is written (collections over their objects cost ~0.7 s of 100,000)
    try:
        dirty = _check_each(root, index, exp_fd, names, now_ns, trust, only, builder) or dirty
        if builder is not None:
            _index_files.save(root, index, builder, write=save_index)
            return False
    finally:
        if collect:
            gc.enable()
    return dirty


def _check_each(
    root: str,
    index: ExperimentIndex,
    exp_fd: int,
    names: list[str],
    now_ns: int,
    trust: _Trust,
    only: str | None,
    builder: Builder | None,
) -> bool:
    dirty = False
    for name, old, scanned in _looks(root, index, exp_fd, names, now_ns, only, builder, trust):
        if isinstance(scanned, Failed):
            if scanned.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                index.swept = None  # gone or replaced while we looked: the next read sweeps
                if builder is not None and old is not None and name in index.delta:
                    add_entry(builder, name, index.delta[name])  # type: ignore[arg-type]
                continue
            scanned = Scanned(None, f"{index.exp_dir}/{name}: {scanned}", {}, {}, {}, [], {"at": now_ns}, -1)
        ok = trust.ok(name, scanned)
        if builder is not None and scanned.fields is not None:
            add_scanned(builder, name, scanned, ok)
            index.broken.pop(name, None)
            index.broken_d.pop(name, None)
            continue
        if builder is not None:
            index.delta.pop(name, None)
        dirty = index.put(name, scanned, ok) or dirty
    return dirty


def _looks(
    root: str,
    index: ExperimentIndex,
    exp_fd: int,
    names: list[str],
    now_ns: int,
    only: str | None,
    builder: Builder | None,
    trust: _Trust,
) -> Iterator[tuple[str, Old | None, Scanned | Failed]]:
    """``(name, how the index saw it, what a look found now)`` for each of ``names``. A run this process
    ended is taken as it was looked at then, if its folder has not changed since; a new columnar
    file's other runs the index does not know are looked at by ``_scan_workers`` (in parallel when many)."""
    unknown: list[str] = []
    for name in names:
        old = index.old(name)
        if old is None and trust.looked:
            looked = trust.looked_at_end(name, exp_fd)
            if looked is not None:
                yield name, None, looked
                continue
        if builder is not None and old is None:
            unknown.append(name)
            continue
        try:
            yield name, old, scan_run(exp_fd, index.exp_dir, name, now_ns, old, root, listing=only is None)
        except OSError as exc:
            yield name, old, Failed((exc.errno or 0, str(exc)))
    for name, scanned in looks(exp_fd, index.exp_dir, unknown, now_ns, root):
        yield name, None, scanned


# -- experiments and runs -----------------------------------------------------------------------------


def _read_info(path: str) -> dict[str, Any]:
    """``{"name", "lifecycle_stage", "broken"}`` from an experiment's meta.yaml at ``path``."""
    raw, broken = read_meta_file(path)
    return {
        "name": None if raw is None or raw.get("name") is None else str(raw["name"]),
        "lifecycle_stage": str((raw or {}).get("lifecycle_stage") or "active"),
        "broken": broken,
    }


def check_info(root: str, index: ExperimentIndex, now_ns: int) -> bool:
    """Re-read the experiment's meta.yaml if it changed; True if what the index holds changed."""
    path = os.path.join(root, index.exp_id, META_FILE)
    sig = sig_of(path)
    if sig is not None and sig == index.info_sig and sig[2] < index.info_at - RACY_NS:
        return False
    info = _read_info(path)
    changed = info != index.info or sig != index.info_sig
    index.info, index.info_sig, index.info_at = info, sig, now_ns
    return changed


def experiment_info(root: str, exp_id: str) -> dict[str, Any]:
    """``{"name", "lifecycle_stage", "broken"}`` of an experiment, without checking its runs."""
    index = _MEMORY.get((os.path.abspath(root), exp_id))
    if index is None:
        return _read_info(os.path.join(root, exp_id, META_FILE))
    check_info(root, index, time.time_ns())
    return dict(index.info)


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
    """Per metric ``[ino, size, mtime, offset, count, last, min, max, last_step, skipped, mark, behind,
    tail_bad]`` of one run, every file read to its end."""
    index = load_experiment(root, exp_id, only=name)
    detail = index.detail(name) or {}
    return dict(detail.get("x", {}))
