"""Scale benchmark: 10,000 and 100,000 runs, copied in (no index) and warm, beside MLflow's SQLite store.

Usage: python bench/bench_scale.py [--quick] [--data DIR] [--keep]

Stores are generated once per bench run by ``scale_store.py`` (a direct writer, not the API; ``--data``
keeps them between runs). Every measure of the read side runs in a fresh process, as a user's command
would, and reports that process's time and peak RSS; "warm" means repeated calls in one process.
Prints one Markdown section to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import scale_store  # noqa: E402

FILTER = "metrics.acc > 0.5 AND params.optimizer = 'adam'"
ORDER = ["metrics.acc DESC"]
#: Seconds between full sweeps of an experiment (the index's ``SWEEP_S``): a new process started later
#: than this after the last sweep ``lstat``-s every run folder first.
SWEEP_S = 5
#: Index builds timed per store (the row gives their median).
BUILDS = 3
ENV = {**os.environ, "PYTHONPATH": ROOT, "COLUMNS": "160", "NO_COLOR": "1"}

# A child that times search_runs: the first call, then warm calls (median), as JSON on stdout.
SEARCH_CHILD = """
import json, resource, statistics, sys, time
t0 = time.perf_counter()
from mini_mlflow.read._search import search_runs
t1 = time.perf_counter()
root, flt, order, warm_n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
def once():
    t = time.perf_counter()
    found = search_runs(filter_string=flt, order_by=order, root=root)
    return time.perf_counter() - t, found
first, found = once()
warm = [once()[0] for _ in range(warm_n)]
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"import": t1 - t0, "first": first, "warm": statistics.median(warm) if warm else None,
    "ids": [r.run_id for r in found], "user": ru.ru_utime, "sys": ru.ru_stime}))
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def drop_page_cache() -> bool:
    """Drop the kernel's page cache (root only); False where not permitted."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def memory_pageout() -> str:
    """How this machine's kernel pages out idle memory on its own (DAMON's ``pageout`` action, which
    takes page-cache pages too), or "" when it does not: such a machine reads part of a "warm" store
    from the disk again, which the MB read beside each row show."""
    base = "/sys/kernel/mm/damon/admin/kdamonds"
    try:
        for kd in os.listdir(base):
            with open(f"{base}/{kd}/state") as f:
                if f.read().strip() != "on":
                    continue
            ctx = f"{base}/{kd}/contexts/0"
            with open(f"{ctx}/monitoring_attrs/intervals/aggr_us") as f:
                aggr_us = int(f.read())
            for scheme in os.listdir(f"{ctx}/schemes"):
                if not scheme.isdigit():
                    continue
                with open(f"{ctx}/schemes/{scheme}/action") as f:
                    if f.read().strip() != "pageout":
                        continue
                with open(f"{ctx}/schemes/{scheme}/access_pattern/age/min") as f:
                    idle_s = int(f.read()) * aggr_us / 1e6
                with open(f"{ctx}/schemes/{scheme}/quotas/bytes") as f:
                    quota = int(f.read())
                return (
                    f"this machine's kernel pages out memory idle for {idle_s:g} s or more (DAMON), page "
                    f"cache included, up to {quota / 2**20:.0f} MB a second"
                )
    except (OSError, ValueError):
        pass
    return ""


def measure_process(cmd: list[str]) -> tuple[float, float, str, float]:
    """Wall time, peak RSS (MB), stdout and MB read from the disk (its worker processes included)
    of one process, read with ``os.wait4`` on that very child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read().decode(), usage.ru_inblock * 512 / 1e6


def search_child(root: str, warm_n: int = 7) -> dict[str, Any]:
    cmd = [sys.executable, "-c", SEARCH_CHILD, root, FILTER, json.dumps(ORDER), str(warm_n)]
    wall, rss, out, read = measure_process(cmd)
    doc: dict[str, Any] = json.loads(out)
    doc.update(wall=wall, rss=rss, read=read)
    return doc


def ls_process(root: str) -> tuple[float, float, float]:
    cmd = [sys.executable, "-m", "mini_mlflow", "ls", "--root", root, "-e", "scale", "--limit", "20"]
    wall, rss, out, read = measure_process(cmd)
    if "run-" not in out:
        raise RuntimeError(f"ls printed no run: {out[-500:]}")
    return wall, rss, read


