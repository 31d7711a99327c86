"""Integrations: how a framework hook gets its run (explicitly, never through the thread's active run)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import _config
from .._errors import InvalidInputError
from ..store import _experiments
from ..store._layout import normalize_experiment_id
from ..write._run import Run


def store_root(runs_dir: str | os.PathLike[str] | None) -> str:
    """The store root a new run goes to: ``runs_dir``, else ``set_tracking_dir``/the environment."""
    return os.fspath(runs_dir) if runs_dir is not None else _config.tracking_dir()


def experiment_id(experiment: str | int | None, runs_dir: str | os.PathLike[str] | None) -> str:
    """The id of ``experiment``: given as an id (digits), or by name (created if missing); 0 if None."""
    if experiment is None:
        return "0"
    if isinstance(experiment, int) or (isinstance(experiment, str) and experiment.isdigit()):
        return normalize_experiment_id(experiment)
    if not isinstance(experiment, str):
        raise InvalidInputError(
            f"experiment must be a name (str) or an id (int), got {type(experiment).__name__}"
        )
    return _experiments.get_or_create_experiment(os.path.abspath(store_root(runs_dir)), experiment)


def open_run(
    *,
    experiment: str | int | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Run:
    """Start a run (or resume ``run_id``) in ``experiment`` under ``runs_dir``."""
    root = store_root(runs_dir)
    exp = "0" if run_id is not None and experiment is None else experiment_id(experiment, root)
    return Run(run_id, exp, run_name, root, tags=tags, parent_run_id=parent_run_id)
