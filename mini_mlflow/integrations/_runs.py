"""Integrations: how a framework hook gets its run (explicitly, never through the thread's active run)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .. import _config
from .._errors import InvalidInputError
from ..store import _experiments
from ..store._layout import normalize_experiment_id
from ..write._run import Run
from ._left_open import never, unwatch, watch


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


class TrainingRuns:
    """The run a training callback logs to: the run given (never ended here), else one of its own
    per training, made on first use.

    A training that raised (or stopped early, where the framework calls no end hook) leaves its own
    run open: it is ended when the next training starts (``end_left_open``), or at exit by that
    training's outcome (see ``_left_open``).
    """

    def __init__(
        self,
        given: Run | None,
        *,
        experiment: str | int | None,
        run_name: str | None,
        runs_dir: str | os.PathLike[str] | None,
        framework: str,
        tag: str | None = None,
    ) -> None:
        self._given = given
        self._experiment = experiment
        self._run_name = run_name
        self._runs_dir = runs_dir
        self._framework = framework
        self._tag = tag or framework
        #: The run given, else the last one opened.
        self.run: Run | None = given

    def copy(self) -> TrainingRuns:
        """The same settings, no run of its own yet (a copy of a callback starts fresh)."""
        return TrainingRuns(
            self._given,
            experiment=self._experiment,
            run_name=self._run_name,
            runs_dir=self._runs_dir,
            framework=self._framework,
            tag=self._tag,
        )

    def owns_run(self) -> bool:
        """Whether the runs are this callback's own (no run was given)."""
        return self._given is None

    def open(self, stopped_early: Callable[[], bool] = never) -> Run:
        """The run to log to, opening one of its own if none is open. ``stopped_early`` tells, at
        exit, whether a training that left this run open stopped early (else it raised)."""
        run = self.run
        if run is None or (self._given is None and run.status != "RUNNING"):
            run = self.run = open_run(
                experiment=self._experiment,
                run_name=self._run_name,
                runs_dir=self._runs_dir,
                tags={"mini_mlflow.framework": self._tag},
            )
            watch(run, self._framework, stopped_early)
        return run

    def end_left_open(self, status: str) -> None:
        """End this callback's own run with ``status`` if it is still open."""
        run = self.run
        if self._given is None and run is not None:
            if run.status == "RUNNING":
                run.end(status)
            unwatch(run)
