"""The MLflow REST client: requests, retries with backoff and jitter, auth, TLS, redirects.

Speaks the tracking server's public REST API (``/api/2.0/mlflow/...`` and the artifact proxy
``/api/2.0/mlflow-artifacts/...``) over httpx. Connection errors, 5xx and 429 are retried with full-jitter
exponential backoff that honours ``Retry-After``; other 4xx answers raise :class:`ServerError` at once
with the server's own message. Credentials come from MLflow's variables and are never part of a message:
errors name the server by its URL without user info.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import MiniMlflowError

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Same-origin redirects followed at most this many times.
MAX_REDIRECTS = 5


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
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), "", ""))


@dataclass
class Credentials:
    """Auth and TLS settings, MLflow's way (``from_env`` reads the same variables MLflow reads)."""

    #: Bearer token (``MLFLOW_TRACKING_TOKEN``).
    token: str | None = None
    #: Basic auth (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``).
    username: str | None = None
    password: str | None = None
    #: False to skip TLS verification (``MLFLOW_TRACKING_INSECURE_TLS=true``).
    verify: bool = True
    #: CA bundle to verify the server with (``MLFLOW_TRACKING_SERVER_CERT_PATH``).
    ca_bundle: str | None = None
    #: Client certificate (``MLFLOW_TRACKING_CLIENT_CERT_PATH``).
    client_cert: str | None = None

    def __repr__(self) -> str:  # never show secrets, even in a debugger or a traceback
        return (
            f"Credentials(token={'***' if self.token else None}, username={self.username!r}, "
            f"password={'***' if self.password else None}, verify={self.verify})"
        )

    @classmethod
    def from_env(cls, url: str = "") -> Credentials:
        env = os.environ
        parts = urlsplit(url)
        return cls(
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            username=env.get("MLFLOW_TRACKING_USERNAME") or parts.username or None,
            password=env.get("MLFLOW_TRACKING_PASSWORD") or parts.password or None,
            verify=env.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() not in ("1", "true", "yes"),
            ca_bundle=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
            client_cert=env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None,
        )

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None and self.password is not None:
            import base64

            pair = f"{self.username}:{self.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {}


class MlflowRestClient:
    """A small, retrying client for an MLflow tracking server.

    Args:
        url: Server base URL, e.g. ``http://127.0.0.1:5000``.
        credentials: Auth and TLS; read from the environment when None.
        timeout: Seconds for connecting and for each read.
        max_retries: Retries of one request after the first attempt.
        backoff_base: First backoff in seconds (doubled each retry, full jitter, at most ``backoff_max``).
        stop: An event that interrupts backoff waits (the agent's stop signal).
        transport: An httpx transport, for tests and custom networking.
    """

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 7,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SyncError(
                f"invalid server URL {display_url(url)!r}: must be http:// or https://HOST[:PORT]"
            )
        self.url = display_url(url)
        self._origin = (parts.scheme, parts.hostname.lower(), parts.port)
        self.credentials = credentials or Credentials.from_env(url)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stop = stop or threading.Event()
        #: Request bodies sent (bytes), requests made and retries, for the summary.
        self.bytes_sent = 0
        self.requests = 0
        self.retries = 0
        verify: Any = self.credentials.verify
        if verify and self.credentials.ca_bundle:
            import ssl

            verify = ssl.create_default_context(cafile=self.credentials.ca_bundle)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            verify=verify,
            cert=self.credentials.client_cert,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "mini-mlflow-sync"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MlflowRestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- REST calls ------------------------------------------------------------------------------

    def get(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._json("GET", f"/api/2.0/mlflow/{endpoint}", params=params)

    def post(self, endpoint: str, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        import json

        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        return self._json("POST", f"/api/2.0/mlflow/{endpoint}", content=data, retry=retry)

    def put_artifact(self, path: str, file_path: str) -> int:
        """Upload a file through the server's artifact proxy; return its size."""
        from urllib.parse import quote

        size = os.path.getsize(file_path)

        def body() -> Iterator[bytes]:
            with open(file_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        self._request(
            "PUT",
            "/api/2.0/mlflow-artifacts/artifacts/" + quote(path),
            content_factory=body,
            size=size,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        return size

    # -- plumbing --------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise ServerError(response.status_code, "BAD_RESPONSE", "answer is not JSON", path) from None
        return data if isinstance(data, dict) else {}

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        content_factory: Any = None,
        size: int = 0,
        headers: dict[str, str] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        import httpx

        sent_headers = {"Content-Type": "application/json", **(headers or {}), **self.credentials.headers()}
        body_size = len(content) if content is not None else size
        attempt = 0
        while True:
            url = self.url + path
            try:
                response = self._send(method, url, params, content, content_factory, sent_headers)
            except httpx.TransportError as exc:
                # Only a failed connect is known not to have reached the server; a non-retried call
                # (create) must not be replayed blindly after a timeout.
                if (not retry and not isinstance(exc, httpx.ConnectError)) or attempt >= self.max_retries:
                    raise UnreachableError(
                        f"{method} {self.url}{path}: {type(exc).__name__}: {exc or 'no answer'} "
                        f"(after {attempt + 1} attempts)"
                    ) from None
                self._backoff(attempt, None)
                attempt += 1
                continue
            self.requests += 1
            self.bytes_sent += body_size
            status = response.status_code
            if status < 400:
                return response
            if status in RETRY_STATUSES and retry and attempt < self.max_retries:
                self._backoff(attempt, response.headers.get("Retry-After"))
                attempt += 1
                continue
            raise self._error(response, path)

    def _send(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        content: bytes | None,
        content_factory: Any,
        headers: dict[str, str],
    ) -> httpx.Response:
        """One request, following redirects only within the same origin (credentials never leak)."""
        for _ in range(MAX_REDIRECTS + 1):
            body = content_factory() if content_factory is not None else content
            response = self._http.request(method, url, params=params, content=body, headers=headers)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            target = response.next_request.url if response.next_request is not None else None
            if target is None:
                return response
            origin = (target.scheme, (target.host or "").lower(), target.port)
            if origin != self._origin:
                raise SyncError(
                    f"{self.url} redirected to another host ({target.scheme}://{target.host}); "
                    "refusing to send credentials there: use the final server URL instead"
                )
            url, params = str(target), None
            if response.status_code == 303:
                method, content, content_factory = "GET", None, None
        raise SyncError(f"{self.url}: more than {MAX_REDIRECTS} redirects")

    def _backoff(self, attempt: int, retry_after: str | None) -> None:
        self.retries += 1
        delay = random.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))
        wanted = _parse_retry_after(retry_after)
        if wanted is not None:
            delay = max(delay, min(wanted, 120.0))
        if self.stop.wait(delay):
            raise SyncInterrupted("sync interrupted")

    def _error(self, response: httpx.Response, path: str) -> ServerError:
        code, message = "", ""
        try:
            data = response.json()
            if isinstance(data, dict):
                code, message = str(data.get("error_code", "")), str(data.get("message", ""))
        except ValueError:
            message = response.text[:300].strip()
        if response.status_code in (401, 403):
            return AuthError(
                response.status_code,
                code or ("UNAUTHENTICATED" if response.status_code == 401 else "PERMISSION_DENIED"),
                (message or "the server refused the credentials")
                + " (check MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD)",
                f"{self.url}{path}",
            )
        return ServerError(
            response.status_code, code or "HTTP_ERROR", message or response.reason_phrase, path
        )


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
