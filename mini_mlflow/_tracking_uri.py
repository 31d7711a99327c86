"""Tracking URIs, MLflow's way to name a store: a path, ``file:`` or ``mini-mlflow:`` selects the local store;
``http(s)://`` keeps logging local and syncs to that server in the background (online mode)."""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from ._errors import InvalidInputError

SCHEME = "mini-mlflow"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_BARE_SCHEMES = frozenset({"databricks", "databricks-uc", "uc"})
SUPPORTED = (
    "a folder path, file:<path>, mini-mlflow:<path> (the local store) or http(s)://<host> "
    "(log to the local store and sync to that MLflow server in the background)"
)


def _shown(uri: str) -> str:
    """The URI for a message: user info (credentials) masked, escapes visible, cut short."""
    text = repr(re.sub(r"//[^/@]*@", "//****@", uri))
    return text if len(text) <= 200 else text[:180] + "...'"


class TrackingTarget(NamedTuple):
    """Where a tracking URI points: a local store folder, or an MLflow server to sync to."""

    local_dir: str | None
    server_url: str | None


def parse(uri: str | os.PathLike[str]) -> TrackingTarget:
    """Read a tracking URI; raise ``InvalidInputError`` naming the supported forms for anything else."""
    from urllib.parse import unquote, urlsplit  # here: only a URI given in code or MLFLOW_TRACKING_URI

    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"tracking URI must be a non-empty str or path, got {uri!r}; use {SUPPORTED}")
    if "\x00" in uri or not uri.isprintable():
        raise InvalidInputError(f"tracking URI {_shown(uri)} holds control characters; use {SUPPORTED}")
    match = _SCHEME_RE.match(uri)
    scheme = match.group(1).lower() if match else ""
    if uri in _BARE_SCHEMES:  # MLflow reads "databricks" alone as that scheme, not as a folder
        scheme = uri
    if scheme == "" or len(scheme) == 1:  # a plain path (one letter: a Windows drive, refused later)
        return TrackingTarget(uri, None)
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInputError(
                f"tracking URI {_shown(uri)}: a file URI must name a local path (no host)"
            )
        return TrackingTarget(unquote(parts.path) or ".", None)
    if scheme == SCHEME:
        rest = uri[len(SCHEME) + 1 :]
        if rest.startswith("//"):  # mini-mlflow:///abs/path (an authority part, empty or localhost)
            parts = urlsplit("file:" + rest)
            if parts.netloc not in ("", "localhost"):
                raise InvalidInputError(
                    f"tracking URI {_shown(uri)}: a mini-mlflow URI must name a local path"
                )
            rest = unquote(parts.path)
        return TrackingTarget(rest or "mlruns", None)
    if scheme in ("http", "https"):
        parts = urlsplit(uri)
        try:
            _ = parts.port
        except ValueError:
            raise InvalidInputError(
                f"tracking URI {_shown(uri)}: the port is not a number from 0 to 65535"
            ) from None
        if not parts.hostname:
            raise InvalidInputError(f"tracking URI {_shown(uri)} names no host; use {SUPPORTED}")
        return TrackingTarget(None, uri.rstrip("/"))
    raise InvalidInputError(
        f"tracking URI scheme {scheme!r} is not supported by mini_mlflow ({uri.split(':', 1)[0]}: stores "
        f"belong to MLflow itself); use {SUPPORTED}"
    )
