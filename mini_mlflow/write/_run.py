"""Run: one tracked run's lifecycle (RUNNING → FINISHED/FAILED/KILLED), validation and logging calls.

``log_metric`` is the hot path: it checks its input against a set of keys already validated, stamps the
point and appends it to the run's in-memory buffer; the writer thread (``_writer``) puts it on disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import _log
from .._config import Settings, resolve
from .._errors import (
    InvalidInputError,
    ParamConflictError,
    RunEndedError,
    StorageError,
)
from ..store import _experiments, _operations
from ..store._files import storage_error
from ..store._layout import (
    check_text,
    iso_from_ms,
    ms_from_iso,
    normalize_experiment_id,
    now_ms,
    validate_key,
    validate_run_id,
)
from . import _registry
from ._buffer import PointBuffer
from ._coerce import check_status, status_for_exception, to_float, to_step, to_timestamp
from ._interrupts import HeldInterrupts
from ._writer import WRITER

if TYPE_CHECKING:
    from ..read._entities import Run as EntityRun
    from ..read._entities import RunData, RunInfo, RunInputs
    from ._system_metrics import SystemMetricsHandle

_time = time.time
_CLOSED: frozenset[str] = frozenset()  # the key set of an ended run: every log call takes the slow path


def new_run_id() -> str:
    """32 lowercase hex digits of a random (version 4) UUID, like MLflow's run ids."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


