"""The seam between this process's live runs and its readers: points not yet on disk, runs ended here.

The write path registers its drain when it loads (``write/_writer``); every reader calls :func:`drain`
before it reads, so a process always reads its own writes, whichever face wrote them. When this process
ends a run that no other writer holds, the write path also reports it (:func:`note_ended`): the run's
files are final, so this process's index trusts the run at once instead of treating it as a stranger's
run that may still be flushing. The read side never imports the write path: where no run was ever
started in this process there is nothing pending, and each call is one check of a global.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: ``(store root, run id or None for every run of that store) -> None``, set by the write path.
_drain: Callable[[str, str | None], None] | None = None
#: ``(real store root, experiment id) -> {run folder: its mtime_ns right after this process ended it}``.
_ended: dict[tuple[str, str], dict[str, int]] = {}
_ended_count = 0
#: Ended runs remembered at most (the oldest are forgotten: their runs are then trusted by age).
MAX_ENDED = 1 << 20


def register(drain_runs: Callable[[str, str | None], None]) -> None:
    """Install the write path's drain (one per process)."""
    global _drain
    _drain = drain_runs


def drain(root: str, run_id: str | None = None) -> None:
    """Write to disk what this process logged to run ``run_id`` (or to every run) of the store ``root``."""
    if _drain is not None:
        _drain(root, run_id)


def note_ended(run_dir: str, mtime_ns: int) -> None:
    """Run folder ``run_dir`` was ended by this process, no other writer holding it; after the end its
    mtime was ``mtime_ns`` (a later change to the folder moves it, and the run is checked again)."""
    global _ended_count
    exp_dir, name = os.path.split(os.path.abspath(run_dir))
    root, exp_id = os.path.split(exp_dir)
    runs = _ended.setdefault((os.path.realpath(root), exp_id), {})
    if name not in runs:
        _ended_count += 1
    runs[name] = mtime_ns
    if _ended_count > MAX_ENDED:
        _ended.clear()
        _ended_count = 0


def ended_runs(root: str, experiment_id: str) -> dict[str, int]:
    """Runs of an experiment this process ended: run folder → the folder's mtime_ns after the end."""
    if not _ended:
        return {}
    return _ended.get((os.path.realpath(root), experiment_id), {})


def forget_ended() -> None:
    """Forget every ended run (a forked child: its parent ended them, and may resume them)."""
    global _ended_count
    _ended.clear()
    _ended_count = 0
