"""MLflow's tracking store over the native store: ``mlflow.set_tracking_uri("mini-mlflow:./mlruns")``.

Runs that MLflow creates through this store are live runs of this process: their points go through our
buffer and writer thread (crash-safe, readable by ``mini-mlflow ls`` at once), and MLflow ending the run
ends ours. Writes to any other run are synchronous (``write/_direct``). Reads go through our read side
(index, metric parse and cache), so ``mlflow server --backend-store-uri mini-mlflow:...`` serves a store
that is being written right now.
"""

from __future__ import annotations

import base64
import functools
import inspect
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from mlflow.entities import RunStatus, ViewType
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking.abstract_store import AbstractStore

from .._errors import MiniMlflowError
from .._tracking_uri import parse
from ..api._client import MlflowClient
from ..read._entities import Metric as OurMetric
from ..read._entities import Param as OurParam
from ..read._entities import RunTag as OurTag
from . import _entities as to_mlflow
from ._logged_models import LoggedModels

T = TypeVar("T")
_DATASET_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile")
_VIEWS = {ViewType.ACTIVE_ONLY: 1, ViewType.DELETED_ONLY: 2, ViewType.ALL: 3}


@contextmanager
def _as_mlflow_errors() -> Iterator[None]:
    """Our errors become MLflow's (the server answers 400/404 with the message, never a 500)."""
    try:
        yield
    except (MiniMlflowError, ValueError) as exc:
        raise to_mlflow.mlflow_error(exc) from exc


def _page(items: list[T], max_results: int | None, page_token: str | None) -> tuple[list[T], str | None]:
    start = _start(page_token)
    end = len(items) if max_results is None else start + max_results
    return items[start:end], _token(end) if end < len(items) else None


def _start(page_token: str | None) -> int:
    """Where a page starts: the offset a previous page's token carries (0 without one)."""
    return int(base64.b64decode(page_token).decode()) if page_token else 0


def _token(end: int) -> str:
    """The token of the page that starts at ``end``."""
    return base64.b64encode(str(end).encode()).decode()


