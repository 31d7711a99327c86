"""``MlflowClient``: MLflow's run-by-id tracking client over the local store.

Runs it creates are live runs of this process (buffered like any other, ended at exit if still open);
calls on other runs write synchronously (see ``write/_direct``). Reads see this process's own writes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from .._errors import InvalidInputError, NotFoundError
from ..read._entities import Experiment, FileInfo, Metric, Param, RunTag
from ..read._entities import Run as RunEntity
from ..store._files import check_inside
from ..store._layout import (
    END_STATUSES,
    iso_from_ms,
    normalize_experiment_id,
    now_ms,
    validate_artifact_path,
    validate_key,
)
from ..write._direct import DirectRun, open_run, run_for
from ..write._run import Run
from . import _experiments as exp
from ._experiments import get_tracking_dir

T = TypeVar("T")


class PagedList(list[T]):
    """A page of results (a list) and the ``token`` of the next page, None after the last (MLflow's)."""

    def __init__(self, items: Iterable[T], token: str | None) -> None:
        super().__init__(items)
        self.token = token


def _offset(page_token: Any) -> int:
    """Where a page starts: the offset a previous page's token carries (0 without one)."""
    if page_token is None or page_token == "":
        return 0
    try:
        found = json.loads(base64.b64decode(str(page_token), validate=True))["offset"]
        if isinstance(found, int) and not isinstance(found, bool) and found >= 0:
            return found
    except (ValueError, TypeError, KeyError):
        pass
    raise InvalidInputError(f"invalid page_token {page_token!r}: pass the token of a previous page")


def _page(found: list[T], start: int, size: int | None) -> PagedList[T]:
    """``found`` (results from the first on, at least one past this page when there are more) cut to
    the page that starts at ``start``."""
    if size is None:
        return PagedList(found[start:], None)
    end = start + size
    return PagedList(found[start:end], _token(end) if len(found) > end else None)


def _token(offset: int) -> str:
    """The page token of the page that starts at ``offset``."""
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


class MlflowClient:
    """MLflow's tracking client (``mini_mlflow.MlflowClient``), on the store of ``tracking_uri``.

    Args:
        tracking_uri: A path, ``file:`` or ``mini-mlflow:`` URI; default the current tracking dir.
        registry_uri: Accepted for MLflow's signature; the model registry is not part of the store.
    """

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        from .._tracking_uri import parse

        if tracking_uri is None:
            self._root = os.path.abspath(get_tracking_dir())
        else:
            target = parse(tracking_uri)
            if target.local_dir is None:
                raise InvalidInputError(
                    "MlflowClient works on a local store; to reach a server, log locally and sync "
                    "(set_tracking_uri('http://...') or `mini-mlflow sync`)"
                )
            self._root = os.path.abspath(target.local_dir)
        self.tracking_uri = tracking_uri or exp.get_tracking_uri()

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
    ) -> str:
        return exp.new_experiment(self._root, name, tags)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return exp.experiment_of(self._root, experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return exp.experiment_by_name(self._root, name)

    def search_experiments(
        self,
        view_type: int = 1,
        max_results: int | None = 1000,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: Any = None,
    ) -> PagedList[Experiment]:
        start = _offset(page_token)
        limit = None if max_results is None else start + max_results + 1
        found = exp.experiments_matching(self._root, view_type, limit, filter_string, order_by)
        return _page(found, start, max_results)

    def delete_experiment(self, experiment_id: str) -> None:
        exp.set_experiment_stage(self._root, experiment_id, "deleted")

    def restore_experiment(self, experiment_id: str) -> None:
        exp.set_experiment_stage(self._root, experiment_id, "active")

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        from ..store._experiments import find_experiment_by_name, update_experiment_meta
        from ..store._layout import validate_experiment_name

        validate_experiment_name(new_name)
        if find_experiment_by_name(self._root, new_name) is not None:
            raise InvalidInputError(f"experiment {new_name!r} already exists")
        self.get_experiment(experiment_id)
        update_experiment_meta(self._root, normalize_experiment_id(experiment_id), name=new_name)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        exp.set_tag_of_experiment(self._root, normalize_experiment_id(experiment_id), key, value)

    # -- runs ------------------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> RunEntity:
        """Create a RUNNING run without making it active: log to it by id, end it with ``set_terminated``."""
        found = exp.experiment_of(self._root, experiment_id)  # MLflow's rule: no experiment made up here
        if found.lifecycle_stage == "deleted":
            raise InvalidInputError(
                f"experiment {found.experiment_id} ({found.name!r}) is deleted: "
                "restore it to create runs in it"
            )
        all_tags = dict(tags or {})
        name = run_name or all_tags.pop("mlflow.runName", None)
        parent = all_tags.pop("mlflow.parentRunId", None)
        run = Run(
            experiment_id=experiment_id, name=name, runs_dir=self._root, tags=all_tags, parent_run_id=parent
        )
        if start_time is not None:
            from ..store._operations import update_run_meta

            update_run_meta(run.run_dir, start_time=iso_from_ms(int(start_time)))
            run.start_time = iso_from_ms(int(start_time))
        return self.get_run(run.run_id)

    def get_run(self, run_id: str) -> RunEntity:
        from ..read._as_mlflow import run_entity
        from ..read._reader import Store

        store = Store(self._root)
        return run_entity(store, store.find_run(run_id))

    def get_parent_run(self, run_id: str) -> RunEntity | None:
        parent = self.get_run(run_id).data.tags.get("mlflow.parentRunId")
        return self.get_run(parent) if parent else None

    def _writer(self, run_id: str) -> Run | DirectRun:
        return run_for(self._root, run_id)

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
        **_: Any,
    ) -> None:
        target = self._writer(run_id)
        if isinstance(target, Run):
            target.log_metric(key, value, step, timestamp)
            if synchronous:
                target.flush()
        else:
            target.log_metrics({key: value}, step, timestamp)

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        self._writer(run_id).log_params({key: value})
        return value

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        self._writer(run_id).set_tags({key: value})

    def delete_tag(self, run_id: str, key: str) -> None:
        from ..store._operations import delete_tag

        delete_tag(self._run_dir(run_id), key)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        synchronous: bool | None = None,
    ) -> None:
        """Params, tags and metric points in one call (each metric keeps its own step and timestamp)."""
        target = self._writer(run_id)
        if params:
            target.log_params({p.key: p.value for p in params})
        if tags:
            target.set_tags({t.key: t.value for t in tags})
        for m in metrics:
            if isinstance(target, Run):
                target.log_metric(m.key, m.value, m.step, m.timestamp)
            else:
                target.log_metrics({m.key: m.value}, m.step, m.timestamp)
        if synchronous and isinstance(target, Run):
            target.flush()

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End a run: FINISHED unless ``status`` says otherwise."""
        from ..write._coerce import check_status

        status = check_status(status or "FINISHED")
        run = open_run(run_id)
        if run is not None:
            run.end(status)
            if end_time is None:
                return
        DirectRun(self._root, run_id).terminate(status, end_time)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        from ..store._operations import RUN_NAME_TAG, tag_json, update_run_meta, write_tag

        rdir = self._run_dir(run_id)
        if status is not None:
            # As MLflow's: an end status stamps the end time (a run marked FAILED by hand has ended).
            if str(status).upper() in END_STATUSES:
                update_run_meta(rdir, status=status, end_time=iso_from_ms(now_ms()))
            else:
                update_run_meta(rdir, status=status)
        if name is not None:  # the name and MLflow's tag for it, together (as MLflow's update_run)
            write_tag(rdir, RUN_NAME_TAG, tag_json(RUN_NAME_TAG, name))

    def delete_run(self, run_id: str) -> None:
        from ..store._operations import update_run_meta

        update_run_meta(self._run_dir(run_id), lifecycle_stage="deleted")

    def restore_run(self, run_id: str) -> None:
        from ..store._operations import update_run_meta

        update_run_meta(self._run_dir(run_id), lifecycle_stage="active")

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        from ..read._as_mlflow import metric_entities
        from ..read._reader import Store

        validate_key(key, "metric key")  # before any path is built from it
        store = Store(self._root)
        try:
            return metric_entities(store.get_metric_history(run_id, key), run_id)
        except NotFoundError:
            store.find_run(run_id)  # a run that does not exist stays not found, as in MLflow
            return []  # as MLflow: a metric not logged (yet) has an empty history

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int = 1,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Any]:
        """Runs as MLflow ``Run`` entities (our records, with ``.info`` and ``.data``), a page of at most
        ``max_results``; the page's ``token`` gives the next one (None after the last), as MLflow's."""
        from ._reading import search_runs

        start = _offset(page_token)
        # This page and one run past it, to tell whether another page follows; the runs before
        # it are skipped unread (building them made paging through 100,000 runs quadratic).
        found: list[Any] = search_runs(
            experiment_ids,
            filter_string,
            run_view_type,
            max_results + 1,
            order_by,
            "list",
            root=self._root,
            offset=start,
        )
        more = len(found) > max_results
        return PagedList(found[:max_results], _token(start + max_results) if more else None)

    # -- artifacts -------------------------------------------------------------------------------

    def _run_dir(self, run_id: str) -> str:
        from ..read._reader import Store

        return Store(self._root).find_run(run_id)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        target = self._writer(run_id)
        if isinstance(target, Run):
            target.log_artifact(local_path, artifact_path)
        else:
            target.log_artifact(os.fspath(local_path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._writer(run_id).write_artifact(artifact_file, str(text).encode("utf-8"))

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        self._writer(run_id).write_artifact(artifact_file, json.dumps(dictionary, indent=2).encode("utf-8"))

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The files and folders directly under ``path`` in the run's artifacts (symlinks left out)."""
        base = os.path.join(self._run_dir(run_id), "artifacts")
        rel = validate_artifact_path(path)
        folder = os.path.join(base, rel) if rel else base
        if os.path.islink(base) or not os.path.isdir(folder) or os.path.islink(folder):
            return []
        check_inside(base, os.path.join(folder, "x"))  # a folder on the way planted as a link: refused
        out = []
        for name in sorted(os.listdir(folder)):
            full = os.path.join(folder, name)
            if os.path.islink(full) or "#tmp" in name:
                continue
            child = f"{rel}/{name}" if rel else name
            is_dir = os.path.isdir(full)
            out.append(FileInfo(child, is_dir, None if is_dir else os.path.getsize(full)))
        return out

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """Copy an artifact file or folder to ``dst_path`` (default: a new temporary folder); return it."""
        import tempfile

        rel = validate_artifact_path(path)
        base = os.path.join(self._run_dir(run_id), "artifacts")
        source = os.path.join(base, rel)
        if not os.path.exists(source) or os.path.islink(source):
            raise NotFoundError(f"run {run_id} has no artifact {path!r}")
        check_inside(base, source)  # a folder on the way planted as a link: refused, never read through
        dest_root = dst_path or tempfile.mkdtemp(prefix="mini-mlflow-artifacts-")
        # As MLflow: a file or folder lands under its own name in dst; the whole artifacts folder ("")
        # lands as dst itself.
        dest = os.path.join(dest_root, os.path.basename(rel)) if rel else dest_root
        if os.path.isdir(source):

            def links(folder: str, names: list[str]) -> list[str]:
                return [n for n in names if os.path.islink(os.path.join(folder, n))]  # never followed

            shutil.copytree(source, dest, ignore=links, dirs_exist_ok=True)
        else:
            os.makedirs(dest_root, exist_ok=True)
            shutil.copyfile(source, dest)
        return dest
