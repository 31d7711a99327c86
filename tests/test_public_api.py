"""The public surface is deliberate: __all__ is locked, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import mini_mlflow

EXPECTED = {
    "FORMAT_VERSION",
    "ActiveRunExistsError",
    "ExperimentTracker",
    "InvalidInputError",
    "InvalidValueError",
    "MetricHistory",
    "MetricPoint",
    "MiniMlflowError",
    "NoActiveRunError",
    "NotFoundError",
    "ParamConflictError",
    "Run",
    "RunEndedError",
    "Settings",
    "StorageError",
    "Store",
    "__version__",
    "active_run",
    "end_run",
    "flush",
    "get_experiment_by_name",
    "get_metric_history",
    "get_run",
    "get_tracking_dir",
    "list_runs",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_dir",
    "start_run",
}


def test_all_is_sorted_and_locked() -> None:
    assert len(set(mini_mlflow.__all__)) == len(mini_mlflow.__all__)  # order: ruff's RUF022
    assert EXPECTED <= set(mini_mlflow.__all__), EXPECTED - set(mini_mlflow.__all__)
    for name in mini_mlflow.__all__:
        assert hasattr(mini_mlflow, name), name


def test_exception_tree_keeps_builtin_bases() -> None:
    m = mini_mlflow
    assert issubclass(m.InvalidInputError, ValueError)
    assert issubclass(m.InvalidValueError, TypeError) and issubclass(m.InvalidValueError, ValueError)
    assert issubclass(m.ParamConflictError, ValueError)
    assert issubclass(m.NoActiveRunError, RuntimeError)
    assert issubclass(m.ActiveRunExistsError, RuntimeError)
    assert issubclass(m.RunEndedError, ValueError)
    assert issubclass(m.NotFoundError, LookupError)
    assert issubclass(m.StorageError, OSError)
    for name in ("InvalidInputError", "NoActiveRunError", "RunEndedError", "NotFoundError", "StorageError"):
        assert issubclass(getattr(m, name), m.MiniMlflowError)


def test_import_is_light() -> None:
    code = (
        "import sys, mini_mlflow\n"
        "heavy = [m for m in ('click', 'rich', 'yaml', 'httpx', 'mlflow', 'filelock', 'pandas', 'numpy',\n"
        "    'mini_mlflow.integrations', 'mini_mlflow.write._system_metrics', 'optuna', 'hydra', 'kedro',\n"
        "    'xgboost', 'lightgbm', 'torch', 'lightning', 'pytorch_lightning', 'transformers', 'keras', 'pynvml')\n"
        "    if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
