"""The sync cursor: what one server has acknowledged of one run, kept next to the run.

``<run>/.sync/<server-hash>.json`` holds the remote run id, the byte offset up to which each metrics
file was acknowledged, and fingerprints of the params, tags, results and artifacts sent. It is replaced whole
(temporary file + rename) and only ever advanced after the server acknowledged, so a kill at any moment
leaves a cursor that is behind, never ahead: the next pass resends at most what was in flight, which the
server stores once (identical metric points, params and tags are idempotent in MLflow's SQL store).
No secret is ever part of it: the server is named by its URL without user info.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..store._files import read_bytes
from ..store._operations import write_in_run
from ._errors import display_url

SYNC_DIR = ".sync"
CURSOR_VERSION = 1


def server_key(url: str) -> str:
    """A short stable name for a server (its URL without credentials, hashed)."""
    return hashlib.sha256(display_url(url).encode()).hexdigest()[:16]


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Cursor:
    """What the server at ``server`` has acknowledged of one local run."""

    server: str = ""
    remote_run_id: str | None = None
    remote_experiment_id: str | None = None
    #: metric key → byte offset of its .jsonl file acknowledged so far (whole lines only).
    metrics: dict[str, int] = field(default_factory=dict)
    #: param key → fingerprint of the text acknowledged.
    params: dict[str, str] = field(default_factory=dict)
    #: param key → fingerprint of a local text the server refused (it holds another value).
    conflicts: dict[str, str] = field(default_factory=dict)
    #: tag key → fingerprint of the text acknowledged.
    tags: dict[str, str] = field(default_factory=dict)
    #: result key → fingerprint of how its value was sent (kind and value, not time; see
    #: ``interop._convert.load_results``).
    results: dict[str, str] = field(default_factory=dict)
    #: artifact path → [size, mtime_ns] of the file uploaded.
    artifacts: dict[str, list[int]] = field(default_factory=dict)
    #: [status, end_time_ms] last acknowledged by runs/update.
    status: list[Any] | None = None
    #: Local parent run id whose remote id was not known when the run was created.
    parent_pending: bool = False
    version: int = CURSOR_VERSION


def cursor_path(run_dir: str, url: str) -> str:
    return os.path.join(run_dir, SYNC_DIR, server_key(url) + ".json")


def load(run_dir: str, url: str) -> Cursor:
    """The cursor of ``run_dir`` for ``url``; an empty one if none (or unreadable: resending is safe)."""
    try:
        data = json.loads(read_bytes(cursor_path(run_dir, url)))  # a planted link: refused, not read
    except (OSError, ValueError):
        return Cursor(server=display_url(url))
    if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
        return Cursor(server=display_url(url))
    known = set(Cursor.__dataclass_fields__)
    cursor = Cursor(**{k: v for k, v in data.items() if k in known})
    cursor.server = display_url(url)
    return cursor


def save(run_dir: str, url: str, cursor: Cursor) -> None:
    """Replace the cursor atomically (readers and a later pass see the old one or the new one)."""
    data = json.dumps(asdict(cursor), sort_keys=True, separators=(",", ":")).encode() + b"\n"
    write_in_run(run_dir, cursor_path(run_dir, url), data)  # .sync/ as a link: refused, not followed


def lock_name(url: str) -> str:
    """The name, in the run's ``.sync/``, of the lock held while a pass syncs the run to ``url``."""
    return server_key(url) + ".lock"
