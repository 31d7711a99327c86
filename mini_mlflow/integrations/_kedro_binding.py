"""Integrations: which run a Kedro dataset reads and writes, and where its versions live in the run.

Kedro saves on worker threads (``ThreadRunner``, ``is_async=True``), so the run is bound process-wide
by the hook (``bind_run``), never through the thread's active run.
"""

from __future__ import annotations

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
_lazy: Run | None = None
_lock = threading.Lock()


def bind_run(run: Run | None) -> None:
    """Make ``run`` the run that Kedro datasets without a ``run_id`` write to (None: unbind)."""
    global _bound
    with _lock:
        _bound = run


def bound_run(runs_dir: str | None = None) -> Run:
    """The bound run; without one (no hook), a run opened on first use (in ``runs_dir``), ended at exit."""
    global _lazy
    run = _bound
    if run is not None and run.status == "RUNNING":
        return run
    with _lock:
        if _bound is not None and _bound.status == "RUNNING":
            return _bound
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
        """The run to save into: ``run_id``'s run (resumed, then ended as it was) or the bound run."""
        run_id = self._run_id
        if run_id is None:
            yield bound_run(self._runs_dir)
            return
        for current in [_bound, *_registry.open_runs()]:  # a run this process has open: use it as is
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
            run.end(status if status != "RUNNING" else "FINISHED")

    def _reading(self) -> tuple[str, str]:
        """``(store root, run id)`` to load from: ``run_id``'s run, else the bound run."""
        if self._run_id is not None:
            return os.path.abspath(store_root(self._runs_dir)), self._run_id
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
