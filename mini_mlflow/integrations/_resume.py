"""Integrations: a run resumed from a checkpoint is recorded, so that re-logged steps supersede the old."""

from __future__ import annotations

import json
import os

from ..read._reader import Store
from ..read._resumes import RESUMES_FILE, load_resumes
from ..store import _operations
from ..store._layout import METRIC_SUFFIX
from ..write._run import Run


def record_resume(run: Run, step: int) -> None:
    """Record in ``run`` that training resumed after ``step``: the points logged so far whose step is
    past ``step`` are superseded by what comes next (``get_metric_history`` leaves them out)."""
    run.flush()
    root = os.path.dirname(os.path.dirname(run.run_dir))
    store = Store(root)
    keys = store.metric_keys(run.run_id, run.run_dir)
    points = {key: len(store.get_metric_history(run.run_id, key, include_superseded=True)) for key in keys}
    # Each file's size too, so that sync, reading from its cursor mid-file, knows the lines covered.
    sizes = {key: _size(os.path.join(run.run_dir, "metrics", key + METRIC_SUFFIX)) for key in keys}
    records = load_resumes(run.run_dir)
    records.append({"step": int(step), "points": points, "bytes": sizes})
    data = (json.dumps(records, sort_keys=True) + "\n").encode("utf-8")
    _operations.write_in_run(run.run_dir, os.path.join(run.run_dir, RESUMES_FILE), data)


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0
