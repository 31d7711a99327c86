"""ExperimentTracker: a reusable context manager that starts a run on enter and ends it on exit."""

from __future__ import annotations

import os
from typing import Any

from .._errors import ActiveRunExistsError, NoActiveRunError
from ..write._run import Run


class ExperimentTracker:
    """Start a run per ``with`` block, in one experiment and store.

    Args:
        run_name: Default name of the runs it starts.
        experiment_id: Experiment of the runs (created on first use). Default ``0``.
        runs_dir: Store root; default ``MINI_MLFLOW_TRACKING_DIR`` or ``mlruns``.

    Example::

        tracker = ExperimentTracker(experiment_id=0)
        for lr in (0.1, 0.01):
            with tracker as run:
                run.log_param("lr", lr)
    """

    def __init__(
        self,
        run_name: str | None = None,
        experiment_id: int | str = 0,
        runs_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.run_name = run_name
        self.experiment_id = experiment_id
        from .._config import resolve

        self.runs_dir = runs_dir if runs_dir is not None else resolve().tracking_dir
        self._active: Run | None = None

    def start_run(
        self,
        run_name: str | None = None,
        experiment_id: int | str | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Start a run (one at a time per tracker)."""
        if self._active is not None and not self._active.ended:
            raise ActiveRunExistsError(
                f"Run {self._active.run_id} is already an active run of this tracker; end it first"
            )
        self._active = Run(
            run_id=run_id,
            experiment_id=self.experiment_id if experiment_id is None else experiment_id,
            name=run_name if run_name is not None else self.run_name,
            runs_dir=self.runs_dir,
        )
        return self._active

    def active_run(self) -> Run | None:
        if self._active is not None and self._active.ended:
            self._active = None
        return self._active

    def end_run(self, status: str = "FINISHED") -> None:
        run = self.active_run()
        if run is None:
            raise NoActiveRunError("No active run in this tracker")
        self._active = None
        run.end(status)

    def list_runs(self, experiment_id: int | str | None = None) -> list[str]:
        """Run ids of the tracker's experiment (or ``experiment_id``), newest first."""
        from ..read._reader import Store

        return Store(self.runs_dir).list_runs(self.experiment_id if experiment_id is None else experiment_id)

    def get_run(self, run_id: str, experiment_id: int | str | None = None) -> dict[str, Any]:
        """``{"metadata", "params", "tags", "metrics"}`` of a run (this tracker's own writes included)."""
        from ..read._reader import Store

        return Store(self.runs_dir).get_run(run_id)

    def __enter__(self) -> Run:
        return self.start_run()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        run, self._active = self._active, None
        if run is not None:
            run.__exit__(exc_type, exc, tb)
