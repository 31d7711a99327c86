"""XGBoost and LightGBM: eval metrics at step = iteration as plain floats, the best iteration, real training."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mini_mlflow import Run

from .helpers import history, need, runs_of

np = need("numpy")


def _data(seed: int = 0, rows: int = 2000) -> tuple[object, object]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 10))
    y = x[:, 0] * 2.0 + x[:, 1] - x[:, 2] * 0.5 + rng.normal(scale=0.5, size=rows)
    return x, y


# -- XGBoost -------------------------------------------------------------------------------------------


def test_xgboost_logs_each_eval_metric_at_its_iteration(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data()
    train, valid = xgb.DMatrix(x[:1500], label=y[:1500]), xgb.DMatrix(x[1500:], label=y[1500:])
    recorded: dict[str, dict[str, list[float]]] = {}
    with Run(runs_dir=store) as run:
        xgb.train(
            {"max_depth": 3, "eta": 0.3, "eval_metric": ["rmse", "mae"]},
            train,
            30,
            evals=[(train, "train"), (valid, "valid")],
            evals_result=recorded,
            callbacks=[MiniMlflowCallback(run, log_model=True)],
            verbose_eval=False,
        )
        assert run.status == "RUNNING"  # a run that was given is left open
    for data in ("train", "valid"):
        for metric in ("rmse", "mae"):
            points = history(store, run.run_id, f"{data}-{metric}")
            assert points == list(enumerate(recorded[data][metric]))  # step = iteration, exact values
    mae = recorded["valid"]["mae"]  # the last metric: the one XGBoost's early stopping watches
    best = min(range(30), key=lambda i: (mae[i], i))
    assert history(store, run.run_id, "best_iteration")[-1] == (best, float(best))
    assert history(store, run.run_id, "best_score")[-1] == (best, mae[best])
    artifacts = Path(run.run_dir) / "artifacts" / "xgboost"
    assert (artifacts / "config.json").is_file() and (artifacts / "model.json").is_file()


def test_xgboost_early_stopping_records_its_best_iteration_and_ends_its_own_run(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data(1)
    # Labels of the validation set that are noise: the validation error stops improving early.
    train = xgb.DMatrix(x[:1000], label=y[:1000])
    valid = xgb.DMatrix(x[1000:], label=np.random.default_rng(5).normal(size=1000))
    callback = MiniMlflowCallback(experiment="boosting", run_name="xgb", runs_dir=store)
    booster = xgb.train(
        {"max_depth": 4, "eta": 0.5},
        train,
        200,
        evals=[(valid, "valid")],
        early_stopping_rounds=5,
        callbacks=[callback],
        verbose_eval=False,
    )
    assert booster.best_iteration < 150
    (run,) = runs_of(store, "1")
    assert run["metadata"]["status"] == "FINISHED" and run["metadata"]["run_name"] == "xgb"
    assert run["tags"]["xgboost.best_iteration"] == str(booster.best_iteration)
    assert run["metrics"]["best_iteration"] == booster.best_iteration
    points = history(store, run["metadata"]["run_id"], "valid-rmse")
    assert [s for s, _ in points] == list(range(booster.best_iteration + 6))


def test_xgboost_best_iteration_is_the_early_stopping_one_with_several_metrics(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    rng = np.random.default_rng(1)  # a seed where rmse and mae are best at different iterations
    x, xv = rng.normal(size=(300, 5)), rng.normal(size=(100, 5))
    y, yv = x[:, 0] + rng.normal(size=300) * 0.5, xv[:, 0] + rng.normal(size=100) * 2
    recorded: dict[str, dict[str, list[float]]] = {}
    with Run(runs_dir=store) as run:
        booster = xgb.train(
            {"eta": 0.3, "eval_metric": ["rmse", "mae"]},
            xgb.DMatrix(x, label=y),
            200,
            evals=[(xgb.DMatrix(xv, label=yv), "valid")],
            evals_result=recorded,
            early_stopping_rounds=5,
            callbacks=[MiniMlflowCallback(run)],
            verbose_eval=False,
        )
    rmse = recorded["valid"]["rmse"]
    assert rmse.index(min(rmse)) != booster.best_iteration  # the metrics disagree on the best
    metrics = mini_run(store, run.run_id)["metrics"]
    assert metrics["best_iteration"] == booster.best_iteration
    assert metrics["best_score"] == pytest.approx(float(booster.best_score))


def test_xgboost_continued_training_logs_at_the_boosters_own_iterations(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data()
    train, valid = xgb.DMatrix(x[:1500], label=y[:1500]), xgb.DMatrix(x[1500:], label=y[1500:])
    params = {"max_depth": 3, "eta": 0.3}
    with Run(runs_dir=store) as run:
        first = xgb.train(params, train, 4, evals=[(valid, "valid")], callbacks=[MiniMlflowCallback(run)])
        # xgb_model= continues the booster: XGBoost numbers these epochs 0..2 again, but they are its
        # rounds 4..6 (as its own early stopping and checkpoint callbacks count them).
        second = xgb.train(
            params,
            train,
            3,
            evals=[(valid, "valid")],
            callbacks=[MiniMlflowCallback(run)],
            xgb_model=first,
            verbose_eval=False,
        )
    assert second.num_boosted_rounds() == 7
    assert [s for s, _ in history(store, run.run_id, "valid-rmse")] == list(range(7))


def test_xgboost_cv_logs_mean_and_std(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data(2, rows=600)
    with Run(runs_dir=store) as run:
        results = xgb.cv(
            {"max_depth": 2}, xgb.DMatrix(x, label=y), 5, nfold=3, callbacks=[MiniMlflowCallback(run)]
        )
    means = history(store, run.run_id, "test-rmse-mean")
    assert means == list(enumerate(results["test-rmse-mean"]))
    assert len(history(store, run.run_id, "test-rmse-std")) == 5


def test_a_failing_callback_warns_once_and_training_goes_on(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data(3, rows=300)
    run = Run(runs_dir=store)
    run.end()  # logging to an ended run raises inside the callback
    data = xgb.DMatrix(x, label=y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        booster = xgb.train({}, data, 10, evals=[(data, "train")], callbacks=[MiniMlflowCallback(run)])
    assert booster.num_boosted_rounds() == 10  # training finished
    messages = [str(w.message) for w in caught if "mini_mlflow xgboost" in str(w.message)]
    assert len(messages) == 1 and "logging an iteration failed (RunEndedError" in messages[0]


# -- LightGBM ------------------------------------------------------------------------------------------


def test_lightgbm_logs_each_eval_metric_at_its_iteration_with_params(store: Path) -> None:
    lgb = need("lightgbm")
    from mini_mlflow.integrations.lightgbm import mini_mlflow_callback

    x, y = _data()
    train = lgb.Dataset(x[:1500], label=y[:1500])
    valid = lgb.Dataset(x[1500:], label=y[1500:], reference=train)
    recorded: dict[str, dict[str, list[float]]] = {}
    params = {"objective": "regression", "metric": ["l2", "l1"], "learning_rate": 0.1, "verbose": -1}
    with Run(runs_dir=store) as run:
        lgb.train(
            params,
            train,
            30,
            valid_sets=[train, valid],
            valid_names=["train", "valid"],
            callbacks=[mini_mlflow_callback(run), lgb.record_evaluation(recorded)],
        )
    for data in ("train", "valid"):
        for metric in ("l2", "l1"):
            points = history(store, run.run_id, f"{data}-{metric}")
            assert points == list(enumerate(recorded[data][metric]))
            assert all(type(v) is float for _, v in points)
    got = mini_run(store, run.run_id)
    assert got["params"]["learning_rate"] == 0.1 and got["params"]["metric"] == ["l2", "l1"]
    l2 = recorded["valid"]["l2"]
    best = min(range(30), key=lambda i: (l2[i], i))
    assert got["metrics"]["best_iteration"] == best and got["metrics"]["best_score"] == l2[best]


def test_lightgbm_early_stopping_matches_the_boosters_best_iteration(store: Path) -> None:
    lgb = need("lightgbm")
    from mini_mlflow.integrations.lightgbm import mini_mlflow_callback

    x, y = _data(1)
    train = lgb.Dataset(x[:1000], label=y[:1000])
    valid = lgb.Dataset(x[1000:], label=np.random.default_rng(5).normal(size=1000), reference=train)
    with Run(runs_dir=store) as run:
        booster = lgb.train(
            {"objective": "regression", "learning_rate": 0.3, "verbose": -1},
            train,
            300,
            valid_sets=[valid],
            callbacks=[mini_mlflow_callback(run), lgb.early_stopping(5, verbose=False)],
        )
    assert 0 < booster.best_iteration < 250
    # LightGBM counts its best iteration from 1; the step is the 0-based iteration.
    assert mini_run(store, run.run_id)["metrics"]["best_iteration"] == booster.best_iteration - 1
    steps = [s for s, _ in history(store, run.run_id, "valid_0-l2")]
    assert steps == list(range(booster.best_iteration + 5))  # the stopping iteration is logged too


def test_lightgbm_cv_logs_mean_and_std_and_its_own_run_ends(store: Path) -> None:
    lgb = need("lightgbm")
    from mini_mlflow.integrations.lightgbm import mini_mlflow_callback

    x, y = _data(2, rows=600)
    results = lgb.cv(
        {"objective": "regression", "verbose": -1},
        lgb.Dataset(x, label=y),
        5,
        nfold=3,
        stratified=False,
        callbacks=[mini_mlflow_callback(experiment="cv", runs_dir=store)],
    )
    (run,) = runs_of(store, "1")
    assert run["metadata"]["status"] == "FINISHED"
    means = history(store, run["metadata"]["run_id"], "valid-l2-mean")
    assert means == list(enumerate(results["valid l2-mean"]))
    assert len(history(store, run["metadata"]["run_id"], "valid-l2-std")) == 5


def mini_run(root: Path, run_id: str) -> dict[str, object]:
    import mini_mlflow as mm

    return mm.Store(root).get_run(run_id)


@pytest.fixture(autouse=True)
def _quiet_lightgbm() -> None:
    warnings.filterwarnings("ignore", message=".*Found `num_iterations`.*")


# -- a cloned estimator, a training that raises --------------------------------------------------------


def test_xgboost_callback_of_a_cloned_estimator_logs_to_the_same_run(store: Path) -> None:
    xgb = need("xgboost")
    sklearn_base = need("sklearn.base")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data(4, rows=300)
    with Run(runs_dir=store) as run:
        estimator = xgb.XGBRegressor(n_estimators=5, callbacks=[MiniMlflowCallback(run)])
        # GridSearchCV and cross_val_score clone the estimator, which deep-copies its callbacks.
        sklearn_base.clone(estimator).fit(x[:200], y[:200], eval_set=[(x[200:], y[200:])], verbose=False)
    assert [s for s, _ in history(store, run.run_id, "validation_0-rmse")] == list(range(5))


def _raising_metric(after: int, *, lightgbm: bool = False) -> Callable[..., tuple[object, ...]]:
    """A custom eval metric that raises from its call number ``after + 1`` on."""
    calls = []

    def metric(*_args: object) -> tuple[object, ...]:
        calls.append(1)
        if len(calls) > after:
            raise RuntimeError("metric broke")
        return ("constant", 0.5, False) if lightgbm else ("constant", 0.5)

    return metric


def test_xgboost_a_training_that_raised_ends_failed_and_the_next_gets_its_own_run(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data(5, rows=300)
    data = xgb.DMatrix(x, label=y)
    callback = MiniMlflowCallback(runs_dir=store)
    metric = _raising_metric(3)
    with pytest.raises(RuntimeError, match="metric broke"):
        xgb.train({}, data, 10, evals=[(data, "train")], custom_metric=metric, callbacks=[callback])
    xgb.train({}, data, 5, evals=[(data, "train")], callbacks=[callback], verbose_eval=False)
    failed, finished = runs_of(store, "0")
    assert failed["metadata"]["status"] == "FAILED" and finished["metadata"]["status"] == "FINISHED"
    assert [s for s, _ in history(store, failed["metadata"]["run_id"], "train-rmse")] == list(range(3))
    assert [s for s, _ in history(store, finished["metadata"]["run_id"], "train-rmse")] == list(range(5))


def test_lightgbm_a_training_that_raised_ends_failed_one_stopped_early_finished(store: Path) -> None:
    lgb = need("lightgbm")
    from mini_mlflow.integrations.lightgbm import mini_mlflow_callback

    x, y = _data(6, rows=600)
    train = lgb.Dataset(x[:400], label=y[:400])
    valid = lgb.Dataset(x[400:], label=np.random.default_rng(7).normal(size=200), reference=train)
    params = {"objective": "regression", "learning_rate": 0.5, "verbose": -1}
    callback = mini_mlflow_callback(runs_dir=store)
    with pytest.raises(RuntimeError, match="metric broke"):
        lgb.train(
            params,
            train,
            10,
            valid_sets=[valid],
            feval=_raising_metric(3, lightgbm=True),
            callbacks=[callback],
        )
    stop = lgb.early_stopping(2, verbose=False)
    booster = lgb.train(params, train, 200, valid_sets=[valid], callbacks=[callback, stop])
    assert booster.best_iteration < 150  # stopped early: LightGBM calls no hook at its end
    lgb.train(params, train, 3, valid_sets=[valid], callbacks=[callback])
    assert [r["metadata"]["status"] for r in runs_of(store, "0")] == ["FAILED", "FINISHED", "FINISHED"]


def test_xgboost_best_iteration_is_early_stoppings_own_when_it_maximizes(store: Path) -> None:
    xgb = need("xgboost")
    from mini_mlflow.integrations.xgboost import MiniMlflowCallback

    x, y = _data(8, rows=600)
    train = xgb.DMatrix(x[:400], label=y[:400])
    valid = xgb.DMatrix(x[400:], label=np.random.default_rng(9).normal(size=200))  # noise: stops early

    def negative_mse(predt: Any, data: Any) -> tuple[str, float]:
        return "neg_mse", -float(np.mean((predt - data.get_label()) ** 2))

    recorded: dict[str, dict[str, list[float]]] = {}
    with Run(runs_dir=store) as run:
        booster = xgb.train(
            {"eta": 0.5, "disable_default_eval_metric": 1},
            train,
            100,
            evals=[(valid, "valid")],
            custom_metric=negative_mse,
            maximize=True,  # seen by early stopping only, not by the callbacks
            early_stopping_rounds=3,
            evals_result=recorded,
            callbacks=[MiniMlflowCallback(run)],
            verbose_eval=False,
        )
    scores = recorded["valid"]["neg_mse"]
    assert booster.best_iteration == scores.index(max(scores)) != scores.index(min(scores))
    metrics = mini_run(store, run.run_id)["metrics"]
    assert metrics["best_iteration"] == booster.best_iteration
    assert metrics["best_score"] == pytest.approx(float(booster.best_score))


_TRAININGS = {
    "lightgbm_stopped_early": """
        import lightgbm as lgb
        stop = lgb.early_stopping(2, verbose=False)
        booster = lgb.train(params, train, 200, valid_sets=[valid], callbacks=[mini_mlflow_callback(runs_dir=store), stop])
        assert booster.best_iteration < 150
    """,
    "lightgbm_raised": """
        import lightgbm as lgb
        try:
            lgb.train(params, train, 10, valid_sets=[valid], feval=broken, callbacks=[mini_mlflow_callback(runs_dir=store)])
        except RuntimeError:
            pass
    """,
    "xgboost_raised": """
        import xgboost as xgb
        from mini_mlflow.integrations.xgboost import MiniMlflowCallback
        d = xgb.DMatrix(x, label=y)
        try:
            xgb.train({}, d, 10, evals=[(d, "train")], custom_metric=broken_xgb, callbacks=[MiniMlflowCallback(runs_dir=store)])
        except RuntimeError:
            pass
    """,
    "lightgbm_interrupted": """
        import lightgbm as lgb
        lgb.train(params, train, 10, valid_sets=[valid], feval=interrupted, callbacks=[mini_mlflow_callback(runs_dir=store)])
    """,
}
_SETUP = """
import sys
import numpy as np
import lightgbm as lgb
from mini_mlflow.integrations.lightgbm import mini_mlflow_callback
store = sys.argv[1]
rng = np.random.default_rng(6)
x = rng.normal(size=(600, 10))
y = x[:, 0] * 2.0 + rng.normal(scale=0.5, size=600)
train = lgb.Dataset(x[:400], label=y[:400])
valid = lgb.Dataset(x[400:], label=rng.normal(size=200), reference=train)
params = {"objective": "regression", "learning_rate": 0.5, "verbose": -1}
calls = []
def broken(*args):
    calls.append(1)
    if len(calls) > 3:
        raise RuntimeError("metric broke")
    return ("constant", 0.5, False)
