"""The MLflow REST client: requests, retries with backoff and jitter, auth, TLS, redirects.

Speaks the tracking server's public REST API (``/api/2.0/mlflow/...`` and the artifact proxy
``/api/2.0/mlflow-artifacts/...``) over httpx. Connection errors, 5xx and 429 are retried with full-jitter
exponential backoff that honours ``Retry-After``; other 4xx answers raise :class:`ServerError` at once
with the server's own message. Credentials come from MLflow's variables and are never part of a message:
errors name the server by its URL without user info.

A server is not trusted to behave: every request has a total deadline (a watchdog shuts the socket
down when it passes, so a server trickling bytes cannot hold the agent), answers larger than
``MAX_RESPONSE_BYTES`` are refused without being read into memory, answers that are not the JSON
object an endpoint promises raise ``ServerError`` (``BAD_RESPONSE``) instead of a ``KeyError`` deep in
the agent, compressed answers (never asked for) are refused rather than decoded, and text from the
server is shown on one line with control characters escaped.
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import _log
from ._answers import check_answer
from ._errors import (
    AuthError,
    ServerError,
    SyncError,
    SyncInterrupted,
    UnreachableError,
    display_url,
    one_line,
)

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Same-origin redirects followed at most this many times.
MAX_REDIRECTS = 5
#: Largest answer read from a server. MLflow's answers to our calls are a few kB (``runs/get`` of a run
#: with thousands of params a few MB); anything bigger is refused before it fills memory.
MAX_RESPONSE_BYTES = 16 << 20
#: Slowest upload rate a request body is given time for (bytes/s), on top of ``timeout``.
MIN_UPLOAD_RATE = 256 << 10


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
        timeout: Seconds for connecting, for each read, and for a whole answer (a watchdog ends a request
            still unanswered then; one with a body also gets time to upload it at ``MIN_UPLOAD_RATE``).
        max_retries: Retries of one request after the first attempt.
        backoff_base: First backoff in seconds (doubled each retry, full jitter, at most ``backoff_max``).
        stop: An event that interrupts backoff waits (the agent's stop signal).
        on_retry: Called with one line (what failed, which retry, how long until it) before each wait,
            so a person watching knows why nothing moves; by default logged at INFO.
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
        on_retry: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError:  # a core dependency: only a broken install lacks it
            raise SyncError(
                "syncing needs the httpx package, which is not installed: pip install httpx"
            ) from None

        try:
            parts = urlsplit(url)
            hostname, port = parts.hostname, parts.port
        except ValueError:
            hostname = port = None
        if hostname is None or parts.scheme not in ("http", "https") or not url.isprintable():
            raise SyncError(
                f"invalid server URL {display_url(url)!r}: must be http:// or https://HOST[:PORT]"
            )
        self.url = display_url(url)
        default_port = {"http": 80, "https": 443}[parts.scheme]
        self._origin = (parts.scheme, hostname.lower(), None if port == default_port else port)
        self.timeout = timeout
        # Connections this client opened: a request past its deadline has its socket shut down.
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()
        self._expired = threading.Event()
        self.credentials = credentials or Credentials.from_env(url)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stop = stop or threading.Event()
        self.on_retry = on_retry or _log_retry
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
            # Uncompressed answers only: a compressed one could expand a thousandfold in one read
            # before the size limit sees it (MLflow's answers are small; uploads are not affected).
            headers={"User-Agent": "mini-mlflow-sync", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MlflowRestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- REST calls ------------------------------------------------------------------------------

    def get(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = self._json("GET", f"/api/2.0/mlflow/{endpoint}", params=params)
        return check_answer(endpoint, answer, self.url)

    def post(self, endpoint: str, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        import json

        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        answer = self._json("POST", f"/api/2.0/mlflow/{endpoint}", content=data, retry=retry)
        return check_answer(endpoint, answer, self.url)

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
            raise ServerError(
                response.status_code, "BAD_RESPONSE", f"answer is not JSON: {response.preview()}", path
            ) from None
        if not isinstance(data, dict):
            raise ServerError(
                response.status_code,
                "BAD_RESPONSE",
                f"answer is not a JSON object: {response.preview()}",
                path,
            )
        return data

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
    ) -> Answer:
        import httpx

        sent_headers = {"Content-Type": "application/json", **(headers or {}), **self.credentials.headers()}
        body_size = len(content) if content is not None else size
        attempt = 0
        while True:
            url = self.url + path
            deadline = self.timeout + body_size / MIN_UPLOAD_RATE
            try:
                response = self._send(method, url, params, content, content_factory, sent_headers, deadline)
            except httpx.TransportError as exc:
                # Only a failed connect is known not to have reached the server; a non-retried call
                # (create) must not be replayed blindly after a timeout.
                if self._expired.is_set():
                    what = f"no complete answer within {deadline:g} s (the server is stalling)"
                elif isinstance(exc, httpx.ReadTimeout):
                    what = f"no answer within {self.timeout:g} s (ReadTimeout)"
                else:
                    what = f"{type(exc).__name__}: {one_line(exc) or 'no answer'}"
                if (not retry and not isinstance(exc, httpx.ConnectError)) or attempt >= self.max_retries:
                    raise UnreachableError(
                        f"{method} {self.url}{path}: {what} (after {attempt + 1} attempts)"
                    ) from None
                self._backoff(attempt, None, f"{method} {path}: {what}")
                attempt += 1
                continue
            self.requests += 1
            self.bytes_sent += body_size
            status = response.status_code
            if status < 400:
                return response
            if status in RETRY_STATUSES and retry and attempt < self.max_retries:
                self._backoff(attempt, response.headers.get("Retry-After"), f"{method} {path}: HTTP {status}")
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
        deadline: float,
    ) -> Answer:
        """One request, following redirects only within the same origin (credentials never leak)."""
        for _ in range(MAX_REDIRECTS + 1):
            body = content_factory() if content_factory is not None else content
            request = self._http.build_request(
                method, url, params=params, content=body, headers=headers, extensions={"trace": self._trace}
            )
            answer = self._exchange(request, deadline)
            if answer.status_code not in (301, 302, 303, 307, 308):
                return answer
            location = answer.headers.get("Location")
            if not location:
                return answer
            try:
                target = request.url.join(location)
            except Exception:  # httpx.InvalidURL: whatever the server sent, it is not a place to go
                raise SyncError(f"{self.url} redirected to an invalid location; not followed") from None
            origin = (target.scheme, (target.host or "").lower(), target.port)
            if origin != self._origin:
                raise SyncError(
                    f"{self.url} redirected to another host "
                    f"({one_line(target.scheme, 10)}://{one_line(target.host, 100)}:{target.port or ''}); "
                    "refusing to send credentials there: use the final server URL instead"
                )
            url, params = str(target), None
            if answer.status_code == 303:
                method, content, content_factory = "GET", None, None
        raise SyncError(f"{self.url}: more than {MAX_REDIRECTS} redirects")

    def _exchange(self, request: httpx.Request, deadline: float) -> Answer:
        """Send ``request`` and read its answer, all within ``deadline`` seconds and the size limit."""
        self._expired.clear()
        watchdog = threading.Timer(deadline, self._abort)
        watchdog.name, watchdog.daemon = "mini-mlflow-sync-deadline", True
        watchdog.start()
        try:
            response = self._http.send(request, stream=True)
            try:
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise ServerError(
                        response.status_code,
                        "BAD_RESPONSE",
                        f"answer compressed ({one_line(encoding, 40)}) though only identity was accepted; "
                        "not decoded",
                        one_line(request.url.path, 200),
                    )
                size = response.headers.get("Content-Length", "")
                if size.isdigit() and int(size) > MAX_RESPONSE_BYTES:
                    raise _too_big(response.status_code, f"{int(size):,} bytes announced", request)
                chunks, total = [], 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > MAX_RESPONSE_BYTES:
                        raise _too_big(response.status_code, f"more than {total:,} bytes sent", request)
                    chunks.append(chunk)
            finally:
                response.close()
        finally:
            watchdog.cancel()
        return Answer(response.status_code, response.headers, b"".join(chunks), response.reason_phrase)

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            if stream is not None:
                self._streams.add(stream)

    def _abort(self) -> None:
        """The request in flight passed its deadline: shut its connection down (the blocked read ends)."""
        self._expired.set()
        for stream in list(self._streams):
            try:
                stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            except (AttributeError, OSError):
                pass

    def _backoff(self, attempt: int, retry_after: str | None, what: str) -> None:
        """Wait before retry ``attempt + 1`` of what failed (``what``), telling ``on_retry`` first."""
        self.retries += 1
        delay = random.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))
        wanted = _parse_retry_after(retry_after)
        if wanted is not None:
            delay = max(delay, min(wanted, 120.0))
        self.on_retry(f"{what}; retry {attempt + 1} of {self.max_retries} in {delay:.1f} s")
        if self.stop.wait(delay):
            raise SyncInterrupted("sync interrupted")

    def _error(self, response: Answer, path: str) -> ServerError:
        code, message = "", ""
        try:
            data = response.json()
            if isinstance(data, dict):
                code, message = str(data.get("error_code", "")), str(data.get("message", ""))
            else:
                message = response.preview()
        except ValueError:
            message = response.preview()
        code, message = one_line(code, 60), one_line(message)
        if response.status_code in (401, 403):
            return AuthError(
                response.status_code,
                code or ("UNAUTHENTICATED" if response.status_code == 401 else "PERMISSION_DENIED"),
                (message or "the server refused the credentials")
                + " (check MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD)",
                f"{self.url}{path}",
            )
        return ServerError(
            response.status_code, code or "HTTP_ERROR", message or one_line(response.reason_phrase), path
        )


class Answer:
    """A server's answer, read whole (and bounded): status, headers and body."""

    def __init__(self, status_code: int, headers: httpx.Headers, content: bytes, reason_phrase: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.reason_phrase = reason_phrase

    def json(self) -> Any:
        import json

        return json.loads(self.content)  # ValueError (UnicodeDecodeError included) when it is not JSON

    def preview(self) -> str:
        """What the body is, for a message: an HTML page's title, else its first characters."""
        text = self.content[:4096].decode("utf-8", "replace")
        kind = self.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        if title or "html" in kind:
            shown = title.group(1) if title else text
            return f"an HTML page ({one_line(shown, 120)}), not an MLflow answer"
        return f"{one_line(kind, 60)}, {len(self.content):,} bytes: {one_line(text, 120)!s}"


def _too_big(status: int, what: str, request: httpx.Request) -> ServerError:
    return ServerError(
        status,
        "BAD_RESPONSE",
        f"answer refused: {what}, the limit is {MAX_RESPONSE_BYTES >> 20} MB",
        one_line(request.url.path, 200),
    )


def _log_retry(message: str) -> None:
    _log.info("sync: %s", message)


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
