"""Export: write runs of our store in MLflow's own FileStore layout, which MLflow's client and server read.

Layout written (see MLflow's ``mlflow/store/tracking/file_store.py``)::

    DEST/.trash/  DEST/models/
    DEST/<exp_id>/meta.yaml                  experiment_id (a string), name, artifact_location, ...
    DEST/<exp_id>/<run_id>/meta.yaml         status as MLflow's integer, times in ms, run_id and run_uuid
    DEST/<exp_id>/<run_id>/metrics/<key>     "<timestamp_ms> <value> <step>" lines, each point once
    DEST/<exp_id>/<run_id>/params/<key>      raw text;  tags/<key> raw text;  artifacts/ (always present)

Results (``ctx.log_result``) are mapped as the sync agent maps them (``_convert.load_results``): a number
is the metric file ``metrics/<key>`` with one line ``<mtime_ms> <value> 0`` (the current value only),
anything else the tag ``mini_mlflow.result/<key>``.

Every file is written under a temporary name and renamed into place, so an interrupted export never
leaves a torn metric line (which would make MLflow fail the whole experiment).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError
from ..read._reader import parse_metric_lines
from ..read._resumes import load_resumes
from ..store import _files, _yaml
from ..store._files import open_binary
from ..store._layout import METRIC_SUFFIX, TMP_MARK, now_ms
from ..store._meta import read_meta
from ._convert import STATUS_NUMBERS, iter_artifacts, load_results, load_run_view, metric_line_text
from ._paths import inside, make_dirs, safe_join

if TYPE_CHECKING:
    from ..read._select import Target

_CHUNK = 8 << 20


@dataclass
class ExportReport:
    """What an export wrote."""

    dest: str
    experiments: int = 0
    runs: int = 0
    points: int = 0
    artifacts: int = 0
    #: Results written (as one-point metrics or ``mini_mlflow.result/<key>`` tags).
    results: int = 0
    #: Identical points (same step, timestamp and value) written once instead of repeatedly.
    duplicates: int = 0
    #: Points a resume from a checkpoint superseded (``resumes.json``), left out.
    superseded: int = 0
    #: Things not exported and why (symlinks, unreadable runs).
    skipped: list[str] = field(default_factory=list)


def export_mlflow(root: str, dest: str, targets: Sequence[Target]) -> ExportReport:
    """Write ``targets`` (runs of the store at ``root``) to ``dest`` as an MLflow FileStore.

    Raises:
        InvalidInputError: ``dest`` holds an experiment of another name under the same id, or a path
            would leave ``dest`` (``..``, symlinks out of the tree).
    """
    os.makedirs(dest, exist_ok=True)
    base = os.path.realpath(dest)
    report = ExportReport(base)
    for name in (".trash", "models"):  # `mlflow server` tries to create both at start otherwise
        make_dirs(base, safe_join(base, name))
    done_experiments: set[str] = set()
    for target in targets:
        experiment_id = os.path.basename(os.path.dirname(target.run_dir))
        if experiment_id not in done_experiments:
            _write_experiment(root, base, experiment_id, target.experiment_name)
            done_experiments.add(experiment_id)
            report.experiments += 1
        try:
            view = load_run_view(root, target.run_dir, target.experiment_name)
        except (OSError, ValueError) as exc:
            report.skipped.append(f"run {os.path.basename(target.run_dir)}: unreadable ({exc})")
            continue
        _write_run(base, view, report)
        report.runs += 1
    return report


def _write_experiment(root: str, base: str, experiment_id: str, name: str) -> None:
    folder = safe_join(base, experiment_id)
    meta_path = os.path.join(folder, "meta.yaml")
    if os.path.exists(meta_path):
        existing = read_meta(meta_path)
        if existing.get("name") != name:
            raise InvalidInputError(
                f"{base} already holds experiment {experiment_id} named {existing.get('name')!r}, "
                f"not {name!r}: export into an empty folder or one exported from this store"
            )
    make_dirs(base, folder)
    try:
        local = read_meta(os.path.join(root, experiment_id, "meta.yaml"))
    except (OSError, ValueError):
        local = {}
    created = _ms(local.get("creation_time")) or now_ms()
    meta = {
        "artifact_location": _file_uri(folder),
        "creation_time": created,
        "experiment_id": experiment_id,  # a string: MLflow compares it with the folder name
        "last_update_time": _ms(local.get("last_update_time")) or created,
        "lifecycle_stage": str(local.get("lifecycle_stage") or "active"),
        "name": name,
    }
    _files.write_atomic(meta_path, _yaml.dump_yaml(meta))


def _ms(value: Any) -> int | None:
    from ..store._layout import ms_from_iso

    if isinstance(value, int):
        return value
    try:
        return ms_from_iso(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _write_run(base: str, view: Any, report: ExportReport) -> None:
    rdir = safe_join(base, view.experiment_id, view.run_id)
    for sub in ("metrics", "params", "tags", "artifacts"):
        make_dirs(base, os.path.join(rdir, sub))
    for key, text in view.params.items():
        _write_text(base, os.path.join(rdir, "params"), key, text.encode())
    tags = dict(view.tags)
    if view.parent_run_id:
        tags.setdefault("mlflow.parentRunId", view.parent_run_id)
    for key, text in tags.items():
        _write_text(base, os.path.join(rdir, "tags"), key, text.encode())
    for key in view.metric_keys:
        points, duplicates, superseded = _write_metric(base, view.run_dir, rdir, key)
        report.points += points
        report.duplicates += duplicates
        report.superseded += superseded
    for item in load_results(view.run_dir, view.metric_keys):
        if item.kind == "skipped":
            report.skipped.append(f"run {view.run_id}: result {item.key!r} not exported: {item.value}")
            continue
        if item.kind == "metric":
            folder, data = "metrics", metric_line_text(item.timestamp, float(item.value), 0).encode()
        else:
            folder, data = "tags", str(item.value).encode()
        _write_text(base, os.path.join(rdir, folder), item.mlflow_key, data)
        report.results += 1
    artifacts_dir = os.path.join(rdir, "artifacts")
    for rel, src in iter_artifacts(view.run_dir):
        dest = safe_join(base, os.path.relpath(artifacts_dir, base), rel)
        make_dirs(base, os.path.dirname(dest))
        tmp = f"{dest}.{TMP_MARK}.{os.getpid()}"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        report.artifacts += 1
    _note_links(view.run_dir, report)
    meta = {
        "artifact_uri": _file_uri(artifacts_dir),
        "end_time": view.end_ms,
        "entry_point_name": "",
        "experiment_id": view.experiment_id,
        "lifecycle_stage": view.lifecycle_stage,
        "run_id": view.run_id,
        "run_name": view.run_name,
        "run_uuid": view.run_id,  # MLflow 2.x readers require it
        "source_name": "",
        "source_type": 4,
        "source_version": "",
        "start_time": view.start_ms,
        "status": STATUS_NUMBERS[view.status],  # an integer: a string makes the server answer 500
        "tags": [],
        "user_id": view.user,
    }
    # meta.yaml last: a run folder without it is ignored by MLflow, so an interrupted export is invisible.
    _files.write_atomic(os.path.join(rdir, "meta.yaml"), _yaml.dump_yaml(meta))


def _write_text(base: str, folder: str, key: str, data: bytes) -> None:
    path = safe_join(base, os.path.relpath(folder, base), key)
    make_dirs(base, os.path.dirname(path))
    _files.write_atomic(path, data)


def _write_metric(base: str, run_dir: str, rdir: str, key: str) -> tuple[int, int, int]:
    """Write one metric file in MLflow's format: ``(points written, repeats of an identical point left
    out, points left out that a resume from a checkpoint superseded)``."""
    src = os.path.join(run_dir, "metrics", key + METRIC_SUFFIX)
    # (step, number of points it covers) per resume: MLflow has no notion of superseded points, so
    # they are left out, as get_metric_history leaves them out.
    covers = [
        (r["step"], n) for r in load_resumes(run_dir) if isinstance(n := r["points"].get(key), int) and n > 0
    ]
    index = 0  # the readable point's number in the file
    dest = safe_join(base, os.path.relpath(os.path.join(rdir, "metrics"), base), key)
    make_dirs(base, os.path.dirname(dest))
    tmp = f"{dest}.{TMP_MARK}.{os.getpid()}"
    count = duplicates = superseded = 0
    # An identical point logged twice is written once: MLflow's SQL stores keep one (their primary key
    # is key, timestamp, step, value), and `mlflow migrate-filestore` fails on a repeated one.
    seen: set[tuple[int, int, float | str]] = set()
    with open_binary(src) as f, open(tmp, "w", encoding="ascii") as out:
        rest = b""
        while True:
            data = f.read(_CHUNK)
            if not data:
                break
            data = rest + data
            end = data.rfind(b"\n")
            rest = data[end + 1 :]
            history = parse_metric_lines(data[: end + 1], key)
            lines = []
            for s, v, t in zip(history.steps, history.values, history.timestamps, strict=True):
                index += 1
                if covers and any(index <= n and s > step for step, n in covers):
                    superseded += 1
                    continue
                point = (t, s, v if v == v else "nan")
                if point in seen:
                    duplicates += 1
                    continue
                seen.add(point)
                lines.append(metric_line_text(t, v, s))
            out.write("".join(lines))
            count += len(lines)
    os.replace(tmp, dest)  # a torn last line (rest) is left out: MLflow would fail on it
    return count, duplicates, superseded


def _note_links(run_dir: str, report: ExportReport) -> None:
    base = os.path.realpath(os.path.join(run_dir, "artifacts"))
    for folder, dirs, files in os.walk(os.path.join(run_dir, "artifacts")):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                where = "inside" if inside(base, path) else "outside"
                report.skipped.append(f"artifact {path}: a symlink ({where} the run), not exported")


def _file_uri(path: str) -> str:
    """``file://`` URI of an absolute path, percent-encoded as MLflow writes it (``Path.as_uri``), so a
    folder name with ``%``, spaces or bytes that are not UTF-8 survives the YAML and MLflow's decoding."""
    import pathlib

    return pathlib.Path(path).as_uri()
