"""mini_mlflow: a file-based, local-first ML experiment tracker with an MLflow-style API.

Logging calls only append to memory; a background thread writes whole JSON lines to
``mlruns/<experiment>/<run>/metrics/<key>.jsonl``. See README.md and docs/format.md.
"""

from typing import TYPE_CHECKING, Any

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
from .api._context import RunContext, get_or_create_ctx
from .api._fluent import (
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
from .api._init_api import InitRun, init
from .api._tracker import ExperimentTracker
from .store._layout import FORMAT_VERSION
from .write._run import Run

if TYPE_CHECKING:
    from .read._reader import MetricHistory, MetricPoint, Store
    from .read._records import RunRecord, SearchResult
    from .read._search import search_runs

from ._version import __version__ as __version__

# The read side (and its imports) loads on first use: a training process that only logs never pays.
_LAZY = {"MetricHistory": ".read._reader", "MetricPoint": ".read._reader", "Store": ".read._reader"}
_LAZY.update(RunRecord=".read._records", SearchResult=".read._records", search_runs=".read._search")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mini_mlflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "FORMAT_VERSION",
    "ActiveRunExistsError",
    "ExperimentTracker",
    "InitRun",
    "InvalidInputError",
    "InvalidValueError",
    "MetricHistory",
    "MetricPoint",
    "MiniMlflowError",
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
    "end_run",
    "flush",
    "get_experiment_by_name",
    "get_metric_history",
    "get_or_create_ctx",
    "get_run",
    "get_tracking_dir",
    "init",
    "list_runs",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_dir",
    "start_run",
]
