"""Integrations: which run a Kedro dataset reads and writes, and where its versions live in the run.

Kedro saves on worker threads (``ThreadRunner``, ``is_async=True``), so the run is bound process-wide
by the hook (``bind_run``), never through the thread's active run. ``ParallelRunner`` saves in worker
processes (forked or spawned): the binding is also published in the environment they inherit, and a
worker writes to the pipeline's run as one more writer, which leaves the run open after each save
(``Run._leave``): the process that owns the run ends it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import InvalidInputError
from ..store import _operations
from ..store._files import open_binary
from ..write import _registry
from ..write._run import Run
from ._runs import open_run, store_root

_bound: Run | None = None
#: The process that bound ``_bound``: in a forked worker the copied object is not this process's run.
_bound_pid = 0
_lazy: Run | None = None
_lock = threading.Lock()
#: ``{"pid", "root", "run_id"}`` of the bound run, as JSON, for the worker processes of the binder.
BOUND_ENV = "MINI_MLFLOW_KEDRO_RUN"


def bind_run(run: Run | None) -> None:
    """Make ``run`` the run that Kedro datasets without a ``run_id`` write to (None: unbind)."""
    global _bound, _bound_pid
    with _lock:
        _bound, _bound_pid = run, os.getpid()
        if run is None:
            os.environ.pop(BOUND_ENV, None)
        else:
            where = {"pid": os.getpid(), "root": os.path.abspath(root_of(run)), "run_id": run.run_id}
            os.environ[BOUND_ENV] = json.dumps(where)


def _mine() -> Run | None:
    """The bound run if this process bound it (in a forked worker ``_bound`` is the binder's copy)."""
    return _bound if _bound_pid == os.getpid() else None


def parent_run() -> tuple[str, str] | None:
    """``(store root, run id)`` of the run bound by the process this one is a worker of, if any."""
    if _mine() is not None:
        return None  # the binder itself
    try:
        where = json.loads(os.environ[BOUND_ENV])
        if where["pid"] == os.getpid():
            return None
        return str(where["root"]), str(where["run_id"])
    except (KeyError, TypeError, ValueError):
        return None


def bound_run(runs_dir: str | None = None) -> Run:
    """The bound run; without one (no hook), a run opened on first use (in ``runs_dir``), ended at exit."""
    global _lazy
    run = _mine()
    if run is not None and run.status == "RUNNING":
        return run
    with _lock:
        run = _mine()
        if run is not None and run.status == "RUNNING":
            return run
        if _lazy is None or _lazy.status != "RUNNING":
            _lazy = open_run(runs_dir=runs_dir, tags={"kedro.opened_by": "dataset"})
        return _lazy


def root_of(run: Run) -> str:
    return os.path.dirname(os.path.dirname(run.run_dir))


class RunAccess:
    """What every mini_mlflow Kedro dataset shares: the run to use, versions, artifact I/O."""

    _run_id: str | None
    _runs_dir: str | None
    _version: Any

    def _setup(self, run_id: str | None, runs_dir: str | os.PathLike[str] | None, version: Any) -> None:
        self._run_id = run_id
        self._runs_dir = os.fspath(runs_dir) if runs_dir is not None else None
        self._version = version

    # -- the run ---------------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Run]:
        """The run to save into: ``run_id``'s run (resumed, then ended or left as it was) or the bound
        run (in a worker process of the binder: that run opened as one more writer, then left)."""
        run_id = self._run_id
        if run_id is None:
            parent = parent_run()
            if parent is None:
                yield bound_run(self._runs_dir)
                return
            run = open_run(run_id=parent[1], runs_dir=parent[0])  # a worker process of the pipeline
            try:
                yield run
            finally:
                run._leave()
            return
        for current in [_mine(), *_registry.open_runs()]:  # a run this process has open: use it as is
            if current is not None and current.run_id == run_id and current.status == "RUNNING":
                yield current
                return
        from ..read._reader import Store

        root = store_root(self._runs_dir)
        status = Store(root).get_run(run_id)["metadata"]["status"]
        run = open_run(run_id=run_id, runs_dir=root)
        try:
            yield run
        finally:
            if status == "RUNNING":
                run._leave()  # another process's live run (or a crashed one): left as it was
            else:
                run.end(status)

    def _reading(self) -> tuple[str, str]:
        """``(store root, run id)`` to load from: ``run_id``'s run, else the bound run."""
        if self._run_id is not None:
            return os.path.abspath(store_root(self._runs_dir)), self._run_id
        parent = parent_run()
        if parent is not None:
            return parent
        run = _bound if _bound is not None else _lazy
        if run is None:  # loading never opens a run: there would be nothing in it
            raise InvalidInputError(
                "no run to load from: give the dataset a run_id, or run the pipeline with MiniMlflowHook "
                "(or bind_run(run))"
            )
        return root_of(run), run.run_id

    # -- versions --------------------------------------------------------------------------------

    def _save_path(self, path: str) -> str:
        """``path`` in the run's artifacts, or ``path/<version>/<name>`` when versioned (Kedro's layout)."""
        if not self._version:
            return path
        from kedro.io.core import generate_timestamp

        version = self._version.save or generate_timestamp()
        return f"{path}/{version}/{path.rpartition('/')[2]}"

    def _load_path(self, run_dir: str, path: str) -> str:
        if not self._version:
            return path
        name = path.rpartition("/")[2]
        if self._version.load:
            return f"{path}/{self._version.load}/{name}"
        folder = os.path.join(run_dir, "artifacts", path)
        try:
            versions = sorted(os.listdir(folder), reverse=True)
        except FileNotFoundError:
            versions = []
        for version in versions:  # Kedro's timestamps sort in time order
            if os.path.isfile(os.path.join(folder, version, name)):
                return f"{path}/{version}/{name}"
        raise InvalidInputError(f"no version of artifact {path!r} in run {os.path.basename(run_dir)}")

    # -- artifact files --------------------------------------------------------------------------

    @staticmethod
    def _write_artifact(run: Run, path: str, data: bytes) -> None:
        folder, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="mini-mlflow-kedro-") as tmp:
            local = os.path.join(tmp, name)
            with open(local, "wb") as f:
                f.write(data)
            run.log_artifact(local, folder or None)

    @staticmethod
    def _artifact_file(run_dir: str, path: str) -> str:
        """The absolute path of artifact ``path`` of a run, checked to stay inside its artifacts."""
        folder, _, name = path.rpartition("/")
        return _operations.artifact_dest(run_dir, folder or None, name)

    def _read_artifact(self, path: str) -> bytes:
        root, run_id = self._reading()
        from ..read._reader import Store

        run_dir = Store(root).find_run(run_id)
        target = self._artifact_file(run_dir, self._load_path(run_dir, path))
        with open_binary(target) as f:
            return f.read()

    def _describe_run(self) -> dict[str, Any]:
        return {"run_id": self._run_id, "runs_dir": self._runs_dir, "version": self._version}
