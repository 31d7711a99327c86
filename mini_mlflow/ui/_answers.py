"""UI stage: the JSON answers of the server, computed from the read side (index, search, metric reader).

Every answer is plain data for ``orjson``: NaN and ±inf become the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (the store's own spelling; a browser's ``JSON.parse`` rejects the bare words).
"""

from __future__ import annotations

import math
import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .._errors import InvalidInputError, NotFoundError
from ..read import _index
from ..read._reader import resolve_run
from ..read._records import RunRecord, as_text, lower_is_better
from ..read._resumes import summarize_without_superseded
from ..read._search import find, records_of
from ..store._files import read_bytes
from ..store._layout import TMP_MARK, VALUE_SUFFIX, walk_keys
from ._downsample import X_MODES, Downsampled, bucket_width, ema, m4
from ._series import SeriesCache, view

MAX_COLUMNS = 8192
MAX_COMPARE = 100
MAX_ARTIFACTS = 2000
#: Chart answers kept per metric history (each a few thousand points at most).
MAX_ANSWERS = 16


def num(value: Any) -> Any:
    """A value ready for JSON: non-finite floats spelled as the store spells them."""
    if value.__class__ is float and value - value != 0:
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def experiments(root: str) -> list[dict[str, Any]]:
    """Every experiment: id, name, lifecycle stage (no run is read)."""
    out = []
    for exp_id in _index.experiment_ids(root):
        info = _index.experiment_info(root, exp_id)
        out.append(
            {
                "id": exp_id,
                "name": info.get("name") or f"experiment {exp_id}",
                "lifecycle_stage": info.get("lifecycle_stage"),
            }
        )
    return out


def count_runs(root: str) -> tuple[int, int]:
    """``(experiments, run folders)`` of a store, from folder listings only (for the ready line)."""
    exps = _index.experiment_ids(root)
    runs = 0
    for exp_id in exps:
        try:
            names = os.listdir(os.path.join(root, exp_id))
        except OSError:
            continue
        runs += sum(1 for n in names if n[0] != "." and n != "meta.yaml" and TMP_MARK not in n)
    return len(exps), runs


def text_of(value: Any) -> str:
    """A param or tag as text, like :func:`as_text` (JSON for non-strings), without a ``json.dumps`` call for
    the common scalars (a 10,000-run table has 50,000 of them)."""
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is int or (cls is float and value - value == 0):
        return repr(value)  # what json.dumps writes for them
    if cls is bool:
        return "true" if value else "false"
    return as_text(value)


def _differing(cols: dict[str, list[list[Any]]], rows: int) -> list[str]:
    """Keys whose value is not the same in every row (missing counts as a value), as ``ls`` shows."""
    return sorted(k for k, (idx, vals) in cols.items() if len(idx) != rows or len(set(vals)) > 1)


def row_of(r: RunRecord) -> dict[str, Any]:
    """One run as a table row (the live stream sends new and changed runs this way)."""
    return {
        "id": r.run_id,
        "name": r.run_name,
        "exp": r.experiment_id,
        "status": r.status,
        "start": r.start_time,
        "end": r.end_time,
        "user": r.user,
        "parent": r.parent_run_id,
        "stage": r.lifecycle_stage,
        "params": {k: text_of(v) for k, v in r.params.items()},
        "metrics": {k: num(v) for k, v in r.metrics.items()},
        "tags": {k: text_of(v) for k, v in r.tags.items()},
    }


def runs_table(
    root: str, experiment_ids: list[str] | None, filter_string: str, view_name: str = "active"
) -> dict[str, Any]:
    """The runs table, column by column (compact for 10,000 runs); the filter is MLflow's grammar.

    Read from the index's columns without building a record per run: params and tags as text, NaN and
    ±inf metrics spelled as the store spells them. Each key maps to ``[positions, values]``, positions
    None when every run has it.

    Raises:
        InvalidInputError: a malformed filter (the message points at the token).
    """

    def read() -> tuple[dict[str, Any], list[Any]]:
        found = find(experiment_ids, filter_string, None, view_name, root)
        return found.table(text_of, num), found.broken

    table, broken = _index.recovering(root, read)
    table["differs"] = _differing(table["params"], table["count"])
    for entity in ("params", "metrics", "tags"):
        for column in table[entity].values():
            if len(column[0]) == table["count"]:
                column[0] = None  # every row has the key: no positions to send
    table["broken"] = [b.to_dict() for b in broken]
    return table


