"""Soak: scale limits of one process: 10,000 runs open at once, 100,000 metric keys, a 1 GB artifact.

Measures what many open runs cost (creation and end time per run, memory per run, descriptors, the
background writer's CPU while they sit idle, the logging rate of a busy run among them), what many
keys in one run cost (time, peak open descriptors, memory), and what a 1 GB artifact costs to log and
to export and to sync to a local MLflow server (time and peak memory growth of a fresh process, every
copy checked by sha256; then deleted).

    python bench/soak_scale.py [--runs 10000] [--keys 100000] [--artifact-mb 1024] [--quick]

Run by ``make soak`` (not ``make bench``); prints one Markdown section.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from soak_sync import SyncSide  # noqa: E402

import mini_mlflow as mm  # noqa: E402
from mini_mlflow._config import resolve  # noqa: E402
from mini_mlflow.write._writer import WRITER  # noqa: E402


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) a thread of this process has used, from /proc."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _log_rate(run: mm.Run, seconds: float = 1.0) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10_000):
            run.log_metric("x", 1.0, step=n)
            n += 1
    return n / (time.perf_counter() - t0)


def many_runs(root: Path, n: int) -> list[str]:
    busy = mm.Run(runs_dir=root, name="busy")
    rate_alone = _log_rate(busy)
    rss0, fds0 = _rss_kb(), _fds()
    t0 = time.perf_counter()
    runs = [mm.Run(runs_dir=root, name=f"idle-{i}") for i in range(n)]
    create = time.perf_counter() - t0
    rss, fds = _rss_kb(), _fds()
    writer = WRITER._thread
    assert writer is not None and writer.native_id is not None
    buffers = WRITER.buffers()
    for b in buffers:  # a first full pass rewrites every heartbeat now: none is due for a while
        b._heartbeat_due = 0.0  # (they were staggered by the creation times)
        b.drain()
    t1 = time.perf_counter()
    for b in buffers:  # a full drain of every buffer: what each writer pass cost before idle skipping
        b.drain()
    full_pass = time.perf_counter() - t1
    heartbeat = resolve().heartbeat_interval
    window = min(5.0, heartbeat / 2)
    c0 = _thread_cpu(writer.native_id)
    time.sleep(window)  # every run idle and no heartbeat due: the cost of the writer's passes alone
    idle_cpu = (_thread_cpu(writer.native_id) - c0) / window
    c1 = _thread_cpu(writer.native_id)
    time.sleep(heartbeat)  # a whole heartbeat interval: every run's heartbeat is rewritten once
    beat_cpu = (_thread_cpu(writer.native_id) - c1) / heartbeat
    rate_among = _log_rate(busy)
    t2 = time.perf_counter()
    for r in runs:
        r.end()
    end = time.perf_counter() - t2
    busy.end()
    fsync = os.environ.get("MINI_MLFLOW_FSYNC", "end")
    return [
        f"| {n:,} runs open in one process: creation | {create:.1f} s ({create / n * 1000:.2f} ms per run) |",
        f"| memory per open run | {(rss - rss0) / n:.1f} kB ({(rss - rss0) / 1024:.0f} MB in all) |",
        f"| open descriptors before → with {n:,} runs open | {fds0} → {fds} |",
        f"| writer thread CPU while they are idle, no heartbeat due (passes skip idle runs) | "
        f"{idle_cpu * 100:.1f} % of a core |",
        f"| the same, over a heartbeat interval ({heartbeat:g} s: {n / heartbeat:,.0f} heartbeat files "
        f"rewritten per second) | {beat_cpu * 100:.1f} % of a core |",
        f"| one full drain of every buffer (what each pass every {resolve().flush_interval / 2:g} s cost "
        f"before idle skipping) | {full_pass * 1000:.1f} ms |",
        f"| logging rate of a busy run: alone / among {n:,} open runs | "
        f"{rate_alone / 1e6:.2f} / {rate_among / 1e6:.2f} M points/s ({rate_among / rate_alone:.2f}×) |",
        f"| ending them (fsync={fsync}) | {end:.1f} s ({end / n * 1000:.2f} ms per run) |",
    ]


def many_keys(root: Path, n: int) -> list[str]:
    run = mm.Run(runs_dir=root, name="many-keys")
    fds0, rss0 = _fds(), _rss_kb()
    peak = fds0
    stop = threading.Event()

    def sample() -> None:  # descriptors are also counted while the writer thread works
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _fds())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    for i in range(n):
        run.log_metric(f"g{i % 100:02d}/k{i:06d}", float(i), step=i)
    run.flush()
    logged = time.perf_counter() - t0
    rss = _rss_kb()
    t_end = time.perf_counter()
    run.end()
    ended = time.perf_counter() - t_end
    stop.set()
    sampler.join()
    after = _fds()
    files = sum(1 for _ in Path(run.run_dir, "metrics").rglob("*.jsonl"))
    return [
        f"| {n:,} distinct metric keys in one run: logging and flushing / end_run "
        f"(fsync={os.environ.get('MINI_MLFLOW_FSYNC', 'end')}: one fsync per file) | "
        f"{logged:.1f} s / {ended:.1f} s |",
        f"| open descriptors: before / peak while writing / after end | {fds0} / {peak} / {after} |",
        f"| memory held for {n:,} keys | {(rss - rss0) / 1024:.0f} MB |",
        f"| metric files on disk | {files:,} |",
    ]


BIG_CHILD = r"""
import json, os, resource, sys, time
import mini_mlflow as mm
from mini_mlflow.interop._export import export_mlflow
from mini_mlflow.sync import select_runs

