"""Integrations: the Lightning logger's behaviour, shared by both of Lightning's namespaces.

``lightning.pytorch`` and ``pytorch_lightning`` are two copies of the same classes, and a trainer
accepts only loggers and callbacks derived from its own copy: ``lightning.py`` and
``pytorch_lightning.py`` each mix ``LoggerImpl`` and ``StateImpl`` into their namespace's classes.
Rank checks use ``lightning_utilities``' ``rank_zero_only.rank``, which both copies set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..store._files import run_folder
from ..write._rank import global_rank
from ..write._run import Run, new_run_id
from ._mirror import link_or_copy, same_file
from ._resume import record_resume
from ._runs import experiment_id as resolve_experiment
from ._runs import open_run, store_root
from ._safety import guarded, warn_once
from ._values import as_number, flatten, log_params, safe_key

#: Lightning's ``finalize`` status → run status. Lightning passes "finished" before a SLURM requeue
#: (the job is stopped, to be resumed) and "failed" for any exception, Ctrl-C and SIGTERM included:
#: the state callback's ``on_exception`` tells those two apart (KILLED).
STATUS = {"success": "FINISHED", "failed": "FAILED", "finished": "KILLED"}
#: Exceptions that mean "stopped from outside", not "failed".
INTERRUPTIONS = ("KeyboardInterrupt", "SIGTERMException")
#: Folder of the run's artifacts where checkpoints appear (hard links: no copy).
CHECKPOINTS = "checkpoints"


_rank_zero_only: Any = None


def _rank() -> int:
    """The global rank Lightning's strategy set (shared by both namespaces through lightning_utilities)."""
    # Called at every logged step: the import statement alone cost ~2 µs there (measured in a
    # BoringModel training), so the object it finds is kept; its ``rank`` is read each time.
    global _rank_zero_only
    if _rank_zero_only is None:
        from lightning_utilities.core.rank_zero import rank_zero_only

        _rank_zero_only = rank_zero_only
    rank = getattr(_rank_zero_only, "rank", None)
    return global_rank() if rank is None else int(rank)


