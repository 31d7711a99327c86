"""Sync's errors, and server text and URLs made safe to print (one line, escapes shown, no user info)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .._errors import MiniMlflowError

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


class SyncError(MiniMlflowError, RuntimeError):
    """Syncing to a tracking server failed."""


class UnreachableError(SyncError):
    """The server could not be reached (or kept failing) after every retry."""


class ServerError(SyncError):
    """The server answered with an error; ``status``, ``error_code`` and the server's ``message``."""

    def __init__(self, status: int, error_code: str, message: str, endpoint: str) -> None:
        super().__init__(f"{endpoint}: HTTP {status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message


class SyncInterrupted(SyncError):
    """The agent was asked to stop while waiting to retry."""


class AuthError(ServerError):
    """The server refused the credentials (401/403): fatal for the whole sync."""


def display_url(url: str) -> str:
    """``url`` without user info, query or trailing slash: safe to print and to hash."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname or "", parts.port
    except ValueError:  # "http://[::1", a port that is not a number: nothing of it is shown
        return "(not a valid URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    shown = urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), "", ""))
    # Escaped, never cut short: the cursor of each server is named by a hash of this text.
    return _UNPRINTABLE.sub(_escaped, shown)


def one_line(text: object, limit: int = 300) -> str:
    """Text from a server or a URL made safe for a one-line message: whitespace runs collapsed,
    control and bidirectional characters shown as escapes, cut to ``limit`` characters."""
    flat = _UNPRINTABLE.sub(_escaped, " ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")