def load_record(root: str, ref: str) -> tuple[RunRecord, dict[str, list[Any]]]:
    """A run (id or unique prefix) from its experiment's index, and its per-metric aggregates."""
    exp_id, rdir = resolve_run(root, ref)
    name = os.path.basename(rdir)
    index = _index.load_experiment(root, exp_id, only=name)
    record = index.records.get(name)
    if record is None:
        raise NotFoundError(f"run folder {rdir} cannot be read: {index.broken.get(name) or 'unknown'}")
    if record.stored_status == "RUNNING":
        record.status = _index.current_status(record)
    detail = index.details.get(name) or {}
    return record, summarize_without_superseded(rdir, dict(detail.get("x", {})))


def _metric_summary(aggs: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    return {
        k: {"last": num(a[5]), "min": num(a[6]), "max": num(a[7]), "count": a[4], "last_step": a[8]}
        for k, a in sorted(aggs.items())
    }


def _values(folder: str) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for key in sorted(walk_keys(folder, VALUE_SUFFIX)[0]):
        try:
            out[key] = as_text(json.loads(read_bytes(os.path.join(folder, key + VALUE_SUFFIX))))
        except (OSError, ValueError):
            continue
    return out


def artifact_list(run_dir: str) -> list[dict[str, Any]]:
    """Files under a run's ``artifacts/`` (symbolic links and temporary files passed over)."""
    base = os.path.join(run_dir, "artifacts")
    out: list[dict[str, Any]] = []
    if os.path.islink(base):
        return out
    for current, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(current, d)))
        for name in sorted(files):
            path = os.path.join(current, name)
            if TMP_MARK in name or os.path.islink(path):
                continue
            try:
                size = os.lstat(path).st_size
            except OSError:
                continue
            out.append({"path": os.path.relpath(path, base).replace(os.sep, "/"), "size": size})
            if len(out) >= MAX_ARTIFACTS:
                return out
    return out


def metric_keys(root: str, ref: str) -> dict[str, Any]:
    """A run's id and metric keys, from its folder alone (no index): a run page starts its charts with it."""
    from ..store._layout import METRIC_SUFFIX

    _, rdir = resolve_run(root, ref)
    return {
        "id": os.path.basename(rdir),
        "metrics": sorted(walk_keys(os.path.join(rdir, "metrics"), METRIC_SUFFIX)[0]),
    }


def warm_histories(cache: SeriesCache, run_dir: str, limit: int = 32) -> None:
    """Read a run's big metric histories into the cache before its index entry is built.

    The run's index entry needs each metric's count, min and max; built first, it parses a 1,000,000-point
    file, and the chart that follows parses it again. Read through the metric cache first, the parse
    happens once: the binary cache it leaves serves the index, and the history in memory the chart.
    """
    from ..read._metric_cache import MIN_CACHE_BYTES
    from ..store._layout import METRIC_SUFFIX

    folder = os.path.join(run_dir, "metrics")
    run_id = os.path.basename(run_dir)
    for key in walk_keys(folder, METRIC_SUFFIX)[0][:limit]:
        try:
            if os.lstat(os.path.join(folder, key + METRIC_SUFFIX)).st_size >= MIN_CACHE_BYTES:
                cache.get(run_dir, run_id, key)
        except (OSError, InvalidInputError, NotFoundError):
            continue  # the index reports what is wrong with it


