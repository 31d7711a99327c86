"""Import: read an MLflow FileStore into our store, so old MLflow projects open in ``ls`` and ``show``.

Tolerates MLflow's quirks: integer experiment ids in meta.yaml, a missing ``run_uuid`` (or ``run_id``),
metric lines with 2, 3 or 5 fields, duplicated lines (kept, as MLflow reports them) and a torn last line
(skipped, where MLflow would fail). Each run is assembled under a temporary name and renamed into place,
so an interrupted import leaves no half run; a run already in the store is skipped, so importing twice
changes nothing. Nothing is read through a symlink that leads out of the source tree.

The source is not trusted: only regular files are read (a FIFO would block, a symlink could lead
anywhere), each with a size bound (a meta.yaml, a param or a tag that is too big is reported, not read
whole), metric lines are read with a bounded length, ids that reach paths (run ids, parent run ids) are
validated, and any run that cannot be read is skipped with the reason in the report while the others
are imported exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from .._errors import InvalidInputError
from ..store import _experiments, _meta, _operations, _yaml
from ..store._layout import (
    FORMAT_VERSION,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    META_FILE,
    METRIC_SUFFIX,
    RUN_STATUSES,
    TMP_MARK,
    check_text,
    iso_from_ms,
    validate_artifact_path,
    validate_key,
    validate_run_id,
)
from ..store._metric_lines import format_point
from ._convert import STATUS_NAMES
from ._paths import inside, make_dirs, safe_join

#: Largest meta.yaml read (MLflow's are a few hundred bytes; a bigger one is not a run's meta.yaml).
MAX_META_BYTES = 1 << 20
#: Longest metric line read (a valid one is under 100 bytes: "<timestamp> <value> <step>").
MAX_LINE_BYTES = 4096
#: Metric lines written per batch while importing a metric (memory stays bounded for huge files).
_WRITE_BATCH = 10_000
_INT64 = 1 << 63


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
        InvalidInputError: ``src`` is not a folder, or it is a mini_mlflow store (which needs no import).
    """
    if not os.path.isdir(src):
        raise InvalidInputError(f"{src!r} is not a folder (expected an MLflow file store, e.g. ./mlruns)")
    base = os.path.realpath(src)
    sign = _mini_mlflow_sign(base)
    if sign is not None:
        # Read as a FileStore, our store "imported" with exit 0: params named `lr.json`, every metric
        # line skipped as unreadable. Refused before anything is written (not even the root folder).
        raise InvalidInputError(
            f"{src!r} looks like a mini_mlflow store, not an MLflow FileStore ({sign}); it needs no "
            f"import: point --root at it (mini-mlflow --root {src!r} ls) or copy the folder"
        )
    report = ImportReport(base)
    os.makedirs(root, exist_ok=True)
    root_real = os.path.realpath(root)
    seen: dict[str, str] = {}  # run id -> experiment folder it was found in first
    for name in sorted(os.listdir(base)):
        folder = os.path.join(base, name)
        if name.startswith(".") or name == "models" or not os.path.isdir(folder):
            continue
        if not inside(base, folder):
            report.skipped.append(f"{folder}: a symlink out of {base}, not followed")
            continue
        try:
            meta = _read_meta(base, os.path.join(folder, "meta.yaml"))
        except (OSError, ValueError) as exc:
            report.skipped.append(f"experiment folder {name}: no readable meta.yaml ({exc})")
            continue
        if meta.get("lifecycle_stage") == "deleted":
            report.skipped.append(f"experiment {meta.get('name')!r}: deleted in MLflow, not imported")
            continue
        exp_name = str(meta.get("name") or f"experiment_{name}")
        try:
            if (
                str(meta.get("experiment_id", name)) == "0"
                and exp_name == _experiments.DEFAULT_EXPERIMENT_NAME
            ):
                _experiments.ensure_experiment(root, _experiments.DEFAULT_EXPERIMENT_ID)
                local_exp = _experiments.DEFAULT_EXPERIMENT_ID
            else:
                local_exp = _experiments.get_or_create_experiment(
                    root, exp_name[: MAX_EXPERIMENT_NAME_LENGTH + 1]
                )
        except InvalidInputError as exc:
            report.skipped.append(f"experiment folder {name}: {exc}; its runs are not imported")
            continue
        report.experiments += 1
        for run_name in sorted(os.listdir(folder)):
            run_folder = os.path.join(folder, run_name)
            if run_name == "tags" or not os.path.lexists(os.path.join(run_folder, "meta.yaml")):
                continue
            if run_name in seen:
                report.skipped.append(
                    f"run {run_name} in experiment folder {name}: the same run id is also in experiment "
                    f"folder {seen[run_name]}; imported from there only"
                )
                continue
            seen[run_name] = name
            try:
                _import_run(base, root_real, run_folder, local_exp, report)
            except Exception as exc:  # a hostile run is skipped with its reason; the others go on
                report.skipped.append(f"run {run_name}: {type(exc).__name__}: {exc}")
    return report


