"""Sync benchmark: points/s uploading one run to a loopback MLflow server, side by side with MLflow's client.

Both uploaders send the same points (4 metrics, distinct steps and timestamps) to the same
``mlflow server`` (SQLite backend, one worker, 127.0.0.1): ``mini-mlflow sync`` reading the run's files,
and ``MlflowClient.log_batch`` given the points in memory (10,000 per call; it splits them into
requests of 1,000 like our agent). The server does most of the work, so the ratio mostly shows that
the agent adds no overhead of its own; the client CPU column shows what each costs the machine.

    python bench/bench_sync.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mini_mlflow as mm  # noqa: E402
from mini_mlflow.store import _experiments  # noqa: E402

KEYS = ("loss", "acc", "lr", "grad_norm")
BASE_MS = 1_763_900_000_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", f"sqlite:///{workdir}/mlflow.db"]
    cmd += ["--artifacts-destination", f"{workdir}/artifacts"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MINI_MLFLOW_"))}
    # No job runner (seven huey consumers at start, used by none of this): they would share the
    # 2 cores with the uploaders being measured.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with open(os.path.join(workdir, "server.log"), "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("mlflow server did not start")


class Ours:
    """One local run uploaded by the sync agent, one incremental pass per round (a growing run)."""

    def __init__(self, root: str, url: str) -> None:
        from mini_mlflow.sync import MlflowRestClient, SyncAgent, select_runs

        exp = _experiments.get_or_create_experiment(root, f"bench-ours-{time.time_ns()}")
        self.run = mm.Run(experiment_id=exp, name="ours", runs_dir=root)
        self.client = MlflowRestClient(url)
        self.agent = SyncAgent(root, self.client)
        self.targets = select_runs(root, [self.run.run_id])

    def upload(self, data: list[tuple[str, float, int, int]], last: bool) -> tuple[float, float, int]:
        for key, value, stamp, step in data:
            self.run.log_metric(key, value, step=step, timestamp=stamp)
        if last:
            self.run.end()
        else:
            self.run.flush()
        t0, c0 = time.perf_counter(), time.process_time()
        summary = self.agent.sync(self.targets)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if not summary.ok:
            raise RuntimeError(f"sync failed: {summary.errors}")
        return wall, cpu, summary.total("points")


class Theirs:
    """One MLflow run written with ``MlflowClient.log_batch``, the same points per round."""

    def __init__(self, url: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=url)
        exp = self.client.create_experiment(f"bench-mlflow-{time.time_ns()}")
        self.run_id = self.client.create_run(exp, run_name="mlflow").info.run_id

    def upload(self, data: list[tuple[str, float, int, int]], last: bool) -> tuple[float, float, int]:
        from mlflow.entities import Metric

        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(data), 10_000):
            chunk = [Metric(k, v, t, s) for k, v, t, s in data[start : start + 10_000]]
            self.client.log_batch(self.run_id, metrics=chunk)
        if last:
            self.client.set_terminated(self.run_id)
        return time.perf_counter() - t0, time.process_time() - c0, len(data)


def segments(n: int, rounds: int) -> list[list[tuple[str, float, int, int]]]:
    """The points of one run of ``n`` points, cut into ``rounds`` consecutive parts (steps go on)."""
    per_key = n // len(KEYS)
    size = per_key // rounds
    return [
        [(key, 1.0 / (i + 1), BASE_MS + i, i) for key in KEYS for i in range(r * size, (r + 1) * size)]
        for r in range(rounds)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="40,000 points instead of 1,000,000")
    args = parser.parse_args()
    n = 40_000 if args.quick else 1_000_000
    print("## Sync: uploading one run to a loopback MLflow server\n")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        print("| uploader | result |\n|---|---|\n| both | mlflow not installed (no server to upload to) |")
        return
    workdir = tempfile.mkdtemp(prefix="bench-sync-")
    proc, url = start_server(workdir)
    rounds = 2 if args.quick else 4
    parts = segments(n, rounds)
    totals = {"ours": [0.0, 0.0, 0], "mlflow": [0.0, 0.0, 0]}
    try:
        with contextlib.redirect_stdout(sys.stderr):  # MLflow prints links to its UI
            log(f"server at {url}; warming it up ...")
            warm = segments(12_000, 1)[0]
            Ours(os.path.join(workdir, "warm"), url).upload(warm, True)
            Theirs(url).upload(warm, True)
            uploaders = {"ours": Ours(os.path.join(workdir, "mlruns"), url), "mlflow": Theirs(url)}
            for r, part in enumerate(parts):  # interleaved, first mover alternating: noise hits both alike
                order = ["ours", "mlflow"] if r % 2 == 0 else ["mlflow", "ours"]
                for who in order:
                    log(f"round {r + 1}/{rounds}: {who} uploads {len(part):,} more points ...")
                    result = uploaders[who].upload(part, last=r == rounds - 1)
                    for i in range(3):
                        totals[who][i] += result[i]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    ours, theirs = totals["ours"], totals["mlflow"]
    count = int(ours[2])
    print(
        f"One run of {count:,} points per uploader (4 metrics), uploaded in {rounds} interleaved rounds "
        "as it grows (after a warm-up), "
        "`mlflow server` with 1 worker, SQLite and no job runner "
        "(`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`) on 127.0.0.1, same machine.\n"
    )
    print("| uploader | points | seconds | points/s | client CPU s | time vs MLflow |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (wall, cpu, count) in (  # type: ignore[misc]
        ("`mini-mlflow sync` (from the run's files)", ours),
        ("`MlflowClient.log_batch` (points in memory)", theirs),
    ):
        ratio = wall / theirs[0]
        print(f"| {name} | {count:,} | {wall:.1f} | {count / wall:,.0f} | {cpu:.1f} | {ratio:.2f}x |")
    print(
        "\nThe server stores every request of 1,000 points in one transaction; both clients wait on it. "
        "The agent also survives kills and reruns without duplicates (see tests/sync)."
    )


if __name__ == "__main__":
    main()
