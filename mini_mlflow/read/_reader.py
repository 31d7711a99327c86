"""Read-only access to a store: experiments, runs, params, tags and metric histories.

The reader never writes and never fails a whole listing because of one bad run: a run whose meta.yaml
is missing, empty or garbage is reported as broken (with the path and the reason), a torn last metric
line is skipped, and a line that does not parse is skipped and counted.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from typing import Any

from .._errors import InvalidInputError, NotFoundError
from ..store import _pending
from ..store._experiments import iter_experiments
from ..store._files import READ_FLAGS, SymlinkRefusedError, check_inside, open_binary, read_bytes
from ..store._layout import (
    FORMAT_VERSION,
    HEARTBEAT_FILE,
    META_FILE,
    METRIC_SUFFIX,
    TMP_MARK,
    VALUE_SUFFIX,
    ms_from_iso,
    normalize_experiment_id,
    validate_key,
    validate_run_id,
    walk_keys,
)
from ..store._meta import read_meta
from ._metric_parse import MetricHistory as MetricHistory  # re-exported: the read API's types
from ._metric_parse import MetricPoint as MetricPoint
from ._metric_parse import parse_metric_lines as parse_metric_lines

#: A RUNNING run with no sign of life for this many heartbeat intervals is considered crashed.
STALE_AFTER_BEATS = 3
#: ...and at least this many seconds (covers a process that died before its first heartbeat).
STALE_MIN_SECONDS = 30.0


def last_point(path: str) -> MetricPoint | None:
    """The last complete point of a metric file, reading only its tail."""
    with open_binary(path) as f:
        size = f.seek(0, os.SEEK_END)
        chunk = 512
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            data = f.read(size - start)
            history = parse_metric_lines(data[data.find(b"\n") + 1 :] if start else data)
            if history.values or start == 0:
                break
            chunk *= 8
    if not history.values:
        return None
    return MetricPoint(history.steps[-1], history.values[-1], history.timestamps[-1])


def _read_json_value(path: str) -> Any:
    return json.loads(read_bytes(path))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def heartbeat_state(run_dir: str, meta: dict[str, Any], now_ms: int | None = None) -> str:
    """For a RUNNING run: "alive" if some writer shows a recent sign of life, else "crashed"."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    host = socket.gethostname()
    newest: int | None = None
    window = STALE_MIN_SECONDS * 1000
    beats = 0
    try:
        names = [n for n in os.listdir(run_dir) if n.startswith(HEARTBEAT_FILE + "-")]
    except OSError:
        names = []
    for name in names:
        try:
            beat = _read_json_value(os.path.join(run_dir, name))
            stamp, interval = int(beat["time"]), float(beat.get("interval", 10))
        except FileNotFoundError:
            # Listed, then removed: its writer just ended the run (meta.yaml was replaced first), so
            # the status the caller holds is stale, not a crash. A replaced beat is renamed, never gone.
            return "alive"
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if beat.get("host") == host and isinstance(beat.get("pid"), int) and not _pid_alive(beat["pid"]):
            continue  # that writer is gone; its beat proves nothing
        beats += 1
        window = max(window, STALE_AFTER_BEATS * interval * 1000)
        newest = stamp if newest is None else max(newest, stamp)
    if names and not beats:
        return "crashed"  # every writer that ever beat is known dead
    if newest is None and isinstance(meta.get("start_time"), str):
        newest = ms_from_iso(meta["start_time"])  # a writer without heartbeats: judge by its start
    if newest is None or now - newest > window:
        return "crashed"
    return "alive"


