"""Integrations: XGBoost. Eval metrics at step = boosting iteration, the best iteration, the booster's config.

Usage::

    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    xgb.train(params, dtrain, 100, evals=[(dvalid, "valid")], callbacks=[MiniMlflowCallback(run)])

Works with ``xgb.train``, ``xgb.cv`` (``-mean``/``-std`` metrics) and the scikit-learn wrappers
(``callbacks=`` of the estimator).
"""

from __future__ import annotations

import json
import os
from typing import Any

import xgboost

from ..write._run import Run
from ._boosting import EvalLogger
from ._runs import TrainingRuns
from ._safety import guarded

__all__ = ["MiniMlflowCallback"]


class MiniMlflowCallback(xgboost.callback.TrainingCallback):  # type: ignore[misc]
    """An XGBoost ``TrainingCallback`` logging to a mini_mlflow run.

    Each iteration logs ``<eval set>-<metric>`` (e.g. ``valid-rmse``) at step = iteration
    (counted from the rounds a continued booster, ``xgb_model=``, already had), NumPy values cast to
    float. ``best_iteration`` and ``best_score`` follow the last metric of the last eval set, the one
    XGBoost's early stopping watches by default (minimized unless its name says higher is better); at
    the end, early stopping's own best iteration and score (it may maximize or watch another metric)
    are logged at the last step and its best iteration is the tag ``xgboost.best_iteration``; the
    booster's config is the artifact ``xgboost/config.json``.

    Args:
        run: The run to log to (left open at the end). None: a new run per training, ended FINISHED
            (one whose training raised: FAILED, when this callback's next training starts or at exit).
        experiment: Experiment name or id for a new run.
        run_name: Name of a new run.
        runs_dir: Store root for a new run.
        log_model: Also save the trained booster as ``xgboost/model.json``.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        experiment: str | int | None = None,
        run_name: str | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
        log_model: bool = False,
    ) -> None:
        super().__init__()
        runs = TrainingRuns(
            run, experiment=experiment, run_name=run_name, runs_dir=runs_dir, framework="xgboost"
        )
        # XGBoost's early stopping watches the last metric of the last eval set.
        self._logger = EvalLogger(runs, judged_metric=-1)
        self._log_model = log_model
        #: Rounds the booster had before this training (``xgb_model=``): XGBoost numbers a continued
        #: training's epochs from 0 again, and its own callbacks add this to get the iteration.
        self._start = 0
        #: The last iteration logged: XGBoost's own best is logged there, as the metrics' last values.
        self._last = 0

    @property
    def run(self) -> Run | None:
        """The run logged to (None before training when no run was given)."""
        return self._logger.run

    @guarded("xgboost", "starting the run")
    def _begin(self, model: Any) -> None:
        # XGBoost calls after_training only when training returns: a run of this callback still
        # open here belongs to a training that raised; the new training gets a run of its own.
        self._logger.end_left_open("FAILED")
        self._start = 0
        rounds = getattr(model, "num_boosted_rounds", None)  # a Booster, or xgb.cv's pack of them
        if rounds is not None:
            self._start = int(rounds())
        self._logger.open()  # at exit too: a run still open then is a training that raised

    def before_training(self, model: Any) -> Any:
        self._begin(model)
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, list[Any]]]) -> bool:
        self._log(self._start + epoch, evals_log)
        return False  # never asks to stop

    @guarded("xgboost", "logging an iteration")
    def _log(self, epoch: int, evals_log: dict[str, dict[str, list[Any]]]) -> None:
        self._last = epoch
        results = [
            (data, metric, values[-1], None)
            for data, metrics in evals_log.items()
            for metric, values in metrics.items()
            if values
        ]
        self._logger.log(epoch, results)

    def after_training(self, model: Any) -> Any:
        self._finish(model)
        return model

    @guarded("xgboost", "ending the run")
    def _finish(self, model: Any) -> None:
        run = self._logger.run
        if run is None or run.status != "RUNNING":
            return
        save_config = getattr(model, "save_config", None)
        if save_config is not None:  # xgb.cv passes a pack of boosters, which has none of this
            if "best_iteration" in model.attributes():  # set by early stopping
                run.set_tag("xgboost.best_iteration", int(model.best_iteration))
                # Early stopping may maximize, or watch another metric (maximize=, metric_name=),
                # which the callback cannot see: its answer overrides the one followed here.
                self._logger.record_best(int(model.best_iteration), float(model.best_score), self._last)
            run.log_dict(json.loads(save_config()), "xgboost/config.json")
            if self._log_model:
                run.log_text(model.save_raw("json").decode("utf-8"), "xgboost/model.json")
        self._logger.end_left_open("FINISHED")
