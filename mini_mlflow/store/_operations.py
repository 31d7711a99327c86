"""Synchronous store operations: experiments, run folders, meta.yaml, params, tags and artifacts.

These are the rare writes (once per run or per key), done in the caller's thread so that mistakes such
as a conflicting param raise at once. meta.yaml is always replaced whole under a file lock, so several
processes sharing a run never lose each other's updates and readers never see half a file.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, BinaryIO

from .._errors import InvalidInputError, NotFoundError, ParamConflictError, StorageError
from . import _files, _yaml
from ._experiments import iter_experiments
from ._files import run_folder
from ._layout import (
    FORMAT_VERSION,
    LOCK_FILE,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    META_FILE,
    VALUE_SUFFIX,
    check_text,
    iso_from_ms,
    param_path,
    tag_path,
    validate_artifact_path,
    validate_key,
)
from ._lock import lock_in
from ._meta import read_meta

RUN_SUBDIRS = ("params", "metrics", "tags", "artifacts")


# -- runs --------------------------------------------------------------------------------------


def find_run_dir(root: str, run_id: str) -> tuple[str, str] | None:
    """Return ``(experiment_id, run_dir)`` of the run with this id, or None."""
    for experiment_id, _ in iter_experiments(root):
        rdir = os.path.join(root, experiment_id, run_id)
        if os.path.isfile(os.path.join(rdir, META_FILE)):
            return experiment_id, rdir
    return None


def create_run(
    root: str,
    experiment_id: str,
    run_id: str,
    run_name: str | None,
    parent_run_id: str | None,
    start_ms: int,
) -> tuple[str, dict[str, Any]]:
    """Create the folder and meta.yaml of a new run; return ``(run_dir, meta)``."""
    rdir = os.path.join(root, experiment_id, run_id)
    os.makedirs(rdir, exist_ok=True)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "run_name": run_name,
        "experiment_id": experiment_id,
        "status": "RUNNING",
        "start_time": iso_from_ms(start_ms),
        "end_time": None,
        "user": _user(),
        "source": _source(),
        "lifecycle_stage": "active",
        "parent_run_id": parent_run_id,
    }
    # Through the run folder's descriptor, as every write into a run (a planted link is refused).
    with run_folder(rdir) as fd, lock_in(fd, LOCK_FILE):
        if _files.exists_in(META_FILE, fd):
            raise InvalidInputError(f"run id {run_id!r} already exists in experiment {experiment_id}")
        for sub in RUN_SUBDIRS:
            try:
                os.mkdir(sub, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
        _files.write_atomic(META_FILE, _yaml.dump_yaml(meta), dir_fd=fd)
    return rdir, meta


def update_run_meta(
    rdir: str, fsync: bool = False, lock_timeout: float = 60, **changes: Any
) -> dict[str, Any]:
    """Apply ``changes`` to a run's meta.yaml (read-modify-replace under the run's lock)."""
    # meta.yaml and the lock file are opened through a descriptor of the run folder: one swapped for a
    # symlink, even mid-update, never has anything written or created outside the store.
    try:
        with run_folder(rdir) as fd, lock_in(fd, LOCK_FILE, lock_timeout):
            try:
                meta = read_meta(META_FILE, fd)
            except FileNotFoundError:
                raise NotFoundError(f"run folder {rdir} has no meta.yaml (was it deleted?)") from None
            meta.update(changes)
            _files.write_atomic(META_FILE, _yaml.dump_yaml(meta), fsync=fsync, dir_fd=fd)
    except FileNotFoundError:
        raise NotFoundError(f"run folder {rdir} is gone (was it deleted?)") from None
    touch_experiment(rdir)
    return meta


def touch_experiment(rdir: str) -> None:
    """Move the experiment folder's mtime: readers between full sweeps then re-check its runs.

    Readers skip runs settled at their last sweep while this mtime stays put (see ``_index``). Without
    the right to touch it (a shared store), the change is seen at the next sweep, seconds later.
    """
    try:
        os.utime(os.path.dirname(rdir))
    except OSError:
        pass


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): not worth failing a run over
        return "unknown"


def _source() -> dict[str, Any]:
    """The entry script (relative to the working folder when inside it) and its git commit, if any."""
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    name = ""
    if script:
        full = os.path.abspath(script)
        try:
            rel = os.path.relpath(full)
        except ValueError:
            rel = os.path.basename(full)
        name = rel if not rel.startswith("..") else os.path.basename(full)
    start = os.path.dirname(os.path.abspath(script)) if script else os.getcwd()
    return {"name": name, "git_commit": _git_commit(start)}


def _git_commit(start: str) -> str | None:
    """Read HEAD's commit without running git (cheap, and works where git is not installed)."""
    folder = start
    for _ in range(64):
        git = os.path.join(folder, ".git")
        if os.path.isdir(git):
            try:
                with open(os.path.join(git, "HEAD")) as f:
                    head = f.read().strip()
                if not head.startswith("ref: "):
                    return head or None
                ref = head[5:]
                ref_path = os.path.join(git, *ref.split("/"))
                if os.path.exists(ref_path):
                    with open(ref_path) as f:
                        return f.read().strip() or None
                with open(os.path.join(git, "packed-refs")) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) == 2 and parts[1] == ref:
                            return parts[0]
            except OSError:
                return None
            return None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    return None


