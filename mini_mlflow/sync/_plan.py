"""Planning a sync pass for one run: what the cursor says the server does not hold yet.

Params, tags and results are compared by fingerprint, metric files by acknowledged byte offset,
artifacts by ``[size, mtime_ns]``, and the status by ``[status, end_time]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..interop._convert import ResultItem, RunView, iter_artifacts, load_results
from ._cursor import Cursor, fingerprint
from ._lines import metric_files, size_of
from ._summary import RunReport


@dataclass
class Pending:
    """What one run still has to send to one server."""

    #: param key → text (conflicts the server already refused are left out, and reported).
    params: dict[str, str] = field(default_factory=dict)
    #: tag key → text.
    tags: dict[str, str] = field(default_factory=dict)
    #: ``(key, path, acknowledged offset, size seen now)`` of each metrics file that changed.
    metrics: list[tuple[str, str, int, int]] = field(default_factory=list)
    results: list[ResultItem] = field(default_factory=list)
    #: ``(relative path, absolute path, [size, mtime_ns])`` of each artifact not uploaded as it is.
    artifacts: list[tuple[str, str, list[int]]] = field(default_factory=list)
    #: ``[status, end_time_ms]`` as on disk now.
    status: list[Any] = field(default_factory=list)

    def items(self) -> bool:
        """True when anything besides the status is pending."""
        return bool(self.params or self.tags or self.metrics or self.results or self.artifacts)

    def counts(self, cursor: Cursor) -> dict[str, int]:
        """What a dry run reports (metric points as bytes of lines)."""
        return {
            "params": len(self.params),
            "tags": len(self.tags),
            "metric_bytes": sum(max(0, size - offset) for _, _, offset, size in self.metrics),
            "results": sum(item.kind != "skipped" for item in self.results),
            "artifacts": len(self.artifacts),
            "status": int(cursor.status != self.status),
        }


def plan(view: RunView, cursor: Cursor, report: RunReport) -> Pending:
    """Everything of ``view`` the cursor does not hold (``view.tags`` already carries the parent tag)."""
    return Pending(
        params=_pending_params(view, cursor, report),
        tags={k: v for k, v in view.tags.items() if cursor.tags.get(k) != fingerprint(v)},
        metrics=[
            (key, path, cursor.metrics.get(key, 0), size)
            for key, path in metric_files(view.run_dir)
            if (size := size_of(path)) != cursor.metrics.get(key, 0)
        ],
        results=[
            item
            for item in load_results(view.run_dir, view.metric_keys)
            if cursor.results.get(item.key) != fingerprint(item.fingerprint_text)
        ],
        artifacts=[
            (rel, path, sig)
            for rel, path in iter_artifacts(view.run_dir)
            if cursor.artifacts.get(rel) != (sig := signature(path))
        ],
        status=[view.status, view.end_ms],
    )


def _pending_params(view: RunView, cursor: Cursor, report: RunReport) -> dict[str, str]:
    out = {}
    for key, text in view.params.items():
        fp = fingerprint(text)
        if cursor.params.get(key) == fp:
            continue
        if cursor.conflicts.get(key) == fp:
            report.errors.append(
                f"param {key!r}: the server holds another value than the local {text!r} "
                "(params are write-once; the server's value was kept)"
            )
            continue
        out[key] = text
    return out


def signature(path: str) -> list[int]:
    """``[size, mtime_ns]`` of a file: an artifact is uploaded again when it changes."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]
