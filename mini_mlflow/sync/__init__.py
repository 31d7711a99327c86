"""Sync to a real MLflow tracking server: cursor (acknowledged offsets) → agent (passes) → client (REST).

httpx is imported only when a client is made, so importing this package is cheap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from ..read._select import Target, select_runs
from ._agent import FAULT_ENV, SyncAgent
from ._client import Credentials, MlflowRestClient
from ._errors import AuthError, ServerError, SyncError, SyncInterrupted, UnreachableError
from ._summary import RunReport, SyncSummary
from ._upload import WATCH_RUN_SLICE

__all__ = [
    "FAULT_ENV",
    "AuthError",
    "Credentials",
    "MlflowRestClient",
    "RunReport",
    "ServerError",
    "SyncAgent",
    "SyncError",
    "SyncInterrupted",
    "SyncSummary",
    "Target",
    "UnreachableError",
    "select_runs",
    "sync",
    "watch",
]


def sync(
    url: str,
    root: str | os.PathLike[str] = "mlruns",
    run_ids: Sequence[str] = (),
    experiments: Sequence[str] = (),
    all_runs: bool = False,
    *,
    coalesce: bool = False,
    client: MlflowRestClient | None = None,
) -> SyncSummary:
    """Upload the selected runs to the server at ``url`` once; see :class:`SyncAgent`."""
    own = client is None
    client = client or MlflowRestClient(url)
    try:
        targets = select_runs(os.fspath(root), run_ids, experiments, all_runs)
        return SyncAgent(os.fspath(root), client, coalesce=coalesce).sync(targets)
    finally:
        if own:
            client.close()


def watch(
    agent: SyncAgent,
    run_ids: Sequence[str] = (),
    experiments: Sequence[str] = (),
    all_runs: bool = False,
    *,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    on_pass: object = None,
    run_slice: float | None = WATCH_RUN_SLICE,
) -> SyncSummary:
    """Run passes every ``interval`` seconds until ``stop`` is set (new runs of the selection join).

    Bad credentials end the watch; an unreachable server is retried on the next pass. Each run gets
    at most ``run_slice`` seconds of metric upload per pass, so every run keeps moving even when one
    is logged faster than the server takes it.
    ``on_pass`` (a callable taking the pass's :class:`SyncSummary`) sees every pass.
    """
    stop = stop or agent.client.stop
    total = SyncSummary(agent.url)
    by_run: dict[str, RunReport] = {}
    while not stop.is_set():
        targets = select_runs(agent.root, run_ids, experiments, all_runs)
        summary = agent.sync(targets, run_slice=run_slice)
        if callable(on_pass):
            on_pass(summary)
        for report in summary.runs:
            merged = by_run.setdefault(report.run_id, RunReport(report.run_id, report.experiment))
            for name in ("points", "params", "tags", "results", "artifacts", "skipped_lines"):
                setattr(merged, name, getattr(merged, name) + getattr(report, name))
            merged.skipped_results = [*merged.skipped_results, *report.skipped_results]
            merged.remote_run_id = report.remote_run_id or merged.remote_run_id
            merged.status = report.status or merged.status
            merged.unfinished = report.unfinished
            merged.errors = [*merged.errors, *(e for e in report.errors if e not in merged.errors)]
        total.bytes_sent += summary.bytes_sent
        total.requests += summary.requests
        total.retries += summary.retries
        if summary.fatal_kind == "interrupted":  # stopped: how a watch ends, not an error
            break
        if summary.fatal_kind == "auth":
            total.fatal, total.fatal_kind = summary.fatal, summary.fatal_kind
            break
        stop.wait(interval)
    total.runs = list(by_run.values())
    return total
