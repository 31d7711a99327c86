"""The ``init / log / finish`` face: a W&B-style run handle over the same ``Run`` and the same store.

``project`` is the experiment (by name), ``config`` becomes params, ``log(dict)`` logs metrics at a step
that counts up by itself. Everything goes through ``Run``, so the files on disk are exactly what the
fluent API writes for the same calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from .. import _config
from .._errors import InvalidInputError, InvalidValueError
from ..store import _experiments, _meta, _operations
from ..store._layout import validate_experiment_name, validate_key
from ..write import _registry
from ..write._coerce import to_step
from ..write._run import Run

#: ``finish`` statuses in W&B's spelling and the run status each one records.
_FINISH_STATUSES = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "crashed": "FAILED"}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"log: key {key!r} must be a str (got {type(key).__name__})")
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, full + "/")
        else:
            yield full, value


def _seconds_to_ms(timestamp: Any) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or timestamp != timestamp:
        raise InvalidValueError(
            f"log: timestamp {timestamp!r} must be seconds since the epoch (a number, as time.time() gives)"
        )
    return round(timestamp * 1000)


class RunConfig(dict[str, Any]):
    """The run's config (W&B's ``run.config``): a dict whose changes are logged as params as they are
    made (params are write-once: the same value again is a no-op, another raises), with keys readable
    as attributes too (``run.config.lr``). Nothing can be removed from it: the params stay on disk."""

    def __init__(self, run: Run, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        object.__setattr__(self, "_run", run)

    def __setitem__(self, key: str, value: Any) -> None:
        self._run.log_params({key: value})
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        values = dict(*args, **kwargs)
        self._run.log_params(values)  # all checked before any is written
        super().update(values)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy (copy, deepcopy, pickle) is a plain dict of the values: never a second handle on the
        # run that would log again, nor a deep copy of the run itself.
        return (dict, (dict(self),))

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise InvalidInputError("config keys are params, which are write-once: they cannot be removed")

    __delitem__ = __delattr__ = pop = popitem = clear = _refuse  # type: ignore[assignment]


class InitRun:
    """A run started by :func:`init`: ``log`` metrics, ``log_params``/``log_tags``, then ``finish``.

    Use it as a context manager to finish it with ``finished``, ``failed`` (an exception) or ``killed``
    (Ctrl-C). The underlying :class:`Run` is ``.run``, for anything this handle does not cover.
    """

    def __init__(self, run: Run, project: str, config: dict[str, Any]) -> None:
        #: The underlying run (the same object the fluent API uses).
        self.run = run
        #: The experiment's name.
        self.project = project
        #: Effective config: what was passed to ``init``, overridden by ``mini-mlflow run -p`` params;
        #: a key set or updated later is logged as a param at once.
        self.config = RunConfig(run, config)
        self._step = 0
        self._nested = False
        self._log_metrics = run.log_metrics

    # -- identity ---------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.run.run_id

    @property
    def name(self) -> str | None:
        return self.run.name

    @property
    def dir(self) -> str:
        """Absolute path of the run's folder in the store."""
        return self.run.run_dir

    @property
    def step(self) -> int:
        """The step the next ``log`` call without ``step=`` will use."""
        return self._step

    @property
    def is_offline(self) -> bool:
        """True when nothing is sent to a server: ``offline`` is set or no ``sync_url`` is configured."""
        settings = self.run._settings
        return settings.offline or settings.sync_url is None

    def __repr__(self) -> str:
        return f"<InitRun {self.id} project={self.project!r} name={self.name!r} {self.run.status}>"

    # -- logging ----------------------------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None, timestamp: float | None = None) -> None:
        """Log metrics at one step; returns at once (a background thread writes them).

        Args:
            data: Metric name → number. Nested dicts become ``a/b`` keys (folders on disk).
            step: Step of these points. Omitted: the step after the largest one used so far (0 at
                first), so each call without a step counts up by one.
            timestamp: Seconds since the epoch (as ``time.time()`` gives); default now.

        Raises:
            InvalidValueError: a value is not a real number (the message names its key); nothing of
                this call is logged then.
        """
        use = self._step if step is None else (step if step.__class__ is int else to_step("<log>", step))
        stamp = None if timestamp is None else _seconds_to_ms(timestamp)
        if data.__class__ is not dict and not isinstance(data, Mapping):
            raise InvalidInputError(f"log takes a dict of metric name → number, got {type(data).__name__}")
        if self._nested:
            self._log_metrics(dict(_flatten(data)), use, stamp)
        else:
            try:
                self._log_metrics(data, use, stamp)
            except InvalidValueError:
                # Nested dicts are looked for only once a plain dict was refused, so flat calls pay
                # nothing for them; a run that logs one is flattened up front from then on.
                if not any(isinstance(v, Mapping) for v in data.values()):
                    raise
                self._nested = True
                self._log_metrics(dict(_flatten(data)), use, stamp)
        if use >= self._step:
            self._step = use + 1

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record params (write-once, like every face): same value again is a no-op, another raises."""
        self.config.update(params)

    def log_tags(self, tags: Mapping[str, Any]) -> None:
        """Set or update tags (last write wins)."""
        self.run.set_tags(tags)

    def log_artifact(self, path: str | os.PathLike[str], type: str | None = None) -> None:
        """Copy a file or a folder into the run's artifacts (under ``artifacts/<type>/`` if given).

        Args:
            path: A file, or a folder (copied with everything below it).
            type: A kind such as ``model`` or ``dataset``; used as the artifact sub-folder.
        """
        if os.path.isdir(os.fspath(path)):
            self.run.log_artifacts(path, type)
        else:
            self.run.log_artifact(path, type)

    # -- lifecycle ----------------------------------------------------------------------------------

    def finish(self, status: str = "finished") -> None:
        """End the run: write everything logged, then record the status. A second call does nothing.

        Args:
            status: ``finished``, ``failed`` or ``killed`` (upper case and ``crashed`` are accepted too).
        """
        key = status.lower() if isinstance(status, str) else status
        if key not in _FINISH_STATUSES:
            raise InvalidInputError(
                f"finish: invalid status {status!r}: must be one of finished, failed, killed"
            )
        if self.run.ended:
            return
        self.run.end(_FINISH_STATUSES[key])

    def __enter__(self) -> InitRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.run.__exit__(exc_type, exc, tb)


def _tag_map(tags: Any) -> dict[str, Any] | None:
    """``tags`` as key → value: a dict as it is, or W&B's list of labels, each a tag with an empty value."""
    if tags is None or isinstance(tags, Mapping):
        return None if tags is None else dict(tags)
    if isinstance(tags, (list, tuple, set, frozenset)) and all(isinstance(t, str) for t in tags):
        return {validate_key(t, "tag key"): "" for t in sorted(tags)}
    raise InvalidInputError(
        f"init: tags must be a dict (key → value) or a list of labels (str), got {type(tags).__name__}"
    )


