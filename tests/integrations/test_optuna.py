"""Optuna: a parent run per study and one child per trial, with n_jobs 1 and 4, against real Optuna."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from .helpers import experiment_ids, history, need, runs_of

optuna = need("optuna")
from mini_mlflow.integrations.optuna import MiniMlflowCallback  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("n_jobs", [1, 4])
def test_a_child_per_trial_under_one_parent_and_none_in_the_wrong_run(store: Path, n_jobs: int) -> None:
    callback = MiniMlflowCallback("tuning", runs_dir=store)
    # With n_jobs=4 every trial waits until four trials run at once: the trials really overlap, and a
    # lock serialising them (as optuna-integration's MLflow decorator does) would break the barrier.
    barrier = threading.Barrier(n_jobs, timeout=60) if n_jobs > 1 else None
    threads: set[str] = set()

    @callback.track
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        n = trial.suggest_int("n", 1, 5)
        trial.set_user_attr("owner", f"trial-{trial.number}")
        if barrier is not None:
            barrier.wait()
        threads.add(threading.current_thread().name)
        # Logged from the objective into this trial's run: a wrong binding shows as a mismatch below.
        callback.run_for(trial).log_metric("seen_x", x, step=trial.number)
        return (x - 2) ** 2 + n

    study = optuna.create_study(study_name="quadratic")
    study.optimize(objective, n_trials=20, n_jobs=n_jobs, callbacks=[callback])
    callback.end()

    if n_jobs > 1:
        assert threading.main_thread().name not in threads and len(threads) > 1
    runs = runs_of(store, experiment_ids(store)["tuning"])
    parents = [r for r in runs if r["metadata"]["parent_run_id"] is None]
    children = [r for r in runs if r["metadata"]["parent_run_id"] is not None]
    assert len(parents) == 1 and len(children) == 20
    parent = parents[0]
    assert parent["metadata"]["run_name"] == "quadratic"
    assert parent["metadata"]["status"] == "FINISHED"
    assert parent["tags"]["optuna.directions"] == "MINIMIZE"
    assert {c["metadata"]["parent_run_id"] for c in children} == {parent["metadata"]["run_id"]}
    numbers = sorted(int(c["tags"]["optuna.trial_number"]) for c in children)
    assert numbers == list(range(20))
    by_number = {t.number: t for t in study.trials}
    for child in children:
        trial = by_number[int(child["tags"]["optuna.trial_number"])]
        assert child["metadata"]["run_name"] == f"trial-{trial.number}"
        assert child["metadata"]["status"] == "FINISHED"
        assert child["params"] == trial.params
        assert child["metrics"]["value"] == trial.value == (trial.params["x"] - 2) ** 2 + trial.params["n"]
        assert child["metrics"]["seen_x"] == trial.params["x"]
        assert child["tags"]["optuna.user_attrs/owner"] == f"trial-{trial.number}"
        assert child["tags"]["optuna.state"] == "COMPLETE"
        assert '"FloatDistribution"' in child["tags"]["optuna.distributions"]
    best = history(store, parent["metadata"]["run_id"], "best_value")
    assert (
        len(best) == 20 and best[-1][1] == min(history_value for _, history_value in best) == study.best_value
    )


def test_trial_states_become_run_statuses(store: Path) -> None:
    callback = MiniMlflowCallback(runs_dir=store)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, step=0)
        trial.report(x / 2, step=1)
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 2:
            raise ValueError("diverged")
        return x

    study = optuna.create_study(study_name="states")
    study.optimize(objective, n_trials=3, callbacks=[callback], catch=(ValueError,))
    callback.end()
    children = [r for r in runs_of(store, "0") if r["metadata"]["parent_run_id"]]
    status = {int(c["tags"]["optuna.trial_number"]): c["metadata"]["status"] for c in children}
    assert status == {0: "FINISHED", 1: "KILLED", 2: "FAILED"}
    first = next(c for c in children if c["tags"]["optuna.trial_number"] == "0")
    x = first["params"]["x"]
    assert history(store, first["metadata"]["run_id"], "intermediate") == [(0, x), (1, x / 2)]
    failed = next(c for c in children if c["tags"]["optuna.trial_number"] == "2")
    assert "value" not in failed["metrics"] and failed["tags"]["optuna.state"] == "FAIL"


def test_an_uncaught_error_ends_the_tracked_trials_run_failed(store: Path) -> None:
    callback = MiniMlflowCallback(runs_dir=store)

    @callback.track
    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        optuna.create_study(study_name="crash").optimize(objective, n_trials=1, callbacks=[callback])
    callback.end("FAILED")
    runs = runs_of(store, "0")
    child = next(r for r in runs if r["metadata"]["parent_run_id"])
    parent = next(r for r in runs if not r["metadata"]["parent_run_id"])
    assert child["metadata"]["status"] == "FAILED" and "x" in child["params"]
    assert parent["metadata"]["status"] == "FAILED"


def test_multi_objective_values_are_named(store: Path) -> None:
    callback = MiniMlflowCallback(runs_dir=store, metric_name=["loss", "latency"])
    study = optuna.create_study(study_name="multi", directions=["minimize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 2.0), n_trials=2, callbacks=[callback])
    callback.end()
    children = [r for r in runs_of(store, "0") if r["metadata"]["parent_run_id"]]
    assert len(children) == 2
    for child in children:
        assert child["metrics"]["loss"] == child["params"]["x"] and child["metrics"]["latency"] == 2.0


def test_a_tracked_trial_failing_with_a_caught_error_keeps_what_it_reported(store: Path) -> None:
    callback = MiniMlflowCallback(runs_dir=store)

    @callback.track
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("owner", "me")
        trial.report(x, step=0)
        trial.report(x / 2, step=1)
        raise ValueError("diverged")

    study = optuna.create_study(study_name="caught")
    study.optimize(objective, n_trials=1, callbacks=[callback], catch=(ValueError,))
    callback.end()
    child = next(r for r in runs_of(store, "0") if r["metadata"]["parent_run_id"])
    x = child["params"]["x"]
    assert child["metadata"]["status"] == "FAILED" and child["tags"]["optuna.state"] == "FAIL"
    # As an untracked failing trial has them: intermediate values, user attributes, distributions.
    assert history(store, child["metadata"]["run_id"], "intermediate") == [(0, x), (1, x / 2)]
    assert child["tags"]["optuna.user_attrs/owner"] == "me"
    assert '"FloatDistribution"' in child["tags"]["optuna.distributions"]


def test_ctrl_c_in_a_tracked_trial_ends_its_run_killed_with_what_it_reported(store: Path) -> None:
    callback = MiniMlflowCallback(runs_dir=store)

    @callback.track
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, step=0)
        if trial.number == 1:
            raise KeyboardInterrupt
        return x

    study = optuna.create_study(study_name="interrupted")
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=3, callbacks=[callback])
    callback.end()
    children = {r["metadata"]["run_name"]: r for r in runs_of(store, "0") if r["metadata"]["parent_run_id"]}
    assert sorted(children) == ["trial-0", "trial-1"]
    stopped = children["trial-1"]
    assert stopped["metadata"]["status"] == "KILLED" and "x" in stopped["params"]  # it had none
    assert history(store, stopped["metadata"]["run_id"], "intermediate") == [(0, stopped["params"]["x"])]


def test_a_failed_trial_whose_stored_state_cannot_be_read_still_ends_failed_with_its_params(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mini_mlflow.integrations import optuna as ours

    def unreadable(trial: object) -> None:  # a storage that cannot list running trials
        raise RuntimeError("storage unavailable")

    monkeypatch.setattr(ours, "_live_trial", unreadable)
    callback = MiniMlflowCallback(runs_dir=store)

    @callback.track
    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise ValueError("diverged")

    study = optuna.create_study(study_name="bare")
    # Not caught by Optuna: no callback comes after, so the wrapper alone must end the run.
    with pytest.warns(RuntimeWarning, match="storage unavailable"), pytest.raises(ValueError):
        study.optimize(objective, n_trials=1, callbacks=[callback])
    callback.end()
    child = next(r for r in runs_of(store, "0") if r["metadata"]["parent_run_id"])
    assert child["metadata"]["status"] == "FAILED" and "x" in child["params"]
