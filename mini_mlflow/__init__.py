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
from .api._experiments import (
    create_experiment,
    delete_experiment,
    get_experiment,
    get_experiment_by_name,
    get_tracking_dir,
    get_tracking_uri,
    is_tracking_uri_set,
    search_experiments,
    set_experiment,
    set_experiment_tag,
    set_experiment_tags,
    set_tracking_dir,
    set_tracking_uri,
)
from .api._fluent import (
    active_run,
    autolog,
    delete_tag,
    disable_system_metrics_logging,
    enable_system_metrics_logging,
    end_run,
    flush,
    flush_artifact_async_logging,
    flush_async_logging,
    get_artifact_uri,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    set_tag,
    set_tags,
    start_run,
)
from .api._init_api import InitRun, init
from .api._reading import (
    delete_run,
    get_metric_history,
    get_parent_run,
    get_run,
    list_runs,
    search_runs,
)
from .api._tracker import ExperimentTracker
from .store._layout import FORMAT_VERSION
from .write._run import Run

if TYPE_CHECKING:
    from . import artifacts, entities, exceptions, tracking
    from .api._client import MlflowClient
    from .api._media import log_figure, log_image, log_input, log_inputs, log_table
    from .api._reading import load_table
    from .read._reader import MetricHistory, MetricPoint, Store
    from .read._records import RunRecord, SearchResult

from ._version import __version__ as __version__

#: MLflow's name for what ``start_run`` returns (code annotates with ``mlflow.ActiveRun``).
ActiveRun = Run

# Loaded on first use: a training process that only logs never pays for the read side, the client or
# image and table encoding.
_LAZY = {"MetricHistory": ".read._reader", "MetricPoint": ".read._reader", "Store": ".read._reader"}
_LAZY.update(RunRecord=".read._records", SearchResult=".read._records", MlflowClient=".api._client")
_LAZY.update(dict.fromkeys(("load_table",), ".api._reading"))
_LAZY.update(
    dict.fromkeys(("log_figure", "log_image", "log_input", "log_inputs", "log_table"), ".api._media")
)
_SUBMODULES = ("artifacts", "entities", "exceptions", "tracking")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mini_mlflow' has no attribute {name!r}")

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
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
