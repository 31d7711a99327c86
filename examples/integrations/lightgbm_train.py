"""LightGBM: eval metrics at step = boosting round, params, the best round."""

import lightgbm as lgb
import numpy as np

from mini_mlflow import Run
from mini_mlflow.integrations.lightgbm import mini_mlflow_callback

rng = np.random.default_rng(0)
x = rng.normal(size=(1000, 5))
y = x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + rng.normal(scale=0.3, size=1000)
train = lgb.Dataset(x[:800], label=y[:800])
valid = lgb.Dataset(x[800:], label=y[800:], reference=train)

with Run(name="lightgbm") as run:  # a run of your own: the callback logs into it and leaves it open
    booster = lgb.train(
        {"objective": "regression", "learning_rate": 0.1, "verbose": -1},
        train,
        num_boost_round=100,
        valid_sets=[valid],
        callbacks=[mini_mlflow_callback(run), lgb.early_stopping(10, verbose=False)],
    )
print(f"best iteration {booster.best_iteration}")
