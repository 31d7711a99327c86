"""Import: read an MLflow FileStore into our store, so old MLflow projects open in ``ls`` and ``show``.

Tolerates MLflow's quirks: integer experiment ids in meta.yaml, a missing ``run_uuid`` (or ``run_id``),
metric lines with 2, 3 or 5 fields, duplicated lines (kept, as MLflow reports them) and a torn last line
(skipped, where MLflow would fail). Each run is assembled under a temporary name and renamed into place,
so an interrupted import leaves no half run; a run already in the store is skipped, so importing twice
changes nothing. Nothing is read through a symlink that leads out of the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from .. import _store
from .._buffer import format_point
from .._errors import InvalidInputError
from .._layout import (
    FORMAT_VERSION,
    METRIC_SUFFIX,
    RUN_STATUSES,
    TMP_MARK,
    iso_from_ms,
    validate_artifact_path,
    validate_key,
    validate_run_id,
)
from ._convert import STATUS_NAMES
from ._paths import inside, make_dirs, safe_join


@dataclass
class ImportReport:
    """What an import read and wrote."""

    source: str
    experiments: int = 0
    runs: int = 0
    points: int = 0
    artifacts: int = 0
    #: Runs already in the store (left as they are).
    existing: int = 0
    skipped_lines: int = 0
    #: Things not imported and why.
    skipped: list[str] = field(default_factory=list)


def import_mlflow(src: str, root: str) -> ImportReport:
    """Copy every active experiment and run of the MLflow FileStore at ``src`` into the store at ``root``.

    Raises:
        InvalidInputError: ``src`` is not a folder.
    """
    if not os.path.isdir(src):
        raise InvalidInputError(f"{src!r} is not a folder (expected an MLflow file store, e.g. ./mlruns)")
    base = os.path.realpath(src)
    report = ImportReport(base)
    os.makedirs(root, exist_ok=True)
    root_real = os.path.realpath(root)
    for name in sorted(os.listdir(base)):
        folder = os.path.join(base, name)
        if name.startswith(".") or name == "models" or not os.path.isdir(folder):
            continue
        if not inside(base, folder):
            report.skipped.append(f"{folder}: a symlink out of {base}, not followed")
            continue
        try:
            meta = _store.read_meta(os.path.join(folder, "meta.yaml"))
        except (OSError, ValueError) as exc:
            report.skipped.append(f"experiment folder {name}: no readable meta.yaml ({exc})")
            continue
        if meta.get("lifecycle_stage") == "deleted":
            report.skipped.append(f"experiment {meta.get('name')!r}: deleted in MLflow, not imported")
            continue
        exp_name = str(meta.get("name") or f"experiment_{name}")
        if str(meta.get("experiment_id", name)) == "0" and exp_name == _store.DEFAULT_EXPERIMENT_NAME:
            _store.ensure_experiment(root, _store.DEFAULT_EXPERIMENT_ID)
            local_exp = _store.DEFAULT_EXPERIMENT_ID
        else:
            local_exp = _store.get_or_create_experiment(root, exp_name)
        report.experiments += 1
        for run_name in sorted(os.listdir(folder)):
            run_folder = os.path.join(folder, run_name)
            if run_name == "tags" or not os.path.isfile(os.path.join(run_folder, "meta.yaml")):
                continue
            try:
                _import_run(base, root_real, run_folder, local_exp, report)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                report.skipped.append(f"run {run_name}: {type(exc).__name__}: {exc}")
    return report


def _import_run(base: str, root: str, src: str, experiment_id: str, report: ImportReport) -> None:
    if not inside(base, src):
        report.skipped.append(f"{src}: a symlink out of {base}, not followed")
        return
    meta = _store.read_meta(os.path.join(src, "meta.yaml"))
    run_id = validate_run_id(os.path.basename(src))
    if str(meta.get("run_id") or meta.get("run_uuid") or run_id) != run_id:
        raise InvalidInputError(f"meta.yaml names run {meta.get('run_id')!r}, the folder {run_id!r}")
    if _store.find_run_dir(root, run_id) is not None:
        report.existing += 1
        return
    tags = _read_texts(base, os.path.join(src, "tags"), report)
    params = _read_texts(base, os.path.join(src, "params"), report)
    final = safe_join(root, experiment_id, run_id)
    tmp = safe_join(root, experiment_id, f"{TMP_MARK}.import.{os.getpid()}.{run_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in _store.RUN_SUBDIRS:
        make_dirs(root, os.path.join(tmp, sub))
    raw = meta.get("status")
    status = str(STATUS_NAMES.get(raw, raw) if isinstance(raw, int) else raw or "").upper()
    status = {"SCHEDULED": "RUNNING"}.get(status, status)
    if status not in RUN_STATUSES:
        status = "FAILED"
    run_meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "run_name": meta.get("run_name") or tags.get("mlflow.runName"),
        "experiment_id": experiment_id,
        "status": status,
        "start_time": iso_from_ms(_int(meta.get("start_time"))),
        "end_time": iso_from_ms(_int(meta.get("end_time"))),
        "user": str(meta.get("user_id") or tags.get("mlflow.user") or "unknown"),
        "source": {
            "name": tags.get("mlflow.source.name", meta.get("source_name") or ""),
            "git_commit": tags.get("mlflow.source.git.commit") or meta.get("source_version") or None,
        },
        "lifecycle_stage": str(meta.get("lifecycle_stage") or "active"),
        "parent_run_id": tags.get("mlflow.parentRunId"),
    }
    try:
        # meta.yaml first: the folder is hidden (temporary name) until renamed into place.
        _store.write_meta(os.path.join(tmp, "meta.yaml"), run_meta)
        for key, text in params.items():
            _store.write_param(tmp, key, _store.param_json(key, text))
        for key, text in tags.items():
            _store.write_tag(tmp, key, json.dumps(text, ensure_ascii=False))
        report.points += _import_metrics(base, src, tmp, report)
        report.artifacts += _import_artifacts(base, src, meta, tmp, root, report)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.runs += 1


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _files_under(base: str, folder: str, report: ImportReport) -> list[tuple[str, str]]:
    """``(key, path)`` of the regular files below ``folder``; symlinks are reported, never read."""
    out: list[tuple[str, str]] = []
    if not os.path.isdir(folder) or os.path.islink(folder):
        return out
    for current, dirs, files in os.walk(folder):
        for name in list(dirs):
            if os.path.islink(os.path.join(current, name)):
                report.skipped.append(f"{os.path.join(current, name)}: a symlink, not followed")
                dirs.remove(name)
        for name in sorted(files):
            path = os.path.join(current, name)
            if os.path.islink(path) or not inside(base, path):
                report.skipped.append(f"{path}: a symlink, not read")
                continue
            out.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    return out


def _read_texts(base: str, folder: str, report: ImportReport) -> dict[str, str]:
    out = {}
    for key, path in _files_under(base, folder, report):
        try:
            validate_key(key)
        except InvalidInputError as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            out[key] = f.read()
    return out


def _import_metrics(base: str, src: str, dest: str, report: ImportReport) -> int:
    count = 0
    for key, path in _files_under(base, os.path.join(src, "metrics"), report):
        try:
            validate_key(key, "metric key")
        except InvalidInputError as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        lines = []
        with open(path, "rb") as f:
            for raw in f:
                parts = raw.split()
                try:
                    if len(parts) not in (2, 3, 5) or (not raw.endswith(b"\n") and len(parts) < 3):
                        raise ValueError
                    stamp, value = int(parts[0]), float(parts[1])
                    step = int(parts[2]) if len(parts) >= 3 else 0
                except ValueError:
                    if raw.strip():
                        report.skipped_lines += 1
                    continue
                lines.append(format_point(step, value, stamp))
        out = os.path.join(dest, "metrics", key + METRIC_SUFFIX)
        make_dirs(os.path.realpath(dest), os.path.dirname(out))
        with open(out, "w", encoding="utf-8") as f:
            f.write("".join(lines))
        count += len(lines)
    return count


def _import_artifacts(
    base: str, src: str, meta: dict[str, Any], dest: str, root: str, report: ImportReport
) -> int:
    folder = os.path.join(src, "artifacts")
    uri = str(meta.get("artifact_uri") or "")
    if not os.path.isdir(folder) and uri.startswith("file://"):
        # A store whose artifacts live elsewhere inside the tree (percent-encoded, as MLflow writes it).
        folder = os.fsdecode(unquote_to_bytes(uri[len("file://") :]))
        if not inside(base, folder):
            report.skipped.append(f"artifacts of {src}: {folder} is outside {base}, not imported")
            return 0
    count = 0
    for rel, path in _files_under(base, folder, report):
        try:
            rel = validate_artifact_path(rel)
        except InvalidInputError as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        target = safe_join(root, os.path.relpath(os.path.join(dest, "artifacts"), root), rel)
        make_dirs(root, os.path.dirname(target))
        shutil.copyfile(path, target)
        count += 1
    return count