class Run:
    """A tracked run. Creating one starts it (or resumes it, given the id of an existing run).

    Args:
        run_id: Id of the run; a new 32-hex id when None. An existing id resumes that run.
        experiment_id: Experiment to create the run in (created on first use). Default ``0``.
        name: Run name.
        runs_dir: Store root; default ``MINI_MLFLOW_TRACKING_DIR`` or ``mlruns``.
        tags: Tags set when the run starts.
        parent_run_id: Id of the parent run, for nested runs.
        settings: Effective settings; resolved from the environment when None.
    """

    def __init__(
        self,
        run_id: str | None = None,
        experiment_id: int | str = 0,
        name: str | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._settings = settings or resolve(tracking_dir=runs_dir)
        #: Store root as given (or the configured default).
        self.runs_dir = runs_dir if runs_dir is not None else self._settings.tracking_dir
        root = os.path.abspath(os.fspath(self.runs_dir))
        exp = normalize_experiment_id(experiment_id)
        if name is not None and not isinstance(name, str):
            raise InvalidInputError(f"run name must be a str, got {type(name).__name__}")
        if name is not None:
            # Checked before anything is created: a lone surrogate used to fail half-way (in the
            # YAML dump), leaving a run folder without meta.yaml; NUL is refused as in experiment names.
            check_text(name, "run name")
        if parent_run_id is not None:
            validate_run_id(parent_run_id)  # stored in meta.yaml and used to find the parent: an id
        found = None
        if run_id is not None:
            validate_run_id(run_id)
            found = _operations.find_run_dir(root, run_id)
        else:
            run_id = new_run_id()
        try:
            if found is not None:
                found_exp, rdir = found
                if exp != found_exp and exp != "0":
                    raise InvalidInputError(
                        f"run {run_id} exists in experiment {found_exp}, not in experiment {exp}"
                    )
                changes: dict[str, Any] = {"status": "RUNNING", "end_time": None}
                if name is not None:
                    changes["run_name"] = name
                meta = _operations.update_run_meta(rdir, **changes)
                self.experiment_id: int | str = experiment_id if exp == found_exp else found_exp
            else:
                _experiments.ensure_experiment(root, exp)
                rdir, meta = _operations.create_run(root, exp, run_id, name, parent_run_id, now_ms())
                self.experiment_id = experiment_id
        except OSError as exc:
            raise storage_error("start run", root, exc) from exc
        #: The run's id.
        self.run_id: str = run_id
        #: The run's name.
        self.name: str | None = meta.get("run_name")
        #: RUNNING, FINISHED, FAILED or KILLED.
        self.status: str = "RUNNING"
        #: ISO 8601 UTC start time, e.g. ``2026-11-23T08:00:00.123Z``.
        self.start_time: str | None = meta.get("start_time")
        #: ISO 8601 UTC end time; None while running.
        self.end_time: str | None = None
        self.parent_run_id: str | None = meta.get("parent_run_id")
        self._user = str(meta.get("user") or "unknown")
        #: Absolute path of the run's folder.
        self.run_dir: str = rdir
        self._params: dict[str, str] = {}
        self._pending_values: dict[tuple[str, str], str] = {}
        self._end_lock = threading.Lock()
        self._buffer = PointBuffer(rdir, run_id, self._settings)
        self._append = self._buffer.queue.append
        self._extend = self._buffer.queue.extend
        self._metric_keys: set[str] | frozenset[str] = set()
        self._system_metrics: SystemMetricsHandle | None = None  # set before any hook can end the run
        self._buffer.drain()  # writes the first heartbeat now: readers never see a silent live run
        WRITER.register(self._buffer)
        _registry.on_start(self)
        _log.configure(self._settings.log_level)
        _log.info("run %s started in %s", run_id, rdir)
        if tags:
            self.set_tags(tags)
        if self._settings.sync_url and not self._settings.offline:
            from ._online import start_background  # online mode; imported only when asked for

            start_background(self)
        if self._settings.system_metrics:
            from ._system_metrics import start_system_metrics  # imported only when asked for

            self._system_metrics = start_system_metrics(self)

    def __repr__(self) -> str:
        return f"<Run {self.run_id} name={self.name!r} experiment={self.experiment_id} {self.status}>"

    @property
    def ended(self) -> bool:
        return self.status != "RUNNING"

    # -- metrics (the hot path) --------------------------------------------------------------------

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Record one metric point; returns at once (the writer thread writes it to disk).

        Args:
            key: Metric name; ``/`` makes folders (``train/loss`` → ``metrics/train/loss.jsonl``).
            value: A real number; NaN and ±inf are kept.
            step: Integer step, default 0 (as in MLflow).
            timestamp: Milliseconds since the epoch; default now.
        """
        now = _time()
        if key not in self._metric_keys:
            self._new_metric_key(key)
        if value.__class__ is not float:
            value = to_float(key, value)
        if step is None:
            step = 0
        elif step.__class__ is not int:
            step = to_step(key, step)
        self._append((key, value, step, now if timestamp is None else to_timestamp(key, timestamp)))
        if now > self._buffer.due:
            self._buffer.on_due(now)

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Record several metrics at one step (and one timestamp)."""
        now = _time()
        if step is None:
            step = 0
        elif step.__class__ is not int:
            step = to_step("<log_metrics>", step)
        stamp: Any = now if timestamp is None else to_timestamp("<log_metrics>", timestamp)
        keys = self._metric_keys
        try:
            items = metrics.items()
        except AttributeError:
            raise InvalidInputError(
                f"log_metrics takes a dict of key → value, got {type(metrics).__name__}"
            ) from None
        points = []
        for key, value in items:
            if key not in keys:
                self._new_metric_key(key)
            if value.__class__ is not float:
                value = to_float(key, value)
            points.append((key, value, step, stamp))
        self._extend(points)  # all validated first: a bad key logs none of the dict
        if now > self._buffer.due:
            self._buffer.on_due(now)

    def _new_metric_key(self, key: str) -> None:
        self._check_open()
        validate_key(key, "metric key")
        keys = self._metric_keys
        if keys is _CLOSED:  # end() on another thread is closing the run: a clear error, not a frozenset's
            raise RunEndedError(f"Cannot log to run {self.run_id}: it is ending")
        keys.add(key)  # type: ignore[union-attr]

    def _check_open(self) -> None:
        if self.status != "RUNNING":
            raise RunEndedError(
                f"Cannot log to run {self.run_id}: it has already ended with status {self.status}; "
                "resume it with start_run(run_id=...) to log more"
            )

    # -- params and tags ---------------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Record a param (write-once: the same value again is a no-op, a different one raises)."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record several params; all are validated before any is written."""
        self._check_open()
        if not isinstance(params, Mapping):
            raise InvalidInputError(f"params must be a dict, got {type(params).__name__}")
        texts = {}
        for key, value in params.items():
            validate_key(key, "param key")
            text = _operations.param_json(key, value)
            old = self._params.get(key)
            if old is not None and old != text:
                raise ParamConflictError(
                    f"param {key!r} was already logged with value {old}; cannot change it to {text} "
                    "(params are write-once; log a metric or a tag for values that change)"
                )
            texts[key] = text
        for key, text in texts.items():
            if self._params.get(key) != text:
                self._write_value("param", key, text)
                self._params[key] = text

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag (last write wins)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._check_open()
        if not isinstance(tags, Mapping):
            raise InvalidInputError(f"tags must be a dict, got {type(tags).__name__}")
        texts = {validate_key(k, "tag key"): _operations.tag_json(k, v) for k, v in tags.items()}
        for key, text in texts.items():
            self._write_value("tag", key, text)
            if key == _operations.RUN_NAME_TAG:
                self.name = json.loads(text)

    def _write_value(self, kind: str, key: str, text: str) -> None:
        write = _operations.write_param if kind == "param" else _operations.write_tag
        try:
            write(self.run_dir, key, text)
            self._pending_values.pop((kind, key), None)
        except OSError as exc:
            # Keep it and retry at flush()/end(): an I/O error must not stop the caller's loop.
            self._pending_values[(kind, key)] = text
            self._buffer._fail(f"write {kind}", key, exc)

    def _retry_values(self) -> None:
        for (kind, key), text in list(self._pending_values.items()):
            self._write_value(kind, key, text)

    # -- artifacts -------------------------------------------------------------------------------

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a file into the run's ``artifacts/`` (under ``artifact_path`` if given)."""
        self._check_open()
        src = os.fspath(local_path)
        if not os.path.isfile(src):
            raise InvalidInputError(
                f"log_artifact: {src!r} is not a file"
                + (" (use log_artifacts for a folder)" if os.path.isdir(src) else "")
            )
        dest = _operations.artifact_dest(self.run_dir, artifact_path, os.path.basename(src))
        self._artifact_io(lambda: _operations.copy_artifact(self.run_dir, src, dest), dest)

    def log_artifacts(self, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy every file under a folder into the run's artifacts (symlinked folders are not followed)."""
        self._check_open()
        top = os.fspath(local_dir)
        if not os.path.isdir(top):
            raise InvalidInputError(f"log_artifacts: {top!r} is not a folder")
        for folder, _dirs, files in os.walk(top):
            rel = os.path.relpath(folder, top)
            sub = artifact_path or ""
            if rel != ".":
                sub = "/".join(p for p in (sub, rel.replace(os.sep, "/")) if p)
            for name in sorted(files):
                src = os.path.join(folder, name)
                if os.path.isfile(src):
                    dest = _operations.artifact_dest(self.run_dir, sub or None, name)
                    self._artifact_io(
                        lambda s=src, d=dest: _operations.copy_artifact(self.run_dir, s, d), dest
                    )

    def log_dict(self, dictionary: Any, artifact_file: str) -> None:
        """Save a dict as a JSON (or, for .yaml/.yml, YAML) artifact."""
        self._check_open()
        if artifact_file.endswith((".yaml", ".yml")):
            from ..store._yaml import dump_yaml

            data = dump_yaml(dictionary)
        else:
            try:
                data = json.dumps(dictionary, indent=2, default=_operations._json_default).encode()
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"log_dict: cannot store as JSON: {exc}") from None
        self.write_artifact(artifact_file, data)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Save a string as a text artifact."""
        self._check_open()
        if not isinstance(text, str):
            raise InvalidInputError(f"log_text takes a str, got {type(text).__name__}")
        self.write_artifact(artifact_file, text.encode("utf-8"))

    def write_artifact(self, artifact_file: str, data: bytes) -> None:
        """Save ``data`` as the artifact file ``artifact_file`` (a path inside the run's artifacts)."""
        self._check_open()
        folder, _, name = str(artifact_file).rpartition("/")
        dest = _operations.artifact_dest(self.run_dir, folder or None, name)
        self._artifact_io(lambda: _operations.write_in_run(self.run_dir, dest, data), dest)

    @staticmethod
    def _artifact_io(action: Any, dest: str) -> None:
        try:
            action()
        except OSError as exc:
            raise storage_error("write artifact", dest, exc) from exc

    # -- lifecycle ---------------------------------------------------------------------------------

    def flush(self, *, _lock_timeout: float = -1) -> None:
        """Write everything logged so far to disk; raise ``StorageError`` if some of it could not be."""
        self._retry_values()
        buffer = self._buffer
        buffer.drain(_lock_timeout)
        if buffer.error is not None and not (self._pending_values or buffer.pending_points or buffer.dropped):
            # A param/tag write that failed earlier has now been retried successfully and no metric
            # point is held: the error is resolved. (Only metric writes cleared it before, so a
            # symlinked tags/ folder, once fixed, still made every flush()/end() raise.)
            buffer.error = None
        cause = buffer.error
        if cause is not None and self._pending_values and not (buffer.pending_points or buffer.dropped):
            # Only params/tags wait: name them and why, not the points' summary (there are none).
            raise StorageError(
                cause.errno, f"run {self.run_id}: not yet written: {self._pending_kinds()}: {cause.strerror}"
            ) from cause
        buffer.raise_error()
        if self._pending_values:
            raise StorageError(0, f"run {self.run_id}: not yet written: {self._pending_kinds()}")

    def _pending_kinds(self) -> str:
        return ", ".join(sorted({f"{kind} {key!r}" for kind, key in self._pending_values}))

    def end(self, status: str = "FINISHED", *, _lock_timeout: float = -1) -> None:
        """End the run: write what is buffered, then record ``status`` and the end time.

        Raises:
            RunEndedError: the run has already ended.
            StorageError: something logged could not be written; the run stays open (and keeps the
                data), so ``end`` can be called again once the cause is fixed.
        """
        status = check_status(status)
        sampler = self._system_metrics
        if sampler is not None and self.status == "RUNNING":
            sampler.stop()  # before the end lock: its thread may be logging this very moment
        # _lock_timeout bounds every wait when ending from a signal handler, which may have
        # interrupted this very thread inside a drain.
        acquired = False
        try:
            with HeldInterrupts():  # a Ctrl-C right after acquire() would otherwise keep the lock
                acquired = self._end_lock.acquire(timeout=_lock_timeout)
            if not acquired:
                raise StorageError(0, f"run {self.run_id}: could not end it: busy")
            if self.status != "RUNNING":
                raise RunEndedError(f"Run {self.run_id} has already ended with status {self.status}")
            keys, self._metric_keys = self._metric_keys, _CLOSED
            end_ms = now_ms()
            lost: StorageError | None = None
            try:
                try:
                    self.flush(_lock_timeout=_lock_timeout)
                    if self._settings.fsync != "never":
                        self._buffer.sync_files()
                        self._buffer.raise_error()
                except StorageError as err:
                    if self._pending_values or self._buffer.pending_points:
                        raise
                    lost = err  # only dropped points: nothing more to wait for; end, then report
                _operations.update_run_meta(
                    self.run_dir,
                    fsync=self._settings.fsync != "never",
                    lock_timeout=60 if _lock_timeout < 0 else _lock_timeout,
                    status=status,
                    end_time=iso_from_ms(end_ms),
                )
            except (OSError, TimeoutError) as exc:
                self._metric_keys = keys  # still open: nothing is lost, end() can be retried
                if isinstance(exc, StorageError):
                    raise
                raise storage_error("end run", self.run_dir, OSError(str(exc))) from exc
            self.status = status
            self.end_time = iso_from_ms(end_ms)
            self._stop_writing()
            _log.info("run %s ended: %s", self.run_id, status)
        finally:
            if acquired:
                self._end_lock.release()
        if lost is not None:
            raise lost

    def _leave(self) -> None:
        """Write what is buffered, then stop writing to the run from this process without ending it.

        For a helper process of the process that owns the run (a Kedro ``ParallelRunner`` worker):
        the owner records its end, so the status in ``meta.yaml`` is left as it is. The object then
        refuses to log, like an ended run. Raises ``StorageError`` as ``end`` does (the run stays open).
        """
        sampler = self._system_metrics
        if sampler is not None and self.status == "RUNNING":
            sampler.stop()
        with self._end_lock:
            if self.status != "RUNNING":
                return
            keys, self._metric_keys = self._metric_keys, _CLOSED
            try:
                self.flush()
            except StorageError:
                self._metric_keys = keys
                raise
            self.status = "LEFT"  # not a stored status: only this object says it, to refuse more logging
            self._stop_writing()
            _log.info("run %s left by process %d, still open", self.run_id, os.getpid())

    def _stop_writing(self) -> None:
        """This process stops writing to the run (``end`` and ``_leave``, once all is written)."""
        self._buffer.remove_heartbeat()
        WRITER.unregister(self._buffer)
        self._buffer.close_files()
        _registry.on_end(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.status != "RUNNING":
            return
        status = status_for_exception(exc_type, exc)
        try:
            self.end(status)
        except StorageError as err:
            if exc_type is None:
                raise
            warnings.warn(
                f"mini_mlflow: could not end run {self.run_id}: {err}", RuntimeWarning, stacklevel=2
            )

    # -- reading ---------------------------------------------------------------------------------

    @property
    def info(self) -> RunInfo:
        """MLflow's ``RunInfo`` of this run (``run.info.run_id``, times in ms), from this object's state."""
        from ..read._entities import RunInfo, artifact_uri

        return RunInfo(
            run_id=self.run_id,
            experiment_id=os.path.basename(os.path.dirname(self.run_dir)),
            user_id=self._user,
            status=self.status,
            start_time=ms_from_iso(self.start_time) or 0,
            end_time=ms_from_iso(self.end_time),
            lifecycle_stage="active",
            artifact_uri=artifact_uri(self.run_dir),
            run_name=self.name,
        )

    @property
    def data(self) -> RunData:
        """MLflow's ``RunData``: params and tags as text, each metric's latest value (read now)."""
        return self._entity().data

    @property
    def inputs(self) -> RunInputs:
        """The datasets recorded with ``log_input``."""
        from ..read._as_mlflow import run_inputs

        return run_inputs(self.run_dir)

    def _entity(self) -> EntityRun:
        from ..read._as_mlflow import run_entity
        from ..read._reader import Store

        return run_entity(Store(os.path.dirname(os.path.dirname(self.run_dir))), self.run_dir)

    @property
    def start_time_ms(self) -> int | None:
        return ms_from_iso(self.start_time)

    def to_dict(self) -> dict[str, Any]:
        """The run as the reader sees it (flushes first, so it includes everything logged so far)."""
        from ..read._reader import Store

        return Store(os.path.dirname(os.path.dirname(self.run_dir))).get_run(self.run_id)