def du_mb(path: str, apparent: bool = False) -> float:
    args = ["du", "-s", "-B1"] + (["--apparent-size"] if apparent else []) + [path]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0]) / 1e6


def ms(seconds: float | None) -> str:
    return (
        "–"
        if seconds is None
        else f"{seconds * 1000:,.0f} ms"
        if seconds >= 0.1
        else f"{seconds * 1000:.1f} ms"
    )


Row = tuple[str, str, str, str]


def scale_rows(root: str, n: int, cold: bool) -> tuple[list[Row], list[str]]:
    """One store of ``n`` runs: no index (cold and warm page cache), then warm; ``ls`` as a process."""
    index = os.path.join(root, ".index")
    rows: list[Row] = []
    shutil.rmtree(index, ignore_errors=True)
    # The store was just written: its dirty pages (5.8 GB at 100,000 runs) reach the disk first, or the
    # kernel's writeback runs during the builds (their floor loop took 13.2 s then, 9.5-12 s after).
    os.sync()
    if cold:
        dropped = drop_page_cache()
        first = search_child(root, warm_n=0)
        why = "page cache dropped" if dropped else "page cache NOT dropped (not permitted here)"
        cpu = f"CPU {first['user']:.2f} s user + {first['sys']:.2f} s system"
        rows.append(
            (f"{n:,} runs copied in, index absent, {why}: first `search_runs`", ms(first["first"]),
             "", f"whole process {ms(first['wall'])}; {cpu}")
        )  # fmt: skip
        shutil.rmtree(index, ignore_errors=True)
    # Builds with the files in the page cache: one to bring them in, then BUILDS timed (the median is
    # the row; on this VM one build moves by ±30% between sittings, see ``memory_pageout``).
    search_child(root, warm_n=0)
    builds = []
    for _ in range(BUILDS):
        shutil.rmtree(index, ignore_errors=True)
        builds.append(search_child(root, warm_n=0))
    first = sorted(builds, key=lambda b: b["first"])[BUILDS // 2]
    # The rows that need the last sweep < SWEEP_S ago come first; the floor loop takes seconds. A build
    # records its sweep at its start, over SWEEP_S ago by its end at 100,000 runs: one read sweeps again.
    search_child(root, warm_n=0)
    fresh = search_child(root, warm_n=7)
    ls_wall, ls_rss, ls_read = ls_process(root)
    floor = scale_store.syscall_floor(root)
    target = "≤ 1.5 s" if n <= 10_000 else "≤ 10 s"
    rows.append(
        (f"{n:,} runs copied in, index absent, page cache warm: first `search_runs` (builds the index)",
         ms(first["first"]), target,
         f"median of {BUILDS} builds: {', '.join(ms(b['first']) for b in builds)}, reading "
         f"{', '.join(str(round(b['read'])) for b in builds)} MB from the disk; "
         f"CPU {first['user']:.2f} s user + {first['sys']:.2f} s system (whole process, the median build); "
         f"peak RSS {first['rss']:.0f} MB")
    )  # fmt: skip
    rows.append(
        (f"{n:,} runs: the floor, a loop making only the build's system calls (no parsing, no index)",
         ms(floor[0]), "", f"CPU {floor[1]:.2f} s user + {floor[2]:.2f} s system")
    )  # fmt: skip
    size, store = du_mb(index), du_mb(root)
    rows.append(
        (f"derived index on disk, {n:,} runs", f"{size:.1f} MB", "≤ 10% of the store",
         f"{size / store * 100:.2f}% of the store's {store:,.0f} MB on disk "
         f"({du_mb(root, apparent=True):,.0f} MB apparent); {_count_files(index)} files in `.index/`")
    )  # fmt: skip
    target_first, target_warm = ("≤ 200 ms", "≤ 20 ms") if n > 10_000 else ("", "")
    rows.append(
        (f"{n:,} runs: first `search_runs` in a new process, last full sweep < {SWEEP_S} s ago",
         ms(fresh["first"]), target_first,
         f"whole process {ms(fresh['wall'])} (imports {ms(fresh['import'])}), peak RSS "
         f"{fresh['rss']:.0f} MB, {fresh['read']:.1f} MB read from the disk")
    )  # fmt: skip
    rows.append((f"{n:,} runs: `search_runs` warm (same process)", ms(fresh["warm"]), target_warm, ""))
    target_ls = "≤ 400 ms, ≤ 100 MB" if n > 10_000 else ""
    rows.append(
        (f"{n:,} runs: `mini-mlflow ls -e scale --limit 20`, whole process, last sweep < {SWEEP_S} s ago",
         f"{ms(ls_wall)}, {ls_rss:.0f} MB peak RSS", target_ls, f"{ls_read:.1f} MB read from the disk")
    )  # fmt: skip
    time.sleep(SWEEP_S + 0.5)
    late = search_child(root, warm_n=0)
    rows.append(
        (f"{n:,} runs: first `search_runs` in a new process, last full sweep > {SWEEP_S} s ago",
         ms(late["first"]), target_first,
         "a full sweep first: one `lstat` per run folder (a meta.yaml replaced by hand is seen within "
         f"{SWEEP_S} s: docs/reliability.md); {late['read']:.1f} MB read from the disk")
    )  # fmt: skip
    time.sleep(SWEEP_S + 0.5)
    ls_wall, ls_rss, ls_read = ls_process(root)
    rows.append(
        (f"{n:,} runs: `mini-mlflow ls -e scale --limit 20`, whole process, last sweep > {SWEEP_S} s ago",
         f"{ms(ls_wall)}, {ls_rss:.0f} MB peak RSS", target_ls, f"{ls_read:.1f} MB read from the disk")
    )  # fmt: skip
    log(
        f"{n}: build {first['first']:.2f}s, new process {fresh['first'] * 1000:.0f} ms, warm "
        f"{fresh['warm'] * 1000:.1f} ms, late {late['first'] * 1000:.0f} ms, ls {ls_wall:.2f}s {ls_rss:.0f}MB"
    )
    return rows, fresh["ids"]


def _count_files(folder: str) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


MLFLOW_CHILD = """
import json, os, sys, time
os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"
from mlflow.tracking import MlflowClient
db, exp, flt, order = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = MlflowClient(tracking_uri=f"sqlite:///{db}")
times = []
for _ in range(2):
    t = time.perf_counter()
    found = client.search_runs([exp], filter_string=flt, order_by=order, max_results=1000)
    times.append(time.perf_counter() - t)
print(json.dumps({"first": times[0], "warm": times[1], "ids": [r.info.run_id for r in found]}))
"""


def mlflow_row(tmp: str, n: int, ours: list[str], our_warm: float) -> Row:
    try:
        import mlflow
    except ImportError:
        return (f"MLflow SQLite store `search_runs`, {n:,} runs", "mlflow not installed", "", "")
    db = os.path.join(tmp, f"mlflow-{n}.db")
    log(f"writing {n:,} runs into MLflow's SQLite store ...")
    exp = scale_store.write_mlflow_sqlite(db, n, log)
    _, _, out, _ = measure_process([sys.executable, "-c", MLFLOW_CHILD, db, exp, FILTER, json.dumps(ORDER)])
    doc = json.loads(out)
    same = doc["ids"] == ours
    log(f"mlflow sqlite: first {doc['first']:.2f}s warm {doc['warm']:.2f}s same={same}")
    return (
        f"MLflow {mlflow.__version__} SQLite store, `MlflowClient.search_runs`, same {n:,} runs, same filter",
        f"{ms(doc['first'])} first, {ms(doc['warm'])} again",
        "",
        f"{doc['warm'] / our_warm:,.0f}× our warm search; same 1,000 runs in the same order: {same}",
    )


def format_rows(root: str, n: int) -> list[Row]:
    """SQLite beside the columnar file, on the same runs (``index_formats.py``; docs/format.md)."""
    import index_formats

    log("the two index formats side by side ...")
    got = index_formats.compare(root)
    sql, cols = got["sqlite"], got["columnar"]

    def pair(what: str, key: str) -> str:
        return f"SQLite {ms(sql[what][key])}, columnar {ms(cols[what][key])}"

    rss = f"peak RSS {sql['search']['rss']:.0f} / {cols['search']['rss']:.0f} MB"
    return [
        (f"index formats, {n:,} runs: write every run",
         f"SQLite {sql['write']:.2f} s, columnar {cols['write']:.2f} s",
         "", f"on disk: SQLite {sql['size'] / 1e6:.0f} MB, columnar {cols['size'] / 1e6:.0f} MB"),
        (f"index formats, {n:,} runs: filter + order, 1,000 records, first in a new process",
         pair("search", "first"), "", f"then warm: {pair('search', 'warm')}; {rss}"),
        (f"index formats, {n:,} runs: count all, build the newest 20 (`ls`), first in a new process",
         pair("ls", "first"), "", f"then warm: {pair('ls', 'warm')}"),
    ]  # fmt: skip


WRITER_CHILD = """
import json, statistics, sys, time
import mini_mlflow as mm
root, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
import scale_store
mm.set_tracking_dir(root)
t = time.perf_counter()
for i in range(n):
    s = scale_store.run_spec(i)
    with mm.start_run(run_name=s["name"]):
        mm.log_params(s["params"])
        for step in range(scale_store.POINTS):
            mm.log_metrics({k: pts[step][1] for k, pts in s["metrics"].items()}, step=step)
wrote = time.perf_counter() - t
from mini_mlflow.read._search import search_runs
def once():
    t = time.perf_counter()
    search_runs(filter_string=sys.argv[4], order_by=json.loads(sys.argv[5]), root=root)
    return time.perf_counter() - t
first = once()
later = [once() for _ in range(5)]
print(json.dumps({"wrote": wrote, "first": first, "later": statistics.median(later), "worst": max(later)}))
"""


def writer_rows(tmp: str, n: int) -> list[Row]:
    root = os.path.join(tmp, f"written-{n}")
    log(f"writing {n:,} runs through the API in one process, then searching there ...")
    env_fsync = {"MINI_MLFLOW_FSYNC": "never"}
    cmd = [sys.executable, "-c", WRITER_CHILD, root, str(n), HERE, FILTER, json.dumps(ORDER)]
    done = subprocess.run(cmd, env={**ENV, **env_fsync}, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    doc = json.loads(done.stdout)
    shutil.rmtree(root, ignore_errors=True)
    return [
        (f"the process that just wrote {n:,} runs (API, `MINI_MLFLOW_FSYNC=never`): first search",
         ms(doc["first"]), "≤ 1.5 s" if n >= 10_000 else "", f"writing them took {doc['wrote']:.0f} s"),
        ("the same process: later searches (median of 5)", ms(doc["later"]), "≤ 50 ms" if n >= 10_000 else "",
         f"worst {ms(doc['worst'])}"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 and 5,000 runs")
    parser.add_argument("--data", default="", help="keep generated stores here and reuse them")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the training-loop overhead")
    args = parser.parse_args()
    small, big = (1_000, 5_000) if args.quick else (10_000, 100_000)
    tmp = args.data or tempfile.mkdtemp(prefix="bench_scale_")
    os.makedirs(tmp, exist_ok=True)
    rows: list[Row] = []
    try:
        for n in (small, big):
            root = os.path.join(tmp, f"s{n}")
            t = time.perf_counter()
            scale_store.write_store(root, n, log)
            log(f"store of {n:,} runs ready ({time.perf_counter() - t:.0f} s)")
            found, ids = scale_rows(root, n, cold=n == small)
            rows += found
        warm = search_child(os.path.join(tmp, f"s{big}"), warm_n=7)["warm"]
        rows.append(mlflow_row(tmp, big, ids, warm))
        rows += format_rows(os.path.join(tmp, f"s{big}"), big)
        rows += writer_rows(tmp, small)
        if not args.skip_loop:
            from loop_overhead import overhead_row

            rows.append(overhead_row(quick=args.quick))
    finally:
        if not args.data:
            shutil.rmtree(tmp, ignore_errors=True)
    print("## Scale: 100,000 runs and freshly copied stores\n")
    print(
        f"One experiment, every run with 5 params and 3 metrics of {scale_store.POINTS} points, written "
        "straight to disk and dated an hour back (a store copied in with `rsync -a`); filter "
        f"`{FILTER}`, order `{ORDER[0]}`, 1,000 results. Every read runs in a new process; peak RSS is "
        f"that process's. Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} (a shared machine: absolute times vary).\n"
    )
    pageout = memory_pageout()
    if pageout:
        print(
            f'Note: {pageout}. So "page cache warm" lasts only so long here: a read a minute after the '
            "last one reads part of the store's files (or of the index) from the disk again. The MB each "
            "measured process read from the disk are in its note.\n"
        )
    print("| case | measured | target | note |")
    print("|---|---|---|---|")
    for what, value, target, note in rows:
        print(f"| {what} | {value} | {target} | {note} |")


if __name__ == "__main__":
    main()
