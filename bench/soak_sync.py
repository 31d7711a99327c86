"""Soak, the sync half: a local MLflow server, `sync --watch`, a steady writer, and server-side checks.

Used by ``bench/soak.py --sync``. The writers of the soak log ~100 times faster than an MLflow server
stores points, so the server cannot hold everything at the end and a final "sync everything" would take
hours. The check is therefore in two parts:

(a) Everything the agent confirmed is on the server exactly. For every run and key, the sync cursor
    says up to which byte of the metrics file the server acknowledged; the server's SQLite database
    (read directly after the server stopped) must hold exactly the lines before that offset: the same
    count, every (step, value, timestamp) equal, no point more (no duplicate, no gap, nothing the cursor
    does not know), and one remote run per local run.
(b) A run logged below the sync rate is complete. One extra process logs at a modest rate into its own
    run; after the watch stops, one `mini-mlflow sync <run>` must leave the server holding every point
    on disk, equal, with the run FINISHED.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import mini_mlflow as mm  # noqa: E402
from mini_mlflow.read._reader import parse_metric_lines  # noqa: E402
from mini_mlflow.sync import _cursor  # noqa: E402

STEADY_KEYS = ("steady/a", "steady/b")


def steady_child(root: str, seconds: float, rate: float) -> None:
    """Log ``rate`` points per second (two keys) into a run of its own; print what was logged."""
    import warnings

    caught: list[str] = []
    warnings.simplefilter("always")
    warnings.showwarning = lambda message, *rest, **kw: caught.append(str(message))  # type: ignore[assignment]
    run = mm.Run(runs_dir=root, name="steady")
    period = len(STEADY_KEYS) / rate
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        for n, key in enumerate(STEADY_KEYS):
            run.log_metric(key, i + n / 10, step=i)
        i += 1
        time.sleep(max(0.0, t0 + i * period - time.monotonic()))
    run.end()
    status = Path("/proc/self/status").read_text()
    hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
    counts = {run.run_id: dict.fromkeys(STEADY_KEYS, i)}
    print(json.dumps({"counts": counts, "warnings": caught, "errors": [], "peak_rss_kb": hwm}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SyncSide:
    """The server and the agents of a soak with sync, and the numbers they leave."""

    def __init__(self, work: Path, root: Path, env: dict[str, str]) -> None:
        self.work, self.root, self.env = work, root, env
        self.db = work / "mlflow.db"
        self.server: subprocess.Popen[bytes] | None = None
        self.watcher: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.watch_started = self.watch_stopped = 0.0
        self.stop_seconds = 0.0
        self.final: dict[str, Any] = {}

    # -- processes -------------------------------------------------------------------------------

    def start_server(self) -> str | None:
        """Start ``mlflow server`` on 127.0.0.1; None, or the reason there is none."""
        mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or shutil.which("mlflow")
        if mlflow is None:
            return "not available: mlflow is not installed in this environment"
        port = _free_port()
        with open(self.work / "mlflow-server.log", "wb") as log:
            self.server = subprocess.Popen(
                [
                    *(mlflow, "server", "--host", "127.0.0.1", "--port", str(port)),
                    *("--backend-store-uri", f"sqlite:///{self.db}", "--workers", "1"),
                    *("--artifacts-destination", str(self.work / "mlflow-artifacts")),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work,
                # No job runner (7 consumer processes the soak never uses) on a 2-core machine.
                env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
                start_new_session=True,  # its own process group: its workers stop with it
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return None
            except OSError:
                time.sleep(0.5)
        self.stop_server()
        return "not available: mlflow server did not start"

    def stop_server(self) -> None:
        if self.server is None:
            return
        try:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(30)
        except ProcessLookupError:
            pass
        self.server = None

    def start_watch(self) -> int:
        """``mini-mlflow sync --all --watch`` in the background; its pid."""
        self.watcher = subprocess.Popen(
            [sys.executable, "-m", "mini_mlflow", "sync", "--all", "--watch", "--to", self.url],
            env=self.env,
            cwd=self.work,
            stdout=open(self.work / "sync-watch.out", "wb"),  # noqa: SIM115 - the child holds it
            stderr=open(self.work / "sync-watch.err", "wb"),  # noqa: SIM115
        )
        self.watch_started = time.perf_counter()
        return self.watcher.pid

    def stop_watch(self) -> int | None:
        """SIGINT the watcher (as Ctrl-C); it must stop after the request in flight. Its exit code."""
        if self.watcher is None:
            return None
        t0 = time.perf_counter()
        self.watcher.send_signal(signal.SIGINT)
        try:
            code = self.watcher.wait(120)
        except subprocess.TimeoutExpired:
            self.watcher.kill()
            code = self.watcher.wait()
        self.watch_stopped = time.perf_counter()
        self.stop_seconds = self.watch_stopped - t0
        return code

    def watch_errors(self) -> list[str]:
        """Lines the watcher wrote to stderr besides its banner (errors, warnings, tracebacks)."""
        text = (self.work / "sync-watch.err").read_text(errors="replace")
        return [
            f"sync --watch: {line}" for line in text.splitlines() if line and not line.startswith("watching")
        ]

    def final_sync(self, run_id: str) -> tuple[float, list[str]]:
        """One ``mini-mlflow sync <run>`` after the watch: seconds taken and problems."""
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "mini_mlflow", "sync", run_id, "--json", "--to", self.url],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.work,
            timeout=1800,
        )
        took = time.perf_counter() - t0
        (self.work / "sync-final.json").write_text(done.stdout + done.stderr)
        problems = []
        try:
            self.final = json.loads(done.stdout[done.stdout.find("{") :])
        except ValueError:
            problems.append(f"final sync of {run_id}: exit {done.returncode}, no JSON report")
        if done.returncode != 0 or self.final.get("errors"):
            problems.append(f"final sync of {run_id}: exit {done.returncode}, {self.final.get('errors')}")
        return took, problems

    # -- checks ----------------------------------------------------------------------------------

    def confirmed_points(self, counts: dict[str, dict[str, int]]) -> int:
        """Points the cursors of these runs say the server acknowledged (lines before each offset)."""
        store, total = mm.Store(self.root), 0
        for run_id, keys in counts.items():
            rdir = store.find_run(run_id)
            cursor = _cursor.load(rdir, self.url)
            for key in keys:
                offset = cursor.metrics.get(key, 0)
                if offset:
                    with open(Path(rdir) / "metrics" / f"{key}.jsonl", "rb") as f:
                        total += f.read(offset).count(b"\n")
        return total

    def check(self, counts: dict[str, dict[str, int]], steady_id: str) -> tuple[dict[str, int], list[str]]:
        """Compare the server's database (server stopped) with the cursors and the files on disk.

        Returns totals (``confirmed``: points the cursors hold; ``on_server``; ``steady_disk``,
        ``steady_server``; ``backlog``: points on disk the watch had not reached) and problems.
        """
        store = mm.Store(self.root)
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        problems: list[str] = []
        totals = dict.fromkeys(("confirmed", "on_server", "steady_disk", "steady_server", "backlog"), 0)
        remote_of: dict[str, list[str]] = {}  # local run id → every remote run tagged with it
        for remote, local in db.execute("SELECT run_uuid, value FROM tags WHERE key='mini_mlflow.run_id'"):
            remote_of.setdefault(local, []).append(remote)
        for run_id, keys in counts.items():
            rdir = store.find_run(run_id)
            cursor = _cursor.load(rdir, self.url)
            remotes = remote_of.get(run_id, [])
            if len(remotes) > 1 or (remotes and remotes != [cursor.remote_run_id]):
                problems.append(f"{run_id}: remote runs {remotes}, cursor says {cursor.remote_run_id}")
            remote = cursor.remote_run_id or ""
            server_keys = {
                k for (k,) in db.execute("SELECT DISTINCT key FROM metrics WHERE run_uuid=?", (remote,))
            }
            for extra in sorted(server_keys - set(keys)):
                problems.append(f"{run_id}: key {extra!r} on the server was never logged")
            for key in keys:
                path = Path(rdir) / "metrics" / f"{key}.jsonl"
                offset = cursor.metrics.get(key, 0)
                with open(path, "rb") as f:
                    head = f.read(offset)
                if head and not head.endswith(b"\n"):
                    problems.append(f"{run_id}/{key}: cursor offset {offset} is not at a line end")
                local = parse_metric_lines(head, key)
                rows = db.execute(
                    "SELECT step, value, timestamp FROM metrics WHERE run_uuid=? AND key=? "
                    "ORDER BY step, timestamp",
                    (remote, key),
                ).fetchall()
                expected = list(zip(local.steps, local.values, local.timestamps, strict=True))
                totals["confirmed"] += len(expected)
                totals["on_server"] += len(rows)
                if rows != expected:
                    problems.append(
                        f"{run_id}/{key}: server holds {len(rows)} points, cursor confirmed {len(expected)}"
                        + (" (same count, different values)" if len(rows) == len(expected) else "")
                    )
                on_disk = keys[key]
                totals["backlog"] += on_disk - len(expected)
                if run_id == steady_id:
                    totals["steady_disk"] += on_disk
                    totals["steady_server"] += len(rows)
                    if len(rows) != on_disk:
                        problems.append(f"steady run {key}: {on_disk} on disk, {len(rows)} on the server")
        steady_remote = (remote_of.get(steady_id) or [""])[0]
        status = db.execute("SELECT status FROM runs WHERE run_uuid=?", (steady_remote,)).fetchone()
        if not status or status[0] != "FINISHED":
            problems.append(f"steady run: status on the server {status}, FINISHED expected")
        db.close()
        return totals, problems


class Sampler(threading.Thread):
    """Resident memory and open descriptors of some processes, every ``period`` seconds."""

    def __init__(self, pids: dict[str, int], period: float) -> None:
        super().__init__(daemon=True)
        self.pids, self.period = pids, period
        self.samples: dict[str, list[tuple[float, int, int, int]]] = {name: [] for name in pids}
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            for name, pid in self.pids.items():
                got = proc_numbers(pid)
                if got is not None and got[0] > 0:  # an exited process (zombie) shows no memory
                    self.samples[name].append((time.perf_counter() - self.t0, *got))
            self.stop.wait(self.period)


def proc_numbers(pid: int) -> tuple[int, int, int] | None:
    """(resident kB, open descriptors, peak resident kB so far) of a live process, from /proc."""
    try:
        found = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS", "VmHWM")):
                found[line[:5]] = int(line.split()[1])
        return found.get("VmRSS", 0), len(os.listdir(f"/proc/{pid}/fd")), found.get("VmHWM", 0)
    except OSError:
        return None
