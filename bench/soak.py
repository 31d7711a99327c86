"""Soak: processes × threads logging at full speed into shared and separate runs for minutes.

Two processes (``--processes``) each run eight threads (``--threads``): the first half of the threads
log into one run shared by every process, the other half each into a run of its own. Every thread logs
two keys of its own, step by step, as fast as it can. Meanwhile the parent samples each child's
resident memory and open file descriptors, and (``--ls``, on by default) runs ``mini-mlflow ls`` in a
loop. ``--sync`` also starts a local ``mlflow server`` and ``mini-mlflow sync --watch`` against it.
At the end every metric file is read back: the exact number of points each thread logged must be on
disk, in order, every line parsing; no warning may have been issued. What the sync half checks, and
why it cannot be "everything is on the server", is in ``bench/soak_sync.py``.

    python bench/soak.py [--minutes 10] [--processes 2] [--threads 8] [--no-ls] [--sync] [--quick]
                         [--steady-rate 20] [--catch-up 30]

Run by ``make soak`` (not ``make bench``); prints one Markdown section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from soak_sync import Sampler, SyncSide, steady_child  # noqa: E402

import mini_mlflow as mm  # noqa: E402
from mini_mlflow.read._reader import parse_metric_lines  # noqa: E402

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


#: Bytes of a metrics file parsed at a time by the final check.
CHECK_CHUNK = 64 << 20


def check_counts(root: Path, counts: dict[str, dict[str, int]]) -> tuple[int, list[str]]:
    """Points found on disk, and every mismatch with what the threads logged."""
    store = mm.Store(root)
    problems: list[str] = []
    total = 0
    for run_id, keys in counts.items():
        rdir = Path(store.find_run(run_id))
        for key, n in keys.items():
            found, skipped, in_order = 0, 0, True
            with open(rdir / "metrics" / f"{key}.jsonl", "rb") as f:  # in pieces: files of GBs
                rest = b""
                while chunk := f.read(CHECK_CHUNK):
                    data = rest + chunk
                    end = data.rfind(b"\n") + 1
                    data, rest = data[:end], data[end:]
                    history = parse_metric_lines(data, key)
                    skipped += history.skipped_lines
                    in_order = in_order and history.steps == list(range(found, found + len(history.steps)))
                    found += len(history.steps)
                skipped += 1 if rest.strip() else 0  # an unterminated last line
            total += found
            if skipped:
                problems.append(f"{run_id}/{key}: {skipped} lines do not parse")
            if found != n or not in_order:
                problems.append(
                    f"{run_id}/{key}: {found} points on disk "
                    f"({'in' if in_order else 'out of'} order), {n} logged"
                )
        meta = store.load_meta(str(rdir))
        if meta.get("status") != "FINISHED":
            problems.append(f"{run_id}: status {meta.get('status')} {meta.get('broken', '')}")
    return total, problems


def _process_rows(
    name: str, samples: list[tuple[float, int, int, int]], took: float, peak: int = 0
) -> list[str]:
    if not samples:
        return []
    later = [s for s in samples if s[0] > took * 0.25] or samples  # after warm-up
    peak = peak or max(s[3] for s in samples)
    fds = [s[2] for s in samples]
    return [
        f"| {name}: peak RSS; RSS after warm-up min-max | {peak / 1024:.0f} MB; "
        f"{min(s[1] for s in later) / 1024:.0f}-{max(s[1] for s in later) / 1024:.0f} MB |",
        f"| {name}: open descriptors over {len(fds)} samples min-max | {min(fds)}-{max(fds)} |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to log (default 10)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    parser.add_argument("--work", type=int, default=0, help="pure-Python loop turns per step (default 0)")
    parser.add_argument("--ls", action=argparse.BooleanOptionalAction, default=True, help="run ls in a loop")
    parser.add_argument("--sync", action="store_true", help="sync --watch to a local mlflow server")
    parser.add_argument("--steady-rate", type=float, default=20.0, help="points/s of the steady run (--sync)")
    parser.add_argument("--catch-up", type=float, default=30.0, help="seconds of sync after logging")
    parser.add_argument("--dir", default="", help="store folder (default: a temporary one, removed)")
    parser.add_argument("--quick", action="store_true", help="20 seconds, for a smoke run")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--steady-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        index, root, shared_id, seconds, threads, work = args.child
        child(int(index), root, shared_id, float(seconds), int(threads), int(work))
        return 0
    if args.steady_child:
        steady_child(args.steady_child[0], float(args.steady_child[1]), float(args.steady_child[2]))
        return 0
    seconds = 20.0 if args.quick else args.minutes * 60
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mm-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "mlruns"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINI_MLFLOW_TRACKING_DIR=str(root))
    shared = mm.Run(runs_dir=root, name="shared")
    shared.end()
    side: SyncSide | None = None
    sync_note = "off (`--sync` to enable)"
    pids: dict[str, int] = {}
    if args.sync:
        side = SyncSide(work, root, env)
        why = side.start_server()
        if why is not None:
            sync_note, side = why, None
        else:
            pids["`sync --watch`"] = side.start_watch()
            sync_note = "`mini-mlflow sync --all --watch` to a local `mlflow server` (SQLite, 1 worker)"
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
    if side is not None:  # one more process, logging below the sync rate into a run of its own
        children.append(
            subprocess.Popen(
                [sys.executable, __file__, "--steady-child", str(root), str(seconds), str(args.steady_rate)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    names = [f"process {n}" for n in range(args.processes)] + (["steady writer"] if side else [])
    pids.update({name: c.pid for name, c in zip(names, children, strict=True)})
    sampler = Sampler(pids, min(5.0, max(seconds / 40, 0.5)))
    sampler.start()
    ls_loop = LsLoop(root, env) if args.ls else None
    if ls_loop is not None:
        ls_loop.start()
    while any(c.poll() is None for c in children):
        time.sleep(min(5.0, max(seconds / 40, 0.5)))
        print(f"  {time.perf_counter() - t0:.0f}/{seconds:.0f} s", file=sys.stderr, flush=True)
    took = time.perf_counter() - t0
    if ls_loop is not None:
        ls_loop.stop.set()
        ls_loop.join(60)
    results, child_errors = [], []
    for name, c in zip(names, children, strict=True):
        out, err = c.communicate()
        try:
            results.append(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            child_errors.append(f"{name} exited {c.returncode}: {err.strip()[-500:]}")
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        for run_id, keys in r["counts"].items():
            counts.setdefault(run_id, {}).update(keys)
    logged = sum(n for keys in counts.values() for n in keys.values())
    sync_rows: list[str] = []
    sync_problems: list[str] = []
    if side is not None and len(results) == len(children):
        steady_id = next(iter(results[-1]["counts"]))
        steady_logged = sum(results[-1]["counts"][steady_id].values())
        at_end = side.confirmed_points(counts)  # the moment the writers stopped
        steady_lag = steady_logged - side.confirmed_points({steady_id: counts[steady_id]})
        print(f"the watch catches up for {args.catch_up:g} s ...", file=sys.stderr, flush=True)
        time.sleep(args.catch_up)  # the machine is free now: the server's own pace
        caught_up = side.confirmed_points(counts) - at_end
        print("stopping the watch ...", file=sys.stderr, flush=True)
        code = side.stop_watch()
        print("final sync of the steady run ...", file=sys.stderr, flush=True)
        final_took, final_problems = side.final_sync(steady_id)
        side.stop_server()
        sampler.stop.set()
        print("comparing the server's database with the cursors ...", file=sys.stderr, flush=True)
        totals, sync_problems = side.check(counts, steady_id)
        sync_problems = final_problems + sync_problems + side.watch_errors()
        if code != 0:
            sync_problems.append(f"`sync --watch` exited {code} after SIGINT")
        sync_rows = [
            f"| `sync --watch`: points on the server when the writers stopped / rate while they logged | "
            f"{at_end:,} / {at_end / took:,.0f} points/s |",
            f"| `sync --watch` for {args.catch_up:g} s more with the writers stopped (the server's pace on a "
            f"free machine) | {caught_up / max(args.catch_up, 1e-9):,.0f} points/s |",
            f"| (a) points the sync cursors confirmed / points in the server's database | "
            f"{totals['confirmed']:,} / {totals['on_server']:,} |",
            f"| (a) runs × keys where the server differs from the confirmed lines (count, step, value, time) "
            f"| **{sum('server holds' in p for p in sync_problems)}** |",
            f"| points on disk the server never got (logged {logged / max(at_end, 1):,.0f}× faster than it "
            f"stored them) | {totals['backlog']:,} |",
            f"| (b) steady run ({args.steady_rate:g} points/s): on disk / on the server after one "
            "`sync <run>` "
            f"| {totals['steady_disk']:,} / {totals['steady_server']:,} (status FINISHED there: "
            f"{'no' if any('status on the server' in p for p in sync_problems) else 'yes'}) |",
            f"| (b) steady run: points not yet on the server when the writers stopped; the final sync took | "
            f"{steady_lag:,}; {final_took:.1f} s |",
            f"| `sync --watch` stopped after SIGINT in (exit code) | {side.stop_seconds:.1f} s ({code}) |",
            *_process_rows("`sync --watch`", sampler.samples["`sync --watch`"], took),
            *_process_rows(
                "steady writer", sampler.samples["steady writer"], took, results[-1]["peak_rss_kb"]
            ),
            "| sync problems (errors, warnings, mismatches, duplicate remote runs) | "
            f"**{len(sync_problems)}** |",
        ]
    elif side is not None:
        side.stop_watch()
        side.stop_server()
    sampler.stop.set()

    on_disk, problems = check_counts(root, counts)
    problems = child_errors + problems + [e for r in results for e in r["errors"]]
    warnings_seen = [w for r in results for w in r["warnings"]]
    disk_bytes = sum(p.stat().st_size for p in root.rglob("*.jsonl"))

    print("## Soak: processes × threads at full speed" + (", synced to MLflow" if sync_rows else "") + "\n")
    print(
        f"`python bench/soak.py --minutes {seconds / 60:g}{' --sync' if args.sync else ''}`: "
        f"{args.processes} processes × {args.threads} threads; threads 0-{args.threads // 2 - 1} of every "
        "process share one run, "
        "the others have a run each; every thread logs two keys per step with no pause"
        + (f" ({args.work} loop turns of work per step)" if args.work else "")
        + ".\n"
    )
    if sync_rows:
        print(
            "With `--sync`, a local MLflow server stores points hundreds of times slower than the writers "
            "log them (the ratio is in the table), so it cannot hold everything at the end. The check has "
            "two parts: (a) for every run and "
            "key, the server's database (read with sqlite3 after the server stopped) holds exactly the lines "
            "the agent's cursor says were acknowledged: same count, every step, value and timestamp equal, "
            "nothing more (no duplicate, no gap), one remote run per local run; (b) one more process logs at "
            "a modest rate into a run of its own, and after the watch stops one `mini-mlflow sync <run>` "
            "must leave every point of it on the server, and the run FINISHED. The watch gives each run a "
            "time slice per pass, so the steady run keeps moving while the others are far behind.\n"
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
        peak = results[n]["peak_rss_kb"] if n < len(results) else 0
        print("\n".join(_process_rows(f"process {n}", sampler.samples[f"process {n}"], took, peak)))
    if ls_loop is not None:
        times = sorted(ls_loop.times) or [0.0]
        print(
            f"| `mini-mlflow ls --all --json` in a loop: runs, failures, median / worst | "
            f"{ls_loop.runs}, {len(ls_loop.failures)}, {times[len(times) // 2]:.2f} / {times[-1]:.2f} s |"
        )
    else:
        print("| `mini-mlflow ls` loop | off (`--ls`) |")
    print(f"| sync agent | {sync_note} |")
    print("\n".join(sync_rows))
    for item in (problems + warnings_seen + (ls_loop.failures if ls_loop else []) + sync_problems)[:10]:
        print(f"\n- {item}")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    failed = problems or warnings_seen or (ls_loop is not None and ls_loop.failures) or sync_problems
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
