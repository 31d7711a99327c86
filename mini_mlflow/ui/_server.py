"""UI stage: the HTTP server (standard library, one thread per request) and its routes.

The standard library's threading server is enough for one local user and a few tabs: the store is read
synchronously anyway, imports cost ~20 ms instead of ~90 ms for an async framework, and nothing new is
installed. Every answer passes through :meth:`Handler.answer`, which adds the security headers.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from .._errors import InvalidInputError, MiniMlflowError, NotFoundError
from ..read._index import experiment_ids as experiment_ids_of
from ..read._reader import resolve_run
from ..store._files import SymlinkRefusedError
from . import _answers, _live
from ._json import dumps
from ._routes import GET_ROUTES, INDEX_ROUTES, one_of, parse_list
from ._security import (
    ARTIFACT_CSP,
    CHANGE_HEADER,
    COMMON_HEADERS,
    PAGE_CSP,
    allowed_hosts,
    artifact_rel,
    artifact_type,
    open_artifact,
    origin_matches,
)
from ._series import SeriesCache

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: The records of the watched experiments are re-read at most this often, whatever the number of streams.
SNAPSHOT_S = 0.5
#: An answer read from the index serves every request for the same URL this long: twenty tabs asking for
#: the same table at once wait for one computation instead of twenty in turn. Live changes travel on the
#: stream, not through this, and a change made through the page forgets every shared answer.
SHARED_ANSWER_S = 0.25


#: Where a page's files are served for good: ``/static/v-<hash of every file>/...`` never changes content,
#: so a browser keeps them without asking again; the page itself (``/``) names that folder.
VERSIONED = "/static/v-"
IMMUTABLE = (("Cache-Control", "public, max-age=31536000, immutable"),)


class Static(NamedTuple):
    """The page's files (package data): ``{url path: (bytes, gzipped bytes, content type, etag)}``, and
    the hash of them all that names their versioned folder."""

    files: dict[str, tuple[bytes, bytes, str, str]]
    version: str


def load_static() -> Static:
    """The page's files. ``/`` is ``index.html`` with its links into the versioned folder; the modules
    it loads import each other by relative paths, so they stay in that folder too."""
    files: dict[str, bytes] = {}
    base = resources.files("mini_mlflow.ui") / "static"
    pending = [("", base)]
    while pending:
        prefix, folder = pending.pop()
        for item in folder.iterdir():
            if item.is_dir():
                pending.append((f"{prefix}{item.name}/", item))
            elif os.path.splitext(item.name)[1] in STATIC_TYPES:
                files["/static/" + prefix + item.name] = item.read_bytes()
    version = hashlib.blake2b(digest_size=8)
    for path in sorted(files):
        version.update(b"%d:%s\0" % (len(files[path]), path.encode()))
        version.update(files[path])
    files["/"] = files["/static/index.html"].replace(
        b'="/static/', b'="%s%s/' % (VERSIONED.encode(), version.hexdigest().encode())
    )
    out = {}
    for path, data in files.items():
        tag = '"' + hashlib.blake2b(data, digest_size=8).hexdigest() + '"'
        ext = os.path.splitext(path)[1] or ".html"
        out[path] = (data, gzip.compress(data, 6, mtime=0), STATIC_TYPES[ext], tag)
    return Static(out, version.hexdigest())


class UIServer(ThreadingHTTPServer):
    """The UI's server: a store root, the hosts it answers, caches shared by every request."""

    daemon_threads = True
    allow_reuse_address = True
    # a browser opens ~6 connections at once, and a bench 20 clients: the default backlog (5) drops some
    request_queue_size = 64

    def __init__(self, root: str, host: str = "127.0.0.1", port: int = 5000, read_only: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.read_only = read_only
        self.stopping = threading.Event()
        self.cache = SeriesCache(self.root)
        #: The read side's in-memory index is one per process and not made for concurrent updates.
        self.index_lock = threading.RLock()
        self._static: Static | None = None
        self._snapshots: dict[tuple[str, ...], tuple[float, list[Any]]] = {}
        self._shared: dict[str, tuple[float, bytes]] = {}
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.port = self.server_address[1]
        self.hosts = allowed_hosts(host, self.port)

    @property
    def static(self) -> Static:
        if self._static is None:
            self._static = load_static()
        return self._static

    def snapshot(self, experiment_ids: tuple[str, ...]) -> list[Any]:
        """The watched experiments' records, re-read at most every ``SNAPSHOT_S`` for all streams."""
        with self.index_lock:
            at, records = self._snapshots.get(experiment_ids, (0.0, []))
            if time.monotonic() - at > SNAPSHOT_S:
                ids = list(experiment_ids) or experiment_ids_of(self.root)
                records = _answers.table_records(self.root, ids)
                self._snapshots[experiment_ids] = (time.monotonic(), records)
            return records

    def shared_answer(self, key: str, compute: Callable[[], Any]) -> bytes:
        """The JSON bytes of an index answer, computed under the lock at most every ``SHARED_ANSWER_S``."""
        hit = self._shared.get(key)
        if hit is not None and time.monotonic() - hit[0] < SHARED_ANSWER_S:
            return hit[1]
        with self.index_lock:
            hit = self._shared.get(key)  # computed by another request while this one waited?
            if hit is not None and time.monotonic() - hit[0] < SHARED_ANSWER_S:
                return hit[1]
            body = dumps(compute())
            if len(self._shared) > 256:
                self._shared.clear()
            self._shared[key] = (time.monotonic(), body)
            return body

    def forget_answers(self) -> None:
        """After a change: no answer computed before it is served again."""
        with self.index_lock:
            self._shared.clear()

    def server_close(self) -> None:
        self.stopping.set()
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    """One request: host check, route, answer with the security headers."""

    server: UIServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waited for the browser's
    # delayed ACK of the headers, 40 ms on every answer of a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "mini_mlflow"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one local user: a line per request would bury the ready line

    # -- answers --------------------------------------------------------------------------------

    def answer(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...] = (),
        csp: str = PAGE_CSP,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", csp)
        for name, value in COMMON_HEADERS + headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, doc: Any, status: int = 200) -> None:
        self.send_json(dumps(doc), status)

    def send_json(self, body: bytes, status: int = 200) -> None:
        self.answer(status, body, "application/json", (("Cache-Control", "no-store"),))

    def error(self, status: int, message: str) -> None:
        self.json({"error": message}, status)

    # -- routing --------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        if host in self.server.hosts:
            return True
        self.error(403, "this server answers only requests addressed to it by a loopback name and its port")
        return False

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path == "/favicon.ico":
                self.answer(204, b"", "image/x-icon")
            elif path in ("/", "/index.html"):
                self._static("/")
            elif path.startswith("/static/"):
                self._static(path)
            elif path.startswith("/api/artifact/"):
                self._artifact(path[len("/api/artifact/") :])
            elif path == "/api/events":
                self._events(query)
            elif path == "/api/csv":
                self._csv(query)
            else:
                route = GET_ROUTES.get(path)
                indexed = INDEX_ROUTES.get(path)
                if indexed is not None:
                    self.send_json(self.server.shared_answer(self.path, lambda: indexed(self.server, query)))
                elif path.startswith("/api/run/"):
                    ref = unquote(path[len("/api/run/") :])
                    _, rdir = resolve_run(self.server.root, ref)
                    _answers.warm_histories(self.server.cache, rdir)  # outside the lock: may take a while
                    root = self.server.root
                    self.send_json(
                        self.server.shared_answer(self.path, lambda: _answers.run_detail(root, ref))
                    )
                elif route is None:
                    self.error(404, f"no such page: {path[:200]}")
                else:
                    self.json(route(self.server, query))
        except InvalidInputError as exc:
            self.error(400, str(exc))
        except NotFoundError as exc:
            self.error(404, str(exc))
        except SymlinkRefusedError as exc:
            self.error(403, f"refused: {exc.filename} is a symbolic link (nothing outside the store is read)")
        except UnicodeDecodeError:
            self.error(400, "the path is not valid UTF-8 once percent-decoded")
        except MiniMlflowError as exc:
            self.error(500, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except PermissionError as exc:
            self.error(403, f"not readable: {exc.filename or exc}")
        except Exception as exc:  # a bug of ours: one answer fails, the server goes on
            import traceback

            traceback.print_exc()
            self.error(500, f"internal error ({type(exc).__name__}); see the server's output")

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        path = urlsplit(self.path).path
        if self.server.read_only:
            self.error(403, "this server was started with --read-only: no change is made to the store")
            return
        if self.headers.get(CHANGE_HEADER) != "1" or not origin_matches(
            self.headers.get("Origin"), self.headers.get("Host")
        ):
            self.error(403, f"a change needs the {CHANGE_HEADER} header and this server's own Origin")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 16))
        action = path.rsplit("/", 1)[-1]
        if not path.startswith("/api/run/") or action not in ("delete", "restore"):
            self.error(404, f"no such action: {path[:200]}")
            return
        ref = unquote(path[len("/api/run/") : -len(action) - 1])
        try:
            from ..store import _operations
            from ..store._layout import iso_from_ms, now_ms

            with self.server.index_lock:
                _, rdir = resolve_run(self.server.root, ref)
                stage = "deleted" if action == "delete" else "active"
                when = iso_from_ms(now_ms()) if stage == "deleted" else None
                _operations.update_run_meta(rdir, lifecycle_stage=stage, deleted_time=when)
                self.server.forget_answers()
            self.json({"run": os.path.basename(rdir), "lifecycle_stage": stage})
        except (InvalidInputError, NotFoundError) as exc:
            self.error(404 if isinstance(exc, NotFoundError) else 400, str(exc))

    def do_OPTIONS(self) -> None:
        # A cross-origin preflight: answered without any Access-Control-* header, so the browser
        # refuses the real request. Nothing here changes anything.
        if self._host_ok():
            self.error(405, "no cross-origin requests")

    # -- routes that stream or serve files -----------------------------------------------------

    def _static(self, path: str) -> None:
        static = self.server.static
        cache: tuple[tuple[str, str], ...] = ()
        if path.startswith(VERSIONED):
            version, _, rest = path[len(VERSIONED) :].partition("/")
            path = "/static/" + rest
            if version == static.version:
                cache = IMMUTABLE  # this server's files: the same bytes for as long as the URL names them
        found = static.files.get(path)
        if found is None:
            self.error(404, f"no such file: {path[:200]}")
            return
        data, zipped, content_type, tag = found
        cache = cache or (("Cache-Control", "no-cache"), ("ETag", tag))
        if self.headers.get("If-None-Match") == tag:
            self.send_response(304)
            self.send_header("Content-Length", "0")
            self.send_header("Content-Security-Policy", PAGE_CSP)
            for name, value in COMMON_HEADERS + cache:
                self.send_header(name, value)
            self.end_headers()
            return
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            self.answer(
                200, zipped, content_type, (*cache, ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"))
            )
        else:
            self.answer(200, data, content_type, cache)

    def _artifact(self, raw: str) -> None:
        ref, _, rest = raw.partition("/")
        rel = artifact_rel(unquote(rest, errors="strict"))  # decoded once, here, and never again
        with self.server.index_lock:
            exp_id, rdir = resolve_run(self.server.root, unquote(ref))
        try:
            fd, st = open_artifact(self.server.root, exp_id, os.path.basename(rdir), rel)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no artifact {rel!r} in run {os.path.basename(rdir)}") from None
        except IsADirectoryError:
            raise InvalidInputError(f"artifact {rel!r} is not a file") from None
        content_type, inline = artifact_type(rel)
        name = rel.rsplit("/", 1)[-1]
        ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200] or "artifact"
        disposition = f'{"inline" if inline else "attachment"}; filename="{ascii_name}"'
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(st.st_size))
            self.send_header("Content-Disposition", disposition)
            self.send_header("Content-Security-Policy", ARTIFACT_CSP)
            self.send_header("Cache-Control", "no-store")
            for header, value in COMMON_HEADERS:
                self.send_header(header, value)
            self.end_headers()
            left = st.st_size
            while left > 0 and self.command != "HEAD":
                sent = os.sendfile(self.wfile.fileno(), fd, st.st_size - left, min(left, 1 << 24))
                if sent == 0:
                    break
                left -= sent
            if left and self.command != "HEAD":
                self.close_connection = True  # the file shrank while we sent it: the length was a lie
        finally:
            os.close(fd)

    def _csv(self, query: dict[str, list[str]]) -> None:
        """Every point of one metric of the runs named, as CSV (a download, full resolution)."""
        refs, key = parse_list(query, "run"), one_of(query, "key")
        if not refs or len(refs) > _answers.MAX_COMPARE:
            raise InvalidInputError(f"csv takes 1 to {_answers.MAX_COMPARE} runs, got {len(refs)}")
        lines = ["run_id,step,value,timestamp"]
        for ref in refs:
            with self.server.index_lock:
                _, rdir = resolve_run(self.server.root, ref)
            run_id = os.path.basename(rdir)
            h = self.server.cache.get(rdir, run_id, key).history
            rows = zip(h.steps, h.values, h.timestamps, strict=True)
            lines += [f"{run_id},{s},{_answers.num(v)},{t}" for s, v, t in rows]
        body = ("\n".join(lines) + "\n").encode()
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)[:100]
        self.answer(
            200,
            body,
            "text/csv; charset=utf-8",
            (("Content-Disposition", f'attachment; filename="{safe}.csv"'), ("Cache-Control", "no-store")),
        )

    def _events(self, query: dict[str, list[str]]) -> None:
        with self.server.index_lock:
            tails = _live.parse_tails(self.server.root, query.get("t", []))
        watched = one_of(query, "e")
        runs: Callable[[], list[Any]] | None = None
        if watched:
            ids = tuple(sorted(set(parse_list(query, "e")) - {"all"}))
            runs = lambda: self.server.snapshot(ids)  # noqa: E731
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", PAGE_CSP)
        for name, value in COMMON_HEADERS:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def send(event: str, data: Any) -> None:
            if not event:
                self.wfile.write(b": keep-alive\n\n")
            else:
                self.wfile.write(b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n")
            self.wfile.flush()

        try:
            _live.stream(send, tails, runs, self.server.stopping)
        except OSError:
            pass  # the page went away


def serve(root: str, host: str = "127.0.0.1", port: int = 5000, read_only: bool = False) -> UIServer:
    """A bound (not yet serving) UI server; call ``serve_forever()`` on it.

    A host other than a loopback one makes the store readable by anyone who reaches that address (the
    page has no login): ``mini-mlflow ui --host`` says so on stderr.

    Raises:
        OSError: the port is taken or the host cannot be bound.
    """
    return UIServer(root, host, port, read_only)


def ready_line(server: UIServer, root_shown: str) -> str:
    """The line that says the page is ready, where, and over what store.

    ``mini_mlflow UI on http://127.0.0.1:5000  (store: mlruns, 3 experiments, 10,214 runs) — Ctrl-C stops``
    """
    exps, runs = _answers.count_runs(server.root)
    host = str(server.server_address[0])
    shown = f"[{host}]" if ":" in str(host) else host
    return (
        f"mini_mlflow UI on http://{shown}:{server.port}  (store: {root_shown}, {exps:,} experiment"
        f"{'' if exps == 1 else 's'}, {runs:,} run{'' if runs == 1 else 's'}) — Ctrl-C stops"
    )
