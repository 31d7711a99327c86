"""UI stage: what the server lets a browser do: hosts it answers, headers on every answer, artifact files.

A local server that serves files from disk is a target (MLflow's artifact endpoint had six path-traversal
CVEs, and any web page the user visits can make the browser call 127.0.0.1). So:

* only requests naming this server in ``Host`` are answered (a DNS-rebinding page sends its own name);
* no CORS header is ever sent, so other origins cannot read an answer;
* every answer carries a strict Content-Security-Policy, ``nosniff`` and ``frame-ancestors 'none'``;
* a change to the store needs POST, our custom header (which a cross-origin page cannot send without a
  preflight we never grant) and an ``Origin`` equal to our own;
* an artifact path is decoded once, checked with the format's rules (no ``..``, absolute path,
  backslash, drive letter or NUL) and opened folder by folder without following any symbolic link;
  text goes out as ``text/plain``, images inline, everything else (HTML and SVG included) as a download.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

from .._errors import InvalidInputError
from ..store._files import READ_FLAGS, SymlinkRefusedError, open_dir_beneath
from ..store._layout import validate_artifact_path

#: The page's own policy: scripts, styles, images and fetches from this server only.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: An artifact is never a page of ours: no script runs in it, nothing loads from it.
ARTIFACT_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"
)
COMMON_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
#: The header a page of ours sends with every change (a cross-origin page would need a preflight).
CHANGE_HEADER = "X-Mini-Mlflow"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
_TEXT = frozenset(
    {
        ".txt", ".log", ".json", ".jsonl", ".yaml", ".yml", ".csv", ".tsv", ".md", ".py", ".toml",
        ".ini", ".cfg", ".conf", ".sh", ".out", ".err", "mlmodel", "requirements.txt", "conda.yaml",
    }
)  # fmt: skip


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """``Host`` header values this server answers: the loopback names with our port (and a chosen host)."""
    names = set(LOOPBACK_NAMES)
    if host in ("0.0.0.0", "::"):  # noqa: S104 (names, not a bind)
        # every address: reachable by this machine's name (give --host an address to be reached by it)
        import socket

        names.add(socket.gethostname())
    elif host not in ("127.0.0.1", "localhost", "::1"):
        names.add(f"[{host}]" if ":" in host else host)
    names.update(extra)
    return frozenset(f"{name}:{port}".lower() for name in names)


def origin_matches(origin: str | None, host_header: str | None) -> bool:
    """Whether a change request's ``Origin`` is this very server (the page we served)."""
    return bool(origin and host_header and origin.lower() == f"http://{host_header.lower()}")


def artifact_rel(raw: str) -> str:
    """The artifact path from an already-decoded URL part, or InvalidInputError saying what is refused."""
    if not raw:
        raise InvalidInputError("empty artifact path")
    rel = validate_artifact_path(raw)
    if not rel or any(part in ("", ".", "..") for part in rel.split("/")):
        raise InvalidInputError(f"invalid artifact path {raw!r}")
    return rel


def open_artifact(root: str, experiment_id: str, run_id: str, rel: str) -> tuple[int, os.stat_result]:
    """A read descriptor of an artifact, reached from the store root through real folders only.

    Raises:
        FileNotFoundError: no such file (or a folder on the way is missing).
        SymlinkRefusedError: the file or a folder on the way is a symbolic link.
        IsADirectoryError: the path names a folder or anything but a regular file.
    """
    folder, _, name = rel.rpartition("/")
    base = f"{experiment_id}/{run_id}/artifacts" + (f"/{folder}" if folder else "")
    depth = len(base.split("/"))
    dir_fd = open_dir_beneath(root, base, fixed=depth)  # fixed: nothing is ever created
    try:
        try:
            fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SymlinkRefusedError(f"{root}/{base}/{name}") from None
            raise
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EISDIR, "not a regular file", rel)
    return fd, st


def artifact_type(rel: str) -> tuple[str, bool]:
    """``(content type, inline)`` of an artifact: images and text inline, the rest as a download."""
    name = rel.rsplit("/", 1)[-1].lower()
    ext = os.path.splitext(name)[1]
    if ext in _IMAGES:
        return _IMAGES[ext], True
    if ext in _TEXT or name in _TEXT:
        return "text/plain; charset=utf-8", True
    return "application/octet-stream", False  # HTML, SVG, binaries: never rendered on our origin