def _mini_mlflow_sign(base: str) -> str | None:
    """What shows that ``base`` is a mini_mlflow store, or None when nothing does.

    MLflow's meta.yaml files carry no ``format_version`` and its metric files have no suffix and hold
    ``<timestamp> <value> <step>`` lines; ours write ``format_version`` and JSON lines in ``.jsonl``
    files. Each experiment's meta.yaml and its first run are looked at (a store is written by one tool),
    so the check costs a few small reads however big the store is.
    """
    for name in sorted(os.listdir(base)):
        folder = os.path.join(base, name)
        if name.startswith(".") or not os.path.isdir(folder) or not inside(base, folder):
            continue
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue  # an unreadable folder: the import itself says what it could not read
        runs = [os.path.join(folder, n) for n in names if os.path.lexists(os.path.join(folder, n, META_FILE))]
        for meta_path in [os.path.join(folder, META_FILE), *(os.path.join(r, META_FILE) for r in runs[:1])]:
            try:
                meta = _read_meta(base, meta_path)
            except (OSError, ValueError):
                continue  # the import reports it; it tells nothing about whose store this is
            if "format_version" in meta:
                return f"{os.path.relpath(meta_path, base)} has mini_mlflow's format_version"
        for run in runs[:1]:
            for current, _dirs, files in os.walk(os.path.join(run, "metrics")):
                for file in sorted(f for f in files if f.endswith(METRIC_SUFFIX)):
                    path = os.path.join(current, file)
                    if _json_lines(base, path):
                        return f"{os.path.relpath(path, base)} holds JSON lines"
    return None


def _json_lines(base: str, path: str) -> bool:
    """Whether the first line of ``path`` (a regular file inside ``base``) is one of our metric points."""
    try:
        _regular_inside(base, path, 1 << 62)  # any size: only the first line is read
        with open(path, "rb") as f:
            point = json.loads(f.readline(MAX_LINE_BYTES))
    except (OSError, ValueError):
        return False
    return isinstance(point, dict) and "value" in point


def _read_meta(base: str, path: str) -> dict[str, Any]:
    """A meta.yaml of the source: a regular file inside it, of sane size, parsed safely, a mapping."""
    _regular_inside(base, path, MAX_META_BYTES)
    return _meta.read_meta(path)