class MiniMlflowTrackingStore(AbstractStore):
    """``mini-mlflow:<path>`` (relative) or ``mini-mlflow:///<absolute path>``."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        with _as_mlflow_errors():
            target = parse(store_uri)
            if target.local_dir is None:
                raise MiniMlflowError(f"{store_uri} names no local store")
            self.root = os.path.abspath(target.local_dir)
        os.makedirs(self.root, exist_ok=True)
        self._client = MlflowClient(tracking_uri=f"mini-mlflow://{self.root}")
        self._models = LoggedModels(self.root)

    # -- experiments -------------------------------------------------------------------------------

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = 1000,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Any]:
        with _as_mlflow_errors():
            self._ensure_default_experiment()
            found = self._client.search_experiments(_VIEWS.get(view_type, 1), None, filter_string, order_by)
        page, token = _page(found, max_results, page_token)
        return PagedList([to_mlflow.experiment(e) for e in page], token)

    def _ensure_default_experiment(self) -> None:
        # MLflow's stores always hold experiment 0 ("Default"), and its UI and fluent API expect it.
        from ..store._experiments import ensure_experiment

        ensure_experiment(self.root, "0")

    def create_experiment(self, name: str, artifact_location: str | None = None, tags: Any = None) -> str:
        with _as_mlflow_errors():
            return self._client.create_experiment(name, tags={t.key: t.value for t in tags or []})

    def get_experiment(self, experiment_id: str) -> Any:
        with _as_mlflow_errors():
            if str(experiment_id) == "0":
                self._ensure_default_experiment()
            return to_mlflow.experiment(self._client.get_experiment(experiment_id))

    def get_experiment_by_name(self, experiment_name: str) -> Any:
        with _as_mlflow_errors():
            if experiment_name == "Default":
                self._ensure_default_experiment()
            found = self._client.get_experiment_by_name(experiment_name)
        return None if found is None else to_mlflow.experiment(found)

    def delete_experiment(self, experiment_id: str) -> None:
        with _as_mlflow_errors():
            self._client.delete_experiment(experiment_id)

    def restore_experiment(self, experiment_id: str) -> None:
        with _as_mlflow_errors():
            self._client.restore_experiment(experiment_id)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        with _as_mlflow_errors():
            self._client.rename_experiment(experiment_id, new_name)

    def set_experiment_tag(self, experiment_id: str, tag: Any) -> None:
        with _as_mlflow_errors():
            self._client.set_experiment_tag(experiment_id, tag.key, tag.value)

    # -- runs --------------------------------------------------------------------------------------

    def create_run(
        self, experiment_id: str, user_id: str, start_time: int, tags: Any, run_name: str | None
    ) -> Any:
        with _as_mlflow_errors():
            all_tags = {t.key: t.value for t in tags or []}
            created = self._client.create_run(
                experiment_id, start_time=start_time, tags=all_tags, run_name=run_name or None
            )
            return self.get_run(created.info.run_id)

    def get_run(self, run_id: str) -> Any:
        with _as_mlflow_errors():
            return to_mlflow.run(self._client.get_run(run_id))

    def update_run_info(
        self, run_id: str, run_status: Any, end_time: int | None, run_name: str | None
    ) -> Any:
        with _as_mlflow_errors():
            status = RunStatus.to_string(run_status) if isinstance(run_status, int) else run_status
            if run_name:
                self._client.update_run(run_id, name=run_name)
            if status in ("FINISHED", "FAILED", "KILLED"):
                self._client.set_terminated(run_id, status, end_time)
            elif status:
                self._client.update_run(run_id, status=status)
            return self.get_run(run_id).info

    def delete_run(self, run_id: str) -> None:
        with _as_mlflow_errors():
            self._client.delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        with _as_mlflow_errors():
            self._client.restore_run(run_id)

    def get_metric_history(
        self, run_id: str, metric_key: str, max_results: int | None = None, page_token: str | None = None
    ) -> Any:
        with _as_mlflow_errors():
            try:
                history = self._client.get_metric_history(run_id, metric_key)
            except MiniMlflowError as exc:
                if "has no metric" not in str(exc):
                    raise
                history = []  # MLflow answers an unknown metric with an empty history
        page, token = _page([to_mlflow.metric(m) for m in history], max_results, page_token)
        return PagedList(page, token)  # a list with .token, which MLflow's server reads

    def _search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str,
        run_view_type: int,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> tuple[list[Any], str | None]:
        from ..read import _index
        from ..read._as_mlflow import run_entity
        from ..read._reader import Store
        from ..read._search import find

        with _as_mlflow_errors():
            ids = [e for e in experiment_ids if os.path.isdir(os.path.join(self.root, str(e)))]
            view = {1: "active", 2: "deleted", 3: "all"}[_VIEWS.get(run_view_type, 1)]
            start = _start(page_token)
            end = start + max_results

            def read() -> tuple[list[Any], int]:
                # Only this page's runs are put in order and read (a page of 1,000 of 100,000 runs
                # built a record for every match: ~1.5 s a page).
                found = find(ids, filter_string or "", order_by, view, self.root, need=end)
                return found.records(start, end, copy=False), found.total

            page, total = _index.recovering(self.root, read)
            token = _token(end) if end < total else None
            store = Store(self.root)
            return [to_mlflow.run(run_entity(store, r.run_dir)) for r in page], token

    def log_batch(
        self, run_id: str, metrics: Sequence[Any], params: Sequence[Any], tags: Sequence[Any]
    ) -> None:
        with _as_mlflow_errors():
            self._client.log_batch(
                run_id,
                metrics=[OurMetric(m.key, m.value, m.timestamp, m.step) for m in metrics],
                params=[OurParam(p.key, p.value) for p in params],
                tags=[OurTag(t.key, t.value) for t in tags],
            )

    def delete_tag(self, run_id: str, key: str) -> None:
        with _as_mlflow_errors():
            self._client.delete_tag(run_id, key)

    def log_inputs(self, run_id: str, datasets: Any = None, models: Any = None) -> None:
        from ..store._operations import write_input

        with _as_mlflow_errors():
            run_dir = self._client._run_dir(run_id)
            for item in datasets or []:
                d = item.dataset
                document = {f: getattr(d, f, None) for f in _DATASET_FIELDS}
                tags = {t.key: t.value for t in item.tags or []}
                write_input(run_dir, str(d.digest), {"dataset": document, "tags": tags})

    def link_traces_to_run(self, trace_ids: list[str], run_id: str) -> None:
        raise to_mlflow.not_supported("Tracing")

    def flush(self) -> None:
        """Write every live run's buffered points (a run MLflow created here is one of them)."""
        from ..api._fluent import flush

        flush()

    # -- what the native store does not hold: empty lists for the UI, a clear error for the rest ---------

    def search_traces(self, *args: Any, **kwargs: Any) -> tuple[list[Any], str | None]:
        return [], None

    def query_trace_metrics(self, *args: Any, **kwargs: Any) -> PagedList[Any]:
        return PagedList([], None)  # no traces: the UI's overview charts are empty, not failed

    # -- logged models (MLflow 3's flavors log a model through these) -------------------------------

    def create_logged_model(
        self,
        experiment_id: str = "0",
        name: str | None = None,
        source_run_id: str | None = None,
        tags: Any = None,
        params: Any = None,
        model_type: str | None = None,
    ) -> Any:
        with _as_mlflow_errors():
            self.get_experiment(experiment_id)
            return self._models.create(experiment_id, name, source_run_id, tags, params, model_type)

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> Any:
        return self._models.get(model_id, allow_deleted)

    def finalize_logged_model(self, model_id: str, status: Any) -> Any:
        return self._models.finalize(model_id, status)

    def set_logged_model_tags(self, model_id: str, tags: Any) -> None:
        self._models.set_tags(model_id, tags)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        self._models.delete_tag(model_id, key)

    def delete_logged_model(self, model_id: str) -> None:
        self._models.delete(model_id)

    def log_outputs(self, run_id: str, models: Any) -> None:
        for output in models or []:
            self._models.add_output(output.model_id, run_id, output.step)

    def search_logged_models(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        datasets: Any = None,
        max_results: int | None = None,
        order_by: Any = None,
        page_token: str | None = None,
    ) -> PagedList[Any]:
        page, token = _page(self._models.search([str(e) for e in experiment_ids]), max_results, page_token)
        return PagedList(page, token)

    def search_datasets(self, *args: Any, **kwargs: Any) -> PagedList[Any]:
        return PagedList([], None)

    def _search_datasets(self, experiment_ids: list[str]) -> list[Any]:
        """The datasets the experiments' runs used (``log_input``): the runs page's dataset filter."""
        from mlflow.entities.dataset_summary import _DatasetSummary

        from ..read._as_mlflow import run_inputs
        from ..read._search import search_runs

        found: dict[tuple[str, str, str, str | None], None] = {}
        ids = [e for e in experiment_ids if os.path.isdir(os.path.join(self.root, str(e)))]
        for record in search_runs(ids, root=self.root, run_view="all", copy=False):
            for item in run_inputs(record.run_dir).dataset_inputs:
                context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), None)
                found[(record.experiment_id, item.dataset.name, item.dataset.digest, context)] = None
        return [_DatasetSummary(e, name, digest, context) for e, name, digest, context in found][:1000]

    def list_scorers(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def _refusing(name: str, base: Any) -> Any:
    """``base`` (MLflow's default), with its NotImplementedError made a clear MLflow error."""

    @functools.wraps(base)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return base(self, *args, **kwargs)
        except NotImplementedError:
            raise to_mlflow.not_supported(f"{name.strip('_').replace('_', ' ').capitalize()}") from None

    return method


# Every default of MLflow's store that we do not override (traces, logged models, assessments, prompts,
# datasets, scorers...) raises NotImplementedError, which MLflow's server answers with a 500 and a
# traceback: each becomes "<feature> is not supported by the mini-mlflow store" instead.
for _name, _base in vars(AbstractStore).items():
    if inspect.isfunction(_base) and not _name.startswith("_") and _name not in vars(MiniMlflowTrackingStore):
        setattr(MiniMlflowTrackingStore, _name, _refusing(_name, _base))