root, src, dest, url = sys.argv[1:5]
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
small = src + ".small"
with open(small, "wb") as f:
    f.write(b"x" * 4096)
warm = mm.Run(runs_dir=root, name="warm-up")  # first calls and imports are not counted
warm.log_artifact(small)
warm.end()
export_mlflow(root, dest + "-warm", select_runs(root, [warm.run_id]))
run = mm.Run(runs_dir=root, name="big")
p0, t0 = peak(), time.perf_counter()
run.log_artifact(src, "data")
run.end()
p1, t1 = peak(), time.perf_counter()
export_mlflow(root, dest, select_runs(root, [run.run_id]))
p2, t2 = peak(), time.perf_counter()
out = {"run_id": run.run_id, "log": [t1 - t0, p1 - p0], "export": [t2 - t1, p2 - p1]}
if url:
    from mini_mlflow.sync import MlflowRestClient, SyncAgent

    client = MlflowRestClient(url, timeout=600)
    assert SyncAgent(root, client).sync(select_runs(root, [warm.run_id])).ok
    p2, t2 = peak(), time.perf_counter()
    summary = SyncAgent(root, client).sync(select_runs(root, [run.run_id]))
    assert summary.ok, summary.errors
    out["sync"] = [time.perf_counter() - t2, peak() - p2]
print(json.dumps(out))
"""


def big_artifact(work: Path, size_mb: int) -> list[str]:
    """Log and export one ``size_mb`` artifact in a fresh process: time, peak memory growth, sha256."""
    need = 4 * size_mb << 20
    work.mkdir(parents=True)
    free = shutil.disk_usage(work).free
    if free < need + (1 << 30):
        return [
            f"| a {size_mb:,} MB artifact | not measured: {free >> 20:,} MB free, {need >> 20:,} MB needed |"
        ]
    src = work / "big.bin"
    digest = hashlib.sha256()
    seed = os.urandom(1 << 20)
    with open(src, "wb") as f:  # distinct 1 MB blocks: a misplaced or repeated block changes the hash
        for i in range(size_mb):
            block = i.to_bytes(8, "little") + seed[8:]
            f.write(block)
            digest.update(block)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    side = SyncSide(work, work / "mlruns", env)
    no_server = side.start_server()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                BIG_CHILD,
                str(work / "mlruns"),
                str(src),
                str(work / "exported"),
                side.url if no_server is None else "",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
    finally:
        side.stop_server()
    if done.returncode != 0:
        return [f"| a {size_mb:,} MB artifact | failed: {done.stderr.strip()[-300:]} |"]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    exact = []
    copies = [
        *work.glob("mlruns/*/*/artifacts/data/big.bin"),
        *work.glob("exported/*/*/artifacts/data/big.bin"),
        *(work / "mlflow-artifacts").rglob("big.bin"),
    ]
    for copy in copies:
        h = hashlib.sha256()
        with open(copy, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        exact.append(copy.stat().st_size == size_mb << 20 and h.hexdigest() == digest.hexdigest())
    same = "yes" if len(exact) == 2 + ("sync" in got) and all(exact) else f"**no** ({exact})"
    shutil.rmtree(work, ignore_errors=True)
    (log_s, log_kb), (exp_s, exp_kb) = got["log"], got["export"]
    if "sync" in got:
        sync_row = (
            f"| the same: `sync` to a local MLflow server (artifact proxy) time / peak memory growth | "
            f"{got['sync'][0]:.1f} s / {got['sync'][1] / 1024:.0f} MB |"
        )
    else:
        sync_row = f"| the same: `sync` to a local MLflow server | {no_server} |"
    return [
        f"| a {size_mb:,} MB artifact: `log_artifact` time / peak memory growth of the process | "
        f"{log_s:.1f} s ({size_mb / max(log_s, 1e-9):,.0f} MB/s) / {log_kb / 1024:.0f} MB |",
        f"| the same: `export --format mlflow` time / peak memory growth | "
        f"{exp_s:.1f} s / {exp_kb / 1024:.0f} MB |",
        sync_row,
        "| the same: the stored, exported and server's copies equal the source (size and sha256); then "
        f"deleted | {same} |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--artifact-mb", type=int, default=1024, help="artifact size (0: skip)")
    parser.add_argument("--quick", action="store_true", help="1,000 runs, 10,000 keys, 256 MB")
    args = parser.parse_args()
    runs, keys, big = (1000, 10_000, 256) if args.quick else (args.runs, args.keys, args.artifact_mb)
    work = Path(tempfile.mkdtemp(prefix="mm-soak-scale-"))
    try:
        rows = []
        if big:  # first, in a fresh process, so nothing else is in memory
            print(f"{big} MB artifact ...", file=sys.stderr, flush=True)
            rows += big_artifact(work / "artifact", big)
        print(f"{runs} runs ...", file=sys.stderr, flush=True)
        rows += many_runs(work / "runs", runs)
        print(f"{keys} keys ...", file=sys.stderr, flush=True)
        rows += many_keys(work / "keys", keys)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("## Soak: many runs, many keys and a big artifact in one process\n")
    print(f"`python bench/soak_scale.py --runs {runs} --keys {keys} --artifact-mb {big}`\n")
    print("| measure | value |")
    print("|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
