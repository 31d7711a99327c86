"""The seam between this process's live runs and its readers: points not yet on disk, runs ended here.

The write path registers its drain when it loads (``write/_writer``); every reader calls :func:`drain`
before it reads, so a process always reads its own writes, whichever face wrote them. When this process
ends a run that no other writer holds, the write path also reports it (:func:`note_ended`): the run's
files are final, so this process's index trusts the run at once instead of treating it as a stranger's
run that may still be flushing. The write path also hands over the read side's look at the run folder,
taken right then while its files are hot (one listing look: the index's ``_scan``), kept for this
process's first read of the experiment, which takes it instead of opening the run again if the folder
has not changed since (:func:`take_looked`): a sweep script that writes 10,000 runs and then searches
them does not read them again. The read side never imports the write path: where no run was ever
started in this process there is nothing pending, and each call is one check of a global.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

#: ``(store root, run id or None for every run of that store) -> None``, set by the write path.
_drain: Callable[[str, str | None], None] | None = None
#: ``(real store root, experiment id) -> {run folder: its mtime_ns right after this process ended it}``.
_ended: dict[tuple[str, str], dict[str, int]] = {}
_ended_count = 0
#: Ended runs remembered at most (the oldest are forgotten: their runs are then trusted by age).
MAX_ENDED = 1 << 20
#: ``(real store root, experiment id) -> {run folder: the read side's look at it, taken at its end}``.
_looked: dict[tuple[str, str], dict[str, Any]] = {}
_looked_count = 0
#: Runs end on any thread (Optuna trials with ``n_jobs>1``): the bookkeeping above changes under it.
_lock = threading.Lock()
#: Looks kept at most (~3 KB each for a run of 5 params and 3 metrics: ~30 MB): past that, runs ended
#: here are read by the first search as anyone's (they are still trusted at once).
MAX_LOOKED = 10_000


def register(drain_runs: Callable[[str, str | None], None]) -> None:
    """Install the write path's drain (one per process)."""
    global _drain
    _drain = drain_runs


def drain(root: str, run_id: str | None = None) -> None:
    """Write to disk what this process logged to run ``run_id`` (or to every run) of the store ``root``."""
    if _drain is not None:
        _drain(root, run_id)


def note_ended(run_dir: str, mtime_ns: int, looked: Any = None) -> None:
    """Run folder ``run_dir`` was ended by this process, no other writer holding it; after the end its
    mtime was ``mtime_ns`` (a later change to the folder moves it, and the run is checked again).
    ``looked``: the read side's look at the folder taken then (a ``read._scan.Scanned``), if any."""
    global _ended_count, _looked_count
    where, name = _where(run_dir)
    with _lock:
        if looked is not None and _looked_count < MAX_LOOKED:
            kept = _looked.setdefault(where, {})
            _looked_count += name not in kept
            kept[name] = looked
        runs = _ended.setdefault(where, {})
        if name not in runs:
            _ended_count += 1
        runs[name] = mtime_ns
        if _ended_count > MAX_ENDED:
            _ended.clear()
            _ended_count = 0


def wants_looks() -> bool:
    """Whether a look at an ended run would be kept (fewer than ``MAX_LOOKED`` are)."""
    return _looked_count < MAX_LOOKED


def _where(run_dir: str) -> tuple[tuple[str, str], str]:
    """``((real store root, experiment id), run folder name)`` of a run folder."""
    exp_dir, name = os.path.split(os.path.abspath(run_dir))
    root, exp_id = os.path.split(exp_dir)
    return (os.path.realpath(root), exp_id), name


def take_looked(root: str, experiment_id: str) -> dict[str, Any]:
    """The looks taken at the end of runs of an experiment (run folder → ``Scanned``), handed over once:
    the caller (the index) keeps what it uses."""
    global _looked_count
    if not _looked:
        return {}
    where = (os.path.realpath(root), experiment_id)
    with _lock:
        taken = _looked.pop(where, {})
        _looked_count -= len(taken)
    return taken


def ended_runs(root: str, experiment_id: str) -> dict[str, int]:
    """Runs of an experiment this process ended: run folder → the folder's mtime_ns after the end."""
    if not _ended:
        return {}
    return _ended.get((os.path.realpath(root), experiment_id), {})


def forget_run(run_dir: str) -> None:
    """Run folder ``run_dir`` is being written again by this process after its end (MLflow lets a
    client log to a finished run): it is no longer one whose files are final, nor is its look current.
    (Writes into params/, tags/ or a metric file do not move the run folder's mtime.)"""
    global _looked_count
    if not _ended:
        return
    where, name = _where(run_dir)
    with _lock:
        _ended.get(where, {}).pop(name, None)
        if _looked.get(where, {}).pop(name, None) is not None:
            _looked_count -= 1


def forget_ended() -> None:
    """Forget every ended run (a forked child: its parent ended them, and may resume them)."""
    global _ended_count, _looked_count, _lock
    _lock = threading.Lock()  # (after a fork, another thread of the parent may have held it)
    _ended.clear()
    _ended_count = 0
    _looked.clear()
    _looked_count = 0
