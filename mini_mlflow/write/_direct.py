"""Writes to a run that this process did not start (MLflow's ``run_id=`` arguments and ``MlflowClient``).

A run open in this process is written through its own buffer (``open_run``), so the lines of one metric
stay in logged order. Any other run is written synchronously, as MLflow's client does: each call is on
disk when it returns, through the run folder's descriptor like every other write, and its status is left
as it is (logging to a FINISHED run is allowed, as in MLflow; to a deleted one it is not).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from .._errors import InvalidInputError, NotFoundError
from ..store import _files, _operations, _pending
from ..store._layout import META_FILE, METRIC_SUFFIX, validate_key, validate_run_id
from ..store._meta import read_meta
from ..store._metric_lines import Point, format_lines
from . import _registry
from ._coerce import to_float, to_step, to_timestamp
from ._run import Run


def open_run(run_id: str) -> Run | None:
    """This process's open ``Run`` with this id, if there is one."""
    for run in _registry.open_runs():
        if run.run_id == run_id:
            return run
    return None


class DirectRun:
    """A run of the store written call by call (see the module docstring)."""

    def __init__(self, root: str, run_id: str) -> None:
        validate_run_id(run_id)
        found = _operations.find_run_dir(os.path.abspath(root), run_id)
        if found is None:
            raise NotFoundError(f"no run {run_id!r} in {root}")
        self.run_id = run_id
        self.run_dir = found[1]
        if read_meta(os.path.join(self.run_dir, META_FILE)).get("lifecycle_stage") == "deleted":
            raise InvalidInputError(f"run {run_id} is deleted: restore it before logging to it")
        # Written again after its end: this process's readers no longer take the run as final.
        _pending.forget_run(self.run_dir)

    def log_metrics(
        self, metrics: Mapping[str, Any], step: int | None = None, timestamp: int | None = None
    ) -> None:
        stamp = int(time.time() * 1000) if timestamp is None else to_timestamp("<log_metrics>", timestamp)
        at = 0 if step is None else to_step("<log_metrics>", step)
        self.log_points(
            [(validate_key(k, "metric key"), to_float(k, v), at, stamp) for k, v in metrics.items()]
        )

    def log_points(self, points: list[Point]) -> None:
        """Append points (already checked) to their metric files, one write per metric."""
        root, rel = _files.run_root_and_rel(self.run_dir)
        by_key: dict[str, list[Point]] = {}
        for point in points:
            by_key.setdefault(point[0], []).append(point)
        for key, group in by_key.items():
            fd = _files.open_append_beneath(root, f"{rel}/metrics/{key}{METRIC_SUFFIX}", 2, META_FILE)
            try:
                _files.append_fd(fd, format_lines(group))
            finally:
                os.close(fd)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, text in _operations.validate_params(dict(params)).items():
            _operations.write_param(self.run_dir, key, text)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        texts = {validate_key(k, "tag key"): _operations.tag_json(k, v) for k, v in tags.items()}
        for key, text in texts.items():
            _operations.write_tag(self.run_dir, key, text)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        dest = _operations.artifact_dest(self.run_dir, artifact_path, os.path.basename(local_path))
        _operations.copy_artifact(self.run_dir, local_path, dest)

    def write_artifact(self, artifact_file: str, data: bytes) -> None:
        folder, _, name = artifact_file.rpartition("/")
        dest = _operations.artifact_dest(self.run_dir, folder or None, name)
        _operations.write_in_run(self.run_dir, dest, data)

    def terminate(self, status: str, end_time: int | None = None) -> None:
        from ..store._layout import iso_from_ms, now_ms

        _operations.update_run_meta(
            self.run_dir, status=status, end_time=iso_from_ms(now_ms() if end_time is None else end_time)
        )


def run_for(root: str, run_id: str) -> Run | DirectRun:
    """The way to write run ``run_id``: its open ``Run`` here, else a :class:`DirectRun`."""
    return open_run(run_id) or DirectRun(root, run_id)
