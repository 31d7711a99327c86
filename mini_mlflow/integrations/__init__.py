"""Integrations: one module per framework (Optuna, Hydra, Kedro, XGBoost, LightGBM, Lightning,
Transformers, Keras), each importing its framework only inside it.

``import mini_mlflow`` never imports this package; import the module you need, e.g.
``from mini_mlflow.integrations.optuna import MiniMlflowCallback``. Every integration binds its run
explicitly (a ``Run`` object or a run id, never the thread's active run), logs through the normal
buffered path, and warns instead of raising when logging fails inside the framework's loop.
"""