# -- params, tags, artifacts --------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)  # small numpy arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def param_json(key: str, value: Any) -> str:
    """The canonical JSON text a param is stored as; raises if it cannot be stored."""
    if isinstance(value, str) and len(value) > MAX_PARAM_VALUE_LENGTH:
        # Refuse before json.dumps: a 100 MB string must not be copied (escaped, bigger) to be refused.
        raise InvalidInputError(
            f"param {key!r}: value is {len(value)} characters; at most {MAX_PARAM_VALUE_LENGTH} "
            "are allowed (MLflow's limit); log large values with log_dict or log_text instead"
        )
    try:
        text = json.dumps(value, allow_nan=False, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"param {key!r}: value {value!r} cannot be stored as JSON ({exc}); "
            "use str, int, float (finite), bool, None, or lists/dicts of those"
        ) from None
    shown = value if isinstance(value, str) else text
    if len(shown) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidInputError(
            f"param {key!r}: value is {len(shown)} characters; at most {MAX_PARAM_VALUE_LENGTH} "
            "are allowed (MLflow's limit); log large values with log_dict or log_text instead"
        )
    if isinstance(value, str):
        check_text(value, f"value of param {key!r}")
    return text


def _in_run(rdir: str, path: str) -> tuple[str, str]:
    """``(folder below the run, file name)`` of a path inside the run folder ``rdir``."""
    folder, _, name = os.path.relpath(path, rdir).replace(os.sep, "/").rpartition("/")
    return folder, name


def write_param(rdir: str, key: str, text: str) -> None:
    """Write a param once; the same value again is a no-op, a different one raises."""
    folder, name = _in_run(rdir, param_path(rdir, key))
    data = (text + "\n").encode("utf-8")
    with run_folder(rdir, folder) as fd:  # params/ or a key's folder as a symlink: refused, never followed
        existing = _files.create_once(name, data, dir_fd=fd)
    if existing is not None and existing.strip() != data.strip():
        old = existing.decode("utf-8", "replace").strip()
        raise ParamConflictError(
            f"param {key!r} was already logged with value {old}; cannot change it to {text} "
            "(params are write-once; log a metric or a tag for values that change)"
        )


