"""One run as MLflow sees it: statuses, times in ms, params as text, MLflow's system tags.

Read by the entities the MLflow-shaped API answers with, by the FileStore export and by the sync agent,
so all three show a run to MLflow the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..store._files import read_bytes
from ..store._layout import META_FILE, METRIC_SUFFIX, VALUE_SUFFIX, ms_from_iso, walk_keys
from ._reader import Store


def param_text(document: Any) -> str:
    """The text MLflow would store for a param value (``mlflow.log_param`` applies ``str``)."""
    return document if isinstance(document, str) else str(document)


@dataclass
class RunView:
    """One local run as MLflow sees it."""

    run_id: str
    experiment_id: str
    experiment_name: str
    run_name: str
    #: MLflow status name; a crashed run (RUNNING without a live writer) is reported as KILLED.
    status: str
    start_ms: int
    end_ms: int | None
    user: str
    lifecycle_stage: str
    parent_run_id: str | None
    #: param key → MLflow text.
    params: dict[str, str] = field(default_factory=dict)
    #: tag key → text: the run's own tags, then MLflow's system tags where the run set none.
    tags: dict[str, str] = field(default_factory=dict)
    metric_keys: list[str] = field(default_factory=list)
    run_dir: str = ""


def load_run_view(root: str, run_dir: str, experiment_name: str) -> RunView:
    """Read a run folder into a :class:`RunView` (raises ``ValueError`` if its meta.yaml is broken)."""
    store = Store(root)
    meta = store.load_meta(run_dir)
    if "broken" in meta:
        raise ValueError(str(meta["broken"]))
    status = str(meta.get("status") or "RUNNING")
    if status == "RUNNING" and meta.get("crashed"):
        status = "KILLED"
    start_ms = ms_from_iso(meta.get("start_time")) or 0
    end_ms = ms_from_iso(meta.get("end_time")) if meta.get("end_time") else None
    if status != "RUNNING" and end_ms is None:
        end_ms = _last_activity_ms(run_dir) or start_ms
    source: dict[str, Any] = meta["source"] if isinstance(meta.get("source"), dict) else {}
    view = RunView(
        run_id=str(meta.get("run_id") or os.path.basename(run_dir)),
        experiment_id=os.path.basename(os.path.dirname(run_dir)),
        experiment_name=experiment_name,
        run_name=str(meta.get("run_name") or ""),
        status=status,
        start_ms=start_ms,
        end_ms=end_ms,
        user=str(meta.get("user") or "unknown"),
        lifecycle_stage=str(meta.get("lifecycle_stage") or "active"),
        parent_run_id=meta.get("parent_run_id") or None,
        run_dir=run_dir,
    )
    view.params = {k: param_text(v) for k, v in read_values(run_dir, "params").items()}
    view.tags = {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in read_values(run_dir, "tags").items()
    }
    system = {
        "mlflow.runName": view.run_name,
        "mlflow.user": view.user,
        "mlflow.source.name": str(source.get("name") or ""),
        "mlflow.source.git.commit": str(source.get("git_commit") or ""),
    }
    for key, text in system.items():
        if text and key not in view.tags:
            view.tags[key] = text
    view.metric_keys = walk_keys(os.path.join(run_dir, "metrics"), METRIC_SUFFIX)[0]
    return view


def read_values(run_dir: str, kind: str) -> dict[str, Any]:
    folder = os.path.join(run_dir, kind)
    out: dict[str, Any] = {}
    for key in walk_keys(folder, VALUE_SUFFIX)[0]:
        path = os.path.join(folder, key + VALUE_SUFFIX)
        try:
            out[key] = json.loads(read_bytes(path))  # O_NOFOLLOW: never read through a link
        except (OSError, ValueError):
            continue
    return out


def _last_activity_ms(run_dir: str) -> int | None:
    """For a run that died without an end time: the newest modification inside it."""
    newest = 0.0
    for folder, _dirs, files in os.walk(run_dir):
        for name in files:
            if name == META_FILE:
                continue
            try:
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
            except OSError:
                continue
    return int(newest * 1000) or None
