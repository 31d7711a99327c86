"""The sync agent: one pass uploads what the server has not yet acknowledged of each selected run.

Per run: find or create the remote experiment (by name) and run (by the ``mini_mlflow.run_id`` tag, so
a rerun never creates a second remote run), then send params, tags, metric points read from each
metrics file after its acknowledged byte offset (whole lines only), results, artifacts, and finally the
status and end time, so a server showing a run FINISHED holds all of it.

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

from .. import _store
from ..interop._convert import (
    LOCAL_RUN_ID_TAG,
    ResultItem,
    RunView,
    iter_artifacts,
    load_results,
    load_run_view,
    rest_value,
)
from . import _cursor
from ._client import (
    AuthError,
    MlflowRestClient,
    ServerError,
    SyncError,
    SyncInterrupted,
    UnreachableError,
)
from ._cursor import Cursor, fingerprint
from ._lines import metric_files, read_points, size_of
from ._select import Target
from ._summary import RunReport, SyncSummary

FAULT_ENV = "_MINI_MLFLOW_SYNC_FAULT"
#: The server's per-request limits (log-batch answers 400 beyond them).
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
#: Seconds between cursor saves during a long upload (a crash resends at most this much; replays are
#: stored once by the server).
SAVE_EVERY = 1.0


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
        self._experiments: dict[str, str] = {}
        fault = os.environ.get(FAULT_ENV, "")
        point, _, count = fault.partition(":")
        self._fault_point, self._fault_left = point, int(count or 1) if point else 0

    # -- passes ----------------------------------------------------------------------------------

    def sync(self, targets: Iterable[Target]) -> SyncSummary:
        """One pass over ``targets``; per-run errors are collected, fatal ones stop the pass."""
        summary = SyncSummary(self.url)
        before = (self.client.bytes_sent, self.client.requests, self.client.retries)
        for target in targets:
            report = RunReport(os.path.basename(target.run_dir), target.experiment_name)
            summary.runs.append(report)
            try:
                self.sync_run(target, report)
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

    def sync_run(self, target: Target, report: RunReport) -> None:
        """Bring the server up to date with one run (under the run's per-server sync lock)."""
        if self.dry_run:
            self._sync_run(target, report)
            return
        from filelock import FileLock, Timeout

        os.makedirs(os.path.join(target.run_dir, _cursor.SYNC_DIR), exist_ok=True)
        lock = FileLock(_cursor.lock_path(target.run_dir, self.url))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            report.skipped = "another sync of this run to this server is running"
            return
        try:
            self._sync_run(target, report)
        finally:
            lock.release()

    def _sync_run(self, target: Target, report: RunReport) -> None:
        view = load_run_view(self.root, target.run_dir, target.experiment_name)
        report.run_id = view.run_id
        cursor = _cursor.load(target.run_dir, self.url)
        parent_remote = self._parent_remote_id(view)
        if parent_remote:
            view.tags["mlflow.parentRunId"] = parent_remote
        params = self._pending_params(view, cursor, report)
        tags = {k: v for k, v in view.tags.items() if cursor.tags.get(k) != fingerprint(v)}
        metrics = [
            (key, path, cursor.metrics.get(key, 0), size)
            for key, path in metric_files(view.run_dir)
            if (size := size_of(path)) != cursor.metrics.get(key, 0)
        ]
        results = [
            item
            for item in load_results(view.run_dir, view.metric_keys)
            if cursor.results.get(item.key) != fingerprint(item.fingerprint_text)
        ]
        artifacts = [
            (rel, path, sig)
            for rel, path in iter_artifacts(view.run_dir)
            if cursor.artifacts.get(rel) != (sig := _signature(path))
        ]
        status = [view.status, view.end_ms]
        if self.dry_run:
            report.pending = {
                "params": len(params),
                "tags": len(tags),
                "metric_bytes": sum(max(0, size - offset) for _, _, offset, size in metrics),
                "results": sum(item.kind != "skipped" for item in results),
                "artifacts": len(artifacts),
                "status": int(cursor.status != status),
            }
            return
        pending = params or tags or metrics or results or artifacts
        if cursor.remote_run_id and not pending and cursor.status == status:
            report.remote_run_id, report.up_to_date = cursor.remote_run_id, True
            return
        cursor.parent_pending = bool(view.parent_run_id and not parent_remote)
        run_id = self._remote_run(view, cursor)
        report.remote_run_id = run_id
        try:
            self._send_params(run_id, params, cursor, report)
            self._send_tags(run_id, tags, cursor, report)
            self._send_metrics(view.run_dir, run_id, metrics, cursor, report)
            self._send_results(run_id, results, cursor, report)
            self._send_artifacts(run_id, artifacts, cursor, report)
            if cursor.status != status:
                body: dict[str, Any] = {"run_id": run_id, "status": view.status}
                if view.end_ms is not None:
                    body["end_time"] = view.end_ms
                self.client.post("runs/update", body)
                cursor.status = status
                report.status = view.status
        finally:
            _cursor.save(view.run_dir, self.url, cursor)

    # -- experiment and run ----------------------------------------------------------------------

    def _remote_experiment(self, name: str) -> str:
        if name in self._experiments:
            return self._experiments[name]
        attempt = 0
        while True:
            try:
                exp = self.client.get("experiments/get-by-name", {"experiment_name": name})["experiment"]
                if exp.get("lifecycle_stage") == "deleted":
                    raise SyncError(f"experiment {name!r} is deleted on the server; restore it there first")
                self._experiments[name] = str(exp["experiment_id"])
                return self._experiments[name]
            except ServerError as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            try:  # not retried blindly: a create that timed out may have happened, so look again first
                created = self.client.post("experiments/create", {"name": name}, retry=False)
                self._experiments[name] = str(created["experiment_id"])
                return self._experiments[name]
            except (UnreachableError, ServerError) as exc:
                lost_race = isinstance(exc, ServerError) and exc.error_code == "RESOURCE_ALREADY_EXISTS"
                if not (lost_race or _transient(exc)) or attempt >= self.client.max_retries:
                    raise
                if not lost_race:
                    self.client._backoff(attempt, None)
                attempt += 1

    def _find_remote_run(self, experiment_id: str, local_run_id: str) -> str | None:
        found = self.client.post(
            "runs/search",
            {
                "experiment_ids": [experiment_id],
                "filter": f"tags.`{LOCAL_RUN_ID_TAG}` = '{local_run_id}'",
                "max_results": 1,
            },
        )
        runs = found.get("runs") or []
        return str(runs[0]["info"]["run_id"]) if runs else None

    def _remote_run(self, view: RunView, cursor: Cursor) -> str:
        if cursor.remote_run_id:
            return cursor.remote_run_id
        experiment_id = self._remote_experiment(view.experiment_name)
        body = {
            "experiment_id": experiment_id,
            "user_id": view.user,
            "run_name": view.run_name,
            "start_time": view.start_ms,
            "tags": [{"key": LOCAL_RUN_ID_TAG, "value": view.run_id}],
        }
        attempt = 0
        while True:
            # Look before creating, on every attempt: a create that timed out may have happened.
            run_id = self._find_remote_run(experiment_id, view.run_id)
            if run_id is not None:
                break
            try:
                run_id = str(self.client.post("runs/create", body, retry=False)["run"]["info"]["run_id"])
                break
            except (UnreachableError, ServerError) as exc:
                if not _transient(exc) or attempt >= self.client.max_retries:
                    raise
                self.client._backoff(attempt, None)
                attempt += 1
        self._fault("after_create_run")
        cursor.remote_run_id, cursor.remote_experiment_id = run_id, experiment_id
        if cursor.status is None:
            cursor.status = ["RUNNING", None]
        _cursor.save(view.run_dir, self.url, cursor)
        return run_id

    def _parent_remote_id(self, view: RunView) -> str | None:
        if not view.parent_run_id:
            return None
        found = _store.find_run_dir(self.root, view.parent_run_id)
        return _cursor.load(found[1], self.url).remote_run_id if found else None

    # -- params and tags -------------------------------------------------------------------------

    def _pending_params(self, view: RunView, cursor: Cursor, report: RunReport) -> dict[str, str]:
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

    def _send_params(self, run_id: str, params: dict[str, str], cursor: Cursor, report: RunReport) -> None:
        items = list(params.items())
        for start in range(0, len(items), MAX_PARAMS):
            chunk = items[start : start + MAX_PARAMS]
            try:
                self._log_batch(run_id, params=chunk)
            except ServerError as exc:
                if exc.status != 400:
                    raise
                chunk = self._split_conflicts(run_id, chunk, cursor, report)
                if chunk:
                    self._log_batch(run_id, params=chunk)
            for key, text in chunk:
                cursor.params[key] = fingerprint(text)
                cursor.conflicts.pop(key, None)
            report.params += len(chunk)

    def _split_conflicts(
        self, run_id: str, chunk: list[tuple[str, str]], cursor: Cursor, report: RunReport
    ) -> list[tuple[str, str]]:
        """After a refused batch: report params the server holds with other values; return the rest."""
        run = self.client.get("runs/get", {"run_id": run_id})["run"]
        remote = {p["key"]: p.get("value", "") for p in run.get("data", {}).get("params", [])}
        rest = []
        for key, text in chunk:
            if key in remote and remote[key] != text:
                cursor.conflicts[key] = fingerprint(text)
                report.errors.append(
                    f"param {key!r}: local value {text!r} conflicts with the server's {remote[key]!r} "
                    "(params are write-once; the server's value was kept)"
                )
            else:
                rest.append((key, text))
        return rest

    def _send_tags(self, run_id: str, tags: dict[str, str], cursor: Cursor, report: RunReport) -> None:
        items = list(tags.items())
        for start in range(0, len(items), MAX_TAGS):
            chunk = items[start : start + MAX_TAGS]
            self._log_batch(run_id, tags=chunk)
            for key, text in chunk:
                cursor.tags[key] = fingerprint(text)
            report.tags += len(chunk)

    def _log_batch(
        self,
        run_id: str,
        *,
        params: list[tuple[str, str]] = (),  # type: ignore[assignment]
        tags: list[tuple[str, str]] = (),  # type: ignore[assignment]
        metrics: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> None:
        body: dict[str, Any] = {"run_id": run_id}
        if params:
            body["params"] = [{"key": k, "value": v} for k, v in params]
        if tags:
            body["tags"] = [{"key": k, "value": v} for k, v in tags]
        if metrics:
            body["metrics"] = metrics
        self.client.post("runs/log-batch", body)

    # -- metrics ---------------------------------------------------------------------------------

    def _send_metrics(
        self,
        run_dir: str,
        run_id: str,
        files: list[tuple[str, str, int, int]],
        cursor: Cursor,
        report: RunReport,
    ) -> None:
        batch: list[dict[str, Any]] = []
        ends: list[tuple[str, int]] = []
        saved = time.monotonic()

        def send() -> None:
            nonlocal saved
            self._log_batch(run_id, metrics=batch)
            self._fault("after_batch")
            acked = 0
            for key, end in ends:
                if end > cursor.metrics.get(key, 0):
                    acked += end - cursor.metrics.get(key, 0)
                    cursor.metrics[key] = end
            report.points += len(batch)
            batch.clear()
            ends.clear()
            if self.on_progress is not None:
                self.on_progress(acked)
            if time.monotonic() - saved > SAVE_EVERY:
                _cursor.save(run_dir, self.url, cursor)
                saved = time.monotonic()

        for key, path, offset, size in files:
            if size < offset:  # replaced or truncated: resend it all (the server stores replays once)
                report.errors.append(f"metric {key!r}: file shrank below the synced offset; resending it")
                cursor.metrics[key] = offset = 0
            for points in read_points(key, path, offset, report, self.coalesce):
                for point, end in points:
                    batch.append(point)
                    ends.append((key, end))
                    if len(batch) == MAX_METRICS:
                        send()
        if batch:
            send()

    def _send_results(self, run_id: str, items: list[ResultItem], cursor: Cursor, report: RunReport) -> None:
        """Numbers as one metric point each, the rest as tags; each marked sent once acknowledged."""
        for item in items:
            if item.kind == "skipped":  # noted once per value: the cursor remembers it was seen
                report.skipped_results.append(f"result {item.key!r}: {item.value}")
                cursor.results[item.key] = fingerprint(item.fingerprint_text)
        metrics = [item for item in items if item.kind == "metric"]
        tags = [item for item in items if item.kind == "tag"]
        for group, size in ((metrics, MAX_METRICS), (tags, MAX_TAGS)):
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                if group is metrics:
                    points = [
                        {
                            "key": i.key,
                            "value": rest_value(float(i.value)),
                            "timestamp": i.timestamp,
                            "step": 0,
                        }
                        for i in chunk
                    ]
                    self._log_batch(run_id, metrics=points)
                else:
                    self._log_batch(run_id, tags=[(i.mlflow_key, str(i.value)) for i in chunk])
                for item in chunk:
                    cursor.results[item.key] = fingerprint(item.fingerprint_text)
                report.results += len(chunk)

    def _send_artifacts(
        self, run_id: str, files: list[tuple[str, str, list[int]]], cursor: Cursor, report: RunReport
    ) -> None:
        if not files:
            return
        uri = str(self.client.get("runs/get", {"run_id": run_id})["run"]["info"].get("artifact_uri", ""))
        if not uri.startswith("mlflow-artifacts:"):
            raise SyncError(
                f"artifacts: the run's artifact store {uri!r} is not served by {self.url}; "
                "start the server with artifact proxying (--serve-artifacts, the default)"
            )
        base = uri[len("mlflow-artifacts:") :]
        if base.startswith("//"):  # mlflow-artifacts://host:port/path: the path is what counts
            base = "/" + base[2:].partition("/")[2]
        base = base.strip("/")
        for rel, path, sig in files:
            self.client.put_artifact(f"{base}/{rel}", path)
            cursor.artifacts[rel] = sig
            report.artifacts += 1

    def _fault(self, point: str) -> None:
        if point == self._fault_point:
            self._fault_left -= 1
            if self._fault_left <= 0:
                os._exit(70)


def _transient(exc: SyncError) -> bool:
    return isinstance(exc, UnreachableError) or (
        isinstance(exc, ServerError) and (exc.status >= 500 or exc.status == 429)
    )


def _signature(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]