def tag_json(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInputError(
            f"tag {key!r}: value is {len(text)} characters; at most {MAX_TAG_VALUE_LENGTH} are allowed"
        )
    check_text(text, f"value of tag {key!r}")
    return json.dumps(text, ensure_ascii=False)


#: MLflow's tag for the run's name: setting it renames the run (``run_name`` in meta.yaml), as MLflow
#: does; code from before ``run_name=`` names runs this way. The tag is kept too, as MLflow keeps it.
RUN_NAME_TAG = "mlflow.runName"


def write_tag(rdir: str, key: str, text: str) -> None:
    """Write a tag (replaced whole: last write wins); ``mlflow.runName`` also renames the run."""
    write_in_run(rdir, tag_path(rdir, key), (text + "\n").encode("utf-8"))
    if key == RUN_NAME_TAG:
        update_run_meta(rdir, run_name=json.loads(text))


def delete_tag(rdir: str, key: str) -> None:
    """Remove a run's tag; raise ``NotFoundError`` if it has none by that key."""
    folder, name = _in_run(rdir, tag_path(rdir, key))
    try:
        with run_folder(rdir, folder) as fd:
            os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        raise NotFoundError(f"run {os.path.basename(rdir)} has no tag {key!r}") from None


def write_input(rdir: str, digest: str, document: dict[str, Any]) -> None:
    """Record a dataset the run used (``inputs/<digest>.json``; the same dataset again replaces it)."""
    name = validate_key(digest, "dataset digest")
    data = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
    write_in_run(rdir, os.path.join(rdir, "inputs", name + VALUE_SUFFIX), data)


def write_in_run(rdir: str, path: str, data: bytes) -> None:
    """Replace the file ``path`` inside the run folder ``rdir`` with ``data``, creating its folder.

    The folder is reached without following any symlink (see ``run_folder``): a link planted or swapped
    in anywhere below the store root is refused, never written through.
    """
    folder, name = _in_run(rdir, path)
    with run_folder(rdir, folder) as fd:
        _files.write_atomic(name, data, dir_fd=fd)


def artifact_dest(rdir: str, artifact_path: str | None, name: str) -> str:
    """The absolute destination of an artifact, guaranteed to be inside the run's artifacts/."""
    if not os.path.exists(os.path.join(rdir, META_FILE)):
        raise StorageError(2, f"run folder {rdir} was deleted; cannot store artifacts")
    rel = validate_artifact_path(artifact_path)
    name = validate_artifact_path(name)
    if not name:
        raise InvalidInputError("artifact file name must not be empty")
    # artifacts/ itself planted as a symlink would move the whole base outside the run: refuse it.
    try:
        _files.check_inside(rdir, os.path.join(rdir, "artifacts", "x"))
    except OSError as exc:
        raise _files.storage_error("store artifact", exc.filename or rdir, exc) from None
    # A planted link below artifacts/ gets a clear error here; the write itself never follows one.
    base = os.path.realpath(os.path.join(rdir, "artifacts"))
    parent = os.path.realpath(os.path.join(base, rel)) if rel else base
    if parent != base and not parent.startswith(base + os.sep):
        raise InvalidInputError(
            f"artifact path {os.path.join(rel, name)!r} resolves outside the run's artifacts folder"
        )
    return os.path.join(rdir, "artifacts", rel, name) if rel else os.path.join(rdir, "artifacts", name)


def copy_artifact(rdir: str, src: str, dest: str) -> None:
    """Copy the file ``src`` to ``dest`` in the run (streamed, then renamed into place; folders made)."""
    folder, name = _in_run(rdir, dest)
    with run_folder(rdir, folder) as fd:  # a symlink anywhere on the way: refused, never written through
        _files.copy_atomic(src, name, dir_fd=fd)


def open_in_run(rdir: str, path: str) -> BinaryIO:
    """Create (or truncate) the file ``path`` in the run for streaming writes, reached as ``write_in_run``."""
    folder, name = _in_run(rdir, path)
    with run_folder(rdir, folder) as fd:
        return os.fdopen(os.open(name, _files.CREATE_FLAGS, 0o644, dir_fd=fd), "wb")


def validate_params(params: dict[str, Any]) -> dict[str, str]:
    if not isinstance(params, dict):
        raise InvalidInputError(f"params must be a dict, got {type(params).__name__}")
    return {validate_key(k, "param key"): param_json(k, v) for k, v in params.items()}
