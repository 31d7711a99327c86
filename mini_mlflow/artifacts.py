"""``mini_mlflow.artifacts``: MLflow's ``mlflow.artifacts`` functions over the local store.

An artifact is named as MLflow names it: ``runs:/<run_id>/<path>``, the ``file:`` URI that
``get_artifact_uri`` gives, or ``run_id=`` with ``artifact_path=``. Whatever the form, only files under
a run's ``artifacts/`` folder are read, never through a planted symbolic link.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote, urlsplit

from ._errors import InvalidInputError, NotFoundError
from .entities import FileInfo

__all__ = ["download_artifacts", "list_artifacts", "load_dict", "load_text"]


def _client(tracking_uri: str | None) -> Any:
    from .api._client import MlflowClient

    return MlflowClient(tracking_uri)


def _locate(
    artifact_uri: str | None, run_id: str | None, artifact_path: str | None, tracking_uri: str | None
) -> tuple[Any, str, str]:
    """``(client, run_id, path in its artifacts)`` of an artifact named in any of MLflow's forms."""
    client = _client(tracking_uri)
    if artifact_uri is None:
        if run_id is None:
            raise InvalidInputError("name the artifact: artifact_uri='runs:/<run_id>/<path>', or run_id=")
        return client, run_id, artifact_path or ""
    if run_id is not None or artifact_path is not None:
        raise InvalidInputError("give either artifact_uri or run_id (with artifact_path), not both")
    if artifact_uri.startswith("runs:/"):
        found, _, path = artifact_uri[len("runs:/") :].strip("/").partition("/")
        return client, found, path
    parts = urlsplit(artifact_uri)
    if parts.scheme not in ("", "file"):
        raise InvalidInputError(
            f"artifact_uri {artifact_uri!r}: only runs:/<run_id>/<path> and file: URIs of this store "
            "are known"
        )
    local = os.path.realpath(unquote(parts.path) if parts.scheme else artifact_uri)
    root = os.path.realpath(client._root)
    rel = os.path.relpath(local, root).split(os.sep)
    # <root>/<experiment>/<run>/artifacts[/path...]: anything else is not an artifact of this store
    if len(rel) < 3 or rel[0] == ".." or rel[2] != "artifacts":
        raise InvalidInputError(f"artifact_uri {artifact_uri!r} is not inside a run's artifacts in {root}")
    return client, rel[1], "/".join(rel[3:])


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Copy an artifact file or folder to ``dst_path`` (default: a new temporary folder); its local path."""
    client, found, path = _locate(artifact_uri, run_id, artifact_path, tracking_uri)
    return str(client.download_artifacts(found, path, dst_path))


def list_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    tracking_uri: str | None = None,
) -> list[FileInfo]:
    """The files and folders directly under an artifact folder."""
    client, found, path = _locate(artifact_uri, run_id, artifact_path, tracking_uri)
    return list(client.list_artifacts(found, path or None))


def _read(artifact_uri: str) -> bytes:
    from .api._reading import artifact_bytes
    from .read._reader import Store
    from .store._layout import validate_artifact_path

    client, found, path = _locate(artifact_uri, None, None, None)
    try:
        return artifact_bytes(Store(client._root), found, validate_artifact_path(path))
    except (FileNotFoundError, IsADirectoryError):
        raise NotFoundError(f"run {found} has no artifact file {path!r}") from None


def load_text(artifact_uri: str) -> str:
    """An artifact file's text (UTF-8)."""
    return _read(artifact_uri).decode("utf-8")


def load_dict(artifact_uri: str) -> dict[str, Any]:
    """A JSON or YAML artifact file as a dict (YAML through the safe loader only)."""
    data = _read(artifact_uri)
    try:
        found = json.loads(data)
    except ValueError:
        import yaml

        try:
            found = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"artifact {artifact_uri!r} is neither JSON nor YAML: {exc}") from None
    if not isinstance(found, dict):
        raise InvalidInputError(f"artifact {artifact_uri!r} holds a {type(found).__name__}, not a dict")
    return found
