"""Shared by the UI tests: a store with something to see (and to break), and a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mini_mlflow as mm
from mini_mlflow.store._experiments import get_or_create_experiment
from mini_mlflow.ui import UIServer, serve

#: A run name, param and tag a browser would run as markup if the page ever parsed store text as HTML.
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"
HOSTILE_PARAM = "<script>document.title='pwned'</script> \"quoted\" 'single' \x07bell"
SPIKE_STEP, NAN_STEP, INF_STEP, NINF_STEP = 4_321, 6_000, 7_500, 8_800


def build_store(root: Path, points: int = 10_000) -> dict[str, str]:
    """Experiments ``vision`` (3 runs) and ``hostile`` (1 run); returns names → run ids.

    ``spiky`` has ``points`` steps of ``train/loss`` with a +50 spike, a NaN, a +inf and a -inf planted.
    """
    exp = get_or_create_experiment(str(root), "vision")
    ids: dict[str, str] = {}
    for name, lr, opt in (("spiky", 0.1, "sgd"), ("calm-a", 0.01, "adam"), ("calm-b", 0.001, "adam")):
        run = mm.Run(experiment_id=int(exp), name=name, runs_dir=root, tags={"team": "cv"})
        run.log_params({"lr": lr, "optimizer": opt, "epochs": 10})
        for step in range(points if name == "spiky" else 200):
            value = 1.0 / (1 + step / 100)
            if name == "spiky":
                value = {SPIKE_STEP: 50.0, NAN_STEP: float("nan"), INF_STEP: float("inf")}.get(step, value)
                value = -float("inf") if step == NINF_STEP else value
            run.log_metric("train/loss", value, step=step)
        for epoch in range(10):
            run.log_metric("val/acc", 0.5 + epoch * (0.04 if opt == "adam" else 0.03), step=epoch)
        run.log_text("hello", "notes/readme.txt")
        run.log_text("<html><script>alert(1)</script></html>", "report.html")
        run.log_text("<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "plot.svg")
        run.end()
        ids[name] = run.run_id
    hostile_exp = get_or_create_experiment(str(root), "hostile")
    run = mm.Run(experiment_id=int(hostile_exp), name=HOSTILE, runs_dir=root, tags={"note": HOSTILE})
    run.log_param("payload", HOSTILE_PARAM)
    run.log_metric("acc", 0.5, step=0)
    run.end()
    ids["hostile"] = run.run_id
    return ids


@contextmanager
def running(root: Path, read_only: bool = False) -> Iterator[UIServer]:
    """A UI server on 127.0.0.1 (a free port), serving until the block ends."""
    server = serve(str(root), "127.0.0.1", 0, read_only)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def request(
    server: UIServer,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw request (the path is sent as given: no client-side normalisation or encoding)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        sent = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(server: UIServer, path: str) -> Any:
    status, _, body = request(server, path)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def outside_secret(tmp: Path) -> Path:
    """A file outside the store that no request may ever read."""
    secret = tmp / "outside" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("TOP-SECRET-OUTSIDE-THE-STORE")
    return secret


def run_dir(root: Path, run_id: str) -> Path:
    for exp in os.listdir(root):
        if (root / exp / run_id).is_dir():
            return root / exp / run_id
    raise AssertionError(run_id)


#: Chromium's flags for this machine's closed network: without the background-networking ones it tries
#: (and fails) to reach Google's hosts at every start.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's Chromium (``make browser`` installs it), or None."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium driven by playwright: CI fails without it, a developer machine skips.

    ``.ci/run`` installs Chromium (``make browser`` does for developers); playwright is in the dev extras.
    """
    import pytest

    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    missing = "no Chromium on this machine" if path is None else "playwright is not installed"
    if path is None or sync_playwright is None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI, but {missing}: .ci/run installs both")
        pytest.skip(f"BROWSER TESTS SKIPPED: {missing} (`make browser` installs Chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
