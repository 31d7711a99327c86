"""Read side: metric points superseded when a run was resumed from a checkpoint (``<run>/resumes.json``).

A training resumed from a checkpoint taken at step S logs steps after S again. The integration that
resumed it records, per metric, how many points the file held at that moment; those of them whose
step is past S are superseded by the new ones and left out of ``get_metric_history``, of exports and
of sync uploads, and out of a run's count/min/max/last. The metric files themselves stay append-only:
nothing is deleted, and ``include_superseded=True`` shows everything. Each record also gives, per
metric, the file's size at that moment (``bytes``), so that a reader that starts mid-file (sync, from
its cursor) knows which lines the record covers without counting from the start.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..store._files import open_binary
from ..store._layout import METRIC_SUFFIX
from ._metric_parse import MetricHistory, parse_columns

#: The file, in a run's folder: a JSON list of ``{"step": S, "points": {metric key: count},
#: "bytes": {metric key: size}}`` (``bytes`` is absent from records written before it existed).
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


def superseding(resumes: list[dict[str, Any]], key: str, path: str) -> list[tuple[int, int]]:
    """``(byte limit, step)`` per record touching metric ``key`` (its file at ``path``): a line that
    ends at or before the limit and whose step is past ``step`` is superseded."""
    out = []
    for record in resumes:
        count = record["points"].get(key)
        if not isinstance(count, int) or count <= 0:
            continue
        limit = record.get("bytes", {}).get(key) if isinstance(record.get("bytes"), dict) else None
        if not isinstance(limit, int):
            limit = _bytes_of_points(path, count)
        out.append((limit, record["step"]))
    return out


def _bytes_of_points(path: str, count: int) -> int:
    """Where the ``count``-th readable point of a metric file ends (a record without ``bytes``)."""
    try:
        with open_binary(path) as f:
            data = f.read()
    except OSError:
        return 0
    end = 0
    seen = 0
    while seen < count:
        nl = data.find(b"\n", end)
        if nl < 0:
            return len(data)
        seen += len(parse_columns(data[end : nl + 1], "")[0].values)
        end = nl + 1
    return end


def is_superseded(spans: list[tuple[int, int]], line_end: int, step: int) -> bool:
    """Whether a line ending at byte ``line_end`` with ``step`` is superseded (see :func:`superseding`)."""
    return any(line_end <= limit and step > at for limit, at in spans)


def summarize_without_superseded(run_dir: str, aggs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The per-metric aggregates of the index (``_metric_agg``) of a run, with count, last, min and
    max recomputed without superseded points for the metrics a resume touched (a run never resumed:
    ``aggs`` as they are, at the cost of one failed open)."""
    resumes = load_resumes(run_dir)
    if not resumes:
        return aggs
    from ._metric_agg import COUNT, HIGH, LAST, LAST_STEP, LOW

    touched = {k for r in resumes for k, n in r["points"].items() if isinstance(n, int) and n > 0}
    out = dict(aggs)
    for key in touched & set(aggs):
        try:
            with open_binary(os.path.join(run_dir, "metrics", key + METRIC_SUFFIX)) as f:
                history = parse_columns(f.read(), key)[0]
        except OSError:
            continue
        kept = drop_superseded(history, resumes)
        agg = list(aggs[key])
        values = kept.values
        finite = [v for v in values if v == v]
        agg[COUNT] = len(values)
        agg[LAST] = values[-1] if values else None
        agg[LAST_STEP] = kept.steps[-1] if values else None
        agg[LOW] = min(finite) if finite else None
        agg[HIGH] = max(finite) if finite else None
        out[key] = agg
    return out
