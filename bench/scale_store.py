"""Big stores for bench_scale: N runs of one experiment written straight to disk, fast, and reused.

Each run has 5 params and 3 metrics of ``POINTS`` points (the W1 shape of bench_read), generated from
its index alone, so the same runs can be written in mini_mlflow's format and into MLflow's SQLite
store. Files are written with plain descriptor-relative system calls and dated ``AGE_S`` back, as a
store copied in with ``rsync -a`` from a cluster would be: finished runs, nothing recent.

    python bench/scale_store.py DIR N     # writes DIR (reused when it already holds N runs)
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import sys
import time
import uuid
from typing import Any

POINTS = 20
T0 = 1763900000000
AGE_S = 3600
EXPERIMENT = "0"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def iso(ms: int) -> str:
    secs, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


def run_spec(i: int) -> dict[str, Any]:
    """Run number ``i``: id, name, times, params and metric points (the same for every writer)."""
    rng = random.Random(i * 7919 + 17)
    params = {
        "lr": rng.choice([0.1, 0.03, 0.01, 0.003, 0.001]),
        "batch_size": rng.choice([32, 64, 128]),
        "optimizer": rng.choice(["adam", "sgd", "adamw"]),
        "layers": rng.randint(2, 12),
        "dropout": rng.choice([0.0, 0.1, 0.2]),
    }
    final = rng.uniform(0.3, 0.95)
    start = T0 + i * 60_000
    curves = {
        "acc": lambda s: final * (1 - math.exp(-3 * (s + 1) / POINTS)),
        "loss": lambda s: (1 - final) + math.exp(-3 * (s + 1) / POINTS),
        "val_acc": lambda s: final * 0.97 * (1 - math.exp(-3 * (s + 1) / POINTS)),
    }
    metrics = {k: [(s, f(s), start + s * 100) for s in range(POINTS)] for k, f in curves.items()}
    return {
        "run_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        "name": f"run-{i}",
        "start": start,
        "end": start + POINTS * 100,
        "params": params,
        "metrics": metrics,
    }


def _write(name: str, data: bytes, dir_fd: int, stamp: float) -> None:
    fd = os.open(name, _CREATE, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.utime(name, (stamp, stamp), dir_fd=dir_fd, follow_symlinks=False)


def write_run(exp_fd: int, spec: dict[str, Any], stamp: float) -> None:
    """One run folder, every file and folder dated ``stamp`` (folders after their contents)."""
    run_id = spec["run_id"]
    os.mkdir(run_id, 0o755, dir_fd=exp_fd)
    rfd = os.open(run_id, _DIR, dir_fd=exp_fd)
    try:
        meta = (
            f"format_version: 1\nrun_id: {run_id}\nrun_name: {spec['name']}\nexperiment_id: '0'\n"
            f"status: FINISHED\nstart_time: '{iso(spec['start'])}'\nend_time: '{iso(spec['end'])}'\n"
            "user: bench\nsource:\n  name: train.py\n  git_commit: null\nlifecycle_stage: active\n"
            "parent_run_id: null\n"
        )
        _write("meta.yaml", meta.encode(), rfd, stamp)
        files = {
            "params": {f"{k}.json": (json.dumps(v) + "\n").encode() for k, v in spec["params"].items()},
            "metrics": {
                f"{k}.jsonl": "".join(
                    f'{{"step":{s},"value":{v!r},"timestamp":{t}}}\n' for s, v, t in pts
                ).encode()
                for k, pts in spec["metrics"].items()
            },
            "tags": {},
            "artifacts": {},
        }
        for sub, contents in files.items():
            os.mkdir(sub, 0o755, dir_fd=rfd)
            sfd = os.open(sub, _DIR, dir_fd=rfd)
            try:
                for name, data in contents.items():
                    _write(name, data, sfd, stamp)
            finally:
                os.close(sfd)
            os.utime(sub, (stamp, stamp), dir_fd=rfd, follow_symlinks=False)
    finally:
        os.close(rfd)
    os.utime(run_id, (stamp, stamp), dir_fd=exp_fd, follow_symlinks=False)


def write_store(root: str, n: int, log: Any = None) -> None:
    """``n`` runs in experiment 0 of a new store at ``root``; reused if a finished one is there."""
    marker = os.path.join(root, f".bench-store-{n}")
    if os.path.exists(marker):
        return
    if os.path.exists(root):
        raise SystemExit(f"{root} exists but is not a finished {n}-run bench store: remove it first")
    stamp = time.time() - AGE_S
    exp = os.path.join(root, EXPERIMENT)
    os.makedirs(exp)
    with open(os.path.join(exp, "meta.yaml"), "w") as f:
        f.write(
            "format_version: 1\nexperiment_id: '0'\nname: scale\nlifecycle_stage: active\n"
            f"creation_time: '{iso(T0)}'\nlast_update_time: '{iso(T0)}'\n"
        )
    os.utime(os.path.join(exp, "meta.yaml"), (stamp, stamp))
    t = time.perf_counter()
    exp_fd = os.open(exp, _DIR)
    try:
        for i in range(n):
            write_run(exp_fd, run_spec(i), stamp)
            if log is not None and i and i % 20_000 == 0:
                log(f"  {i:,} runs written ({time.perf_counter() - t:.0f} s)")
    finally:
        os.close(exp_fd)
    os.utime(exp, (stamp, stamp))
    open(marker, "w").close()


FLOOR_CHILD = """
import os, resource, sys, time
exp = sys.argv[1]
RD = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
DIR = RD | os.O_DIRECTORY
efd = os.open(exp, DIR)
names = [n for n in os.listdir(efd) if n != "meta.yaml"]
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for name in names:
    rfd = os.open(name, DIR, dir_fd=efd)
    os.fstat(rfd)
    fd = os.open("meta.yaml", RD, dir_fd=rfd); os.read(fd, 8192); os.close(fd)
    for sub in ("params", "tags", "metrics"):
        dfd = os.open(sub, DIR, dir_fd=rfd)
        os.fstat(dfd)
        for n in os.listdir(f"{exp}/{name}/{sub}"):
            fd = os.open(n, RD, dir_fd=dfd)
            if sub == "metrics":
                size = os.fstat(fd).st_size
                os.pread(fd, 1024, max(0, size - 1024))
            else:
                os.read(fd, 8192)
            os.close(fd)
        os.close(dfd)
    os.close(rfd)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - t, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime)
