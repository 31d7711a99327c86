"""Integrations: what the XGBoost and LightGBM callbacks share: eval metrics per iteration, the best one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..write._run import Run
from ._left_open import never
from ._runs import TrainingRuns
from ._values import as_number, safe_key


class EvalLogger:
    """Logs ``<data>-<metric>`` at step = iteration and follows the best iteration of one metric.

    The best is judged on one metric of the last evaluation set, the one the booster's own early
    stopping watches by default (``judged_metric``: XGBoost's last metric, LightGBM's first with
    ``first_metric_only``); it is logged as the metrics ``best_iteration`` and ``best_score``
    each time it improves (cheap, and their last values are the answer even when training stops
    early and no "end" hook runs).
    """

    def __init__(self, runs: TrainingRuns, judged_metric: int = 0) -> None:
        #: The run given, or this logger's own per training.
        self.runs = runs
        #: Index, among the last evaluation set's metrics, of the one the best is judged on.
        self._judged_metric = judged_metric
        self._best: tuple[float, int] | None = None
        self._keys: dict[tuple[str, str], str] = {}

    @property
    def run(self) -> Run | None:
        return self.runs.run

    def open(self, stopped_early: Callable[[], bool] = never) -> Run:
        """The run to log to: the one given, else a new one (made on first use). ``stopped_early``
        tells, at exit, whether a training that left this logger's run open stopped early."""
        previous = self.runs.run
        run = self.runs.open(stopped_early)
        if run is not previous:
            self._best = None
        return run

    def __deepcopy__(self, memo: dict[int, Any]) -> EvalLogger:
        # scikit-learn's clone (GridSearchCV, cross_val_score) deep-copies an estimator's callbacks;
        # a Run holds locks and files, so the copy shares the run given and starts a fresh state.
        return EvalLogger(self.runs.copy(), self._judged_metric)

    def owns_run(self) -> bool:
        return self.runs.owns_run()

    def end_left_open(self, status: str) -> None:
        """End the run this logger opened, if a training left it open (it stopped or raised early)."""
        self.runs.end_left_open(status)

    def key(self, data: str, metric: str) -> str:
        key = self._keys.get((data, metric))
        if key is None:
            key = self._keys[(data, metric)] = safe_key(f"{data}-{metric}")
        return key

    def log(self, iteration: int, results: Sequence[tuple[str, str, Any, bool | None]]) -> None:
        """Log one iteration: ``(data, metric, value, higher_is_better or None)`` per result.

        A value may be a ``(mean, std)`` pair (cross-validation): logged as ``-mean`` and ``-std``.
        """
        run = self.open()
        metrics: dict[str, float] = {}
        for data, metric, value, _higher in results:
            key = self.key(data, metric)
            if isinstance(value, tuple):
                mean, std = as_number(value[0]), as_number(value[1])
                if mean is not None:
                    metrics[key + "-mean"] = mean
                if std is not None:
                    metrics[key + "-std"] = std
            else:
                number = as_number(value)
                if number is not None:
                    metrics[key] = number
        if metrics:
            run.log_metrics(metrics, step=iteration)
        self._judge(iteration, results)

    def _judge(self, iteration: int, results: Sequence[tuple[str, str, Any, bool | None]]) -> None:
        if not results:
            return
        last_data = results[-1][0]
        _data, metric, value, higher = [r for r in results if r[0] == last_data][self._judged_metric]
        number = as_number(value[0] if isinstance(value, tuple) else value)
        if number is None or number != number:  # NaN never counts as an improvement
            return
        higher = higher if higher is not None else _higher_is_better(metric)
        best = self._best
        if best is None or (number > best[0] if higher else number < best[0]):
            self._best = (number, iteration)
            assert self.run is not None
            self.run.log_metrics({"best_iteration": float(iteration), "best_score": number}, step=iteration)

    def record_best(self, iteration: int, score: float, step: int) -> None:
        """Log the framework's own best iteration and score at ``step`` (the last one logged)."""
        self._best = (score, iteration)
        assert self.run is not None
        self.run.log_metrics({"best_iteration": float(iteration), "best_score": score}, step=step)

    def best_iteration(self) -> int | None:
        return None if self._best is None else self._best[1]


#: Metric names (XGBoost's and LightGBM's) where a larger value is better.
_HIGHER_IS_BETTER = ("auc", "aucpr", "map", "ndcg", "pre", "average_precision", "accuracy")


def _higher_is_better(metric: str) -> bool:
    name = metric.split("@", 1)[0].lower()
    return name in _HIGHER_IS_BETTER
