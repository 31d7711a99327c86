"""Helpers of the sync tests: a real ``mlflow server``, a fault-injecting proxy, run builders, comparisons."""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow.store import _experiments

from conftest import wait_until  # noqa: F401 - re-exported for the sync tests

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_BIN = Path(sys.executable).parent / "mlflow"
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without MLflow credentials or mini_mlflow settings, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MINI_MLFLOW_", "MLFLOW_TRACKING_", "_MINI"))
    }
    env.update(extra)
    return env


class MlflowServer:
    """A real ``mlflow server`` (SQLite backend, artifact proxying) that can be killed and restarted."""

    def __init__(self, workdir: Path, backend: str | None = None) -> None:
        self.workdir = workdir
        #: The backend store URI (default: SQLite in ``workdir``); ``mini-mlflow:<root>`` for the plugin.
        self.backend = backend or f"sqlite:///{workdir / 'mlflow.db'}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not MLFLOW_BIN.exists():
            pytest.fail("mlflow is not installed: the sync tests need it (pip install -e '.[dev]')")
        log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [
                str(MLFLOW_BIN),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                self.backend,
                "--artifacts-destination",
                str(self.workdir / "artifacts"),
                "--workers",
                "1",
            ],
            cwd=self.workdir,
            # MLflow 3.x also starts a job runner with seven huey consumer processes at every start
            # (for features these tests never use); its documented switch turns it off, which saves
            # 8 processes and most of the start-up CPU on a 2-core machine.
            env=clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers die with it
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            if self.healthy():
                return
            time.sleep(0.2)
        self.kill()
        pytest.fail("mlflow server did not answer /health in time")

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server and its workers."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that can answer instead of forwarding.

    ``fault(n, method, path)`` gets the 1-based number of each request and returns None (forward it)
    or ``(status, headers)`` to answer with. With ``token`` set, requests without
    ``Authorization: Bearer <token>`` get 401 as MLflow's auth would answer. With ``tls`` (certificate and
    key files) it speaks HTTPS.
    """

    def __init__(
        self,
        upstream: str,
        fault: Callable[[int, str, str], tuple[int, dict[str, str]] | None] | None = None,
        token: str | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.fault = fault
        self.token = token
        self.count = 0
        self.injected = 0
        self.lock = threading.Lock()
        self.auth_headers: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.count += 1
                    n = proxy.count
                    proxy.auth_headers.append(self.headers.get("Authorization", ""))
                if proxy.token is not None and self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    self._answer(401, {}, b'{"error_code": "UNAUTHENTICATED", "message": "invalid token"}')
                    return
                planned = proxy.fault(n, self.command, self.path) if proxy.fault else None
                if planned is not None:
                    with proxy.lock:
                        proxy.injected += 1
                    status, headers = planned
                    self._answer(status, headers, b'{"error_code": "INTERNAL_ERROR", "message": "injected"}')
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")
                }
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                out = {
                    k: v
                    for k, v in response.getheaders()
                    if k.lower() not in ("transfer-encoding", "connection", "content-length")
                }
                self._answer(response.status, out, data)

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- building local runs and comparing them with the server ----------------------------------------


def make_run(
    root: Path,
    experiment: str = "exp",
    name: str = "run",
    points: int = 10,
    keys: tuple[str, ...] = ("loss",),
    end: str | None = "FINISHED",
    **kwargs: Any,
) -> mm.Run:
    """A run in ``root`` with ``points`` points per key (distinct steps and timestamps)."""
    exp_id = _experiment_id(root, experiment)
    run = mm.Run(experiment_id=exp_id, name=name, runs_dir=root, **kwargs)
    base = 1_763_900_000_000
    for key in keys:
        for i in range(points):
            run.log_metric(key, 1.0 / (i + 1), step=i, timestamp=base + i)
    if end:
        run.end(end)
    else:
        run.flush()
    return run


def _experiment_id(root: Path, name: str) -> str:

    return _experiments.get_or_create_experiment(str(root), name)


def local_history(root: Path, run_id: str, key: str) -> list[tuple[int, int, float]]:
    history = mm.Store(root).get_metric_history(run_id, key)
    return sorted(
        (t, s, _server_value(v)) for s, v, t in zip(history.steps, history.values, history.timestamps)
    )


def _server_value(value: float) -> float:
    # MLflow's SQL store keeps ±inf as ±sys.float_info.max (its own behaviour for every client).
    if math.isinf(value):
        return math.copysign(sys.float_info.max, value)
    return value


def remote_run(client: Any, experiment: str, local_run_id: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} not on the server"
    runs = client.search_runs([exp.experiment_id], f"tags.`mini_mlflow.run_id` = '{local_run_id}'")
    assert len(runs) == 1, f"expected exactly one remote run for {local_run_id}, found {len(runs)}"
    return runs[0]


def remote_history(client: Any, remote_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.timestamp, m.step, m.value) for m in client.get_metric_history(remote_id, key))


def same_points(a: list[tuple[int, int, float]], b: list[tuple[int, int, float]]) -> bool:
    """Equal point for point (NaN equals NaN)."""
    key = lambda p: (p[0], p[1], "nan" if p[2] != p[2] else p[2])  # noqa: E731
    return [key(p) for p in a] == [key(p) for p in b]


def assert_run_equal(client: Any, root: Path, experiment: str, run: mm.Run) -> Any:
    """The server's copy of ``run`` equals the local one: params, tags, every metric point, status."""
    remote = remote_run(client, experiment, run.run_id)
    data = mm.Store(root).get_run(run.run_id)
    assert remote.info.run_name == (data["metadata"]["run_name"] or remote.info.run_name)
    assert remote.info.status == data["metadata"]["status"]
    assert remote.data.params == {k: v if isinstance(v, str) else str(v) for k, v in data["params"].items()}
    for key, value in data["tags"].items():
        assert remote.data.tags[key] == value
    for key in mm.Store(root).metric_keys(run.run_id):
        local = local_history(root, run.run_id, key)
        server = remote_history(client, remote.info.run_id, key)
        assert same_points(server, local), (
            f"metric {key}: {len(server)} points on the server, {len(local)} local"
        )
    return remote


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def self_signed_cert(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files in ``folder``)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


def sync_cli(
    root: Path, url: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, str, float, int]:
    """``mini-mlflow sync --all`` in a child; returns (exit code, stdout, stderr, seconds, peak RSS in kB)."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['mini-mlflow', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('mini_mlflow', run_name='__main__')\n"
        "    status = 0\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        # VmHWM, not ru_maxrss: the latter keeps the peak of the (large) test process that forked us.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('peak-rss-kb', hwm, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, "--root", str(root), "sync", "--all", "--to", url, *extra],
        env=clean_env(PYTHONPATH=str(ROOT), **(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    lines = proc.stderr.splitlines()
    rss = int(lines[-1].split()[1]) if lines and lines[-1].startswith("peak-rss-kb") else -1
    return proc.returncode, proc.stdout, "\n".join(lines[:-1]), elapsed, rss
