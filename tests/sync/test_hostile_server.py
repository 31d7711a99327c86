"""A malicious or broken sync server: garbage, HTML, huge or endless answers, stalls, redirects elsewhere.

A real MLflow server cannot be made to misbehave, so each test puts a small HTTP server of its own
(``http.server`` in a thread on 127.0.0.1) in front of the session's real ``mlflow server``: it forwards
every request and, where the test says so, replaces the answer by something hostile (after forwarding,
so the server may well have stored what the agent cannot know was stored). After each fault the agent
must exit with a clear one-line error, in bounded time and memory, with its cursor no further than what
the server confirmed; then a clean pass through the same URL must leave the server's histories equal to
the local ones exactly (nothing lost, nothing twice).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mini_mlflow.sync import MlflowRestClient, ServerError, sync
from mini_mlflow.sync._answers import check_answer
from mini_mlflow.sync._client import MAX_RESPONSE_BYTES
from mini_mlflow.sync._cursor import load as load_cursor
from mini_mlflow.sync._errors import one_line

from .sync_helpers import ROOT, assert_run_equal, clean_env, make_run, remote_history, sync_cli

pytestmark = pytest.mark.timeout(180)

#: What a hostile answer does: ``(handler, forwarded status, forwarded body) -> None``.
Behaviour = Callable[["_Handler", int, bytes], None]


class HostileServer:
    """An HTTP server on 127.0.0.1 that forwards to ``upstream`` (or answers 500 with none) and lets
    ``plan(n, method, path, body)`` pick a hostile behaviour for any request (None: answer honestly)."""

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream_port = int(upstream.rsplit(":", 1)[1]) if upstream else None
        self.plan: Callable[[int, str, str, bytes], Behaviour | None] | None = None
        self.count = 0
        self.auth_headers: list[str] = []
        #: ``(path, body)`` of the requests that reached the upstream server, in order.
        self.forwarded: list[tuple[str, bytes]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(_Handler):
            owner = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hostile-server", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: HostileServer

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        owner = self.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner.lock:
            owner.count += 1
            n = owner.count
            owner.auth_headers.append(self.headers.get("Authorization", ""))
        behaviour = owner.plan(n, self.command, self.path, body) if owner.plan else None
        if owner.upstream_port is None or getattr(behaviour, "forward", True) is False:
            status, data = 500, b'{"error_code": "INTERNAL_ERROR", "message": "not forwarded"}'
        else:
            status, data = self._forward(body)
            with owner.lock:
                owner.forwarded.append((self.path, body))
        if behaviour is None:
            self.answer(status, data)
        else:
            behaviour(self, status, data)

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        assert self.owner.upstream_port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.owner.upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    def answer(
        self, status: int, data: bytes, content_type: str = "application/json", **headers: str
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _handle


# -- hostile behaviours ------------------------------------------------------------------------------


def garbage_json(h: _Handler, status: int, data: bytes) -> None:
    h.answer(200, b'\x00\xff{"run": [not json \x1b[31m')


def not_an_object(h: _Handler, status: int, data: bytes) -> None:
    h.answer(200, b'["a", "list", "instead", "of", "an", "object"]')


def html_error_page(h: _Handler, status: int, data: bytes) -> None:
    page = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<h1>nginx</h1>\n</body></html>\n"
    h.answer(502, page, content_type="text/html")


def huge_streamed_body(h: _Handler, status: int, data: bytes) -> None:
    """200 MB of JSON-looking bytes with no length given, streamed until the client hangs up."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.end_headers()  # no Content-Length: the body ends when the connection closes (HTTP/1.0)
    chunk = b'{"x": "' + b"y" * (1 << 20)
    try:
        for _ in range(200):
            if h.owner.stop.is_set():
                return
            h.wfile.write(chunk)
    except OSError:
        pass


def huge_announced_body(h: _Handler, status: int, data: bytes) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(10**12))
    h.end_headers()
    try:
        h.wfile.write(b"{" * 65536)
    except OSError:
        pass