def broken_xgb(*args):
    calls.append(1)
    if len(calls) > 3:
        raise RuntimeError("metric broke")
    return ("constant", 0.5)
def interrupted(*args):
    calls.append(1)
    if len(calls) > 3:
        raise KeyboardInterrupt
    return ("constant", 0.5, False)
"""


@pytest.mark.parametrize(
    ("training", "then", "status"),
    [
        ("lightgbm_stopped_early", "raise RuntimeError('the program failed later')", "FINISHED"),
        ("lightgbm_raised", "print('the program caught it and ended well')", "FAILED"),
        ("xgboost_raised", "print('the program caught it and ended well')", "FAILED"),
        ("lightgbm_interrupted", "", "KILLED"),  # the program's own end decides (Ctrl-C)
    ],
)
def test_a_run_left_open_by_its_training_ends_by_that_training_at_exit(
    store: Path, tmp_path: Path, training: str, then: str, status: str
) -> None:
    # No next training to end it: at exit the run follows its training, not the program's end.
    need("lightgbm")
    need("xgboost")
    script = tmp_path / "train.py"
    script.write_text(_SETUP + textwrap.dedent(_TRAININGS[training]) + then + "\n")
    full = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    full["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, str(script), str(store)], env=full, capture_output=True, text=True, timeout=300
    )
    assert (done.returncode == 0) == ("ended well" in then), done.stderr[-3000:]
    assert [r["metadata"]["status"] for r in runs_of(store, "0")] == [status], done.stderr[-3000:]


def test_a_forked_child_ending_leaves_its_parents_open_run_alone(store: Path, tmp_path: Path) -> None:
    # A process forked after a training left its run open (a DataLoader worker, a multiprocessing
    # pool) ends without touching that run: the parent's exit decides it.
    need("xgboost")
    script = tmp_path / "train.py"
    script.write_text(
        _SETUP
        + textwrap.dedent(_TRAININGS["xgboost_raised"])
        + textwrap.dedent("""
            import os
            import mini_mlflow as mm
            pid = os.fork()
            if pid == 0:
                sys.exit(0)  # runs the exit hooks the child inherited
            os.waitpid(pid, 0)
            (run_id,) = mm.Store(store).list_runs("0")
            print(mm.Store(store).get_run(run_id)["metadata"]["status"])
        """)
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    full["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, str(script), str(store)], env=full, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1:] == ["RUNNING"], done.stderr[-3000:]
    assert [r["metadata"]["status"] for r in runs_of(store, "0")] == ["FAILED"]
