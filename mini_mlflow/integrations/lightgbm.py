"""Integrations: LightGBM. Eval metrics at step = boosting iteration, params, the best iteration.

Usage::

    from mini_mlflow.integrations.lightgbm import mini_mlflow_callback

    lgb.train(params, train_set, 100, valid_sets=[valid], callbacks=[mini_mlflow_callback(run)])

Works with ``lgb.train``, ``lgb.cv`` (``-mean``/``-std`` metrics) and the scikit-learn wrappers.
"""

from __future__ import annotations

import os
from typing import Any

from ..write._run import Run
from ._boosting import EvalLogger
from ._runs import TrainingRuns
from ._safety import guarded
from ._values import log_params

__all__ = ["MiniMlflowLightgbmCallback", "mini_mlflow_callback"]


class MiniMlflowLightgbmCallback:
    """A LightGBM callback (see :func:`mini_mlflow_callback`)."""

    #: Runs after LightGBM's ``record_evaluation`` (20) and before ``early_stopping`` (30), which
    #: raises to stop: the stopping iteration is logged too.
    order = 25
    before_iteration = False

    def __init__(self, logger: EvalLogger) -> None:
        self._logger = logger
        #: The booster (or ``CVBooster``) of the training whose run is open, to tell at the next
        #: training's start, or at exit, whether it stopped early or raised.
        self._model: Any = None

    def _stopped_early(self) -> bool:
        # LightGBM has no end hook: a run still open is the last training's, which either stopped
        # early (LightGBM then sets its best_iteration, 0 or -1 until then) or raised.
        return (getattr(self._model, "best_iteration", 0) or 0) > 0

    def _end_previous(self) -> None:
        self._logger.end_left_open("FINISHED" if self._stopped_early() else "FAILED")
        self._model = None

    @property
    def run(self) -> Run | None:
        return self._logger.run

    def __call__(self, env: Any) -> None:
        self._log(env)

    @guarded("lightgbm", "logging an iteration")
    def _log(self, env: Any) -> None:
        logger = self._logger
        if env.iteration == env.begin_iteration:
            self._end_previous()
            run = logger.open(self._stopped_early)  # at exit too (no next training)
            if env.params:
                log_params(run, dict(env.params), "lightgbm")
        results = []
        for entry in env.evaluation_result_list or ():
            data, metric, value, higher = entry[0], entry[1], entry[2], entry[3]
            if len(entry) > 4:  # lgb.cv: (data, metric, mean, higher_is_better, std)
                value = (value, entry[4])
            results.append((data, metric, value, bool(higher)))
        if logger.owns_run():
            self._model = env.model
        logger.log(env.iteration, results)
        if env.iteration + 1 >= env.end_iteration and logger.owns_run():
            self._model = None
            logger.end_left_open("FINISHED")


def mini_mlflow_callback(
    run: Run | None = None,
    *,
    experiment: str | int | None = None,
    run_name: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
) -> MiniMlflowLightgbmCallback:
    """A LightGBM callback logging to a mini_mlflow run.

    Each iteration logs ``<data>-<metric>`` (e.g. ``valid_0-l2``) at step = iteration, NumPy values
    cast to float; the first iteration logs the params. ``best_iteration`` and ``best_score`` follow
    the first metric of the last validation set, in the direction LightGBM reports for it.

    Args:
        run: The run to log to (left open). None: a new run per training, ended FINISHED after its
            last iteration (after early stopping: when the next training starts, or at exit; a
            training that raised: FAILED then).
        experiment: Experiment name or id for a new run.
        run_name: Name of a new run.
        runs_dir: Store root for a new run.
    """
    runs = TrainingRuns(
        run, experiment=experiment, run_name=run_name, runs_dir=runs_dir, framework="lightgbm"
    )
    return MiniMlflowLightgbmCallback(EvalLogger(runs))
