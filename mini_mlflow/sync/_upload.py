"""Uploading one run's pending items in batches within the server's limits.

Each item is marked in the cursor only after the server acknowledged the request carrying it, so the
cursor is always behind or equal to the server, never ahead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..interop._convert import ResultItem, rest_value
from ..read._resumes import is_superseded, load_resumes, superseding
from . import _cursor
from ._client import MlflowRestClient
from ._cursor import Cursor, fingerprint
from ._errors import ServerError, SyncError, SyncInterrupted
from ._lines import read_points
from ._summary import RunReport

#: The server's per-request limits (log-batch answers 400 beyond them).
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
#: Seconds between cursor saves during a long upload (a crash resends at most this much; replays are
#: stored once by the server).
SAVE_EVERY = 1.0
#: Seconds of metric upload each run gets per pass of a watching agent (``sync --watch``, online mode).
WATCH_RUN_SLICE = 2.0


class Uploader:
    """Sends the pending items of one local run to its remote run ``run_id``.

    Args:
        client: The REST client.
        run_dir: The local run folder (where the cursor lives).
        run_id: The remote run id.
        cursor: The run's cursor, advanced as requests are acknowledged.
        report: Counts and errors of this pass.
        on_progress: Called with the metric-file bytes each batch acknowledged.
        on_batch: Called right after a metric batch was acknowledged, before the cursor moves (tests'
            fault injection).
    """

    def __init__(
        self,
        client: MlflowRestClient,
        run_dir: str,
        run_id: str,
        cursor: Cursor,
        report: RunReport,
        *,
        on_progress: Callable[[int], None] | None = None,
        on_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.url = client.url
        self.run_dir = run_dir
        self.run_id = run_id
        self.cursor = cursor
        self.report = report
        self.on_progress = on_progress
        self.on_batch = on_batch

    def log_batch(
        self,
        *,
        params: list[tuple[str, str]] = (),  # type: ignore[assignment]
        tags: list[tuple[str, str]] = (),  # type: ignore[assignment]
        metrics: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> None:
        body: dict[str, Any] = {"run_id": self.run_id}
        if params:
            body["params"] = [{"key": k, "value": v} for k, v in params]
        if tags:
            body["tags"] = [{"key": k, "value": v} for k, v in tags]
        if metrics:
            body["metrics"] = metrics
        self.client.post("runs/log-batch", body)

    # -- params and tags -------------------------------------------------------------------------

    def params(self, params: dict[str, str]) -> None:
        """Params in batches; on a refused batch, conflicting keys are reported and the rest resent."""
        items = list(params.items())
        for start in range(0, len(items), MAX_PARAMS):
            chunk = items[start : start + MAX_PARAMS]
            try:
                self.log_batch(params=chunk)
            except ServerError as exc:
                if exc.status != 400:
                    raise
                chunk = self._split_conflicts(chunk)
                if chunk:
                    self.log_batch(params=chunk)
            for key, text in chunk:
                self.cursor.params[key] = fingerprint(text)
                self.cursor.conflicts.pop(key, None)
            self.report.params += len(chunk)

    def _split_conflicts(self, chunk: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """After a refused batch: report params the server holds with other values; return the rest."""
        run = self.client.get("runs/get", {"run_id": self.run_id})["run"]
        remote = {p["key"]: p.get("value", "") for p in run.get("data", {}).get("params", [])}
        rest = []
        for key, text in chunk:
            if key in remote and remote[key] != text:
                self.cursor.conflicts[key] = fingerprint(text)
                self.report.errors.append(
                    f"param {key!r}: local value {text!r} conflicts with the server's {remote[key]!r} "
                    "(params are write-once; the server's value was kept)"
                )
            else:
                rest.append((key, text))
        return rest

    def tags(self, tags: dict[str, str]) -> None:
        items = list(tags.items())
        for start in range(0, len(items), MAX_TAGS):
            chunk = items[start : start + MAX_TAGS]
            self.log_batch(tags=chunk)
            for key, text in chunk:
                self.cursor.tags[key] = fingerprint(text)
            self.report.tags += len(chunk)

    # -- metrics ---------------------------------------------------------------------------------

    def metrics(
        self, files: list[tuple[str, str, int, int]], coalesce: bool = False, deadline: float | None = None
    ) -> bool:
        """Whole lines of each file after its acknowledged offset, up to 1,000 points per request.

        Reads each file only up to the size the plan saw, stops after the batch in flight once the
        client's stop event is set (raising :class:`SyncInterrupted`), and once ``deadline``
        (``time.monotonic()``) has passed. Returns False when stopped by the deadline with lines left.
        Points that a resume from a checkpoint superseded (``resumes.json``) are passed over, never
        sent; those a pass sent before the resume was recorded stay on the server (MLflow's REST API
        has no call that deletes a metric point).
        """
        cursor, report = self.cursor, self.report
        batch: list[dict[str, Any]] = []
        ends: list[tuple[str, int]] = []
        saved = time.monotonic()
        stop = self.client.stop
        sent = 0

        def send() -> None:
            nonlocal saved
            if batch:  # (none: only passed-over points, whose lines the cursor moves past all the same)
                self.log_batch(metrics=batch)
                self.on_batch()
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
                _cursor.save(self.run_dir, self.url, cursor)
                saved = time.monotonic()
            if stop.is_set():  # the caller saves the cursor: everything acknowledged is kept
                raise SyncInterrupted("sync interrupted")

        resumes = load_resumes(self.run_dir)
        for key, path, offset, size in files:
            if size < offset:  # replaced or truncated: resend it all (the server stores replays once)
                report.errors.append(f"metric {key!r}: file shrank below the synced offset; resending it")
                cursor.metrics[key] = offset = 0
            spans = superseding(resumes, key, path) if resumes else []
            if spans and offset >= max(limit for limit, _ in spans):
                spans = []  # every line a resume covers was read by an earlier pass
            for points in read_points(key, path, offset, report, coalesce, limit=size):
                for point, end in points:
                    ends.append((key, end))
                    if spans and is_superseded(spans, end, point["step"]):
                        report.superseded += 1
                        continue
                    batch.append(point)
                    if len(batch) == MAX_METRICS:
                        # Past the deadline a full batch waits for the next pass (after at least one
                        # batch, so every pass moves on); a last, partial batch is always sent.
                        if deadline is not None and sent and time.monotonic() >= deadline:
                            return False
                        send()
                        sent += 1
        if batch or ends:
            send()
        return True

    # -- results and artifacts -------------------------------------------------------------------

    def results(self, items: list[ResultItem]) -> None:
        """Numbers as one metric point each, the rest as tags; each marked sent once acknowledged."""
        cursor, report = self.cursor, self.report
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
                    self.log_batch(metrics=points)
                else:
                    self.log_batch(tags=[(i.mlflow_key, str(i.value)) for i in chunk])
                for item in chunk:
                    cursor.results[item.key] = fingerprint(item.fingerprint_text)
                report.results += len(chunk)

    def artifacts(self, files: list[tuple[str, str, list[int]]]) -> None:
        """Each file streamed through the server's artifact proxy into the run's artifact folder."""
        if not files:
            return
        uri = str(self.client.get("runs/get", {"run_id": self.run_id})["run"]["info"].get("artifact_uri", ""))
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
            self.cursor.artifacts[rel] = sig
            self.report.artifacts += 1
