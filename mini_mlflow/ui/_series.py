"""UI stage: metric histories held in memory between requests, read through the store's fast reader.

A chart asks for the same history again on every zoom, smoothing change or reload. The first read goes
through ``read._metric_cache.read_metric`` (the fast columnar parse, and the on-disk binary cache for big
files); later reads check the file's inode and size and parse only the bytes appended since (metric
files are append-only). Entries are never changed in place: a grown history is a new object, so a
request that holds the old one keeps a consistent snapshot without a lock. The least recently used
histories are dropped past a budget of points. A run resumed from a checkpoint (``resumes.json``) is
charted without the points its resume superseded, as ``get_metric_history`` returns it.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import NotFoundError
from ..read._metric_cache import read_metric
from ..read._metric_parse import MetricHistory
from ..read._resumes import drop_superseded, load_resumes
from ..store._files import READ_FLAGS, SymlinkRefusedError, check_inside
from ..store._layout import METRIC_SUFFIX, validate_key
from ._downsample import in_order, x_values

#: Points kept in memory across every cached history (a 1,000,000-point metric is ~100 MB as Python
#: lists of three columns, so a few big ones at most).
DEFAULT_BUDGET = 3_000_000


@dataclass
class Entry:
    """One metric history as read so far, and the x/y views derived from it."""

    ino: int
    size: int
    mtime_ns: int
    consumed: int
    #: Every point of the file so far (a tail read appends to it).
    raw: MetricHistory
    #: The run's resume records when the entry was made (a change rebuilds the shown history).
    resumes: list[dict[str, Any]]
    #: What charts show: ``raw`` without the points a resume superseded.
    history: MetricHistory
    views: dict[tuple[str, int | None], tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    #: Chart answers already computed from this history (the same chart asked again: a reload, another
    #: tab, twenty clients), by their query; a grown history is a new entry, so none goes stale.
    answers: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)


def metric_path(run_dir: str, key: str) -> str:
    """The file of metric ``key`` of a run (the key checked against the format's rules first)."""
    validate_key(key, "metric key")
    return os.path.join(run_dir, "metrics", key + METRIC_SUFFIX)


def open_metric(run_dir: str, key: str) -> int:
    """A read descriptor of a metric file, refusing any symbolic link on the way (nothing outside the run)."""
    path = metric_path(run_dir, key)
    try:
        check_inside(run_dir, path)
        return os.open(path, READ_FLAGS)
    except FileNotFoundError:
        raise NotFoundError(f"run {os.path.basename(run_dir)} has no metric {key!r}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkRefusedError(path) from None
        raise


def read_tail(run_dir: str, key: str, offset: int) -> tuple[MetricHistory, int]:
    """The whole lines of a metric file from byte ``offset`` on, and the offset after them."""
    fd = open_metric(run_dir, key)
    try:
        history, consumed, _ = read_metric(fd, key, None, None, offset=offset)
    finally:
        os.close(fd)
    return history, offset + consumed


class SeriesCache:
    """Histories of recently charted metrics, refreshed from the bytes appended since the last read."""

    def __init__(self, root: str, budget: int = DEFAULT_BUDGET) -> None:
        self.root = root
        self.budget = budget
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, run_dir: str, run_id: str, key: str) -> Entry:
        """The history of ``key`` of the run, as complete as the file is now.

        Two requests for the same history (a run page's summary and its chart arrive together) read
        the file once: the second waits for the first and takes its result.
        """
        with self._lock:
            loading = self._loading.setdefault((run_id, key), threading.Lock())
        with loading:
            return self._get(run_dir, run_id, key)

    def _get(self, run_dir: str, run_id: str, key: str) -> Entry:
        fd = open_metric(run_dir, key)
        try:
            st = os.fstat(fd)
            # Read before the file's size is compared: a resume records its counts before the
            # resumed attempt appends, so a stale record is never paired with newer points.
            resumes = load_resumes(run_dir)
            with self._lock:
                old = self._entries.get((run_id, key))
                if old is not None:
                    self._entries.move_to_end((run_id, key))
            if old is not None and old.ino == st.st_ino and st.st_size >= old.consumed:
                if st.st_size == old.size and st.st_mtime_ns == old.mtime_ns and resumes == old.resumes:
                    return old
                tail, consumed, _ = read_metric(fd, key, None, None, offset=old.consumed)
                h = old.raw
                raw = MetricHistory(
                    key,
                    h.steps + tail.steps,
                    h.values + tail.values,
                    h.timestamps + tail.timestamps,
                    h.skipped_lines + tail.skipped_lines,
                )
                consumed += old.consumed
            else:
                raw, consumed, _ = read_metric(fd, key, self.root, run_id)
        finally:
            os.close(fd)
        shown = drop_superseded(raw, resumes) if resumes else raw
        entry = Entry(st.st_ino, st.st_size, st.st_mtime_ns, consumed, raw, resumes, shown)
        with self._lock:
            self._entries[(run_id, key)] = entry
            self._entries.move_to_end((run_id, key))
            total = sum(len(e.raw) for e in self._entries.values())
            while total > self.budget and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= len(dropped.raw)
        return entry


def view(entry: Entry, mode: str, start_ms: int | None) -> tuple[Sequence[float], Sequence[float]]:
    """``(x, y)`` of a history for an x mode, sorted by x (computed once per entry and mode)."""
    slot = (mode, start_ms if mode == "relative" else None)
    found = entry.views.get(slot)
    if found is None:
        h = entry.history
        found = in_order(x_values(h.steps, h.timestamps, mode, start_ms), h.values)
        entry.views[slot] = found
    return found