def run_detail(root: str, ref: str) -> dict[str, Any]:
    """One run: metadata, params, tags, results, metric summaries, artifacts."""
    record, aggs = load_record(root, ref)
    doc = row_of(record)
    doc.update(
        experiment_name=_index.experiment_info(root, record.experiment_id).get("name"),
        summary=_metric_summary(aggs),
        results=_values(os.path.join(record.run_dir, "results")),
        artifacts=artifact_list(record.run_dir),
        warnings=list(record.warnings),
        lower_is_better={k: lower_is_better(k) for k in aggs},
    )
    return doc


def compare(root: str, refs: list[str]) -> dict[str, Any]:
    """Runs side by side: params (differences marked) and each metric's last and best value.

    Which way is best follows ``mini-mlflow compare``: the metric's name decides (loss, error, time, ...
    are minimised, the rest maximised).
    """
    if not refs or len(refs) > MAX_COMPARE:
        raise InvalidInputError(f"compare takes 1 to {MAX_COMPARE} runs, got {len(refs)}")
    loaded = [load_record(root, ref) for ref in refs]
    params = sorted({k for r, _ in loaded for k in r.params})
    metrics = sorted({k for _, a in loaded for k in a})
    out_params = {}
    for key in params:
        values = [as_text(r.params[key]) if key in r.params else None for r, _ in loaded]
        out_params[key] = {"values": values, "differs": len(set(values)) > 1}
    out_metrics = {}
    for key in metrics:
        low = lower_is_better(key)
        bests = [(a[key][6] if low else a[key][7]) if key in a else None for _, a in loaded]
        finite = [b for b in bests if b is not None and b - b == 0]
        winner = (min(finite) if low else max(finite)) if finite else None
        out_metrics[key] = {
            "best_is": "min" if low else "max",
            "last": [num(a[key][5]) if key in a else None for _, a in loaded],
            "best": [num(b) for b in bests],
            "winner": [b is not None and b == winner and len(finite) > 1 for b in bests],
        }
    return {
        "runs": [row_of(r) for r, _ in loaded],
        "params": out_params,
        "metrics": out_metrics,
    }


def resolve(root: str, refs: list[str]) -> dict[str, Any]:
    """Full run ids for id prefixes (a deep link holds 8-character prefixes); unknown ones listed apart."""
    found, missing = {}, []
    for ref in refs:
        try:
            exp_id, rdir = resolve_run(root, ref)
        except (InvalidInputError, NotFoundError) as exc:
            missing.append({"ref": ref, "error": str(exc)})
            continue
        found[ref] = {"id": os.path.basename(rdir), "exp": exp_id}
    return {"runs": found, "missing": missing}


def _packed(d: Downsampled) -> dict[str, Any]:
    return {
        "x": d.x,
        "y": d.y,
        "nan": d.nan,
        "pinf": d.pinf,
        "ninf": d.ninf,
        "points": d.points,
        "counts": d.counts,
        "bucket": d.width,
    }


def check_series_args(mode: str, columns: int, weight: float) -> None:
    if mode not in X_MODES:
        raise InvalidInputError(f"invalid x {mode!r}: must be one of {', '.join(X_MODES)}")
    if not 1 <= columns <= MAX_COLUMNS:
        raise InvalidInputError(f"invalid cols {columns!r}: must be from 1 to {MAX_COLUMNS}")
    if not 0 <= weight < 1:
        raise InvalidInputError(f"invalid smooth {weight!r}: must be from 0 to below 1")


