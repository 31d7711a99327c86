"""Integrations: Hydra. A run per job (its composed config as params), under a parent run per multirun.

Register the callback in the primary config::

    hydra:
      callbacks:
        mini_mlflow:
          _target_: mini_mlflow.integrations.hydra.MiniMlflowCallback
          experiment: sweeps

and log from the task with ``current_run()``. A job that raises ends FAILED; a multirun's parent
ends FINISHED when every job completed, else FAILED (Hydra stops a sweep at a failed job's batch,
and the exit hook ends the parent FAILED with the process's exit status).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..write._run import Run
from ._runs import experiment_id, open_run, store_root
from ._safety import guarded
from ._values import as_number, flatten, log_params, safe_key

try:  # Hydra's base class when Hydra is there; the module still imports (for docs) without it.
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - exercised only without hydra installed
    _HydraCallback = object  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn
    from omegaconf import DictConfig

__all__ = ["MiniMlflowCallback", "current_run"]

_current: Run | None = None
#: Why the running job has no run (its start failed), for ``current_run``'s error.
_start_error: str | None = None
_current_lock = threading.Lock()


def _remember_start_error(exc: Exception) -> None:
    # The job runs on without its run; current_run() names the cause.
    global _start_error
    _start_error = f"{type(exc).__name__}: {exc}"


def current_run() -> Run:
    """The run of the Hydra job running in this process (any thread may log to it).

    Raises:
        RuntimeError: no job of a Hydra app with ``MiniMlflowCallback`` is running, or the job's
            run could not be started (the message names the cause).
    """
    run = _current
    if run is None and _start_error is not None:
        raise RuntimeError(f"the Hydra job's run could not be started: {_start_error}")
    if run is None:
        raise RuntimeError(
            "no Hydra job run: add mini_mlflow.integrations.hydra.MiniMlflowCallback to hydra.callbacks"
        )
    return run


class MiniMlflowCallback(_HydraCallback):  # type: ignore[misc]
    """Hydra callback: a run per job, a parent run per multirun.

    Each job's run holds the composed config (the ``hydra`` node left out) as flattened params,
    its overrides and job number as tags, a numeric return value (or a dict of them) as metrics,
    and ``.hydra/*.yaml`` of its output folder as artifacts under ``hydra/``.

    Args:
        experiment: Experiment name or id; default the Default experiment (0).
        runs_dir: Store root, made absolute when the app starts (Hydra may change the working
            folder per job); default ``MINI_MLFLOW_TRACKING_DIR`` or ``mlruns``.
        log_config_files: Copy the job's ``.hydra/*.yaml`` files into its run.
    """

    def __init__(
        self,
        experiment: str | int | None = None,
        runs_dir: str | None = None,
        log_config_files: bool = True,
    ) -> None:
        self.runs_dir = os.path.abspath(store_root(runs_dir))
        self.experiment_id = experiment_id(experiment, self.runs_dir)
        self.log_config_files = log_config_files
        #: The multirun's parent run id: plain text, so that launchers that pickle the callback
        #: into other processes (joblib, submitit) carry it to their jobs.
        self.parent_run_id: str | None = None
        self._parent: Run | None = None
        self._failed_jobs = 0
        self._output_dir = ""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_parent"] = None  # a live Run stays in the process that opened it
        return state

    # -- multirun ------------------------------------------------------------------------------

    @guarded("hydra", "starting the multirun's run")
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        name = _select(config, "hydra.job.name")
        self._parent = open_run(
            experiment=self.experiment_id,
            run_name=str(name) if name else None,
            runs_dir=self.runs_dir,
            tags={"hydra.mode": "MULTIRUN", "hydra.sweep_dir": _sweep_dir(config)},
        )
        self.parent_run_id = self._parent.run_id

    @guarded("hydra", "ending the multirun's run")
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        parent = self._parent
        if parent is not None and parent.status == "RUNNING":
            parent.end("FAILED" if self._failed_jobs else "FINISHED")

    # -- jobs ----------------------------------------------------------------------------------

    @guarded("hydra", "starting the job's run", on_error=_remember_start_error)
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _current, _start_error
        _start_error = None
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        overrides = list(hydra_cfg.overrides.task)
        tags: dict[str, Any] = {
            "hydra.job_name": hydra_cfg.job.name,
            "hydra.overrides": " ".join(overrides),
            "hydra.output_dir": hydra_cfg.runtime.output_dir,
        }
        num = _select(config, "hydra.job.num")
        if num is not None:
            tags["hydra.job_num"] = num
        name = hydra_cfg.job.override_dirname or hydra_cfg.job.name
        run = open_run(
            experiment=self.experiment_id,
            run_name=str(name)[:250],
            runs_dir=self.runs_dir,
            parent_run_id=self.parent_run_id,
            tags=tags,
        )
        self._output_dir = str(hydra_cfg.runtime.output_dir)
        with _current_lock:
            _current = run  # before the params: a failure there must not orphan the run
        log_params(run, flatten(_task_config(config)), "hydra")

    @guarded("hydra", "ending the job's run")
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        global _current, _start_error
        with _current_lock:
            run, _current, _start_error = _current, None, None
        if run is None or run.status != "RUNNING":
            return
        failed = job_return.status.name == "FAILED"
        if failed:
            self._failed_jobs += 1
            run.set_tag("hydra.error", repr(job_return._return_value)[:8000])
        else:
            _log_return_value(run, job_return.return_value)
        if self.log_config_files and self._output_dir:
            folder = os.path.join(self._output_dir, ".hydra")
            if os.path.isdir(folder):
                run.log_artifacts(folder, "hydra")
        run.end("FAILED" if failed else "FINISHED")


def _task_config(config: DictConfig) -> Mapping[str, Any]:
    from omegaconf import OmegaConf

    try:
        values = OmegaConf.to_container(config, resolve=True)
    except Exception:  # a value that cannot be resolved (a missing ``???``): keep the raw text
        values = OmegaConf.to_container(config, resolve=False)
    if not isinstance(values, dict):
        return {}
    values.pop("hydra", None)
    return {str(k): v for k, v in values.items()}


def _select(config: DictConfig, path: str) -> Any:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.select(config, path, default=None)
    except Exception:
        return None


def _log_return_value(run: Run, value: Any) -> None:
    if isinstance(value, Mapping):
        numbers = {safe_key(str(k)): as_number(v) for k, v in flatten(value).items()}
        run.log_metrics({k: v for k, v in numbers.items() if v is not None})
        return
    number = as_number(value)
    if number is not None:
        run.log_metric("return_value", number)


def _sweep_dir(config: DictConfig) -> str:
    """The sweep folder as an absolute path, like each job's ``hydra.output_dir`` (the config holds it
    relative to the folder the app was launched from, the current one when a multirun starts)."""
    folder = _select(config, "hydra.sweep.dir")
    return os.path.abspath(str(folder)) if folder else ""