def trickle_body(h: _Handler, status: int, data: bytes) -> None:
    """Headers at once, then one byte every 0.1 s: each read is quick, the answer never completes."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    _drip(h, b" ")


def trickle_headers(h: _Handler, status: int, data: bytes) -> None:
    """The status line, then one more header byte every 0.1 s (no per-read timeout ever fires)."""
    h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    _drip(h, b"a")


def _drip(h: _Handler, byte: bytes) -> None:
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not h.owner.stop.wait(0.1):
            h.wfile.write(byte)
            h.wfile.flush()
    except OSError:
        pass


def never_answers(h: _Handler, status: int, data: bytes) -> None:
    h.owner.stop.wait(60)


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def hostile(mlflow_server: Any) -> Iterator[Callable[..., HostileServer]]:
    servers: list[HostileServer] = []

    def make(forward: bool = True) -> HostileServer:
        server = HostileServer(mlflow_server.url if forward else None)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def metric_batches_from(
    first: int, behaviour: Behaviour
) -> Callable[[int, str, str, bytes], Behaviour | None]:
    """Misbehave on the ``first``-th metric batch and every later one (earlier ones are answered)."""
    seen = {"n": 0}
    lock = threading.Lock()

    def plan(n: int, method: str, path: str, body: bytes) -> Behaviour | None:
        if not path.endswith("runs/log-batch") or b'"metrics"' not in body:
            return None
        with lock:
            seen["n"] += 1
            return behaviour if seen["n"] >= first else None

    return plan


def lines_before(path: Path, offset: int) -> int:
    return path.read_bytes()[:offset].count(b"\n")


def metric_files(run_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in (run_dir / "metrics").glob("*.jsonl")}


def assert_cursor_within_what_the_server_holds(run: Any, url: str, client: Any, experiment: str) -> int:
    """Every line the cursor counts as acknowledged is on the server; returns how many it counts."""
    cursor = load_cursor(run.run_dir, url)
    acked = 0
    files = metric_files(Path(run.run_dir))
    remote_id = cursor.remote_run_id
    for key, offset in cursor.metrics.items():
        counted = lines_before(files[key], offset)
        acked += counted
        assert remote_id is not None
        assert counted <= len(remote_history(client, remote_id, key)), key
    return acked


HOSTILE = [
    pytest.param(garbage_json, "BAD_RESPONSE", id="garbage-json"),
    pytest.param(not_an_object, "not a JSON object", id="json-list"),
    pytest.param(html_error_page, "HTML page (502 Bad Gateway)", id="html-502"),
    pytest.param(huge_streamed_body, "limit is 16 MB", id="huge-200MB-streamed"),
    pytest.param(huge_announced_body, "limit is 16 MB", id="huge-announced"),
    pytest.param(trickle_body, "answer within", id="trickled-body"),
    pytest.param(trickle_headers, "answer within", id="trickled-headers"),
    pytest.param(never_answers, "answer within", id="never-answers"),
]


@pytest.mark.parametrize(("behaviour", "expected"), HOSTILE)
def test_hostile_answers_end_the_sync_clearly_and_lose_nothing(
    tmp_path: Path, hostile: Any, mlflow_client: Any, behaviour: Behaviour, expected: str
) -> None:
    experiment = f"hostile-{behaviour.__name__}"
    root = tmp_path / "mlruns"
    run = make_run(root, experiment, "victim", points=600, keys=("a", "b"))
    before = {key: path.read_bytes() for key, path in metric_files(Path(run.run_dir)).items()}
    server = hostile()
    server.plan = metric_batches_from(2, behaviour)  # the first of the two batches is answered honestly

    # 3 s: long enough for the honest first batch on a loaded machine, short for a stalled answer.
    code, out, err, elapsed, rss = sync_cli(root, server.url, "--timeout", "3", "--retries", "0")

    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    assert expected in err, err
    for line in err.splitlines():
        assert len(line) < 600 and "\x1b" not in line, line  # one clear line, no escape sequence
    assert elapsed < 25, f"the agent took {elapsed:.1f} s against a hostile server"
    assert 0 < rss < 200_000, f"peak RSS {rss} kB: the answer was read into memory"
    # The cursor holds exactly the one honestly answered batch of 1,000 points, all on the server.
    assert assert_cursor_within_what_the_server_holds(run, server.url, mlflow_client, experiment) == 1000
    assert {k: p.read_bytes() for k, p in metric_files(Path(run.run_dir)).items()} == before

    server.plan = None  # the same URL (same cursor), behaving again
    with MlflowRestClient(server.url) as client:
        summary = sync(server.url, root, all_runs=True, client=client)
    assert summary.ok, summary.errors
    assert_run_equal(mlflow_client, root, experiment, run)


def test_an_answer_is_read_no_further_than_16_mb(tmp_path: Path, hostile: Any) -> None:
    """The cap is where reading stops, not a check after reading: the server counts what it got out."""
    sent = [0]

    def endless_json(h: _Handler, status: int, data: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()  # no length: 64 MB of one JSON string, until the client hangs up
        chunk = b'{"x": "' + b"y" * (1 << 20)
        try:
            for _ in range(64):
                h.wfile.write(chunk)
                h.wfile.flush()
                sent[0] += len(chunk)
        except OSError:
            pass

    root = tmp_path / "mlruns"
    make_run(root, "capped", "victim", points=10)
    server = hostile()
    server.plan = metric_batches_from(1, endless_json)
    code, _out, err, _elapsed, _rss = sync_cli(root, server.url, "--timeout", "30", "--retries", "0")
    assert code == 1 and "limit is 16 MB" in err, err
    # 16 MB read, plus what the kernel's socket buffers took before the client closed: never 64 MB.
    assert MAX_RESPONSE_BYTES <= sent[0] <= MAX_RESPONSE_BYTES + (8 << 20), sent[0]


@pytest.mark.parametrize(
    "answer",
    [
        {"run": {"info": {"run_id": "../../../etc"}}},
        {"run": {"info": {}}},
        {"run": "a string"},
        {"run": {"info": {"run_id": ["a", "list"]}}},
        {},
    ],
    ids=["dotdot-id", "no-id", "string", "list-id", "empty"],
)
def test_a_forged_run_id_is_refused_and_never_recorded(
    tmp_path: Path, hostile: Any, mlflow_client: Any, answer: dict[str, Any]
) -> None:
    """runs/create is forwarded (the server creates the run), then its answer replaced by a bad one."""
    experiment = f"forged-{len(json.dumps(answer))}-{abs(hash(json.dumps(answer))) % 10_000}"
    root = tmp_path / "mlruns"
    run = make_run(root, experiment, "forged", points=30)
    server = hostile()

    def forged(h: _Handler, status: int, data: bytes) -> None:
        h.answer(200, json.dumps(answer).encode())

    server.plan = lambda n, method, path, body: forged if path.endswith("runs/create") else None
    client = MlflowRestClient(server.url, max_retries=0)
    with client:
        summary = sync(server.url, root, all_runs=True, client=client)
    assert not summary.ok
    message = " ".join(summary.errors)
    assert "BAD_RESPONSE" in message and "run.info.run_id" in message, message
    assert load_cursor(run.run_dir, server.url).remote_run_id is None  # nothing forged was recorded
    assert not (tmp_path / "etc").exists()
    server.plan = None
    with MlflowRestClient(server.url) as again:
        assert sync(server.url, root, all_runs=True, client=again).ok
    exp = mlflow_client.get_experiment_by_name(experiment)
    assert len(mlflow_client.search_runs([exp.experiment_id])) == 1  # found again by its tag
    assert_run_equal(mlflow_client, root, experiment, run)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_port_is_refused_and_the_token_stays(
    tmp_path: Path, hostile: Any, status: int
) -> None:
    token = f"tok-{status}-9b8a7c"
    elsewhere = hostile(forward=False)  # same host, another port: another origin
    server = hostile()

    def to_elsewhere(h: _Handler, _status: int, _data: bytes) -> None:
        h.answer(status, b"", Location=elsewhere.url + h.path)

    server.plan = lambda n, method, path, body: to_elsewhere
    root = tmp_path / "mlruns"
    make_run(root, f"redirect-{status}", "r", points=5)
    code, out, err, _, _ = sync_cli(root, server.url, "--retries", "0", env={"MLFLOW_TRACKING_TOKEN": token})
    assert code == 1 and "Traceback" not in err
    assert "redirected to another host" in err and "refusing to send credentials" in err, err
    assert token not in out + err
    assert f"Bearer {token}" in server.auth_headers  # the token was in play...
    assert elsewhere.count == 0 and elsewhere.auth_headers == []  # ...and never reached the other port


def test_5xx_html_pages_then_success_is_exact(tmp_path: Path, hostile: Any, mlflow_client: Any) -> None:
    """The first four answers of each kind of call are HTML 503 pages (not forwarded); then honest."""
    server = hostile()
    failures: dict[str, int] = {}

    def plan(n: int, method: str, path: str, body: bytes) -> Behaviour | None:
        failures[path] = failures.get(path, 0) + 1
        return unavailable if failures[path] <= 4 else None

    def unavailable(h: _Handler, status: int, data: bytes) -> None:
        h.answer(503, b"<html><title>Service Unavailable</title></html>", content_type="text/html")

    unavailable.forward = False  # type: ignore[attr-defined]  # an outage: the server never saw it

    root = tmp_path / "mlruns"
    run = make_run(root, "flaky-html", "flaky", points=2500, keys=("a", "b"))
    server.plan = plan
    client = MlflowRestClient(server.url, backoff_base=0.01, backoff_max=0.05, max_retries=6)
    with client:
        summary = sync(server.url, root, all_runs=True, client=client)
    assert summary.ok, summary.errors
    # Every kind of call failed four times before it got through.
    assert all(count >= 5 for count in failures.values()), failures
    assert summary.retries == 4 * len(failures)
    # Each batch of points reached the server exactly once (the SQL store would hide a replay by
    # storing an identical point once: counted here, where it cannot), and the run is equal there.
    sent = [json.loads(b) for p, b in server.forwarded if p.endswith("runs/log-batch")]
    points = [(m["key"], m["step"]) for batch in sent for m in batch.get("metrics", [])]
    assert len(points) == len(set(points)) == 2 * 2500
    assert_run_equal(mlflow_client, root, "flaky-html", run)


def test_sync_says_what_it_retries_so_a_stalled_server_does_not_look_like_a_hang(
    tmp_path: Path, hostile: Any
) -> None:
    """Each retry is one line on stderr (what failed, which retry of how many, the wait), as it happens."""
    root = tmp_path / "mlruns"
    make_run(root, "stalled", "victim", points=10, keys=("a",))
    server = hostile(forward=False)
    server.plan = lambda n, method, path, body: never_answers
    code, out, err, elapsed, _ = sync_cli(root, server.url, "--timeout", "1", "--retries", "2")
    assert code == 1, (out, err)
    retries = [line for line in err.splitlines() if "retrying:" in line]
    assert len(retries) == 2, err
    for i, line in enumerate(retries, start=1):
        assert re.search(
            rf"GET /api/2.0/mlflow/experiments/get-by-name: no complete answer within 1 s "
            rf"\(the server is stalling\); retry {i} of 2 in \d+\.\d s$",
            line,
        ), line
    assert "after 3 attempts" in err and elapsed < 30

    server.plan = lambda n, method, path, body: (
        lambda h, status, data: h.answer(503, b"{}", content_type="application/json")
    )
    code, out, err, _, _ = sync_cli(root, server.url, "--retries", "1")
    assert code == 1, (out, err)
    assert re.search(
        r"retrying: GET /api/2.0/mlflow/experiments/get-by-name: HTTP 503; retry 1 of 1 in ", err
    ), err


def test_every_request_has_a_bounded_total_time(hostile: Any) -> None:
    """In process, without retries: a trickled answer ends at the deadline, not when the server stops."""
    server = hostile(forward=False)
    server.plan = lambda n, method, path, body: trickle_headers
    client = MlflowRestClient(server.url, timeout=0.5, max_retries=0)
    started = time.monotonic()
    with client, pytest.raises(Exception) as info:
        client.get("experiments/get-by-name", {"experiment_name": "x"})
    assert time.monotonic() - started < 5
    assert "no complete answer within 0.5 s" in str(info.value)


def test_a_live_run_syncing_to_a_stalling_server_still_ends_and_exits(tmp_path: Path, hostile: Any) -> None:
    """Online mode (MINI_MLFLOW_SYNC_URL) against a server that trickles its headers forever: the loop
    never waits on it, end_run returns at once, the process exits within the agent's exit timeout
    with one warning, and every point is on disk."""
    from mini_mlflow.write._online import EXIT_TIMEOUT

    server = hostile(forward=False)
    server.plan = lambda n, method, path, body: trickle_headers
    code = (
        "import time, mini_mlflow as mm\n"
        "mm.start_run()\n"
        "for i in range(2000):\n"
        "    mm.log_metric('a', float(i), step=i)\n"
        "time.sleep(0.5)\n"  # the agent is now inside a request to the stalling server
        "started = time.monotonic()\n"
        "mm.end_run()\n"
        "print(time.monotonic() - started)\n"
    )
    env = clean_env(
        PYTHONPATH=str(ROOT),
        MINI_MLFLOW_TRACKING_DIR=str(tmp_path / "mlruns"),
        MINI_MLFLOW_SYNC_URL=server.url,
        MINI_MLFLOW_SYNC_INTERVAL="0.1",
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert float(proc.stdout) < 2.0  # end_run does not wait for the server
    assert elapsed < EXIT_TIMEOUT + 10, f"exit took {elapsed:.1f} s"
    assert proc.stderr.count("background sync did not finish") == 1, proc.stderr
    assert server.count >= 1  # the agent did reach the hostile server
    (metrics,) = (tmp_path / "mlruns").glob("0/*/metrics/a.jsonl")
    assert len(metrics.read_text().splitlines()) == 2000


def test_sync_watch_against_a_stalling_server_stops_on_ctrl_c(tmp_path: Path, hostile: Any) -> None:
    """``sync --watch`` keeps retrying a server that trickles forever, reports it, and Ctrl-C ends it
    within one request deadline (no request may outlive its deadline, so the stop is never stuck)."""
    import signal

    server = hostile(forward=False)
    server.plan = lambda n, method, path, body: trickle_headers
    root = tmp_path / "mlruns"
    make_run(root, "watched", "w", points=20)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "mini_mlflow", "--root", str(root), "sync", "--all", "--watch"),
            *("--to", server.url, "--timeout", "1", "--retries", "0", "--interval", "0.2"),
        ],
        env=clean_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while server.count < 2 and time.monotonic() < deadline:  # two passes have met the stall
            time.sleep(0.05)
        assert server.count >= 2
        stopped = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - stopped < 5, "Ctrl-C waited for the stalled server"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 1) and "Traceback" not in err, err
    assert "no complete answer within" in err and "(retrying)" in err, err


def test_a_compressed_bomb_is_refused_undecoded(hostile: Any) -> None:
    """1 GB of zeros gzip-compressed to 1 MB: the client asked for identity and decodes nothing."""
    import gzip
    import tracemalloc

    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9) * 16  # 16 members: 1 GB decoded

    def compressed(h: _Handler, status: int, data: bytes) -> None:
        h.answer(200, bomb, Content_Encoding="gzip")

    server = hostile(forward=False)
    server.plan = lambda n, method, path, body: compressed
    tracemalloc.start()
    try:
        with MlflowRestClient(server.url, max_retries=0) as client, pytest.raises(ServerError) as info:
            client.get("experiments/get-by-name", {"experiment_name": "x"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "BAD_RESPONSE" in str(info.value) and "compressed (gzip)" in str(info.value)
    assert peak < 32 << 20, f"peak {peak / 1e6:.0f} MB"
    assert server.count == 1


def test_answers_are_checked_before_the_agent_uses_them() -> None:
    assert check_answer("runs/create", {"run": {"info": {"run_id": "0123abcd"}}})
    assert check_answer("runs/search", {}) == {}  # no run found: no "runs" at all
    assert check_answer("runs/get", {"run": {"info": {}, "data": {"params": [{"key": "k", "value": "v"}]}}})
    for endpoint, answer in [
        ("experiments/get-by-name", {"experiment": {"experiment_id": True}}),
        ("experiments/create", {"experiment_id": "1/../2"}),
        ("runs/search", {"runs": [{"info": {"run_id": "a b"}}]}),
        ("runs/search", {"runs": "not a list"}),
        ("runs/get", {"run": {"info": {}, "data": {"params": [{"value": "v"}]}}}),
        ("runs/get", {"run": []}),
        ("runs/get", {"run": {"info": {}, "data": "a string"}}),
        ("runs/get", {"run": {"info": {"artifact_uri": 3}}}),
    ]:
        with pytest.raises(ServerError, match="BAD_RESPONSE"):
            check_answer(endpoint, answer)
    shown = one_line("a\n\x1b[31mred\u202e\tb" + "x" * 500, 40)
    assert shown.startswith("a \\x1b[31mred\\u202e bxxx") and shown.endswith("...") and len(shown) == 40
    assert MAX_RESPONSE_BYTES == 16 << 20


def test_client_refuses_a_malformed_url_without_showing_it() -> None:
    from mini_mlflow.sync import SyncError

    for url in ("http://user:pw@[::1", "http://h:99999", "http://h\x1b[31m:80", "https://"):
        with pytest.raises(SyncError, match="invalid server URL") as info:
            MlflowRestClient(url)
        assert "pw" not in str(info.value) and "\x1b" not in str(info.value)
    with socket.socket() as s:  # a port nothing listens on is a fine URL: it fails later, clearly
        s.bind(("127.0.0.1", 0))
        MlflowRestClient(f"http://127.0.0.1:{s.getsockname()[1]}").close()
