"""UI stage: the live stream (Server-Sent Events): new points of the charted metrics, new and changed runs.

One stream per page. The page says which series it shows and how many bytes of each file it already has
(``t=<run id>|<key>|<offset>``); the stream then sends only the points appended after that offset, read
through the store's fast reader from that byte on (never the whole history again, unlike a page that
polls and refetches). Runs of the watched experiments are compared once a second with what the stream
last sent, and only the rows that changed (new runs, new last values, status changes) travel. A run
resumed from a checkpoint while its page is open has its series reloaded (the resume superseded points
the page holds).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidInputError, NotFoundError
from ..read._reader import resolve_run
from ..read._records import RunRecord
from ..read._resumes import RESUMES_FILE
from ._answers import num, row_of
from ._series import read_tail

#: Seconds between looks at the charted metric files (a stat each; reads only when one grew).
POLL_S = 0.05
#: Seconds between comparisons of the watched experiments' runs with what was sent.
RUNS_EVERY_S = 1.0
#: A comment line this often, so a closed tab is noticed (the write fails) and proxies keep the stream.
KEEPALIVE_S = 15.0
#: A series that grew by more than this many bytes at once is reloaded by the page instead.
MAX_TAIL_BYTES = 8 << 20
MAX_TAILS = 500


@dataclass
class Tail:
    """One charted series and how far the page has it."""

    run_id: str
    key: str
    run_dir: str
    offset: int
    #: The run's ``resumes.json`` as first seen (inode, size, mtime; None without one).
    resumes: tuple[int, int, int] | None = None


def _resumes_sig(run_dir: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(os.path.join(run_dir, RESUMES_FILE))
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def parse_tails(root: str, specs: list[str]) -> list[Tail]:
    """``run|key|offset`` items of the stream's query (run ids may be unique prefixes)."""
    if len(specs) > MAX_TAILS:
        raise InvalidInputError(f"at most {MAX_TAILS} series per stream, got {len(specs)}")
    tails = []
    for spec in specs:
        ref, sep1, rest = spec.partition("|")
        key, sep2, offset = rest.rpartition("|")
        if not (sep1 and sep2) or not offset.isdigit():
            raise InvalidInputError(f"invalid series {spec!r}: expected <run id>|<metric key>|<byte offset>")
        _, rdir = resolve_run(root, ref)
        tails.append(Tail(os.path.basename(rdir), key, rdir, int(offset), _resumes_sig(rdir)))
    return tails


def _points_event(tail: Tail) -> dict[str, Any] | None:
    """The points appended to a tail's file since its offset (None if none), advancing the offset."""
    path = os.path.join(tail.run_dir, "metrics", tail.key + ".jsonl")
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    if size <= tail.offset:
        return None
    resumes = _resumes_sig(tail.run_dir)
    if size - tail.offset > MAX_TAIL_BYTES or resumes != tail.resumes:
        tail.offset, tail.resumes = size, resumes
        return {"run": tail.run_id, "key": tail.key, "reload": True}
    try:
        history, offset = read_tail(tail.run_dir, tail.key, tail.offset)
    except (OSError, NotFoundError, InvalidInputError):
        return None
    if offset == tail.offset:
        return None  # only a torn line so far: the rest of it comes with the next write
    tail.offset = offset
    return {
        "run": tail.run_id,
        "key": tail.key,
        "offset": offset,
        "steps": history.steps,
        "values": [num(v) for v in history.values],
        "timestamps": history.timestamps,
    }


def stream(
    send: Callable[[str, Any], None],
    tails: list[Tail],
    runs: Callable[[], list[RunRecord]] | None,
    stop: threading.Event,
) -> None:
    """Send events until the page leaves (``send`` raises OSError) or the server stops.

    Args:
        send: writes one event (name, JSON-ready data) and flushes it.
        tails: the charted series.
        runs: the watched experiments' current records (None: no table is shown).
        stop: set when the server shuts down.
    """
    digests: dict[str, tuple[int, str]] = {}
    if runs is not None:
        digests = {r.run_id: (id(r), r.status) for r in runs()}
    send("hello", {"tails": len(tails), "runs": len(digests)})
    next_runs = time.monotonic() + RUNS_EVERY_S
    next_keepalive = time.monotonic() + KEEPALIVE_S
    while not stop.wait(POLL_S):
        for tail in tails:
            event = _points_event(tail)
            if event is not None:
                send("points", event)
        now = time.monotonic()
        if runs is not None and now >= next_runs:
            next_runs = now + RUNS_EVERY_S
            current = runs()
            changed = []
            seen = set()
            for r in current:
                seen.add(r.run_id)
                digest = (id(r), r.status)
                if digests.get(r.run_id) != digest:
                    digests[r.run_id] = digest
                    changed.append(row_of(r))
            gone = [run_id for run_id in digests if run_id not in seen]
            for run_id in gone:
                del digests[run_id]
            if changed or gone:
                send("runs", {"changed": changed, "gone": gone})
        if now >= next_keepalive:
            next_keepalive = now + KEEPALIVE_S
            send("", None)