def _regular_inside(base: str, path: str, limit: int) -> int:
    """The size of ``path``; ``ValueError`` unless it is a regular file inside ``base`` of at most
    ``limit`` bytes (not a symlink, a FIFO that would block the read, or a device)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not inside(base, path):
        raise ValueError(f"{path} is a symlink; not followed")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file; not read")
    if info.st_size > limit:
        raise ValueError(f"{path} is {info.st_size:,} bytes, more than the {limit:,} allowed; not read")
    return info.st_size


def _import_run(base: str, root: str, src: str, experiment_id: str, report: ImportReport) -> None:
    if not inside(base, src):
        report.skipped.append(f"{src}: a symlink out of {base}, not followed")
        return
    meta = _read_meta(base, os.path.join(src, "meta.yaml"))
    run_id = validate_run_id(os.path.basename(src))
    if str(meta.get("run_id") or meta.get("run_uuid") or run_id) != run_id:
        raise InvalidInputError(f"meta.yaml names run {meta.get('run_id')!r}, the folder {run_id!r}")
    if _operations.find_run_dir(root, run_id) is not None:
        report.existing += 1
        return
    tags = _read_texts(base, os.path.join(src, "tags"), report, MAX_TAG_VALUE_LENGTH)
    params = _read_texts(base, os.path.join(src, "params"), report, MAX_PARAM_VALUE_LENGTH)
    parent = tags.get("mlflow.parentRunId")
    if parent is not None:
        try:
            validate_run_id(parent)
        except InvalidInputError as exc:  # it would become a path when the parent is looked up
            report.skipped.append(f"run {run_id}: parent {exc}; imported without a parent")
            parent = None
    final = safe_join(root, experiment_id, run_id)
    tmp = safe_join(root, experiment_id, f"{TMP_MARK}.import.{os.getpid()}.{run_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in _operations.RUN_SUBDIRS:
        make_dirs(root, os.path.join(tmp, sub))
    raw = meta.get("status")
    status = str(STATUS_NAMES.get(raw, raw) if isinstance(raw, int) else raw or "").upper()
    status = {"SCHEDULED": "RUNNING"}.get(status, status)
    if status not in RUN_STATUSES:
        status = "FAILED"
    run_meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "run_name": _text(meta.get("run_name")) or tags.get("mlflow.runName"),
        "experiment_id": experiment_id,
        "status": status,
        "start_time": iso_from_ms(_int(meta.get("start_time"))),
        "end_time": iso_from_ms(_int(meta.get("end_time"))),
        "user": _text(meta.get("user_id")) or tags.get("mlflow.user") or "unknown",
        "source": {
            "name": tags.get("mlflow.source.name", _text(meta.get("source_name")) or ""),
            "git_commit": tags.get("mlflow.source.git.commit") or _text(meta.get("source_version")) or None,
        },
        "lifecycle_stage": "deleted" if meta.get("lifecycle_stage") == "deleted" else "active",
        "parent_run_id": parent,
    }
    try:
        # meta.yaml first: the folder is hidden (temporary name) until renamed into place.
        _operations.write_in_run(tmp, os.path.join(tmp, META_FILE), _yaml.dump_yaml(run_meta))
        for key, text in params.items():
            _operations.write_param(tmp, key, _operations.param_json(key, text))
        for key, text in tags.items():
            _operations.write_tag(tmp, key, json.dumps(check_text(text, f"tag {key!r}"), ensure_ascii=False))
        report.points += _import_metrics(base, src, tmp, report)
        report.artifacts += _import_artifacts(base, src, meta, tmp, root, report)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.runs += 1


def _int(value: Any) -> int | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        return None
    return int(value) if -_INT64 < value < _INT64 else None


def _text(value: Any) -> str | None:
    """A meta.yaml field that must be text: a list, a mapping or a date there is not taken as a name."""
    return value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else None


def _files_under(base: str, folder: str, report: ImportReport) -> list[tuple[str, str]]:
    """``(key, path)`` of the regular files below ``folder``; symlinks are reported, never read."""
    out: list[tuple[str, str]] = []
    if os.path.islink(folder):
        report.skipped.append(f"{folder}: a symlink, not followed")
        return out
    if not os.path.isdir(folder):
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
            if not os.path.isfile(path):
                report.skipped.append(f"{path}: not a regular file, not read")
                continue
            out.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    return out


def _read_texts(base: str, folder: str, report: ImportReport, limit: int) -> dict[str, str]:
    """Param or tag values (at most ``limit`` characters of UTF-8 text each); the rest is reported."""
    out = {}
    for key, path in _files_under(base, folder, report):
        try:
            validate_key(key)
            _regular_inside(base, path, 4 * limit)  # UTF-8: at most 4 bytes a character
            with open(path, "rb") as f:
                text = f.read(4 * limit + 1).decode("utf-8")
            if len(text) > limit:
                raise ValueError(f"{len(text):,} characters, more than MLflow's {limit:,}; not imported")
            check_text(text, "value")  # NUL: refused by the store as by the API
        except UnicodeDecodeError:
            report.skipped.append(f"{path}: not UTF-8 text; not imported")
            continue
        except (InvalidInputError, ValueError) as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        out[key] = text
    return out


def _import_metrics(base: str, src: str, dest: str, report: ImportReport) -> int:
    count = 0
    for key, path in _files_under(base, os.path.join(src, "metrics"), report):
        try:
            validate_key(key, "metric key")
        except InvalidInputError as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        out = os.path.join(dest, "metrics", key + METRIC_SUFFIX)
        with open(path, "rb") as f, _operations.open_in_run(dest, out) as sink:  # through real folders only
            lines: list[str] = []
            for raw in _bounded_lines(f, report):
                point = _metric_point(raw)
                if point is None:
                    if raw.strip():
                        report.skipped_lines += 1
                    continue
                lines.append(format_point(*point))
                if len(lines) == _WRITE_BATCH:
                    sink.write("".join(lines).encode())
                    count += len(lines)
                    lines.clear()
            sink.write("".join(lines).encode())
            count += len(lines)
    return count


def _bounded_lines(f: Any, report: ImportReport) -> Any:
    """The lines of a metric file, none longer than ``MAX_LINE_BYTES`` (a longer one is skipped whole,
    read in pieces: a file of garbage without a newline never sits in memory at once)."""
    while raw := f.readline(MAX_LINE_BYTES):
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            report.skipped_lines += 1
            continue
        yield raw


def _metric_point(raw: bytes) -> tuple[int, float, int] | None:
    """``(step, value, timestamp)`` of a FileStore metric line, or None when it is not one."""
    parts = raw.split()
    if len(parts) not in (2, 3, 5) or (not raw.endswith(b"\n") and len(parts) < 3):
        return None  # a torn last line ("<timestamp> <val") is not guessed at
    try:
        stamp, value = int(parts[0]), float(parts[1])
        step = int(parts[2]) if len(parts) >= 3 else 0
    except ValueError:
        return None
    if not (-_INT64 <= stamp < _INT64 and -_INT64 <= step < _INT64):
        return None  # MLflow's steps and timestamps are 64-bit
    return step, value, stamp


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
        _operations.copy_artifact(dest, path, target)  # through real folders only, as every write into a run
        count += 1
    return count
