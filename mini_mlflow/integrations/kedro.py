"""Integrations: Kedro. Datasets that read and write a run, and a hook that opens a run per pipeline run.

In ``settings.py``: ``HOOKS = (MiniMlflowHook(experiment="pipelines"),)``; in ``catalog.yml``::

    metrics:
      type: mini_mlflow.integrations.kedro.MiniMlflowMetricsDataset
    model:
      type: mini_mlflow.integrations.kedro.MiniMlflowModelDataset
      versioned: true

Every dataset writes to the pipeline's run (bound by the hook for the whole process, so saves on
``ThreadRunner`` workers and async saves land there too; ``ParallelRunner``'s worker processes write
to it as extra writers that leave it open), or to ``run_id``'s run when given, and loads what was
saved from that run. Without the hook, a run is opened on first use. A dataset that
cannot save raises (Kedro reports ``DatasetError``): a later node may need the data. The hook only
warns: tracking never stops a pipeline.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Mapping
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset

from .._errors import InvalidInputError
from ..write._run import Run
from ._kedro_binding import RunAccess, bind_run, bound_run
from ._runs import open_run
from ._safety import guarded
from ._values import as_number, flatten, log_params, safe_key

__all__ = [
    "MiniMlflowArtifactDataset",
    "MiniMlflowDataFrameDataset",
    "MiniMlflowHook",
    "MiniMlflowMetricsDataset",
    "MiniMlflowModelDataset",
    "MiniMlflowResultDataset",
    "bind_run",
    "bound_run",
]


class MiniMlflowMetricsDataset(RunAccess, AbstractDataset[Mapping[str, Any], dict[str, Any]]):
    """A dict of numbers (nested dicts allowed) saved as metrics; loads each key's last value.

    Args:
        prefix: Prepended to every key as ``prefix/key``.
        flatten: Nested dicts become ``a/b`` keys (and come back nested on load).
        step: The step of every save; default the step after the last these keys have in the run
            (0 in a new run), then 1 more at each save.
        run_id: The run to write to and read from; default the pipeline's run.
        runs_dir: Store root; default ``MINI_MLFLOW_TRACKING_DIR`` or ``mlruns``.
    """

    def __init__(
        self,
        prefix: str | None = None,
        flatten: bool = True,
        step: int | None = None,
        run_id: str | None = None,
        runs_dir: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._setup(run_id, runs_dir, None)
        self._prefix = safe_key(prefix) if prefix else ""
        self._flatten = flatten
        self._step = step
        self._steps: dict[str, int] = {}
        self._steps_lock = threading.Lock()
        self.metadata = metadata

    def save(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise InvalidInputError(
                f"MiniMlflowMetricsDataset saves a dict of numbers, got {type(data).__name__}"
            )
        values = flatten(data) if self._flatten else dict(data)
        metrics = {}
        for key, value in values.items():
            number = as_number(value)
            if number is None:
                raise InvalidInputError(f"metric {key!r}: {value!r} is not a number")
            name = safe_key(str(key))
            metrics[f"{self._prefix}/{name}" if self._prefix else name] = number
        with self._writing() as run:
            step = self._step
            if step is None:
                with self._steps_lock:
                    step = self._steps.get(run.run_id)
                    if step is None:
                        step = _next_step(run, metrics)
                    self._steps[run.run_id] = step + 1
            run.log_metrics(metrics, step=step)

    def __getstate__(self) -> dict[str, Any]:
        # ParallelRunner pickles datasets into its worker processes: a lock cannot travel.
        state = dict(self.__dict__)
        del state["_steps_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._steps_lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        from ..read._reader import Store

        root, run_id = self._reading()
        metrics = Store(root).get_run(run_id)["metrics"]
        head = f"{self._prefix}/" if self._prefix else ""
        found = {k[len(head) :]: v for k, v in metrics.items() if k.startswith(head)}
        return _nest(found) if self._flatten else found

    def _describe(self) -> dict[str, Any]:
        return {"prefix": self._prefix, "step": self._step, **self._describe_run()}


def _next_step(run: Run, metrics: Mapping[str, float]) -> int:
    """The step after the last one these keys have in ``run``: a run saved to again in a new session
    (``run_id=``) continues its count instead of logging step 0 a second time. 0 for new keys."""
    from ..read._reader import last_point
    from ..store._layout import METRIC_SUFFIX

    last = -1
    try:
        run.flush()  # points of this process still in memory count too
        for key in metrics:
            try:
                point = last_point(os.path.join(run.run_dir, "metrics", key + METRIC_SUFFIX))
            except FileNotFoundError:
                continue
            if point is not None:
                last = max(last, point.step)
    except OSError:
        pass  # an unreadable store: counting from 0 beats failing the save
    return last + 1


class MiniMlflowResultDataset(RunAccess, AbstractDataset[Mapping[str, Any], dict[str, Any]]):
    """A dict of final results (numbers, text, lists, dicts) stored as the run's ``results/<key>.json``."""

    def __init__(
        self, run_id: str | None = None, runs_dir: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        self._setup(run_id, runs_dir, None)
        self.metadata = metadata

    def save(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"MiniMlflowResultDataset saves a dict, got {type(data).__name__}")
        from ..api._context import RunContext

        with self._writing() as run:
            RunContext(run, run.name or run.run_id, owns_run=False).log_results(
                {safe_key(str(k)): v for k, v in data.items()}
            )

    def load(self) -> dict[str, Any]:
        from ..read._reader import Store

        root, run_id = self._reading()
        store = Store(root)
        return store._values(store.find_run(run_id), "results")

    def _describe(self) -> dict[str, Any]:
        return self._describe_run()


class MiniMlflowModelDataset(RunAccess, AbstractDataset[Any, Any]):
    """A model pickled (or joblib-dumped) into the run's artifacts, its framework as a tag.

    Loading unpickles: load only from stores you trust, as with any pickle.

    Args:
        artifact_path: Path of the file in the run's artifacts.
        backend: ``pickle`` or ``joblib``.
        run_id: The run to write to and read from; default the pipeline's run.
        runs_dir: Store root.
        version: Set by Kedro for ``versioned: true``: ``<artifact_path>/<version>/<name>``.
    """

    def __init__(
        self,
        artifact_path: str = "model.pkl",
        backend: str = "pickle",
        run_id: str | None = None,
        runs_dir: str | None = None,
        version: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if backend not in ("pickle", "joblib"):
            raise InvalidInputError(f"backend must be 'pickle' or 'joblib', got {backend!r}")
        self._setup(run_id, runs_dir, version)
        self._path = artifact_path.strip("/")
        self._backend = backend
        self.metadata = metadata

    def save(self, data: Any) -> None:
        buffer = io.BytesIO()
        if self._backend == "joblib":
            import joblib

            joblib.dump(data, buffer)
        else:
            import pickle

            pickle.dump(data, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        path = self._save_path(self._path)
        with self._writing() as run:
            self._write_artifact(run, path, buffer.getvalue())
            framework = type(data).__module__.partition(".")[0]
            run.set_tag(f"mini_mlflow.model/{safe_key(self._path)}", framework)

    def load(self) -> Any:
        data = self._read_artifact(self._path)
        if self._backend == "joblib":
            import joblib

            return joblib.load(io.BytesIO(data))
        import pickle

        return pickle.loads(data)  # noqa: S301 - the user's own store, documented above

    def _describe(self) -> dict[str, Any]:
        return {"artifact_path": self._path, "backend": self._backend, **self._describe_run()}


class MiniMlflowDataFrameDataset(RunAccess, AbstractDataset[Any, Any]):
    """A pandas DataFrame stored in the run's artifacts as parquet or csv (from the file's extension)."""

    def __init__(
        self,
        artifact_path: str = "data.parquet",
        file_format: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        run_id: str | None = None,
        runs_dir: str | None = None,
        version: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._setup(run_id, runs_dir, version)
        self._path = artifact_path.strip("/")
        fmt = file_format or self._path.rpartition(".")[2].lower()
        if fmt not in ("parquet", "csv"):
            raise InvalidInputError(f"file_format must be 'parquet' or 'csv', got {fmt!r}")
        self._format = fmt
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or ({"index": False} if fmt == "csv" else {}))
        self.metadata = metadata

    def save(self, data: Any) -> None:
        buffer = io.BytesIO()
        if self._format == "parquet":
            data.to_parquet(buffer, **self._save_args)
        else:
            data.to_csv(buffer, **self._save_args)
        with self._writing() as run:
            self._write_artifact(run, self._save_path(self._path), buffer.getvalue())

    def load(self) -> Any:
        import pandas as pd

        data = io.BytesIO(self._read_artifact(self._path))
        if self._format == "parquet":
            return pd.read_parquet(data, **self._load_args)
        return pd.read_csv(data, **self._load_args)

    def _describe(self) -> dict[str, Any]:
        return {"artifact_path": self._path, "file_format": self._format, **self._describe_run()}


class MiniMlflowArtifactDataset(RunAccess, AbstractDataset[Any, Any]):
    """Wraps a file-based Kedro dataset: saves through it, then stores the file in the run's artifacts.

    Loads through the same dataset type from the run's copy (from the local file when the run has
    none yet and no ``run_id`` was given).

    Args:
        dataset: The wrapped dataset: its catalog entry (a dict with ``type`` and ``filepath``) or
            an instance with a ``filepath``.
        artifact_path: Folder in the run's artifacts; default the artifacts folder itself.
        run_id: The run to write to and read from; default the pipeline's run.
        runs_dir: Store root.
        version: Set by Kedro for ``versioned: true``: the run keeps ``<name>/<version>/<name>``.
    """

    def __init__(
        self,
        dataset: dict[str, Any] | AbstractDataset[Any, Any],
        artifact_path: str | None = None,
        run_id: str | None = None,
        runs_dir: str | None = None,
        version: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._setup(run_id, runs_dir, version)
        if isinstance(dataset, AbstractDataset):
            config = {"type": f"{type(dataset).__module__}.{type(dataset).__qualname__}"}
            config.update(getattr(dataset, "_init_args", {}))
            config.pop("version", None)
        elif isinstance(dataset, Mapping) and "type" in dataset:
            config = dict(dataset)
        else:
            raise InvalidInputError(
                "dataset must be a Kedro dataset or its catalog entry (a dict with 'type')"
            )
        if not config.get("filepath"):
            raise InvalidInputError("MiniMlflowArtifactDataset wraps file-based datasets: give a 'filepath'")
        self._config = config
        self._wrapped = (
            dataset
            if isinstance(dataset, AbstractDataset)
            else AbstractDataset.from_config("wrapped", config)
        )
        name = os.path.basename(str(config["filepath"]).rstrip("/"))
        folder = (artifact_path or "").strip("/")
        self._path = f"{folder}/{name}" if folder else name
        self.metadata = metadata

    def _local_file(self) -> str:
        wrapped: Any = self._wrapped
        if getattr(wrapped, "_version", None):
            return str(wrapped._get_load_path())
        return str(getattr(wrapped, "_filepath", self._config["filepath"]))

    def save(self, data: Any) -> None:
        self._wrapped.save(data)
        path = self._save_path(self._path)
        with self._writing() as run:
            run.log_artifact(self._local_file(), path.rpartition("/")[0] or None)

    def load(self) -> Any:
        from ..read._reader import Store

        root, run_id = self._reading()
        run_dir = Store(root).find_run(run_id)
        try:
            target = self._artifact_file(run_dir, self._load_path(run_dir, self._path))
        except InvalidInputError:
            target = ""
        if not os.path.isfile(target):
            if self._run_id is not None:
                raise InvalidInputError(f"run {run_id} has no artifact {self._path!r}")
            return self._wrapped.load()
        config = {k: v for k, v in self._config.items() if k not in ("versioned", "version")}
        config["filepath"] = target
        return AbstractDataset.from_config("wrapped_from_run", config).load()

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._config.get("type"), "artifact_path": self._path, **self._describe_run()}


class MiniMlflowHook:
    """Opens a run when a pipeline starts (its params logged, flattened), binds it for the datasets,
    and ends it FINISHED, or FAILED on a pipeline error.

    Args:
        experiment: Experiment name or id; default the Default experiment (0).
        runs_dir: Store root; default ``MINI_MLFLOW_TRACKING_DIR`` or ``mlruns``.
        run_name: Run name; default the pipeline name(s).
    """

    def __init__(
        self, experiment: str | int | None = None, runs_dir: str | None = None, run_name: str | None = None
    ) -> None:
        self._experiment = experiment
        self._runs_dir = os.path.abspath(runs_dir) if runs_dir is not None else None
        self._run_name = run_name
        self._params: dict[str, Any] = {}
        #: The run of the pipeline running now (None between runs).
        self.run: Run | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._params = dict(getattr(context, "params", {}) or {})

    @hook_impl
    @guarded("kedro", "starting the pipeline's run")
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if self.run is not None:
            # The last pipeline run of this hook got neither its end nor its error hook: Kedro calls
            # none on Ctrl-C, and a notebook goes on to the next run. Its run was interrupted.
            self._end("KILLED")
        names = run_params.get("pipeline_names") or ["__default__"]
        tags = {
            "kedro.session_id": run_params.get("run_id") or run_params.get("session_id") or "",
            "kedro.pipeline": ",".join(names),
            "kedro.runner": _runner_name(run_params.get("runner")),
            "kedro.env": run_params.get("env") or "",
        }
        run = open_run(
            experiment=self._experiment,
            run_name=self._run_name or ",".join(names),
            runs_dir=self._runs_dir,
            tags=tags,
        )
        params = dict(self._params)
        params.update(run_params.get("runtime_params") or {})
        log_params(run, flatten(params), "kedro")
        self.run = run
        bind_run(run)

    @hook_impl
    @guarded("kedro", "ending the pipeline's run")
    def after_pipeline_run(
        self, run_params: dict[str, Any], run_result: Any, pipeline: Any, catalog: Any
    ) -> None:
        self._end("FINISHED")

    @hook_impl
    @guarded("kedro", "ending the failed pipeline's run")
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        run = self.run
        if run is not None and run.status == "RUNNING":
            run.set_tag("kedro.error", f"{type(error).__name__}: {error}"[:8000])
        self._end("FAILED")

    def _end(self, status: str) -> None:
        run, self.run = self.run, None
        bind_run(None)
        if run is not None and run.status == "RUNNING":
            run.end(status)


def _runner_name(text: Any) -> str:
    """The class name in Kedro's text for a runner (``<...SequentialRunner object at 0x...>``)."""
    text = str(text or "")
    if text.startswith("<"):
        text = text[1:].split(" ", 1)[0]
    return str(text.rpartition(".")[2])


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split("/")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a key that is both a value and a folder: keep it flat
                node = out
                last = key
                break
            node = child
        node[last] = value
    return out
