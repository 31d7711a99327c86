"""The run context face: ``get_or_create_ctx(name)`` gives a job its params, inputs and secrets, and
records its metrics, artifacts and final results in the same run folders every other face writes.

Results live apart from metric series, one JSON document per key in ``<run>/results/<key>.json``
(replaced whole, last write wins). Secrets are read from ``mini-mlflow run -s`` files or the environment
and are only ever held in memory.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _config
from .._errors import InvalidInputError, NotFoundError
from ..store import _experiments, _meta, _operations, _yaml
from ..store._layout import META_FILE, TMP_MARK, VALUE_SUFFIX, validate_experiment_name, validate_key
from ..write import _registry
from ..write._run import Run

#: Folder of a run holding ``log_result`` values.
RESULTS_DIR = "results"
#: Tag prefix under which ``get_input`` records the inputs a job used.
INPUT_TAG_PREFIX = "mini_mlflow.inputs/"
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}

_contexts: dict[str, RunContext] = {}


def parse_secrets_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``KEY=value`` lines (``#`` comments, blank lines, ``export`` and quotes allowed).

    Errors name the file and the line number, never a value, so no secret reaches a log.
    """
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InvalidInputError(f"secrets file {where!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"secrets file {where!r} is not UTF-8 text") from None
    secrets: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "a").replace(".", "a").replace("-", "a").isalnum():
            raise InvalidInputError(
                f"secrets file {where!r}, line {number}: expected KEY=value "
                "(KEY made of letters, digits, '_', '.', '-')"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        secrets[key] = value
    return secrets


def _result_json(key: str, value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        value = "NaN" if value != value else _NON_FINITE[value]  # as in metric files
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True, default=_operations._json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"result {key!r}: value {value!r} cannot be stored as JSON ({exc}); "
            "use numbers, str, bool, None, or lists/dicts of those"
        ) from None


class RunContext:
    """A job's view of its run: ``get_param``/``get_input``/``get_secret`` in, ``log_*`` out.

    Made by :func:`get_or_create_ctx`. As a context manager it ends the run it started (FINISHED,
    FAILED on an exception, KILLED on Ctrl-C); a run it merely joined is left to its owner.
    """

    def __init__(self, run: Run, name: str, owns_run: bool, secrets_files: Sequence[str] = ()) -> None:
        #: The underlying run (the same object the fluent API uses).
        self.run = run
        #: The context's name (the run's name unless the run already had one).
        self.name = name
        self._owns_run = owns_run
        self._secrets_files = list(secrets_files)
        self._secrets: dict[str, str] | None = None
        self._injected_params = _config.injected(_config.ATTACH_PARAMS, run.run_id)
        self._injected_inputs = _config.injected(_config.ATTACH_INPUTS, run.run_id)
        #: Params this job asked for, with the values it got.
        self.parameters: dict[str, Any] = {}
        #: Inputs this job asked for: key → path or URL.
        self.inputs: dict[str, str] = {}
        self._results: dict[str, Any] = {}

    @property
    def uid(self) -> str:
        """The run id."""
        return self.run.run_id

    @property
    def project(self) -> str:
        """The experiment's name."""
        meta = _meta.read_meta(os.path.join(os.path.dirname(self.run.run_dir), META_FILE))
        return str(meta.get("name", ""))

    def __repr__(self) -> str:
        return f"<RunContext {self.name!r} uid={self.uid} {self.run.status}>"

    # -- what goes in ------------------------------------------------------------------------------

    def get_param(self, key: str, default: Any = None) -> Any:
        """The value injected for ``key`` (``mini-mlflow run -p key=value``), else ``default``.

        The value returned is recorded as the run's param ``key`` (params are write-once: asking again
        with a different default raises ``ParamConflictError``).
        """
        validate_key(key, "param key")
        value = self._injected_params.get(key, default)
        self.run.log_param(key, value)
        self.parameters[key] = value
        return value

    def get_input(self, key: str, default: str | os.PathLike[str] | None = None) -> str | None:
        """The path or URL injected for input ``key`` (``mini-mlflow run -i key=path``), else ``default``.

        The value is recorded (as tag ``mini_mlflow.inputs/<key>``) so the run shows what it read.
        """
        validate_key(key, "input key")
        value = self._injected_inputs.get(key, default)
        if value is None:
            return None
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        self.run.set_tag(INPUT_TAG_PREFIX + key, text)
        self.inputs[key] = text
        return text

    def get_secret(self, key: str) -> str | None:
        """A secret from the secrets files (``mini-mlflow run -s``), else the environment, else None.

        Secrets are held in memory only: never logged, recorded, or shown by ``to_dict``.
        """
        if self._secrets is None:
            secrets: dict[str, str] = {}
            from_env = os.environ.get(_config.ATTACH_SECRETS_FILES, "")
            for path in [*[p for p in from_env.split(os.pathsep) if p], *self._secrets_files]:
                secrets.update(parse_secrets_file(path))
            self._secrets = secrets
        if key in self._secrets:
            return self._secrets[key]
        return os.environ.get(key)

    # -- what comes out ----------------------------------------------------------------------------

    def log_result(self, key: str, value: Any) -> None:
        """Record a final result (a number, string, list or dict) in ``results/<key>.json``.

        Results are kept apart from metric series; logging a key again replaces its value.
        """
        self.run._check_open()
        validate_key(key, "result key")
        text = _result_json(key, value)
        path = os.path.join(self.run.run_dir, RESULTS_DIR, key + VALUE_SUFFIX)
        if not os.path.exists(os.path.join(self.run.run_dir, META_FILE)):
            raise NotFoundError(f"run folder {self.run.run_dir} was deleted; cannot store result {key!r}")
        data = (text + "\n").encode("utf-8")
        self.run._artifact_io(lambda: _operations.write_in_run(self.run.run_dir, path, data), path)
        self._results[key] = json.loads(text)

    def log_results(self, results: Mapping[str, Any]) -> None:
        """Record several results (see :meth:`log_result`)."""
        for key, value in results.items():
            self.log_result(key, value)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Log a metric point (as ``Run.log_metric``: non-blocking, step 0 when omitted)."""
        self.run.log_metric(key, value, step)

    def set_label(self, key: str, value: Any) -> None:
        """Set a tag on the run."""
        self.run.set_tag(key, value)

    def log_artifact(
        self,
        key: str,
        body: bytes | str | None = None,
        local_path: str | os.PathLike[str] | None = None,
    ) -> str:
        """Store an artifact at ``artifacts/<key>`` and return ``key``.

        Args:
            key: Relative path inside the run's artifacts (may contain ``/``).
            body: The content (``str`` is stored as UTF-8).
            local_path: A file to copy, or a folder whose files go under ``artifacts/<key>/``.
                With neither ``body`` nor ``local_path``, ``key`` itself is the local file.
        """
        if body is not None and local_path is not None:
            raise InvalidInputError(f"log_artifact {key!r}: give body or local_path, not both")
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"log_artifact: key must be a non-empty str, got {key!r}")
        if body is not None:
            if isinstance(body, str):
                body = body.encode("utf-8")
            if not isinstance(body, (bytes, bytearray)):
                raise InvalidInputError(
                    f"log_artifact {key!r}: body must be bytes or str, got {type(body).__name__}"
                )
            self.run._check_open()
            self.run.write_artifact(key, bytes(body))
            return key
        src = os.fspath(local_path if local_path is not None else key)
        if os.path.isdir(src):
            self.run.log_artifacts(src, key)
            return key
        if not os.path.isfile(src):
            raise InvalidInputError(f"log_artifact {key!r}: local_path {src!r} is not a file or folder")
        self.run._check_open()
        folder, _, name = key.rpartition("/")
        dest = _operations.artifact_dest(self.run.run_dir, folder or None, name)
        self.run._artifact_io(lambda: _operations.copy_artifact(self.run.run_dir, src, dest), dest)
        return key

    # -- the record ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The run record: ``metadata``, ``spec`` (parameters, inputs) and ``status`` (results, metrics,
        artifacts), read back from the store (so it includes what other processes wrote to this run)."""
        record = self.run.to_dict()
        meta, tags = record["metadata"], record["tags"]
        rdir = self.run.run_dir
        inputs = {k[len(INPUT_TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(INPUT_TAG_PREFIX)}
        labels = {k: v for k, v in tags.items() if not k.startswith(INPUT_TAG_PREFIX)}
        spec: dict[str, Any] = {"parameters": record["params"], "inputs": inputs}
        if "mini_mlflow.command" in tags:
            spec["command"] = tags["mini_mlflow.command"]
        return {
            "metadata": {
                "name": meta.get("run_name") or self.name,
                "uid": self.uid,
                "project": self.project,
                "experiment_id": meta.get("experiment_id"),
                "user": meta.get("user"),
                "labels": labels,
            },
            "spec": spec,
            "status": {
                "state": meta.get("status"),
                "start_time": meta.get("start_time"),
                "end_time": meta.get("end_time"),
                "results": _read_values(os.path.join(rdir, RESULTS_DIR)),
                "metrics": record["metrics"],
                "artifacts": _list_files(os.path.join(rdir, "artifacts")),
            },
        }

    def to_yaml(self) -> str:
        """:meth:`to_dict` as YAML text."""
        return _yaml.dump_yaml(self.to_dict()).decode("utf-8")

    # -- lifecycle ----------------------------------------------------------------------------------

    def end(self, status: str = "FINISHED") -> None:
        """End the run (FINISHED, FAILED or KILLED); a second call does nothing."""
        if not self.run.ended:
            self.run.end(status)

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._owns_run:
            self.run.__exit__(exc_type, exc, tb)


def _read_values(folder: str) -> dict[str, Any]:
    out = {}
    for rel in _list_files(folder):
        if rel.endswith(VALUE_SUFFIX):
            try:
                with open(os.path.join(folder, rel), "rb") as f:
                    out[rel[: -len(VALUE_SUFFIX)]] = json.loads(f.read())
            except (OSError, ValueError):
                continue  # unreadable: skipped, as the reader does
    return out


def _list_files(folder: str) -> list[str]:
    """Relative POSIX paths of the files under ``folder`` (no temporary files, no symlinked folders)."""
    found = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if TMP_MARK not in d and not os.path.islink(os.path.join(current, d))]
        rel = os.path.relpath(current, folder)
        for name in files:
            if TMP_MARK not in name:
                found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return sorted(found)


def get_or_create_ctx(
    name: str,
    *,
    project: str | None = None,
    tracking_dir: str | os.PathLike[str] | None = None,
    secrets_files: Sequence[str | os.PathLike[str]] = (),
    **settings: Any,
) -> RunContext:
    """The run context called ``name``: the same object again while its run is open, else a new one.

    A new context joins, in this order: this thread's active run (``start_run``/``init``), the run
    ``mini-mlflow run`` created for this process, or a new run named ``name``.

    Args:
        name: Context name; the run's name when a run is created.
        project: Experiment name for a new run; default the fluent API's current experiment.
        tracking_dir: Store root; default as for ``start_run``.
        secrets_files: ``KEY=value`` files for ``get_secret``, read after those of ``mini-mlflow run -s``.
        **settings: Settings of a new run by name (``fsync="flush"``, ...); see ``mini_mlflow.Settings``.
    """
    from ._experiments import current_experiment_id, get_tracking_dir

    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"get_or_create_ctx: name must be a non-empty str, got {name!r}")
    found = _contexts.get(name)
    if found is not None and not found.run.ended:
        return found
    files = [os.fspath(p) for p in secrets_files]
    active = _registry.active()
    if active is not None and tracking_dir is None:
        ctx = RunContext(active, name, owns_run=False, secrets_files=files)
    else:
        root = os.fspath(tracking_dir) if tracking_dir is not None else get_tracking_dir()
        resolved = _config.resolve(**{**settings, "tracking_dir": root})  # before claiming: may raise
        attached = _config.claim_attached_run_id() if active is None else None
        run_name: str | None = name
        if attached:
            experiment_id: int | str = 0
            there = _operations.find_run_dir(os.path.abspath(root), attached)
            if there is not None and _meta.read_meta(os.path.join(there[1], META_FILE)).get("run_name"):
                run_name = None  # `mini-mlflow run -n` named it; the command line wins
        elif project is not None:
            validate_experiment_name(project)
            experiment_id = _experiments.get_or_create_experiment(os.path.abspath(root), project)
        else:
            experiment_id = current_experiment_id()
        run = Run(
            run_id=attached or None,
            experiment_id=experiment_id,
            name=run_name,
            runs_dir=root,
            settings=resolved,
        )
        if active is None:
            _registry.push(run)
        ctx = RunContext(run, name, owns_run=True, secrets_files=files)
    _contexts[name] = ctx
    return ctx
