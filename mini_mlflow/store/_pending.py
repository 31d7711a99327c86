"""The seam between this process's live runs and its readers: points logged here and not yet on disk.

The write path registers its drain when it loads (``write/_writer``); every reader calls :func:`drain`
before it reads, so a process always reads its own writes, whichever face wrote them. The read side
never imports the write path: where no run was ever started in this process there is nothing pending,
and ``drain`` is one check of a global.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``(store root, run id or None for every run of that store) -> None``, set by the write path.
_drain: Callable[[str, str | None], None] | None = None


def register(drain_runs: Callable[[str, str | None], None]) -> None:
    """Install the write path's drain (one per process)."""
    global _drain
    _drain = drain_runs


def drain(root: str, run_id: str | None = None) -> None:
    """Write to disk what this process logged to run ``run_id`` (or to every run) of the store ``root``."""
    if _drain is not None:
        _drain(root, run_id)