def init(
    project: str,
    name: str | None = None,
    tags: Mapping[str, Any] | list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    *,
    dir: str | os.PathLike[str] | None = None,  # W&B's name for it
    offline: bool | None = None,
    **settings: Any,
) -> InitRun:
    """Start a run in experiment ``project`` (created if missing) and return its handle.

    Under ``mini-mlflow run`` the first ``init`` of the script attaches to the run that command created
    (``project`` is then ignored: the command's ``-e`` decides) and its ``-p`` params override ``config``.
    The run becomes this thread's active run when none is, so ``mini_mlflow.log_metric`` reaches it too.

    Args:
        project: Experiment name.
        name: Run name.
        tags: Tags set at start: a dict, or W&B's list of labels (each a tag with an empty value).
        config: Hyperparameters, recorded as params (write-once); ``run.config`` records later keys.
        run_id: Resume this run instead of starting a new one.
        dir: Store root; default as for ``start_run`` (``set_tracking_dir``, ``MINI_MLFLOW_TRACKING_DIR``,
            ``./mlruns``).
        offline: Never contact a server, whatever ``MINI_MLFLOW_SYNC_URL`` says.
        **settings: Any other setting by its name (``flush_interval=0.5``, ``fsync="flush"``, ...);
            see ``mini_mlflow.Settings``. Each beats its ``MINI_MLFLOW_*`` variable.
    """
    from ._experiments import get_tracking_dir

    validate_experiment_name(project)
    if config is not None and not isinstance(config, Mapping):
        raise InvalidInputError(f"init: config must be a dict, got {type(config).__name__}")
    tags = _tag_map(tags)  # checked before a run exists: a bad argument leaves no run behind
    root = os.fspath(dir) if dir is not None else get_tracking_dir()
    resolved = _config.resolve(**{**settings, "tracking_dir": root, "offline": offline})
    attached = run_id is None and _registry.active() is None and _config.claim_attached_run_id()
    if attached:
        run_id = attached
        experiment_id = "0"  # the run already lives where `mini-mlflow run -e` put it
        found = _operations.find_run_dir(os.path.abspath(root), run_id)
        if found is not None and _meta.read_meta(os.path.join(found[1], "meta.yaml")).get("run_name"):
            name = None  # `mini-mlflow run -n` named it; the command line wins
    else:
        experiment_id = _experiments.get_or_create_experiment(os.path.abspath(root), project)
    run = Run(run_id=run_id, experiment_id=experiment_id, name=name, runs_dir=root, settings=resolved)
    try:
        effective = dict(config or {})
        effective.update(_config.injected(_config.ATTACH_PARAMS, run.run_id))
        if effective:
            run.log_params(effective)
        if tags:
            run.set_tags(tags)
    except BaseException:
        run.end("FAILED")
        raise
    if _registry.active() is None:
        _registry.push(run)
    exp_meta = _meta.read_meta(os.path.join(os.path.dirname(run.run_dir), "meta.yaml"))
    return InitRun(run, str(exp_meta.get("name", project)), effective)
