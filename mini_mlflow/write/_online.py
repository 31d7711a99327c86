"""Online mode: a daemon thread that syncs this process's live runs while they train.

Started by ``Run`` when ``MINI_MLFLOW_SYNC_URL`` is set (and ``MINI_MLFLOW_OFFLINE`` is not). The thread
only reads the run's files, which stay the source of truth: the training loop never waits for it, a
failing server costs one warning per cause, and whatever was not sent when the process exits is sent by
the next ``mini-mlflow sync``. At exit the thread gets a bounded time for a last pass (final statuses).

One agent per run: `mini-mlflow run` syncs the run it creates and tells its child so
(:data:`PARENT_SYNC_ENV`), and the child's attached run then starts no agent of its own. The parent
outlives the child and ends the run, so its last pass carries everything, including the exit code and
the output artifacts. (Two agents on one run would still be safe, as every pass holds the run's
per-server sync lock, but each would poll the same files and the child would spend its exit on a pass.)

A run leaves the watch list only after this process's own ``Run`` had ended *before* a pass that then
sent it without error. Its status on disk alone is not enough: under `mini-mlflow run` the child ends
the run first (FINISHED on disk), and only then does the parent write the exit code and its own final
status, which a run dropped on the child's status would never send.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
from typing import TYPE_CHECKING

from ..read._select import Target
from ..sync._upload import WATCH_RUN_SLICE

if TYPE_CHECKING:
    from ..sync._agent import SyncAgent
    from ._run import Run

#: Seconds the exit hook waits for the last pass.
EXIT_TIMEOUT = 10.0
#: Set by `mini-mlflow run` for its child: ``<run id> <server key>`` of the run the command syncs itself.
PARENT_SYNC_ENV = "_MINI_MLFLOW_SYNCED_BY_PARENT"


class _Background:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.targets: dict[tuple[str, str], dict[str, Target]] = {}  # (root, url) → run_dir → target
        self.runs: dict[str, Run] = {}  # run_dir → this process's Run for it (ended = it writes no more)
        self.interval = 5.0
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.closing = False
        self.thread: threading.Thread | None = None
        self.agents: dict[tuple[str, str], SyncAgent] = {}
        self.warned: set[str] = set()
        self.hooked = False

    def add(self, run: Run) -> None:
        settings = run._settings
        url = str(settings.sync_url)
        root = os.path.dirname(os.path.dirname(run.run_dir))
        name = _experiment_name(root, os.path.basename(os.path.dirname(run.run_dir)))
        with self.lock:
            self.targets.setdefault((root, url), {})[run.run_dir] = Target(run.run_dir, name)
            self.runs[run.run_dir] = run
            self.interval = (
                min(self.interval, settings.sync_interval) if self.thread else settings.sync_interval
            )
            if self.thread is None or not self.thread.is_alive():
                self.closing = False
                self.thread = threading.Thread(target=self._loop, name="mini-mlflow-sync", daemon=True)
                self.thread.start()
            if not self.hooked:
                self.hooked = True
                atexit.register(self._at_exit)

    def _loop(self) -> None:
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            final = self.closing
            with self.lock:
                work = {key: list(targets.values()) for key, targets in self.targets.items()}
            for (root, url), targets in work.items():
                self._pass(root, url, targets, final)
            if final or self.stop.is_set():
                return

    def _pass(self, root: str, url: str, targets: list[Target], final: bool = False) -> None:
        # Taken before the pass reads any file: a run this process ended by now has its final files on
        # disk, so a pass that sends it without error leaves nothing behind. One ended during the pass
        # (or only on disk, by another process) is kept for the next pass.
        with self.lock:
            ended = {t.run_dir for t in targets if (r := self.runs.get(t.run_dir)) is not None and r.ended}
        try:
            agent = self.agents.get((root, url))
            if agent is None:
                from ..sync._agent import SyncAgent
                from ..sync._client import MlflowRestClient

                client = MlflowRestClient(url, max_retries=2, stop=self.stop)
                agent = self.agents[(root, url)] = SyncAgent(root, client)
            # Time slices keep every run moving while they train; the exit pass sends all it can
            # (bounded by EXIT_TIMEOUT, after which the stop event ends it after the batch in flight).
            summary = agent.sync(targets, run_slice=None if final else WATCH_RUN_SLICE)
        except Exception as exc:  # the training process must never see this thread fail
            self._warn_once(type(exc).__name__, f"mini_mlflow: background sync to {url} failed: {exc}")
            return
        for error in summary.errors:
            self._warn_once(error, f"mini_mlflow: background sync to {summary.server}: {error}")
        for report in summary.runs:
            if report.errors or report.skipped or report.unfinished:  # else it sent all it read
                continue
            with self.lock:  # ended here before this pass, and now fully sent: nothing more to watch
                for target in targets:
                    if target.run_dir in ended and os.path.basename(target.run_dir) == report.run_id:
                        self.targets.get((root, url), {}).pop(target.run_dir, None)
                        if not any(target.run_dir in watched for watched in self.targets.values()):
                            self.runs.pop(target.run_dir, None)  # no other server still to send it to

    def _warn_once(self, cause: str, message: str) -> None:
        if cause not in self.warned:
            self.warned.add(cause)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def _at_exit(self) -> None:
        thread = self.thread
        if thread is None or not thread.is_alive():
            return
        # Runs still open are ended first (as the registry's own hook would), so the last pass sends
        # their final status.
        from . import _registry

        _registry.end_all(_registry._exit_status)
        self.closing = True
        self.wake.set()
        thread.join(EXIT_TIMEOUT)
        if thread.is_alive():
            self.stop.set()
            warnings.warn(
                "mini_mlflow: background sync did not finish at exit; run `mini-mlflow sync` to complete it",
                RuntimeWarning,
                stacklevel=1,
            )

    def reset_after_fork(self) -> None:
        self.__init__()  # type: ignore[misc]


def _experiment_name(root: str, experiment_id: str) -> str:
    from ..store._meta import read_meta

    try:
        return str(read_meta(os.path.join(root, experiment_id, "meta.yaml")).get("name"))
    except (OSError, ValueError):
        return "Default"


_BACKGROUND = _Background()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_BACKGROUND.reset_after_fork)


def _parent_marker(run: Run) -> str:
    from ..sync._cursor import server_key  # a hash: the URL's user info never reaches the environment

    return f"{run.run_id} {server_key(str(run._settings.sync_url))}"


def child_env(run: Run) -> dict[str, str]:
    """What `mini-mlflow run` adds to its child's environment when it syncs ``run`` itself."""
    with _BACKGROUND.lock:
        syncing = any(run.run_dir in targets for targets in _BACKGROUND.targets.values())
    return {PARENT_SYNC_ENV: _parent_marker(run)} if syncing else {}


def start_background(run: Run) -> None:
    """Sync ``run`` to ``settings.sync_url`` from a daemon thread while it is live; never raises.

    Does nothing for the run a `mini-mlflow run` parent already syncs to the same server.
    """
    try:
        if os.environ.get(PARENT_SYNC_ENV) == _parent_marker(run):
            return
        _BACKGROUND.add(run)
    except Exception as exc:
        _BACKGROUND._warn_once(type(exc).__name__, f"mini_mlflow: could not start background sync: {exc}")
