"""Optuna: one parent run for the study, one child run per trial, four trials at a time."""

import optuna

from mini_mlflow.integrations.optuna import MiniMlflowCallback

callback = MiniMlflowCallback(experiment="optuna-example")


@callback.track  # the trial's run exists while the objective runs: log into it
def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    callback.run_for(trial).log_metric("x_seen", x)
    return (x - 2) ** 2


study = optuna.create_study(study_name="quadratic")
study.optimize(objective, n_trials=20, n_jobs=4, callbacks=[callback])
callback.end()
print(f"best x = {study.best_params['x']:.3f}")
