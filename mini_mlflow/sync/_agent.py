"""The sync agent: one pass uploads what the server has not yet acknowledged of each selected run.

Per run: find or create the remote experiment (by name) and run (by the ``mini_mlflow.run_id`` tag, so
a rerun never creates a second remote run), then send params, tags, metric points read from each
metrics file after its acknowledged byte offset (whole lines only), results, artifacts, and finally the
status and end time, so a server showing a run FINISHED holds all of it.

The stages live in their own modules: ``_select`` (which runs) → ``_plan`` (what the cursor does not
hold) → ``_remote`` (the remote experiment and run) → ``_upload`` (batches, advancing the cursor); this
module runs them per run under the run's sync lock and collects the reports.

Results (``ctx.log_result``) are mapped by ``interop._convert.load_results``: a number becomes the metric
``<key>`` with one point (step 0, timestamp = the result file's modification time in ms), anything else
the tag ``mini_mlflow.result/<key>``. The cursor keeps a fingerprint of each value sent, so a rerun sends
nothing and a changed result (last write wins locally) is sent again: a new point at step 0 with the new
time, which MLflow then shows as the metric's latest value (the older point stays in its history).

The cursor advances only after the server acknowledged. A 4xx answer is reported for that run and the
pass goes on; auth failures and an unreachable server stop the pass.

Fault injection (tests only): ``_MINI_MLFLOW_SYNC_FAULT=<point>[:<n>]`` makes the process ``os._exit(70)``
at the n-th time it reaches ``after_create_run`` (remote run created, id not yet recorded) or
``after_batch`` (a metric batch acknowledged, cursor not yet advanced).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..interop._convert import load_run_view
from ..read._select import Target
from ..store._files import run_folder
from ..store._lock import try_lock_in
from . import _cursor
from ._client import MlflowRestClient
from ._errors import AuthError, SyncError, SyncInterrupted, UnreachableError
from ._lines import metric_files, size_of
from ._plan import plan
from ._remote import RemoteRuns
from ._summary import RunReport, SyncSummary
from ._upload import Uploader

FAULT_ENV = "_MINI_MLFLOW_SYNC_FAULT"


class SyncAgent:
    """Uploads local runs of the store at ``root`` to the MLflow server behind ``client``.

    Args:
        root: Store root.
        client: The REST client (its URL names the server in every cursor).
        coalesce: Send only the last value of a metric at each step (of what one pass reads).
        dry_run: Report what would be sent; contact no server and write nothing.
        on_progress: Called with the number of metric-file bytes acknowledged, as they are.
    """

    def __init__(
        self,
        root: str,
        client: MlflowRestClient,
        *,
        coalesce: bool = False,
        dry_run: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.client = client
        self.url = client.url
        self.coalesce = coalesce
        self.dry_run = dry_run
        self.on_progress = on_progress
        self.remote = RemoteRuns(client, self.root, on_created=lambda: self._fault("after_create_run"))
        fault = os.environ.get(FAULT_ENV, "")
        point, _, count = fault.partition(":")
        self._fault_point, self._fault_left = point, int(count or 1) if point else 0

    # -- passes ----------------------------------------------------------------------------------

    def sync(self, targets: Iterable[Target], *, run_slice: float | None = None) -> SyncSummary:
        """One pass over ``targets``; per-run errors are collected, fatal ones stop the pass.

        Args:
            targets: The runs, in order.
            run_slice: Seconds of metric upload each run gets in this pass (None: all it has). A
                watching agent passes one so that a run logged faster than the server takes it
                cannot starve the others; the rest waits for the next pass (``RunReport.unfinished``).
        """
        summary = SyncSummary(self.url)
        before = (self.client.bytes_sent, self.client.requests, self.client.retries)
        for target in targets:
            report = RunReport(os.path.basename(target.run_dir), target.experiment_name)
            summary.runs.append(report)
            try:
                if self.client.stop.is_set():
                    raise SyncInterrupted("sync interrupted")
                self.sync_run(target, report, run_slice=run_slice)
            except (AuthError, UnreachableError, SyncInterrupted) as exc:
                summary.fatal = str(exc)
                summary.fatal_kind = (
                    "auth"
                    if isinstance(exc, AuthError)
                    else "interrupted"
                    if isinstance(exc, SyncInterrupted)
                    else "unreachable"
                )
                report.skipped = f"stopped ({summary.fatal_kind})"
                break
            except SyncError as exc:
                report.errors.append(str(exc))
            except (ValueError, OSError) as exc:
                report.errors.append(f"{type(exc).__name__}: {exc}")
        summary.bytes_sent = self.client.bytes_sent - before[0]
        summary.requests = self.client.requests - before[1]
        summary.retries = self.client.retries - before[2]
        return summary

    def pending_bytes(self, targets: Iterable[Target]) -> int:
        """Metric-file bytes not yet acknowledged by this server (a progress bar's total)."""
        total = 0
        for target in targets:
            cursor = _cursor.load(target.run_dir, self.url)
            for key, path in metric_files(target.run_dir):
                total += max(0, size_of(path) - cursor.metrics.get(key, 0))
        return total

    def sync_run(self, target: Target, report: RunReport, *, run_slice: float | None = None) -> None:
        """Bring the server up to date with one run (under the run's per-server sync lock)."""
        if self.dry_run:
            self._sync_run(target, report, None)
            return
        # The lock file is made in .sync/ through real folders only: a planted .sync link is refused.
        with (
            run_folder(target.run_dir, _cursor.SYNC_DIR) as fd,
            try_lock_in(fd, _cursor.lock_name(self.url)) as held,
        ):
            if not held:
                report.skipped = "another sync of this run to this server is running"
                return
            self._sync_run(target, report, run_slice)

    def _sync_run(self, target: Target, report: RunReport, run_slice: float | None) -> None:
        deadline = None if run_slice is None else time.monotonic() + run_slice
        view = load_run_view(self.root, target.run_dir, target.experiment_name)
        report.run_id = view.run_id
        cursor = _cursor.load(target.run_dir, self.url)
        parent_remote = self.remote.parent_id(view)
        if parent_remote:
            view.tags["mlflow.parentRunId"] = parent_remote
        pending = plan(view, cursor, report)
        if self.dry_run:
            report.pending = pending.counts(cursor)
            return
        if cursor.remote_run_id and not pending.items() and cursor.status == pending.status:
            report.remote_run_id, report.up_to_date = cursor.remote_run_id, True
            return
        cursor.parent_pending = bool(view.parent_run_id and not parent_remote)
        run_id = self.remote.run(view, cursor)
        report.remote_run_id = run_id
        upload = Uploader(
            self.client,
            view.run_dir,
            run_id,
            cursor,
            report,
            on_progress=self.on_progress,
            on_batch=lambda: self._fault("after_batch"),
        )
        try:
            upload.params(pending.params)
            upload.tags(pending.tags)
            report.unfinished = not upload.metrics(pending.metrics, self.coalesce, deadline)
            upload.results(pending.results)
            upload.artifacts(pending.artifacts)
            # The final status only once every line read for this pass was acknowledged: a server
            # showing the run FINISHED holds all of it.
            if cursor.status != pending.status and not report.unfinished:
                body: dict[str, Any] = {"run_id": run_id, "status": view.status}
                if view.end_ms is not None:
                    body["end_time"] = view.end_ms
                self.client.post("runs/update", body)
                cursor.status = pending.status
                report.status = view.status
        finally:
            _cursor.save(view.run_dir, self.url, cursor)

    def _fault(self, point: str) -> None:
        if point == self._fault_point:
            self._fault_left -= 1
            if self._fault_left <= 0:
                os._exit(70)
