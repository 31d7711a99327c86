"""Experiments in the store: creating them (ids allocated under the root's lock), finding, updating, tags."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import InvalidInputError, NotFoundError
from . import _files, _yaml
from ._layout import (
    FORMAT_VERSION,
    LOCK_FILE,
    META_FILE,
    iso_from_ms,
    now_ms,
    validate_experiment_name,
    validate_key,
)
from ._lock import lock_in
from ._meta import read_meta

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


@contextmanager
def _store_locked(root: str) -> Iterator[None]:
    """Hold the store root's lock (experiment ids are allocated under it)."""
    os.makedirs(root, exist_ok=True)
    with _files.folder_beneath(root, "") as fd, lock_in(fd, LOCK_FILE):
        yield


def _write_experiment_meta(root: str, experiment_id: str, name: str) -> None:
    """Create the experiment's folder and meta.yaml, through real folders only (a link is refused)."""
    with _files.folder_beneath(root, experiment_id) as fd:
        _files.write_atomic(META_FILE, _yaml.dump_yaml(_experiment_meta(experiment_id, name)), dir_fd=fd)


def _experiment_meta(experiment_id: str, name: str) -> dict[str, Any]:
    now = iso_from_ms(now_ms())
    return {
        "format_version": FORMAT_VERSION,
        "experiment_id": experiment_id,
        "name": name,
        "lifecycle_stage": "active",
        "creation_time": now,
        "last_update_time": now,
    }


def ensure_experiment(root: str, experiment_id: str) -> None:
    """Create experiment ``experiment_id`` (given by the caller) if it does not exist yet."""
    meta_path = os.path.join(root, experiment_id, META_FILE)
    if os.path.exists(meta_path):
        return
    with _store_locked(root):
        if os.path.exists(meta_path):
            return
        name = (
            DEFAULT_EXPERIMENT_NAME
            if experiment_id == DEFAULT_EXPERIMENT_ID
            else f"experiment_{experiment_id}"
        )
        if find_experiment_by_name(root, name) is not None:
            name = f"{name}_{now_ms()}"
        _write_experiment_meta(root, experiment_id, name)


def iter_experiments(root: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield ``(experiment_id, meta or None if unreadable)`` for every experiment folder."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    for name in sorted(names, key=lambda n: (len(n), n)):
        if not name.isdigit() or not os.path.isdir(os.path.join(root, name)):
            continue
        try:
            yield name, read_meta(os.path.join(root, name, META_FILE))
        except (OSError, ValueError, Exception):  # a broken experiment must not hide the others
            yield name, None


def find_experiment_by_name(root: str, name: str) -> str | None:
    for experiment_id, meta in iter_experiments(root):
        if meta is not None and meta.get("name") == name:
            return experiment_id
    return None


def default_is_unwritten(root: str) -> bool:
    """True while experiment 0 has no folder: MLflow's Default, which every store has, is then written
    on first use, and its name stays reserved for it."""
    return not os.path.exists(os.path.join(root, DEFAULT_EXPERIMENT_ID, META_FILE))


def get_or_create_experiment(root: str, name: str) -> str:
    """Return the id of the experiment called ``name``, creating it (next free id) if missing."""
    validate_experiment_name(name)
    found = find_experiment_by_name(root, name)
    if found is not None:
        return found
    if name == DEFAULT_EXPERIMENT_NAME and default_is_unwritten(root):
        ensure_experiment(root, DEFAULT_EXPERIMENT_ID)  # not a second "Default" under a new id
        return DEFAULT_EXPERIMENT_ID
    with _store_locked(root):
        found = find_experiment_by_name(root, name)
        if found is not None:
            return found
        ids = [int(e) for e, _ in iter_experiments(root)]
        experiment_id = str(max(ids, default=0) + 1)
        _write_experiment_meta(root, experiment_id, name)
        return experiment_id


def create_experiment(root: str, name: str) -> str:
    """Create the experiment ``name`` with the next free id; raise if one with that name exists."""
    validate_experiment_name(name)
    with _store_locked(root):
        found = find_experiment_by_name(root, name)
        if found is None and name == DEFAULT_EXPERIMENT_NAME and default_is_unwritten(root):
            found = DEFAULT_EXPERIMENT_ID  # every store has it, written or not (as MLflow's)
        if found is not None:
            raise InvalidInputError(f"experiment {name!r} already exists (id {found})")
        ids = [int(e) for e, _ in iter_experiments(root)]
        experiment_id = str(max(ids, default=0) + 1)
        _write_experiment_meta(root, experiment_id, name)
        return experiment_id


def update_experiment_meta(
    root: str, experiment_id: str, tags: dict[str, str] | None = None, **changes: Any
) -> dict[str, Any]:
    """Apply ``changes`` (and merge ``tags``) to an experiment's meta.yaml, read-modify-replace under the
    root's lock."""
    with _store_locked(root), _files.folder_beneath(root, experiment_id, fixed=1) as fd:
        try:
            meta = read_meta(META_FILE, fd)
        except FileNotFoundError:
            raise NotFoundError(f"no experiment {experiment_id} in {root}") from None
        if tags:
            old = meta.get("tags")
            meta["tags"] = {**(old if isinstance(old, dict) else {}), **tags}
        meta.update(changes, last_update_time=iso_from_ms(now_ms()))
        _files.write_atomic(META_FILE, _yaml.dump_yaml(meta), dir_fd=fd)
    return meta


def write_experiment_tag(root: str, experiment_id: str, key: str, value: str) -> None:
    """Set an experiment's tag: the ``tags`` mapping of its meta.yaml (a folder beside the runs could
    clash with a run id), last write wins."""
    validate_key(key, "experiment tag key")
    update_experiment_meta(root, experiment_id, tags={key: value})
