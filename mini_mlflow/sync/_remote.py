"""Remote identity for sync: find or create the server's experiment and run for a local run.

A local run maps to exactly one remote run, found by its ``mini_mlflow.run_id`` tag before any create,
so a rerun (or a create that timed out after it happened) never makes a second remote run. The remote
id is written to the cursor as soon as it is known.
"""

from __future__ import annotations

from collections.abc import Callable

from ..interop._convert import LOCAL_RUN_ID_TAG, RunView
from ..store import _operations
from . import _cursor
from ._client import MlflowRestClient
from ._cursor import Cursor
from ._errors import ServerError, SyncError, UnreachableError


class RemoteRuns:
    """Looks up and creates experiments and runs on one server; experiment ids are cached by name.

    Args:
        client: The REST client.
        root: Store root (to find a parent run's cursor).
        on_created: Called right after a remote run was created, before its id is recorded (tests'
            fault injection).
    """

    def __init__(self, client: MlflowRestClient, root: str, on_created: Callable[[], None]) -> None:
        self.client = client
        self.root = root
        self.url = client.url
        self.on_created = on_created
        self._experiments: dict[str, str] = {}

    def experiment(self, name: str) -> str:
        """The remote id of the experiment called ``name``, created if missing (a lost race re-reads)."""
        if name in self._experiments:
            return self._experiments[name]
        attempt = 0
        while True:
            try:
                exp = self.client.get("experiments/get-by-name", {"experiment_name": name})["experiment"]
                if exp.get("lifecycle_stage") == "deleted":
                    raise SyncError(f"experiment {name!r} is deleted on the server; restore it there first")
                self._experiments[name] = str(exp["experiment_id"])
                return self._experiments[name]
            except ServerError as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            try:  # not retried blindly: a create that timed out may have happened, so look again first
                created = self.client.post("experiments/create", {"name": name}, retry=False)
                self._experiments[name] = str(created["experiment_id"])
                return self._experiments[name]
            except (UnreachableError, ServerError) as exc:
                lost_race = isinstance(exc, ServerError) and exc.error_code == "RESOURCE_ALREADY_EXISTS"
                if not (lost_race or transient(exc)) or attempt >= self.client.max_retries:
                    raise
                if not lost_race:
                    self.client._backoff(attempt, None, f"creating experiment {name!r}: {exc}")
                attempt += 1

    def find_run(self, experiment_id: str, local_run_id: str) -> str | None:
        """The remote run tagged with ``local_run_id``, if the server has one."""
        found = self.client.post(
            "runs/search",
            {
                "experiment_ids": [experiment_id],
                "filter": f"tags.`{LOCAL_RUN_ID_TAG}` = '{local_run_id}'",
                "max_results": 1,
            },
        )
        runs = found.get("runs") or []
        return str(runs[0]["info"]["run_id"]) if runs else None

    def run(self, view: RunView, cursor: Cursor) -> str:
        """The remote run id of ``view`` (from the cursor, found by tag, or created), saved in the cursor."""
        if cursor.remote_run_id:
            return cursor.remote_run_id
        experiment_id = self.experiment(view.experiment_name)
        body = {
            "experiment_id": experiment_id,
            "user_id": view.user,
            "run_name": view.run_name,
            "start_time": view.start_ms,
            "tags": [{"key": LOCAL_RUN_ID_TAG, "value": view.run_id}],
        }
        attempt = 0
        while True:
            # Look before creating, on every attempt: a create that timed out may have happened.
            run_id = self.find_run(experiment_id, view.run_id)
            if run_id is not None:
                break
            try:
                run_id = str(self.client.post("runs/create", body, retry=False)["run"]["info"]["run_id"])
                break
            except (UnreachableError, ServerError) as exc:
                if not transient(exc) or attempt >= self.client.max_retries:
                    raise
                self.client._backoff(attempt, None, f"creating run {view.run_id}: {exc}")
                attempt += 1
        self.on_created()
        cursor.remote_run_id, cursor.remote_experiment_id = run_id, experiment_id
        if cursor.status is None:
            cursor.status = ["RUNNING", None]
        _cursor.save(view.run_dir, self.url, cursor)
        return run_id

    def parent_id(self, view: RunView) -> str | None:
        """The remote id of the run's parent, if the parent was synced to this server already."""
        if not view.parent_run_id:
            return None
        found = _operations.find_run_dir(self.root, view.parent_run_id)
        return _cursor.load(found[1], self.url).remote_run_id if found else None


def transient(exc: SyncError) -> bool:
    """True for failures worth another try: unreachable, 5xx, 429."""
    return isinstance(exc, UnreachableError) or (
        isinstance(exc, ServerError) and (exc.status >= 500 or exc.status == 429)
    )