class _NoRun:
    """What ``experiment`` is on ranks other than zero: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self

    def __call__(self, *args: Any, **kwargs: Any) -> _NoRun:
        return self


class LoggerImpl:
    """The logger's behaviour; ``lightning.py`` and ``pytorch_lightning.py`` put it on their ``Logger``."""

    #: The namespace of the ``Logger`` this is mixed into (a tag of the run).
    namespace = "lightning.pytorch"
    #: The state callback class of the same namespace.
    state_class: Any = None

    def __init__(
        self,
        experiment: str | int | None = None,
        run_name: str | None = None,
        run_id: str | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        log_checkpoints: bool = True,
        prefix: str = "",
    ) -> None:
        super().__init__()
        self._root = os.path.abspath(store_root(runs_dir))
        self._experiment_name = experiment
        self._run_name = run_name
        # The id is chosen now, in the process that builds the trainer: every process that opens
        # the run (ddp_spawn's rank 0, the main process after fit) opens this one.
        self._run_id = run_id or new_run_id()
        self._run_id_given = run_id is not None
        self._tags = dict(tags or {})
        self._log_checkpoints = log_checkpoints
        self._prefix = prefix
        self._run: Run | None = None
        self._last_step: int | None = None
        self._resuming = False
        self._exception: BaseException | None = None
        self._linked: set[str] = set()
        self._callback: Any = None
        self._keys: dict[str, str] = {}  # Lightning's metric name → our key, made once

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_run"] = None  # a live run stays in its process; others reopen it by id
        state["_exception"] = None
        return state

    # -- what Lightning reads on every rank: never opens a run -----------------------------------

    @property
    def name(self) -> str:
        return str(self._experiment_name) if self._experiment_name is not None else "0"

    @property
    def version(self) -> str:
        return self._run_id

    @property
    def save_dir(self) -> str | None:
        return None  # checkpoints stay where Lightning puts them; the run gets hard links

    @property
    def log_dir(self) -> str | None:
        return None

    @property
    def run_id(self) -> str:
        """The run's id (known before the run is opened)."""
        return self._run_id

    @property
    def callback(self) -> Any:
        """The callback keeping the run id in checkpoints, so that ``trainer.fit(ckpt_path=...)``
        continues the same run: ``Trainer(logger=logger, callbacks=[logger.callback])``."""
        if self._callback is None:
            self._callback = self.state_class(self)
        return self._callback

    # -- rank zero only ----------------------------------------------------------------------------

    @property
    def experiment(self) -> Any:
        """The run on rank zero (a do-nothing stand-in elsewhere). Until something is logged it is a
        stand-in that opens the run on first use: Lightning touches this property before it restores
        a checkpoint, and the run to open may be the one the checkpoint names."""
        if _rank() != 0:
            return _NoRun()
        run = self._run
        if run is not None and run.status == "RUNNING":
            return run
        return _RunOnFirstUse(self._open)

    def _open(self) -> Run:
        run = self._run
        if run is None or run.status != "RUNNING":
            tags = {"mini_mlflow.framework": self.namespace, **self._tags}
            exp = resolve_experiment(self._experiment_name, self._root)
            run = open_run(
                experiment=exp, run_name=self._run_name, run_id=self._run_id, runs_dir=self._root, tags=tags
            )
            self._run = run
        return run

    @guarded("lightning", "logging hyperparameters")
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if _rank() != 0:
            return
        if not isinstance(params, Mapping):
            params = vars(params)
        log_params(self._open(), flatten(params), "lightning")

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        # Called at every logged step: written for speed (no decorator frame, floats taken as they
        # are, keys made once), as the bench's in-training cost measures it against a step.
        try:
            if _rank() != 0:
                return
            run = self._run
            if run is None or run.status != "RUNNING":
                run = self._open()
            keys = self._keys
            values = {}
            for key, value in metrics.items():
                number = value if value.__class__ is float else as_number(value)
                if number is not None:
                    name = keys.get(key)
                    if name is None:
                        name = keys[key] = safe_key(f"{self._prefix}/{key}" if self._prefix else key)
                    values[name] = number
            if step is None:
                step = 0 if self._last_step is None else self._last_step
            if self._resuming:
                # The first step logged after a resume from a checkpoint: what the interrupted attempt
                # logged from this step on is superseded by what comes now.
                self._resuming = False
                record_resume(run, step - 1)
            run.log_metrics(values, step=step)
            self._last_step = step
        except Exception as exc:  # as ``guarded`` does: warn once, training goes on
            warn_once("lightning", "logging metrics", exc)

    def save(self) -> None:
        """Nothing to do: Lightning calls it after every ``log_metrics``; the writer thread writes."""

    @guarded("lightning", "ending the run")
    def finalize(self, status: str) -> None:
        run = self._run
        if _rank() != 0 or run is None or run.status != "RUNNING":
            return
        interrupted = type(self._exception).__name__ in INTERRUPTIONS if self._exception else False
        self._exception = None
        run.end("KILLED" if status == "failed" and interrupted else STATUS.get(status, "FINISHED"))

    @guarded("lightning", "linking checkpoints into the run")
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_checkpoints and _rank() == 0:
            self._mirror_checkpoints(checkpoint_callback)

    def _mirror_checkpoints(self, callback: Any) -> None:
        """Make the run's ``artifacts/checkpoints/`` hold exactly the checkpoints Lightning keeps."""
        run = self._open()
        keep: dict[str, str] = {}
        paths = [*getattr(callback, "best_k_models", {}), callback.last_model_path, callback.best_model_path]
        for path in paths:
            if path and os.path.isfile(path):
                keep[os.path.basename(path)] = os.path.realpath(path)
        with run_folder(run.run_dir, f"artifacts/{CHECKPOINTS}") as fd:
            for name in sorted(self._linked - set(keep)):  # deleted by Lightning's save_top_k
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                self._linked.discard(name)
            for name, source in keep.items():
                if name in self._linked and same_file(source, name, fd):
                    continue
                link_or_copy(source, name, fd, "lightning")
                self._linked.add(name)


class StateImpl:
    """The state callback's behaviour: the logger's run id goes into checkpoints and comes back."""

    # Lightning calls each of these hooks of every callback at every batch, each call inside a profiler
    # context: one callback that defines none of them still cost ~25 µs per step (2% of a BoringModel
    # step, measured). A hook that is not callable is passed over (``_call_callback_hooks`` checks
    # ``callable``), and this callback needs none of them.
    on_train_batch_start = on_train_batch_end = None
    on_before_backward = on_after_backward = on_before_optimizer_step = on_before_zero_grad = None
    on_validation_batch_start = on_validation_batch_end = None
    on_test_batch_start = on_test_batch_end = on_predict_batch_start = on_predict_batch_end = None

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    @property
    def state_key(self) -> str:
        return "MiniMlflowState"

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self._logger._run_id}

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # Called before the loggers' finalize("failed"): lets it tell Ctrl-C and SIGTERM (KILLED)
        # from a failure.
        self._logger._exception = exception

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        logger = self._logger
        run_id = state_dict.get("run_id")
        if run_id and not logger._run_id_given and logger._run is None:
            logger._run_id = run_id
        if run_id == logger._run_id:
            logger._resuming = True


class _RunOnFirstUse:
    """Stands for a run not opened yet: any attribute opens it (``logger.experiment.log_text(...)``)."""

    def __init__(self, opener: Any) -> None:
        self._opener = opener

    def __getattr__(self, name: str) -> Any:
        return getattr(self._opener(), name)
