"""mini_mlflow: a file-based, local-first ML experiment tracker with an MLflow-style API.

Logging calls only append to memory; a background thread writes whole JSON lines to
``mlruns/<experiment>/<run>/metrics/<key>.jsonl``. See README.md and docs/format.md.
"""

from ._config import Settings
from ._errors import (
    ActiveRunExistsError,
    InvalidInputError,
    InvalidValueError,
    MiniMlflowError,
    NoActiveRunError,
    NotFoundError,
    ParamConflictError,
    RunEndedError,
    StorageError,
)
from ._fluent import (
    active_run,
    end_run,
    flush,
    get_experiment_by_name,
    get_metric_history,
    get_run,
    get_tracking_dir,
    list_runs,
    log_artifact,
    log_artifacts,
    log_dict,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_dir,
    start_run,
)
from ._layout import FORMAT_VERSION
from ._reader import MetricHistory, MetricPoint, Store
from ._run import Run
from ._tracker import ExperimentTracker

__version__ = "0.1.0"

__all__ = [
    "ActiveRunExistsError",
    "ExperimentTracker",
    "FORMAT_VERSION",
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
]