class Store:
    """A read view of a store root (it writes only derived caches under ``.index/``, if it can).

    Args:
        root: the store root.
        metric_cache_bytes: metric files at least this big keep a parsed binary copy in ``.index/``,
            so that reading their history again parses only what was appended since.
    """

    def __init__(self, root: str | os.PathLike[str] = "mlruns", metric_cache_bytes: int = 1 << 20) -> None:
        self.root = os.fspath(root)
        self.metric_cache_bytes = metric_cache_bytes

    # -- experiments -------------------------------------------------------------------------------

    def list_experiments(self) -> list[dict[str, Any]]:
        """Every experiment's meta (broken ones as ``{"experiment_id", "broken"}``)."""
        out = []
        for experiment_id, meta in iter_experiments(self.root):
            if meta is None:
                out.append({"experiment_id": experiment_id, "broken": "unreadable meta.yaml"})
            else:
                out.append({**meta, "experiment_id": experiment_id})
        return out

    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        for meta in self.list_experiments():
            if meta.get("name") == name:
                return meta
        return None

    # -- runs ----------------------------------------------------------------------------------

    def run_dirs(self, experiment_id: int | str) -> list[str]:
        exp_dir = os.path.join(self.root, normalize_experiment_id(experiment_id))
        try:
            names = os.listdir(exp_dir)
        except FileNotFoundError:
            return []
        return [
            os.path.join(exp_dir, n)
            for n in names
            if not n.startswith(".") and TMP_MARK not in n and os.path.isdir(os.path.join(exp_dir, n))
        ]

    def load_meta(self, run_dir: str) -> dict[str, Any]:
        """A run's meta.yaml, with ``broken`` (the reason) when it cannot be read."""
        path = os.path.join(run_dir, META_FILE)
        try:
            meta = read_meta(path)
        except FileNotFoundError:
            return {"run_id": os.path.basename(run_dir), "broken": f"{path}: meta.yaml is missing"}
        except Exception as exc:
            return {"run_id": os.path.basename(run_dir), "broken": f"{path}: {exc}"}
        version = meta.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            meta["newer_format"] = version
        if meta.get("status") == "RUNNING" and heartbeat_state(run_dir, meta) == "crashed":
            meta["crashed"] = True
        return meta

    def list_runs(self, experiment_id: int | str = 0) -> list[str]:
        """Run ids of an experiment, newest first by start time (broken runs last)."""
        metas = [self.load_meta(d) for d in self.run_dirs(experiment_id)]
        metas.sort(key=lambda m: str(m.get("start_time") or ""), reverse=True)
        return [str(m.get("run_id")) for m in metas]

    def find_run(self, run_id: str) -> str:
        """The folder of a run, searched across every experiment."""
        validate_run_id(run_id)
        for experiment_id, _ in iter_experiments(self.root):
            rdir = os.path.join(self.root, experiment_id, run_id)
            if os.path.isdir(rdir):
                return rdir
        raise NotFoundError(f"no run {run_id!r} in {self.root}")

    def get_run(self, run_id: str) -> dict[str, Any]:
        """``{"metadata", "params", "tags", "metrics"}``; metrics hold each key's last logged value."""
        rdir = self.find_run(run_id)
        _pending.drain(self.root, run_id)  # this process's own unwritten points first
        metrics = {}
        for key in self.metric_keys(run_id, rdir):
            point = last_point(os.path.join(rdir, "metrics", key + METRIC_SUFFIX))
            if point is not None:
                metrics[key] = point.value
        return {
            "metadata": self.load_meta(rdir),
            "params": self._values(rdir, "params"),
            "tags": self._values(rdir, "tags"),
            "metrics": metrics,
        }

    def _values(self, rdir: str, kind: str) -> dict[str, Any]:
        folder = os.path.join(rdir, kind)
        out = {}
        for key in walk_keys(folder, VALUE_SUFFIX)[0]:
            try:
                out[key] = _read_json_value(os.path.join(folder, key + VALUE_SUFFIX))
            except (OSError, ValueError):
                continue  # unreadable value: skipped here, reported by `show`
        return out

    def metric_keys(self, run_id: str, run_dir: str | None = None) -> list[str]:
        return walk_keys(os.path.join(run_dir or self.find_run(run_id), "metrics"), METRIC_SUFFIX)[0]

    def get_metric_history(self, run_id: str, key: str, *, include_superseded: bool = False) -> MetricHistory:
        """Every point of a metric in the order it was logged.

        Points that a resume from a checkpoint superseded (see ``resumes.json`` in docs/format.md)
        are left out unless ``include_superseded``.
        """
        try:
            validate_key(key, "metric key")
        except InvalidInputError:
            raise
        from ._metric_cache import read_metric

        rdir = self.find_run(run_id)
        _pending.drain(self.root, run_id)
        path = os.path.join(rdir, "metrics", key + METRIC_SUFFIX)
        try:
            check_inside(rdir, path)  # metrics/ or a key's folder planted as a symlink: refused
            fd = os.open(path, READ_FLAGS)
        except FileNotFoundError:
            raise NotFoundError(f"run {run_id} has no metric {key!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the file itself is a planted symlink
                raise SymlinkRefusedError(path) from None
            raise
        try:
            history, _, torn = read_metric(fd, key, self.root, run_id, self.metric_cache_bytes)
        finally:
            os.close(fd)
        history.skipped_lines += torn  # a torn last line: the writer died mid-write
        if not include_superseded:
            from ._resumes import drop_superseded, load_resumes

            resumes = load_resumes(rdir)
            if resumes:
                history = drop_superseded(history, resumes)
        return history


def resolve_run(root: str, ref: str) -> tuple[str, str]:
    """``(experiment_id, run_dir)`` of the run whose id is ``ref`` or starts with it (like git).

    Raises:
        InvalidInputError: ``ref`` is not a run-id prefix, or it matches several runs.
        NotFoundError: no run id starts with ``ref``.
    """
    if not isinstance(ref, str) or not ref or not all(c.isalnum() or c in "_-" for c in ref):
        raise InvalidInputError(f"invalid run id {ref!r}: expected a run id or a unique prefix of one")
    matches: list[tuple[str, str]] = []
    try:
        experiments = sorted((n for n in os.listdir(root) if n.isdigit()), key=int)
    except OSError:
        experiments = []
    for experiment_id in experiments:
        exp_dir = os.path.join(root, experiment_id)
        if os.path.isdir(os.path.join(exp_dir, ref)) and not os.path.islink(os.path.join(exp_dir, ref)):
            return experiment_id, os.path.join(exp_dir, ref)
        try:
            names = os.listdir(exp_dir)
        except OSError:
            continue
        for name in names:
            if name.startswith(ref) and TMP_MARK not in name and os.path.isdir(os.path.join(exp_dir, name)):
                matches.append((experiment_id, name))
    if not matches:
        raise NotFoundError(f"no run id starts with {ref!r} in {root}")
    if len(matches) > 1:
        shown = ", ".join(name for _, name in sorted(matches)[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise InvalidInputError(
            f"run id prefix {ref!r} is ambiguous: it matches {len(matches)} runs ({shown}{more}); "
            "type more characters"
        )
    experiment_id, name = matches[0]
    return experiment_id, os.path.join(root, experiment_id, name)
