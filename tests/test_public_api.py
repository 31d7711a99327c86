"""The public surface is deliberate: __all__ is locked, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mini_mlflow

EXPECTED = [
    "FORMAT_VERSION",
    "ActiveRun",
    "ActiveRunExistsError",
    "ExperimentTracker",
    "InitRun",
    "InvalidInputError",
    "InvalidValueError",
    "MetricHistory",
    "MetricPoint",
    "MiniMlflowError",
    "MlflowClient",
    "NoActiveRunError",
    "NotFoundError",
    "ParamConflictError",
    "Run",
    "RunContext",
    "RunEndedError",
    "RunRecord",
    "SearchResult",
    "Settings",
    "StorageError",
    "Store",
    "__version__",
    "active_run",
    "artifacts",
    "autolog",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "disable_system_metrics_logging",
    "enable_system_metrics_logging",
    "end_run",
    "entities",
    "exceptions",
    "flush",
    "flush_artifact_async_logging",
    "flush_async_logging",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_metric_history",
    "get_or_create_ctx",
    "get_parent_run",
    "get_run",
    "get_tracking_dir",
    "get_tracking_uri",
    "init",
    "is_tracking_uri_set",
    "last_active_run",
    "list_runs",
    "load_table",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_input",
    "log_inputs",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "set_tracking_dir",
    "set_tracking_uri",
    "start_run",
    "tracking",
]


def _ruff_order(name: str) -> tuple[int, str]:
    """RUF022's order for ``__all__``: SCREAMING_CASE, then CamelCase, then the rest, each alphabetical."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_locked() -> None:
    # Exactly these names, in this order: a name added or removed must be added or removed here too.
    assert mini_mlflow.__all__ == EXPECTED
    assert EXPECTED == sorted(EXPECTED, key=_ruff_order)
    for name in mini_mlflow.__all__:
        assert hasattr(mini_mlflow, name), name
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        mini_mlflow.not_a_name


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
        "    'xgboost', 'lightgbm', 'torch', 'lightning', 'pytorch_lightning', 'transformers', 'keras', 'pynvml',\n"
        "    'mini_mlflow.ui', 'http.server', 'mini_mlflow.mlflow_plugin')\n"
        "    if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