def series(
    cache: SeriesCache,
    root: str,
    ref: str,
    key: str,
    mode: str = "step",
    columns: int = 1000,
    lo: float | None = None,
    hi: float | None = None,
    weight: float = 0.0,
    index_lock: AbstractContextManager[Any] | None = None,
) -> dict[str, Any]:
    """One metric of one run for a chart ``columns`` pixels wide: M4 of ``[lo, hi]`` at full resolution.

    With ``weight`` > 0 the smoothed series (computed on every point) is downsampled too, as ``smooth``.
    ``offset`` is where the live stream takes over (the bytes of the file read so far).
    """
    check_series_args(mode, columns, weight)
    _exp_id, rdir = resolve_run(root, ref)
    run_id = os.path.basename(rdir)
    start_ms = None
    if mode == "relative":
        record, _ = load_record(root, run_id)
        start_ms = record.start_time
    entry = cache.get(rdir, run_id, key)
    query = (mode, start_ms, columns, lo, hi, weight)
    known = entry.answers.get(query)
    if known is not None:
        return known
    x, y = view(entry, mode, start_ms)
    out = {"run": run_id, "key": key, "x_mode": mode, "offset": entry.consumed, "total": len(x)}
    out.update(_packed(m4(x, y, columns, lo, hi)))
    if x:
        out["range"] = [x[0], x[-1]]
    if weight > 0:
        smoothed, state = ema(x, y, weight)
        s = m4(x, smoothed, columns, lo, hi)
        out["smooth"] = {"x": s.x, "y": s.y, "state": state}
    out["start_ms"] = start_ms
    if len(entry.answers) >= MAX_ANSWERS:
        entry.answers.clear()  # zooming around: keep the memory of a few charts, not of every range
    entry.answers[query] = out
    return out


def aggregate(
    cache: SeriesCache,
    root: str,
    refs: list[str],
    key: str,
    mode: str = "step",
    columns: int = 1000,
    index_lock: AbstractContextManager[Any] | None = None,
) -> dict[str, Any]:
    """Mean, min and max across runs per bucket (one bucket grid for all runs), for a band chart."""
    check_series_args(mode, columns, 0.0)
    if not refs or len(refs) > MAX_COMPARE:
        raise InvalidInputError(f"aggregate takes 1 to {MAX_COMPARE} runs, got {len(refs)}")
    views = []
    for ref in refs:
        _, rdir = resolve_run(root, ref)
        run_id = os.path.basename(rdir)
        start_ms = None
        if mode == "relative":
            with index_lock or nullcontext():
                start_ms = load_record(root, run_id)[0].start_time
        try:
            views.append(view(cache.get(rdir, run_id, key), mode, start_ms))
        except NotFoundError:
            continue  # a run without that metric takes no part in the band
    xs = [v[0] for v in views if v[0]]
    if not xs:
        return {"key": key, "x": [], "mean": [], "min": [], "max": [], "runs": 0}
    lo, hi = min(x[0] for x in xs), max(x[-1] for x in xs)
    w = bucket_width(lo, hi, columns)
    sums: dict[int, list[float]] = {}
    for x, y in views:
        per_run: dict[int, list[float]] = {}
        for xi, yi in zip(x, y, strict=False):
            if yi - yi == 0:
                b = math.floor(xi / w)
                cell = per_run.get(b)
                if cell is None:
                    per_run[b] = [yi, 1.0]
                else:
                    cell[0] += yi
                    cell[1] += 1.0
        for b, (total, n) in per_run.items():
            mean = total / n  # each run weighs the same in the band, however densely it logged
            agg = sums.get(b)
            if agg is None:
                sums[b] = [mean, mean, mean, 1.0]
            else:
                agg[0] += mean
                agg[1] = min(agg[1], mean)
                agg[2] = max(agg[2], mean)
                agg[3] += 1.0
    buckets = sorted(sums)
    return {
        "key": key,
        "x": [(b + 0.5) * w for b in buckets],
        "mean": [sums[b][0] / sums[b][3] for b in buckets],
        "min": [sums[b][1] for b in buckets],
        "max": [sums[b][2] for b in buckets],
        "runs": len(xs),
        "bucket": w,
    }


def table_records(root: str, experiment_ids: list[str]) -> list[RunRecord]:
    """Every active run of the experiments, straight from their indexes (for the live stream's diff)."""
    out: list[RunRecord] = []
    for exp_id in experiment_ids:
        if os.path.isdir(os.path.join(root, exp_id)):
            out += records_of(root, exp_id, "active")[0]
    return out
