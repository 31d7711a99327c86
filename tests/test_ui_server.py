"""`mini-mlflow ui`'s server, for real on 127.0.0.1: its JSON answers, the live stream, and its defences."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.ui import _answers
from mini_mlflow.ui._series import SeriesCache
from mini_mlflow.ui._server import UIServer

from conftest import ROOT, wait_until
from ui_support import (
    HOSTILE,
    INF_STEP,
    NAN_STEP,
    NINF_STEP,
    SPIKE_STEP,
    build_store,
    get_json,
    outside_secret,
    request,
    run_dir,
    running,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("ui") / "mlruns"
    return root, build_store(root)


@pytest.fixture(scope="module")
def server(store: tuple[Path, dict[str, str]]) -> UIServer:
    with running(store[0]) as srv:
        yield srv


def test_runs_table_is_columnar_with_differing_params_and_mlflow_filters(server: UIServer, store) -> None:
    _, ids = store
    doc = get_json(server, "/api/runs")
    assert doc["count"] == 4 and set(doc["runs"]["id"]) == set(ids.values())
    assert doc["differs"] == ["epochs", "lr", "optimizer", "payload"]  # epochs: missing in one run
    rows, values = doc["params"]["optimizer"]
    assert sorted(values) == ["adam", "adam", "sgd"] and len(rows) == 3
    for entity in ("params", "metrics", "tags"):
        for key, (positions, values) in doc[entity].items():  # positions None: every run has the key
            assert (positions is None) == (len(values) == 4), (entity, key)
    exp = doc["runs"]["exp"][doc["runs"]["id"].index(ids["spiky"])]
    one = get_json(server, f"/api/runs?e={exp}&filter=params.optimizer%20%3D%20%27adam%27")
    assert sorted(one["runs"]["name"]) == ["calm-a", "calm-b"]
    assert one["differs"] == ["lr"]
    assert one["params"]["lr"][0] is None and len(one["params"]["lr"][1]) == 2  # both runs have it
    last = get_json(server, f"/api/runs?e={exp}&filter=" + "metrics.%60train/loss%60%20%3E%200")
    assert sorted(last["runs"]["name"]) == ["calm-a", "calm-b", "spiky"]
    status, _, body = request(server, "/api/runs?filter=metrics.acc%20%3E%3E%201")
    assert status == 400
    message = json.loads(body)["error"]
    assert "invalid filter" in message and "^" in message  # points at the bad token, for the inline error


def test_run_page_answer_has_everything_a_run_page_shows(server: UIServer, store) -> None:
    _, ids = store
    doc = get_json(server, f"/api/run/{ids['spiky'][:8]}")  # by unique prefix, as deep links do
    assert doc["id"] == ids["spiky"] and doc["name"] == "spiky" and doc["status"] == "FINISHED"
    assert doc["params"] == {"epochs": "10", "lr": "0.1", "optimizer": "sgd"}
    assert doc["tags"]["team"] == "cv" and doc["experiment_name"] == "vision"
    loss = doc["summary"]["train/loss"]
    assert loss["count"] == 10_000 and loss["max"] == "Infinity" and loss["min"] == "-Infinity"
    assert {a["path"] for a in doc["artifacts"]} == {"notes/readme.txt", "report.html", "plot.svg"}
    assert doc["lower_is_better"] == {"train/loss": True, "val/acc": False}
    status, _, body = request(server, "/api/run/ffffffffffffffff")
    assert status == 404 and "no run id starts with" in json.loads(body)["error"]


def test_series_keeps_the_planted_spike_nan_and_infs_and_zoom_is_full_resolution(server, store) -> None:
    _, ids = store
    doc = get_json(server, f"/api/series?run={ids['spiky']}&key=train/loss&cols=300")
    (s,) = doc["series"]
    assert s["points"] == 10_000 and s["total"] == 10_000
    assert 50.0 in s["y"] and s["x"][s["y"].index(50.0)] == SPIKE_STEP
    assert s["nan"] == [NAN_STEP] and s["pinf"] == [INF_STEP] and s["ninf"] == [NINF_STEP]
    assert s["counts"] == {"nan": 1, "pinf": 1, "ninf": 1}
    assert len(s["x"]) <= 4 * 301
    zoom = get_json(server, f"/api/series?run={ids['spiky']}&key=train/loss&cols=300&lo=4300&hi=4399")
    (z,) = zoom["series"]
    assert z["x"] == list(range(4300, 4400)) and z["points"] == 100  # every point of the range
    smooth = get_json(server, f"/api/series?run={ids['spiky']}&key=train/loss&cols=300&smooth=0.9")
    sm = smooth["series"][0]["smooth"]
    assert len(sm["x"]) <= 4 * 301 and all(math.isfinite(v) for v in sm["y"])
    rel = get_json(server, f"/api/series?run={ids['calm-a']}&key=val/acc&x=relative")["series"][0]
    assert rel["x_mode"] == "relative" and all(0 <= x < 3600 for x in rel["x"])
    for bad, word in (("x=epoch", "invalid x"), ("cols=0", "invalid cols"), ("smooth=1", "invalid smooth")):
        status, _, body = request(server, f"/api/series?run={ids['spiky']}&key=train/loss&{bad}")
        assert status == 400 and word in json.loads(body)["error"]
    status, _, body = request(server, f"/api/series?run={ids['spiky']}&key=..%2F..%2Fmeta")
    assert status == 400 and "metric key" in json.loads(body)["error"]


def test_a_chart_asked_again_is_served_as_computed_until_its_file_grows(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    ids = build_store(root, points=500)
    cache = SeriesCache(str(root))
    first = _answers.series(cache, str(root), ids["calm-a"], "val/acc", columns=50)
    assert _answers.series(cache, str(root), ids["calm-a"], "val/acc", columns=50) is first
    other = _answers.series(cache, str(root), ids["calm-a"], "val/acc", columns=50, lo=1.0, hi=3.0)
    assert other is not first and other["points"] < first["points"]  # another query, its own answer
    with open(run_dir(root, ids["calm-a"]) / "metrics" / "val" / "acc.jsonl", "a") as f:
        f.write('{"step":1000000,"value":0.125,"timestamp":1700000000000}\n')
    grown = _answers.series(cache, str(root), ids["calm-a"], "val/acc", columns=50)
    assert grown["total"] == first["total"] + 1 and grown["range"][1] == 1_000_000
    assert grown["offset"] > first["offset"]


def test_compare_marks_differences_and_best_by_the_compare_commands_rule(server, store) -> None:
    _, ids = store
    refs = ",".join(ids[n][:8] for n in ("spiky", "calm-a", "calm-b"))
    doc = get_json(server, f"/api/compare?runs={refs}")
    assert doc["params"]["optimizer"] == {"values": ["sgd", "adam", "adam"], "differs": True}
    assert doc["params"]["epochs"]["differs"] is False
    acc = doc["metrics"]["val/acc"]
    assert acc["best_is"] == "max" and acc["winner"] == [False, True, True]  # the two adams tie
    assert doc["metrics"]["train/loss"]["best_is"] == "min"
    loss = doc["metrics"]["train/loss"]
    assert loss["best"][0] == "-Infinity" and loss["winner"] == [False, True, True]  # only finite bests win
    band = get_json(server, f"/api/aggregate?runs={refs}&key=val/acc&cols=100")
    assert band["runs"] == 3 and all(
        lo <= m <= hi for lo, m, hi in zip(band["min"], band["mean"], band["max"])
    )
    resolved = get_json(server, f"/api/resolve?ids={ids['spiky'][:8]},zzzz")
    assert (
        resolved["runs"][ids["spiky"][:8]]["id"] == ids["spiky"] and resolved["missing"][0]["ref"] == "zzzz"
    )


def test_csv_export_is_every_point_at_full_resolution(server, store) -> None:
    _, ids = store
    status, headers, body = request(server, f"/api/csv?run={ids['spiky']}&run={ids['calm-a']}&key=train/loss")
    assert status == 200 and headers["content-disposition"].startswith("attachment")
    lines = body.decode().splitlines()
    assert lines[0] == "run_id,step,value,timestamp" and len(lines) == 1 + 10_000 + 200
    assert f"{ids['spiky']},{NAN_STEP},NaN," in body.decode()


# -- security -------------------------------------------------------------------------------------

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options")


def _check_headers(headers: dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and ("default-src 'self'" in csp or "default-src 'none'" in csp)
    assert headers["x-content-type-options"] == "nosniff"
    assert not [h for h in headers if h.startswith("access-control-")]  # never any CORS


def test_the_page_names_its_files_in_a_versioned_folder_kept_for_good(server) -> None:
    status, headers, page = request(server, "/")
    assert status == 200 and headers["cache-control"] == "no-cache"  # the page itself is asked again
    links = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.decode())
    assert links and all(link.startswith("/static/v-") for link in links)
    version = links[0].split("/")[2]
    assert all(link.split("/")[2] == version for link in links)
    app = f"/static/{version}/js/app.js"
    assert app in links
    status, headers, body = request(server, app)
    assert (
        status == 200
        and "immutable" in headers["cache-control"]
        and "max-age=31536000" in headers["cache-control"]
    )
    plain_status, plain_headers, plain = request(server, "/static/js/app.js")
    assert plain_status == 200 and plain == body and plain_headers["cache-control"] == "no-cache"
    # a folder of another version (an older page still open): served, but asked again each time
    status, headers, other = request(server, "/static/v-0123456789abcdef/js/app.js")
    assert status == 200 and other == body and headers["cache-control"] == "no-cache"
    for path in (
        f"/static/{version}/../_server.py",
        f"/static/{version}/",
        "/static/v-",
        "/static/v-x/nope.js",
    ):
        status, headers, _ = request(server, path)
        assert status == 404, path
        _check_headers(headers)


def test_every_answer_carries_the_security_headers_and_no_cors(server, store) -> None:
    _, ids = store
    paths = [
        "/",
        "/static/js/app.js",
        "/static/vendor/uPlot.iife.min.js",
        "/api/experiments",
        "/api/runs",
        "/api/runs?filter=nonsense%20%3D",
        f"/api/series?run={ids['calm-a']}&key=val/acc",
        f"/api/artifact/{ids['calm-a']}/notes/readme.txt",
        f"/api/artifact/{ids['calm-a']}/..%2f..%2fmeta.yaml",
        "/no/such/page",
        "/static/../_server.py",
    ]
    for path in paths:
        status, headers, _ = request(server, path, headers={"Origin": "http://evil.example"})
        _check_headers(headers)
    status, headers, _ = request(
        server,
        "/api/run/x/delete",
        method="OPTIONS",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert status == 405
    _check_headers(headers)
    status, headers, _ = request(server, "/", headers={"Host": "evil.example"})
    assert status == 403
    _check_headers(headers)


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost", "127.0.0.1.nip.io:{port}", ""],
)
def test_a_rebinding_host_is_refused(server: UIServer, host: str) -> None:
    status, _, body = request(server, "/api/experiments", headers={"Host": host.format(port=server.port)})
    assert status == 403 and b"loopback name" in body


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST:{port}"])
def test_loopback_names_with_our_port_are_answered(server: UIServer, host: str) -> None:
    status, _, _ = request(server, "/api/experiments", headers={"Host": host.format(port=server.port)})
    assert status == 200


TRAVERSALS = [
    "../meta.yaml",
    "..%2fmeta.yaml",
    "..%2F..%2F..%2Foutside%2Fsecret.txt",
    "%2e%2e/%2e%2e/meta.yaml",
    "%252e%252e%252fmeta.yaml",  # double-encoded: decoded once it is a literal name, not found
    "notes/../../meta.yaml",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "notes%5c..%5c..%5cmeta.yaml",
    "..%5cmeta.yaml",
    "notes/readme.txt%00.png",
    "C:/Windows/win.ini",
    "C:%5cWindows",
    "notes",
    "",
    "%ff%fe",
]


def test_artifact_paths_never_leave_the_run(server: UIServer, store, tmp_path: Path) -> None:
    root, ids = store
    secret = outside_secret(root.parent)
    rdir = run_dir(root, ids["calm-b"])
    os.symlink(secret, rdir / "artifacts" / "link.txt")  # planted links: refused, not followed
    os.symlink(secret.parent, rdir / "artifacts" / "linkdir")
    for raw in [*TRAVERSALS, "link.txt", "linkdir/secret.txt"]:
        status, headers, body = request(server, f"/api/artifact/{ids['calm-b']}/{raw}")
        assert status in (400, 403, 404), (raw, status)
        assert b"TOP-SECRET" not in body and b"run_id" not in body, raw
        _check_headers(headers)
    status, _, body = request(server, f"/api/artifact/{ids['calm-b']}/link.txt")
    assert status == 403 and b"symbolic link" in body
    status, _, body = request(server, f"/api/artifact/..%2f{ids['calm-b']}/notes/readme.txt")
    assert status in (400, 404)
    for harmless in ("notes/./readme.txt", "notes//readme.txt"):  # normalised, still inside the run
        assert request(server, f"/api/artifact/{ids['calm-b']}/{harmless}")[2] == b"hello"


def test_artifacts_text_inline_as_plain_and_html_svg_only_as_downloads(server, store) -> None:
    _, ids = store
    base = f"/api/artifact/{ids['calm-a']}"
    status, headers, body = request(server, f"{base}/notes/readme.txt")
    assert status == 200 and body == b"hello"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-disposition"].startswith("inline")
    for name in ("report.html", "plot.svg"):
        status, headers, body = request(server, f"{base}/{name}")
        assert status == 200 and b"alert(1)" in body
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"] == f'attachment; filename="{name}"'
        assert "sandbox" in headers["content-security-policy"]


def test_changes_need_post_our_header_and_our_origin(store, tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    run = mm.Run(runs_dir=root, name="to-delete")
    run.end()
    with running(root) as srv:
        origin = f"http://127.0.0.1:{srv.port}"
        path = f"/api/run/{run.run_id[:8]}/delete"
        attempts = [
            ("GET", {}),
            ("POST", {}),  # a plain form post from any page
            ("POST", {"Origin": origin}),  # no custom header
            ("POST", {"X-Mini-Mlflow": "1"}),  # no Origin
            ("POST", {"X-Mini-Mlflow": "1", "Origin": "http://evil.example"}),
            ("POST", {"X-Mini-Mlflow": "1", "Origin": f"http://localhost:{srv.port + 1}"}),
        ]
        for method, headers in attempts:
            status, _, _ = request(srv, path, method=method, headers=headers, body=b"{}")
            assert status in (400, 403, 404), (method, headers, status)
            assert mm.Store(root).get_run(run.run_id)["metadata"]["lifecycle_stage"] == "active"
        ok = {"X-Mini-Mlflow": "1", "Origin": origin, "Content-Type": "application/json"}
        status, _, body = request(srv, path, method="POST", headers=ok, body=b"{}")
        assert status == 200, body
        assert mm.Store(root).get_run(run.run_id)["metadata"]["lifecycle_stage"] == "deleted"
        status, _, _ = request(srv, f"/api/run/{run.run_id}/restore", method="POST", headers=ok, body=b"{}")
        assert status == 200
        assert mm.Store(root).get_run(run.run_id)["metadata"]["lifecycle_stage"] == "active"
    with running(root, read_only=True) as srv:
        ok = {"X-Mini-Mlflow": "1", "Origin": f"http://127.0.0.1:{srv.port}"}
        status, _, body = request(srv, f"/api/run/{run.run_id}/delete", method="POST", headers=ok, body=b"{}")
        assert status == 403 and b"--read-only" in body
        assert mm.Store(root).get_run(run.run_id)["metadata"]["lifecycle_stage"] == "active"


# -- live ---------------------------------------------------------------------------------------------


def _events(sock: socket.socket) -> list[tuple[str, dict]]:
    """Read whatever whole events have arrived (blocking for the first bytes)."""
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    out = []
    for block in data.decode().split("\n\n"):
        lines = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_the_live_stream_sends_only_the_new_points_and_new_runs(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    run = mm.Run(runs_dir=root, name="live")
    for step in range(5):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.flush()
    offset = (Path(run.run_dir) / "metrics" / "loss.jsonl").stat().st_size
    with running(root) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(
            f"GET /api/events?e=0&t={run.run_id}|loss|{offset} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert b"text/event-stream" in head and b"Access-Control" not in head
        got = _events(sock)
        assert got[0][0] == "hello"
        for step in range(5, 8):
            run.log_metric("loss", float("nan") if step == 6 else 0.1, step=step)
        run.flush()
        points: list[tuple[int, object]] = []

        def arrived() -> bool:
            for name, data in _events(sock):
                if name == "points":
                    points.extend(zip(data["steps"], data["values"]))
            return len(points) >= 3

        wait_until(arrived, timeout=30)
        assert points == [(5, 0.1), (6, "NaN"), (7, 0.1)]  # only what was appended, in order
        other = mm.Run(runs_dir=root, name="newcomer")
        other.log_metric("loss", 1.0)
        other.flush()
        seen: list[dict] = []

        def new_run() -> bool:
            for name, data in _events(sock):
                if name == "runs":
                    seen.extend(data["changed"])
            return any(r["name"] == "newcomer" for r in seen)

        wait_until(new_run, timeout=30)
        sock.close()
        other.end()
    run.end()


def test_a_resumed_run_is_charted_without_superseded_points_and_an_open_page_reloads(tmp_path: Path) -> None:
    from mini_mlflow.integrations._resume import record_resume

    root = tmp_path / "mlruns"
    run = mm.Run(runs_dir=root, name="resumed")
    for step in range(10):
        run.log_metric("loss", 1.0, step=step)
    run.flush()
    offset = (Path(run.run_dir) / "metrics" / "loss.jsonl").stat().st_size
    with running(root) as srv:
        first = get_json(srv, f"/api/series?run={run.run_id}&key=loss")["series"][0]
        assert first["x"] == list(range(10)) and set(first["y"]) == {1.0}
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(
            f"GET /api/events?e=0&t={run.run_id}|loss|{offset} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode()
        )
        assert _events(sock)[0][0] == "hello"
        record_resume(run, 4)  # training restarts from the checkpoint of step 4 while the page is open
        between = get_json(srv, f"/api/series?run={run.run_id}&key=loss")["series"][0]
        assert between["x"] == list(range(5))  # as get_metric_history: the file unchanged, the view not
        for step in range(5, 10):
            run.log_metric("loss", 2.0, step=step)
        run.flush()
        got: list[dict] = []

        def arrived() -> bool:
            got.extend(data for name, data in _events(sock) if name == "points")
            return bool(got)

        wait_until(arrived, timeout=30)
        sock.close()
        # The page holds points the resume superseded: it is told to load the series again, not sent
        # the new points to append after them.
        assert got[0] == {"run": run.run_id, "key": "loss", "reload": True}
        again = get_json(srv, f"/api/series?run={run.run_id}&key=loss")["series"][0]
        assert again["x"] == list(range(10)) and again["y"] == [1.0] * 5 + [2.0] * 5
        assert again["total"] == 10
    run.end()


# -- the command ----------------------------------------------------------------------------------------


def _ui(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", "ui", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_command_prints_the_ready_line_and_serves_until_interrupted(tmp_path: Path) -> None:
    proc = _ui("--root", str(ROOT / "mlruns.sample"), "--port", "0", cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("mini_mlflow UI on http://127.0.0.1:"), line
        assert f"(store: {ROOT / 'mlruns.sample'}, 3 experiments, 12 runs) — Ctrl-C stops" in line
        port = int(line.split(":")[2].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET /api/experiments HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        proc.send_signal(2)  # Ctrl-C
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err


def test_another_host_warns_and_a_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    proc = _ui("--root", str(ROOT / "mlruns.sample"), "--port", "0", "--host", "127.0.0.2", cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("mini_mlflow UI on http://127.0.0.2:"), line
    finally:
        proc.send_signal(2)
        _, err = proc.communicate(timeout=30)
    assert "warning: binding 127.0.0.2, not 127.0.0.1" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _ui("--root", str(ROOT / "mlruns.sample"), "--port", str(port), cwd=tmp_path)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "Traceback" not in err
    assert (
        err.strip()
        == f"error: port {port} is in use: pick another with --port N (--port 0 takes any free port)"
    )
    proc = _ui("--root", str(tmp_path / "nowhere"), "--port", "0", cwd=tmp_path)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "error: no store at" in err


def test_hostile_names_travel_as_data(server: UIServer, store) -> None:
    """The API returns the text as is (JSON-escaped); the browser suite checks that the page shows it as text."""
    _, ids = store
    doc = get_json(server, f"/api/run/{ids['hostile']}")
    assert doc["name"] == HOSTILE and doc["tags"]["note"] == HOSTILE


def test_a_running_run_whose_writers_are_dead_shows_as_crashed(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "sample"
    shutil.copytree(ROOT / "mlruns.sample", root, ignore=shutil.ignore_patterns(".index", ".lock"))
    with running(root) as srv:
        doc = get_json(srv, "/api/runs?e=2")
        status = dict(zip(doc["runs"]["name"], doc["runs"]["status"]))
        assert status["resnet50-w128"] == "CRASHED" and status["resnet50-w64"] == "FINISHED"
        assert get_json(srv, "/api/run/1936b9a0")["status"] == "CRASHED"


def test_the_hosts_answered_follow_the_bind_address() -> None:
    from mini_mlflow.ui._security import allowed_hosts

    assert allowed_hosts("127.0.0.1", 5000) == {"127.0.0.1:5000", "localhost:5000", "[::1]:5000"}
    assert "10.1.2.3:8080" in allowed_hosts("10.1.2.3", 8080)  # chosen with --host: reachable by it
    assert "[fe80::1]:80" in allowed_hosts("fe80::1", 80)
    assert f"{socket.gethostname().lower()}:5000" in allowed_hosts("0.0.0.0", 5000)
    assert "evil.example:5000" not in allowed_hosts("0.0.0.0", 5000)
