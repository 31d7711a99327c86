"""Integrations: Optuna. A parent run per study and a child run per trial, safe with ``n_jobs > 1``.

Usage::

    from mini_mlflow.integrations.optuna import MiniMlflowCallback

    callback = MiniMlflowCallback(experiment="tuning")
    study.optimize(objective, n_trials=20, n_jobs=4, callbacks=[callback])
    callback.end()                 # ends the study's run (FINISHED); at exit it ends by itself

Optuna calls the callback on the worker thread that ran the trial. Each trial's run is its own
``Run`` object, found by trial number, so no lock serialises the trials; the only lock guards the
creation of a study's parent run.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..write._run import Run
from ._runs import experiment_id, open_run
from ._safety import guarded, warn_once
from ._values import as_number, log_params, safe_key

if TYPE_CHECKING:
    import optuna

__all__ = ["MiniMlflowCallback"]

#: Optuna trial state → run status. A pruned trial was stopped early on purpose: KILLED.
STATUS_OF_STATE = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "PRUNED": "KILLED"}


class MiniMlflowCallback:
    """Record a study as a parent run and each finished trial as a child run.

    Each child holds the trial's params, its value(s) as metrics (``value``, or ``metric_name``; one
    per objective for multi-objective studies), its intermediate values (``intermediate`` at their
    step), and tags for the trial number, state, start and end times, distributions and user
    attributes. Its status follows the trial's state (COMPLETE → FINISHED, FAIL → FAILED, PRUNED →
    KILLED). The parent holds the study's name and directions and ``best_value`` after each trial.

    Args:
        experiment: Experiment name or id for the runs; default the Default experiment (0).
        runs_dir: Store root; default ``set_tracking_dir``/``MINI_MLFLOW_TRACKING_DIR``/``mlruns``.
        metric_name: Name of the objective value metric, or one name per objective.
        parent_run: An open ``Run`` to use as the parent of every study instead of a new one.
        tags: Tags for the parent run.
    """

    def __init__(
        self,
        experiment: str | int | None = None,
        *,
        runs_dir: str | os.PathLike[str] | None = None,
        metric_name: str | list[str] | tuple[str, ...] | None = None,
        parent_run: Run | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self._experiment = experiment
        self._runs_dir = runs_dir
        names = [metric_name] if isinstance(metric_name, str) else list(metric_name or [])
        self._metric_names = [safe_key(n) for n in names]
        self._given_parent = parent_run
        self._tags = dict(tags or {})
        self._parents: dict[str, Run] = {}
        self._parent_lock = threading.Lock()
        self._trial_runs: dict[tuple[str, int], Run] = {}
        if experiment is not None:
            # Resolve (and create) the experiment now, on the caller's thread: a bad name raises here.
            self._experiment = experiment_id(experiment, runs_dir)

    # -- runs ----------------------------------------------------------------------------------

    def parent_run(self, study: optuna.Study) -> Run:
        """The study's run (created on first use)."""
        if self._given_parent is not None:
            return self._given_parent
        name = study.study_name
        run = self._parents.get(name)
        if run is not None:
            return run
        with self._parent_lock:
            run = self._parents.get(name)
            if run is None:
                tags = {
                    "optuna.study_name": name,
                    "optuna.directions": ",".join(d.name for d in study.directions),
                    **self._tags,
                }
                run = open_run(experiment=self._experiment, run_name=name, runs_dir=self._runs_dir, tags=tags)
                self._parents[name] = run
        return run

    def run_for(self, trial: optuna.trial.BaseTrial) -> Run:
        """The run of ``trial`` (created when first asked for): log into it from the objective."""
        study = getattr(trial, "study", None)
        if study is None:
            raise TypeError("run_for needs a live optuna Trial (inside the objective); see track()")
        return self._trial_run(study, trial.number)

    def _trial_run(self, study: optuna.Study, number: int) -> Run:
        key = (study.study_name, number)
        run = self._trial_runs.get(key)
        if run is None:
            parent = self.parent_run(study)
            run = open_run(
                experiment=parent.experiment_id,
                run_name=f"trial-{number}",
                runs_dir=self._runs_dir if self._runs_dir is not None else _root_of(parent),
                parent_run_id=parent.run_id,
                tags={"optuna.study_name": study.study_name, "optuna.trial_number": number},
            )
            # Only this trial's thread creates this key: no other thread can race for it.
            self._trial_runs[key] = run
        return run

    def track(self, objective: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Decorate an objective so that its trial's run exists while it runs (see ``run_for``).

        An exception that Optuna will not catch ends the trial's run FAILED before it propagates
        (Ctrl-C: KILLED), with what the trial reported so far.
        """

        @functools.wraps(objective)
        def tracked(trial: Any) -> Any:
            try:
                run: Run | None = self.run_for(trial)
            except Exception as exc:  # tracking must not cost the trial
                warn_once("optuna", "starting a trial's run", exc)
                run = None
            try:
                return objective(trial)
            except BaseException as exc:  # Ctrl-C too: its run would end KILLED at exit, empty
                if run is not None and type(exc).__name__ != "TrialPruned":
                    status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
                    try:
                        # Optuna may catch it (``catch=``) and call the callback with the FAIL
                        # trial, or not and call nothing: either way the run ends here, so it
                        # gets now what the callback would log (the trial as stored so far).
                        _record(run, _live_trial(trial), "FAIL", {}, status)
                    except Exception as inner:
                        warn_once("optuna", "ending a failed trial's run", inner)
                        _end_bare(run, trial, status)
                raise

        return tracked

    # -- the callback ----------------------------------------------------------------------------

    @guarded("optuna", "logging a trial")
    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run = self._trial_runs.pop((study.study_name, trial.number), None)
        if run is None:
            run = self._trial_run(study, trial.number)
            self._trial_runs.pop((study.study_name, trial.number), None)
        state = trial.state.name
        if run.status == "RUNNING":
            values = trial.values or []
            metrics = {self._value_name(i, len(values)): float(v) for i, v in enumerate(values)}
            _record(run, trial, state, metrics)
        if state == "COMPLETE" and len(study.directions) == 1:
            best = as_number(study.best_value)
            if best is not None:
                self.parent_run(study).log_metric("best_value", best, step=trial.number)

    def _value_name(self, index: int, count: int) -> str:
        names = self._metric_names
        if index < len(names):
            return names[index]
        return "value" if count == 1 else f"value_{index}"

    # -- ending ----------------------------------------------------------------------------------

    def end(self, status: str = "FINISHED") -> None:
        """End the studies' parent runs (not a ``parent_run`` that was given) with ``status``."""
        with self._parent_lock:
            runs, self._parents = list(self._parents.values()), {}
        for run in runs:
            if run.status == "RUNNING":
                run.end(status)

    def __enter__(self) -> MiniMlflowCallback:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end("FINISHED" if exc_type is None else "KILLED" if exc_type is KeyboardInterrupt else "FAILED")


def _root_of(run: Run) -> str:
    return os.path.dirname(os.path.dirname(run.run_dir))


def _record(
    run: Run,
    trial: optuna.trial.FrozenTrial,
    state: str,
    metrics: dict[str, float],
    status: str | None = None,
) -> None:
    """Log a finished trial into its run (params, values, intermediate values, tags) and end it (with
    ``status``, else the one of its state)."""
    log_params(run, trial.params, "optuna")
    if metrics:
        run.log_metrics(metrics, step=trial.number)
    for step, value in sorted(trial.intermediate_values.items()):
        run.log_metric("intermediate", value, step=step)
    run.set_tags(_trial_tags(trial, state))
    run.end(status or STATUS_OF_STATE.get(state, "FINISHED"))


def _end_bare(run: Run, trial: Any, status: str) -> None:
    """End a failed trial's run with its params alone, when its stored state cannot be read."""
    try:
        if run.status == "RUNNING":
            log_params(run, trial.params, "optuna")
            run.set_tag("optuna.state", "FAIL")
            run.end(status)
    except Exception as exc:
        warn_once("optuna", "ending a failed trial's run", exc)


def _live_trial(trial: Any) -> optuna.trial.FrozenTrial:
    """The stored state of a trial still running (its intermediate values, attributes, times)."""
    from optuna.trial import TrialState

    for frozen in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return frozen
    raise LookupError(f"trial {trial.number} is not running in study {trial.study.study_name!r}")


def _trial_tags(trial: optuna.trial.FrozenTrial, state: str) -> dict[str, Any]:
    tags: dict[str, Any] = {"optuna.state": state, "optuna.trial_number": trial.number}
    if trial.datetime_start is not None:
        tags["optuna.datetime_start"] = trial.datetime_start.isoformat()
    if trial.datetime_complete is not None:
        tags["optuna.datetime_complete"] = trial.datetime_complete.isoformat()
    if trial.distributions:
        from optuna.distributions import distribution_to_json

        tags["optuna.distributions"] = json.dumps(
            {k: json.loads(distribution_to_json(d)) for k, d in trial.distributions.items()},
            sort_keys=True,
        )[:8000]
    for key, value in trial.user_attrs.items():
        tags[f"optuna.user_attrs/{safe_key(key)}"] = str(value)[:8000]
    return tags