"""


def syscall_floor(root: str) -> tuple[float, float, float]:
    """``(wall, user, system)`` seconds of a loop making exactly the system calls of a cold build of
    ``root``'s experiment 0, and nothing else (no parsing, no index): how far the build is from it."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", FLOOR_CHILD, os.path.join(root, EXPERIMENT)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall, user, system = map(float, done.stdout.split())
    return wall, user, system


# -- the same runs in MLflow's SQLite store ---------------------------------------------------------


def write_mlflow_sqlite(db: str, n: int, log: Any = None) -> str:
    """The ``n`` runs in an MLflow SQLite store at ``db`` (tables made by MLflow, rows inserted in bulk).

    MLflow creates and migrates the schema; its API would then take hours for 100,000 runs, so the rows
    go in with ``executemany``, as MLflow's own store lays them out: ``runs``, ``params``, ``tags``
    (``mlflow.runName``, ``mlflow.user``), ``metrics`` (every point) and ``latest_metrics`` (what its
    ``search_runs`` filters and orders on). Returns the experiment id.
    """
    marker = db + f".{n}.done"
    if not os.path.exists(marker):
        if os.path.exists(db):
            os.unlink(db)
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(f"sqlite:///{db}", os.path.dirname(db) + "/mlflow-artifacts")
        exp_id = store.create_experiment("scale")
        store.engine.dispose()
        con = sqlite3.connect(db)
        con.execute("PRAGMA synchronous=OFF")
        for first in range(0, n, 10_000):
            rows: dict[str, list[tuple[Any, ...]]] = {k: [] for k in ("r", "p", "t", "m", "l")}
            for i in range(first, min(n, first + 10_000)):
                s = run_spec(i)
                rid = s["run_id"]
                rows["r"].append(
                    (rid, s["name"], "LOCAL", "", "", "bench", "FINISHED", s["start"], s["end"], "",
                     "active", f"file:///tmp/{rid}", exp_id)
                )  # fmt: skip
                rows["p"] += [(k, str(v), rid) for k, v in s["params"].items()]
                rows["t"] += [("mlflow.runName", s["name"], rid), ("mlflow.user", "bench", rid)]
                for k, pts in s["metrics"].items():
                    rows["m"] += [(k, v, t, rid, st, 0) for st, v, t in pts]
                    st, v, t = pts[-1]
                    rows["l"].append((k, v, t, st, 0, rid))
            con.executemany(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,"
                " status, start_time, end_time, source_version, lifecycle_stage, artifact_uri,"
                " experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows["r"],
            )
            con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", rows["p"])
            con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", rows["t"])
            con.executemany(
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)",
                rows["m"],
            )
            con.executemany(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                " VALUES (?,?,?,?,?,?)",
                rows["l"],
            )
            con.commit()
            if log is not None:
                log(f"  mlflow sqlite: {min(n, first + 10_000):,} runs")
        con.close()
        with open(marker, "w") as f:
            f.write(str(exp_id))
    with open(marker) as f:
        return f.read().strip()


if __name__ == "__main__":
    write_store(sys.argv[1], int(sys.argv[2]), log=lambda m: print(m, file=sys.stderr))
