"""Soak: processes × threads logging at full speed into shared and separate runs for minutes.

Two processes (``--processes``) each run eight threads (``--threads``): the first half of the threads
log into one run shared by every process, the other half each into a run of its own. Every thread logs
two keys of its own, step by step, as fast as it can. Meanwhile the parent samples each child's
resident memory and open file descriptors, and (``--ls``, on by default) runs ``mini-mlflow ls`` in a
loop. ``--sync`` also starts a local ``mlflow server`` and ``mini-mlflow sync --watch`` against it.
At the end every metric file is read back: the exact number of points each thread logged must be on
disk, in order, every line parsing; no warning may have been issued.

    python bench/soak.py [--minutes 10] [--processes 2] [--threads 8] [--no-ls] [--sync] [--quick]

Run by ``make soak`` (not ``make bench``); prints one Markdown section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import mini_mlflow as mm  # noqa: E402
from mini_mlflow._reader import parse_metric_lines  # noqa: E402

# -- the child: one process of logging threads -------------------------------------------------------


def child(index: int, root: str, shared_id: str, seconds: float, threads: int, work: int) -> None:
    import warnings

    caught: list[str] = []
    warnings.simplefilter("always")
    warnings.showwarning = lambda message, *rest, **kw: caught.append(str(message))  # type: ignore[assignment]
    shared = mm.Run(run_id=shared_id, runs_dir=root)
    n_shared = threads // 2
    own = [mm.Run(runs_dir=root, name=f"p{index}-t{t}") for t in range(n_shared, threads)]
    runs = [shared] * n_shared + own
    counts: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + seconds
    errors: list[str] = []

    def loop(t: int, run: mm.Run) -> None:
        a, b = f"p{index}t{t}/a", f"p{index}t{t}/b"
        log = run.log_metric
        i = 0
        try:
            while True:
                for _ in range(1000):
                    log(a, float(i), step=i)
                    log(b, i * 0.5, step=i)
                    i += 1
                    for _j in range(work):  # optional pure-Python work per step (default none)
                        pass
                if time.monotonic() > deadline:
                    break
        except Exception as exc:  # reported, and the counts still say what was logged
            errors.append(f"thread {t}: {exc!r}")
        counts.setdefault(run.run_id, {}).update({a: i, b: i})

    workers = [threading.Thread(target=loop, args=(t, run)) for t, run in enumerate(runs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for run in [*own, shared]:
        try:
            run.end()
        except Exception as exc:
            errors.append(f"end {run.run_id}: {exc!r}")
    status = Path("/proc/self/status").read_text() if os.path.exists("/proc/self/status") else ""
    hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
    print(json.dumps({"counts": counts, "warnings": caught, "errors": errors, "peak_rss_kb": hwm}))


# -- the parent: start, watch, check -------------------------------------------------------------------


def _proc_numbers(pid: int) -> tuple[int, int] | None:
    """(resident kB, open descriptors) of a live process, from /proc."""
    try:
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                rss = int(line.split()[1])
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class LsLoop(threading.Thread):
    """``mini-mlflow ls --all --json`` over and over while the children log."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.root, self.env = root, env
        self.stop = threading.Event()
        self.runs, self.failures, self.times = 0, [], []  # type: ignore[var-annotated]

    def run(self) -> None:
        cmd = [sys.executable, "-m", "mini_mlflow", "ls", "--all", "--json", "--limit", "1000"]
        while not self.stop.is_set():
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env,
                cwd=self.root.parent,
            )
            while True:
                try:
                    out, err = proc.communicate(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    if self.stop.is_set():  # the soak is over: an unfinished listing is not a failure
                        proc.kill()
                        proc.communicate()
                        return
            self.times.append(time.perf_counter() - t0)
            self.runs += 1
            try:
                if proc.returncode != 0:
                    raise ValueError(err.strip()[-300:])
                json.loads(out)
            except ValueError as exc:
                self.failures.append(str(exc))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mlflow_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | str:
    """A local ``mlflow server`` on 127.0.0.1, or the reason there is none."""
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or shutil.which("mlflow")
    if mlflow is None:
        return "not available: mlflow is not installed in this environment"
    port = _free_port()
    log = open(workdir / "mlflow-server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            *(mlflow, "server", "--host", "127.0.0.1", "--port", str(port)),
            *("--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}"),
            *("--default-artifact-root", str(workdir / "mlflow-artifacts"), "--workers", "1"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    return "not available: mlflow server did not start"


def check_counts(root: Path, counts: dict[str, dict[str, int]]) -> tuple[int, list[str]]:
    """Points found on disk, and every mismatch with what the threads logged."""
    store = mm.Store(root)
    problems: list[str] = []
    total = 0
    for run_id, keys in counts.items():
        rdir = Path(store.find_run(run_id))
        for key, n in keys.items():
            data = (rdir / "metrics" / f"{key}.jsonl").read_bytes()
            history = parse_metric_lines(data, key)
            total += len(history.steps)
            if history.skipped_lines:
                problems.append(f"{run_id}/{key}: {history.skipped_lines} lines do not parse")
            if history.steps != list(range(n)):
                problems.append(f"{run_id}/{key}: {len(history.steps)} points on disk, {n} logged")
        meta = store.load_meta(str(rdir))
        if meta.get("status") != "FINISHED":
            problems.append(f"{run_id}: status {meta.get('status')} {meta.get('broken', '')}")
    return total, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to log (default 10)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    parser.add_argument("--work", type=int, default=0, help="pure-Python loop turns per step (default 0)")
    parser.add_argument("--ls", action=argparse.BooleanOptionalAction, default=True, help="run ls in a loop")
    parser.add_argument("--sync", action="store_true", help="sync --watch to a local mlflow server")
    parser.add_argument("--dir", default="", help="store folder (default: a temporary one, removed)")
    parser.add_argument("--quick", action="store_true", help="20 seconds, for a smoke run")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        index, root, shared_id, seconds, threads, work = args.child
        child(int(index), root, shared_id, float(seconds), int(threads), int(work))
        return 0
    seconds = 20.0 if args.quick else args.minutes * 60
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mm-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "mlruns"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINI_MLFLOW_TRACKING_DIR=str(root))
    shared = mm.Run(runs_dir=root, name="shared")
    shared.end()
    server: Any = None
    sync_note = "off (`--sync` to enable)"
    watcher = None
    if args.sync:
        started = start_mlflow_server(work)
        if isinstance(started, str):
            sync_note = started
        else:
            server, url = started
            sync_note = f"`mini-mlflow sync --all --watch` to a local mlflow server ({url})"
            watcher = subprocess.Popen(
                [sys.executable, "-m", "mini_mlflow", "sync", "--all", "--watch", "--to", url],
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=open(work / "sync-watch.log", "wb"),  # noqa: SIM115
            )
    print(f"soak: {args.processes} × {args.threads} threads for {seconds:.0f} s in {work}", file=sys.stderr)
    t0 = time.perf_counter()
    children = [
        subprocess.Popen(
            [
                *(sys.executable, __file__, "--child", str(p), str(root), shared.run_id),
                *(str(seconds), str(args.threads), str(args.work)),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(args.processes)
    ]
    ls_loop = LsLoop(root, env) if args.ls else None
    if ls_loop is not None:
        ls_loop.start()
    samples: list[tuple[float, int, int, int]] = []  # (time, child, rss kB, fds)
    while any(c.poll() is None for c in children):
        for n, c in enumerate(children):
            got = _proc_numbers(c.pid)
            if got is not None:
                samples.append((time.perf_counter() - t0, n, *got))
        time.sleep(min(5.0, max(seconds / 40, 0.5)))
        elapsed = time.perf_counter() - t0
        print(f"  {elapsed:.0f}/{seconds:.0f} s", file=sys.stderr, flush=True)
    took = time.perf_counter() - t0
    if ls_loop is not None:
        ls_loop.stop.set()
        ls_loop.join(60)
    results, child_errors = [], []
    for n, c in enumerate(children):
        out, err = c.communicate()
        try:
            results.append(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            child_errors.append(f"child {n} exited {c.returncode}: {err.strip()[-500:]}")
    sync_result = ""
    if watcher is not None:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(60)
        except subprocess.TimeoutExpired:
            watcher.kill()
        s0 = time.perf_counter()
        final = subprocess.run(
            [sys.executable, "-m", "mini_mlflow", "sync", "--all", "--json", "--to", url],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=3600,
        )
        took_sync = time.perf_counter() - s0
        (work / "sync-final.json").write_text(final.stdout)
        try:
            raw = final.stdout
            report = json.loads(raw[raw.find("{") :])  # after any progress lines
            runs = [r for r in report.get("run_reports", []) if isinstance(r, dict)]
            errors = len(report.get("errors") or []) + sum(len(r.get("errors") or []) for r in runs)
            sync_result = (
                f"after the watch stopped, a final `sync --all` (exit {final.returncode}, {took_sync:.0f} s) "
                f"covered {len(runs)} runs: {sum(1 for r in runs if r.get('up_to_date'))} already up to "
                f"date, {int(report.get('points') or 0):,} points still sent, {errors} errors "
                "(server-side counts are not checked)"
            )
        except (ValueError, AttributeError, TypeError):
            shown = (final.stdout + final.stderr).strip()[-300:].replace("\n", " ")
            sync_result = f"final `sync --all` exit {final.returncode}: {shown}"
    if server is not None:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    counts: dict[str, dict[str, int]] = {}
    for r in results:
        for run_id, keys in r["counts"].items():
            counts.setdefault(run_id, {}).update(keys)
    logged = sum(n for keys in counts.values() for n in keys.values())
    on_disk, problems = check_counts(root, counts)
    problems = child_errors + problems + [e for r in results for e in r["errors"]]
    warnings_seen = [w for r in results for w in r["warnings"]]
    disk_bytes = sum(p.stat().st_size for p in root.rglob("*.jsonl"))

    print("## Soak: processes × threads at full speed\n")
    print(
        f"`python bench/soak.py --minutes {seconds / 60:g}`: {args.processes} processes × {args.threads} "
        f"threads; threads 0-{args.threads // 2 - 1} of every process share one run, the others have a "
        "run each; every thread logs two keys per step with no pause"
        + (f" ({args.work} loop turns of work per step)" if args.work else "")
        + ".\n"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| time logging | {took:.0f} s |")
    print(f"| points logged / found on disk | {logged:,} / {on_disk:,} |")
    print(f"| points per second (all threads) | {logged / took:,.0f} |")
    print(f"| metric data written | {disk_bytes / 1e9:.2f} GB |")
    print(f"| count mismatches, unparsable lines, errors | **{len(problems)}** |")
    print(f"| warnings issued | **{len(warnings_seen)}** |")
    for n in range(args.processes):
        mine = [s for s in samples if s[1] == n]
        if not mine:
            continue
        later = [s for s in mine if s[0] > took * 0.25] or mine  # after warm-up
        peak = next((r["peak_rss_kb"] for r in results[n : n + 1]), 0)
        print(
            f"| process {n}: peak RSS; RSS after warm-up min-max | {peak / 1024:.0f} MB; "
            f"{min(s[2] for s in later) / 1024:.0f}-{max(s[2] for s in later) / 1024:.0f} MB |"
        )
        fds = [s[3] for s in mine]
        print(f"| process {n}: open descriptors over {len(fds)} samples min-max | {min(fds)}-{max(fds)} |")
    if ls_loop is not None:
        times = sorted(ls_loop.times) or [0.0]
        print(
            f"| `mini-mlflow ls --all --json` in a loop: runs, failures, median / worst | "
            f"{ls_loop.runs}, {len(ls_loop.failures)}, {times[len(times) // 2]:.2f} / {times[-1]:.2f} s |"
        )
    else:
        print("| `mini-mlflow ls` loop | off (`--ls`) |")
    print(f"| sync agent | {sync_note} |")
    if sync_result:
        print(f"| sync result | {sync_result} |")
    for item in (problems + warnings_seen + (ls_loop.failures if ls_loop else []))[:10]:
        print(f"\n- {item}")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    failed = problems or warnings_seen or (ls_loop is not None and ls_loop.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
