"""What a sync pass reports: per run (points, params, tags, results, artifacts, errors) and in total."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunReport:
    """What one pass did for one run."""

    run_id: str
    experiment: str = ""
    remote_run_id: str | None = None
    points: int = 0
    params: int = 0
    tags: int = 0
    artifacts: int = 0
    #: Results sent (as metrics or ``mini_mlflow.result/<key>`` tags).
    results: int = 0
    #: Results MLflow cannot hold (``"result 'k': why"``), reported once per value, not errors.
    skipped_results: list[str] = field(default_factory=list)
    status: str | None = None
    #: True when nothing was pending (no request was made).
    up_to_date: bool = False
    skipped: str | None = None
    #: True when the pass's time slice for this run ended with metric lines left (the next pass goes on).
    unfinished: bool = False
    skipped_lines: int = 0
    #: Metric points passed over because a resume from a checkpoint superseded them (not errors).
    superseded: int = 0
    errors: list[str] = field(default_factory=list)
    #: Dry runs: what would be sent (points as bytes of metric lines).
    pending: dict[str, int] = field(default_factory=dict)


@dataclass
class SyncSummary:
    """The outcome of one or more passes."""

    server: str
    runs: list[RunReport] = field(default_factory=list)
    #: An error that stopped the pass (bad credentials, server unreachable).
    fatal: str | None = None
    #: "auth", "unreachable" or "interrupted" when ``fatal`` is set.
    fatal_kind: str | None = None
    bytes_sent: int = 0
    requests: int = 0
    retries: int = 0

    @property
    def errors(self) -> list[str]:
        out = [f"run {r.run_id}: {e}" for r in self.runs for e in r.errors]
        return out + ([self.fatal] if self.fatal else [])

    @property
    def ok(self) -> bool:
        return not self.errors

    def total(self, name: str) -> int:
        return sum(int(getattr(r, name)) for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "runs": len(self.runs),
            "points": self.total("points"),
            "params": self.total("params"),
            "tags": self.total("tags"),
            "artifacts": self.total("artifacts"),
            "results": self.total("results"),
            "bytes_sent": self.bytes_sent,
            "requests": self.requests,
            "retries": self.retries,
            "errors": self.errors,
            "run_reports": [vars(r) for r in self.runs],
        }
