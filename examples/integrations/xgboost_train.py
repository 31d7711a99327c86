"""XGBoost: eval metrics at step = boosting round, the best round from early stopping."""

import numpy as np
import xgboost as xgb

from mini_mlflow.integrations.xgboost import MiniMlflowCallback

rng = np.random.default_rng(0)
x = rng.normal(size=(1000, 5))
y = x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + rng.normal(scale=0.3, size=1000)
train, valid = xgb.DMatrix(x[:800], label=y[:800]), xgb.DMatrix(x[800:], label=y[800:])

booster = xgb.train(
    {"max_depth": 3, "eta": 0.2},
    train,
    num_boost_round=200,
    evals=[(train, "train"), (valid, "valid")],
    early_stopping_rounds=10,
    callbacks=[MiniMlflowCallback(experiment="boosting-example", run_name="xgboost")],
    verbose_eval=False,
)
print(f"best iteration {booster.best_iteration}")
