"""Read side: metric points superseded when a run was resumed from a checkpoint (``<run>/resumes.json``).

A training resumed from a checkpoint taken at step S logs steps after S again. The integration that
resumed it records, per metric, how many points the file held at that moment; those of them whose
step is past S are superseded by the new ones and left out of ``get_metric_history``. The metric files
themselves stay append-only: nothing is deleted, and ``include_superseded=True`` shows everything.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..store._files import open_binary
from ._metric_parse import MetricHistory

#: The file, in a run's folder: a JSON list of ``{"step": S, "points": {metric key: count}}``.
RESUMES_FILE = "resumes.json"


def load_resumes(run_dir: str) -> list[dict[str, Any]]:
    """The run's resume records (empty without the file, or for one that does not parse)."""
    try:
        with open_binary(os.path.join(run_dir, RESUMES_FILE)) as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [
        r
        for r in data
        if isinstance(r, dict) and isinstance(r.get("step"), int) and isinstance(r.get("points"), dict)
    ]


def drop_superseded(history: MetricHistory, resumes: list[dict[str, Any]]) -> MetricHistory:
    """``history`` without the points that a later resume superseded."""
    drop: set[int] = set()
    steps = history.steps
    for record in resumes:
        count = record["points"].get(history.key)
        if not isinstance(count, int):
            continue
        step = record["step"]
        drop.update(i for i in range(min(count, len(steps))) if steps[i] > step)
    if not drop:
        return history
    keep = [i for i in range(len(steps)) if i not in drop]
    return MetricHistory(
        key=history.key,
        steps=[steps[i] for i in keep],
        values=[history.values[i] for i in keep],
        timestamps=[history.timestamps[i] for i in keep],
        skipped_lines=history.skipped_lines,
    )
