"""Read-side benchmark: search_runs, `mini-mlflow ls`/`show` as processes, a 1M-point history, and MLflow.

Usage: python bench/bench_read.py [--quick]

Generates the W1 workload (10,000 runs × 5 params × 3 metrics; 1,000 with --quick) directly on disk in
mini_mlflow's format and, when mlflow is importable, the same runs in MLflow's FileStore format, then
times both side by side. Prints one Markdown section to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FILTER = "metrics.acc > 0.5 AND params.optimizer = 'adam'"
ORDER = ["metrics.acc DESC"]
T0 = 1763900000000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def iso(ms: int) -> str:
    secs, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


def make_runs(n: int, points: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    runs = []
    for i in range(n):
        lr = rng.choice([0.1, 0.03, 0.01, 0.003, 0.001])
        params = {
            "lr": lr,
            "batch_size": rng.choice([32, 64, 128]),
            "optimizer": rng.choice(["adam", "sgd", "adamw"]),
            "layers": rng.randint(2, 12),
            "dropout": rng.choice([0.0, 0.1, 0.2]),
        }
        final = rng.uniform(0.3, 0.95)
        metrics = {}
        for key, f in (
            ("acc", lambda s, final=final: final * (1 - math.exp(-3 * (s + 1) / points))),
            ("loss", lambda s, final=final: (1 - final) + math.exp(-3 * (s + 1) / points)),
            ("val_acc", lambda s, final=final: final * 0.97 * (1 - math.exp(-3 * (s + 1) / points))),
        ):
            metrics[key] = [(s, f(s), T0 + i * 60_000 + s * 100) for s in range(points)]
        runs.append(
            {
                "run_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                "name": f"run-{i}",
                "start": T0 + i * 60_000,
                "end": T0 + i * 60_000 + points * 100,
                "params": params,
                "metrics": metrics,
            }
        )
    return runs


def write_ours(root: str, runs: list[dict[str, Any]]) -> None:
    exp = os.path.join(root, "0")
    os.makedirs(exp)
    with open(os.path.join(exp, "meta.yaml"), "w") as f:
        f.write(
            f"format_version: 1\nexperiment_id: '0'\nname: Default\nlifecycle_stage: active\n"
            f"creation_time: '{iso(T0)}'\nlast_update_time: '{iso(T0)}'\n"
        )
    for r in runs:
        rdir = os.path.join(exp, r["run_id"])
        for sub in ("params", "metrics", "tags", "artifacts"):
            os.makedirs(os.path.join(rdir, sub))
        with open(os.path.join(rdir, "meta.yaml"), "w") as f:
            f.write(
                f"format_version: 1\nrun_id: {r['run_id']}\nrun_name: {r['name']}\nexperiment_id: '0'\n"
                f"status: FINISHED\nstart_time: '{iso(r['start'])}'\nend_time: '{iso(r['end'])}'\n"
                "user: bench\nsource:\n  name: train.py\n  git_commit: null\nlifecycle_stage: active\n"
                "parent_run_id: null\n"
            )
        for k, v in r["params"].items():
            with open(os.path.join(rdir, "params", k + ".json"), "w") as f:
                f.write(json.dumps(v) + "\n")
        for k, pts in r["metrics"].items():
            with open(os.path.join(rdir, "metrics", k + ".jsonl"), "w") as f:
                f.write("".join(f'{{"step":{s},"value":{v!r},"timestamp":{t}}}\n' for s, v, t in pts))


def write_mlflow(root: str, runs: list[dict[str, Any]]) -> None:
    """The same runs in MLflow's FileStore layout (see docs: meta.yaml, params/, metrics/, tags/)."""
    os.makedirs(os.path.join(root, ".trash"))
    os.makedirs(os.path.join(root, "models"))
    exp = os.path.join(root, "0")
    os.makedirs(exp)
    with open(os.path.join(exp, "meta.yaml"), "w") as f:
        f.write(
            f"artifact_location: file://{exp}\nexperiment_id: '0'\nlifecycle_stage: active\nname: Default\n"
            f"creation_time: {T0}\nlast_update_time: {T0}\n"
        )
    for r in runs:
        rdir = os.path.join(exp, r["run_id"])
        for sub in ("params", "metrics", "tags", "artifacts"):
            os.makedirs(os.path.join(rdir, sub))
        with open(os.path.join(rdir, "meta.yaml"), "w") as f:
            f.write(
                f"artifact_uri: file://{rdir}/artifacts\nend_time: {r['end']}\nentry_point_name: ''\n"
                f"experiment_id: '0'\nlifecycle_stage: active\nrun_id: {r['run_id']}\nrun_name: {r['name']}\n"
                f"run_uuid: {r['run_id']}\nsource_name: ''\nsource_type: 4\nsource_version: ''\n"
                f"start_time: {r['start']}\nstatus: 3\ntags: []\nuser_id: bench\n"
            )
        for k, v in r["params"].items():
            with open(os.path.join(rdir, "params", k), "w") as f:
                f.write(str(v))
        with open(os.path.join(rdir, "tags", "mlflow.runName"), "w") as f:
            f.write(r["name"])
        for k, pts in r["metrics"].items():
            with open(os.path.join(rdir, "metrics", k), "w") as f:
                f.write("".join(f"{t} {v!r} {s}\n" for s, v, t in pts))


def backdate(root: str, seconds: float = 3600) -> None:
    """Set every run folder's mtime an hour back: a store of finished runs, as a user's would be.

    Runs changed in the last 30 s are re-checked file by file on every read (another process may still
    be flushing); a freshly generated store would measure only that path, measured separately above.
    """
    stamp = time.time() - seconds
    for exp in os.listdir(root):
        exp_dir = os.path.join(root, exp)
        if exp.isdigit():
            for name in os.listdir(exp_dir):
                path = os.path.join(exp_dir, name)
                if os.path.isdir(path):
                    os.utime(path, (stamp, stamp))


Row = tuple[str, str, str, str]


def timed(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """Median seconds over ``repeat`` calls of ``fn`` (``setup`` runs untimed before each), last result."""
    times, out = [], None
    for _ in range(repeat):
        if setup is not None:
            setup()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def ms(seconds: float, digits: int = 0) -> str:
    return f"{seconds * 1000:.{digits}f} ms"


def cli(root: str, *args: str) -> Callable[[], subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": ROOT, "COLUMNS": "160", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "mini_mlflow", "--root", root, *args]

    def run() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{cmd} failed: {done.stderr}")
        return done

    return run


def _curve(step: int) -> float:
    return math.exp(-step / 2e5) + 0.05 * math.sin(step / 500)


def _search_in_new_process(root: str) -> dict[str, float]:
    """Time search_runs in a fresh interpreter: the first call (index read from disk), then warm calls."""
    code = (
        "import json, statistics, sys, time\n"
        "from mini_mlflow.read._search import search_runs\n"
        "def once():\n"
        "    t = time.perf_counter()\n"
        f"    search_runs(filter_string={FILTER!r}, order_by={ORDER!r}, root={root!r})\n"
        "    return time.perf_counter() - t\n"
        "first = once()\n"
        "warm = statistics.median(once() for _ in range(7))\n"
        "from mini_mlflow.read import _index\n"
        "_index.SWEEP_S = 0  # every call a full sweep (lstat of every run folder)\n"
        "swept = statistics.median(once() for _ in range(7))\n"
        "print(json.dumps({'first': first, 'warm': warm, 'swept': swept}))\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _points(first: int, count: int) -> str:
    return "".join(
        f'{{"step":{s},"value":{_curve(s)!r},"timestamp":{T0 + s}}}\n' for s in range(first, first + count)
    )


def write_big_metric(root: str, points: int, status: str = "FINISHED") -> str:
    run_id = uuid.uuid4().hex
    rdir = os.path.join(root, "0", run_id)
    for sub in ("params", "metrics", "tags", "artifacts"):
        os.makedirs(os.path.join(rdir, sub))
    with open(os.path.join(root, "0", "meta.yaml"), "w") as f:
        f.write("format_version: 1\nexperiment_id: '0'\nname: Default\nlifecycle_stage: active\n")
    with open(os.path.join(rdir, "meta.yaml"), "w") as f:
        f.write(
            f"format_version: 1\nrun_id: {run_id}\nrun_name: long\nexperiment_id: '0'\nstatus: {status}\n"
            f"start_time: '{iso(T0)}'\nend_time: '{iso(T0 + points)}'\nlifecycle_stage: active\n"
        )
    with open(os.path.join(rdir, "metrics", "loss.jsonl"), "w") as f:
        for start in range(0, points, 100_000):
            f.write(_points(start, min(points, start + 100_000) - start))
    return run_id


def _search_rows(tmp: str, n: int) -> tuple[list[Row], list[dict[str, Any]], Any, float]:
    """search_runs (first call, fresh files, warm, new process) and `ls` as a process, on W1."""
    from mini_mlflow.read._search import search_runs

    ours = os.path.join(tmp, "mlruns")
    runs = make_runs(n, points=20)
    log(f"writing {n} runs in mini_mlflow's format ...")
    write_ours(ours, runs)

    def search() -> Any:
        return search_runs(filter_string=FILTER, order_by=ORDER, root=ours)

    cold, _ = timed(search, 1)
    fresh, _ = timed(search, 1)
    backdate(ours)
    timed(search, 1)  # the backdated folders are re-checked once (untimed)
    warm, found = timed(search, 7)
    from mini_mlflow.read import _index

    sweep_s, _index.SWEEP_S = _index.SWEEP_S, 0  # every call a full sweep
    swept, _ = timed(search, 7)
    _index.SWEEP_S = sweep_s
    other = _search_in_new_process(ours)
    ls_time, _ = timed(cli(ours, "ls"), 5)
    ls_f, _ = timed(cli(ours, "ls", "--filter", FILTER, "--order-by", ORDER[0]), 3)
    log(f"search_runs: cold {cold:.3f}s warm {warm * 1000:.1f}ms, {len(found)} found; ls {ls_time:.3f}s")
    rows: list[Row] = [
        (f"`search_runs` filter + order, {n:,} runs, first call (builds the index)", ms(cold), "", ""),
        (
            f"`search_runs` again, all {n:,} runs written < 30 s ago",
            ms(fresh),
            "",
            "runs changed < 30 s ago may still be flushing: their files are re-checked (unchanged: not read)",
        ),
        (
            f"`search_runs` filter + order, {n:,} runs, warm (same process that built the index)",
            ms(warm, 1),
            "≤ 100 ms",
            f"between full sweeps (runs settled at the last one are not `lstat`-ed); "
            f"{warm / other['warm']:.2f}× the new process's warm time",
        ),
        (
            f"`search_runs` filter + order, {n:,} runs, warm, each call a full sweep (same process)",
            ms(swept, 1),
            "≤ 100 ms",
            "what one call in 5 s pays at most: an `lstat` of every run folder",
        ),
        (
            f"`search_runs` filter + order, {n:,} runs, in a new process (first call, then warm)",
            f"{ms(other['first'])}, then {ms(other['warm'], 1)}",
            "≤ 100 ms",
            f"first call loads the index file; warm with a full sweep each call: {ms(other['swept'], 1)}",
        ),
        (f"`mini-mlflow ls` whole process, {n:,} runs (warm index)", ms(ls_time), "≤ 500 ms", ""),
        (f"`mini-mlflow ls --filter ... --order-by ...`, {n:,} runs", ms(ls_f), "≤ 500 ms", ""),
    ]
    return rows, runs, found, warm


def _mlflow_row(tmp: str, n: int, runs: list[dict[str, Any]], found: Any, warm: float) -> Row:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return ("MLflow `search_runs`", "not installed", "", "")
    ml = os.path.join(tmp, "mlflow_runs")
    log(f"writing the same {n} runs in MLflow's FileStore format ...")
    write_mlflow(ml, runs)
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{ml}")
    ml_time, ml_found = timed(
        lambda: client.search_runs(["0"], filter_string=FILTER, order_by=ORDER, max_results=1000),
        1 if n > 2000 else 3,
    )
    same = [r.info.run_id for r in ml_found] == [r.run_id for r in found]
    log(f"mlflow: {ml_time:.2f}s, {len(ml_found)} found, same={same}")
    return (
        f"MLflow `MlflowClient.search_runs`, same {n:,} runs, file store",
        ms(ml_time),
        "",
        f"**{ml_time / warm:.0f}×** slower than ours (warm); same result: {same}",
    )


def _history_rows(tmp: str, big: int) -> list[Row]:
    """A big metric: first and cached `get_metric_history`, a grown file, and `show` as a process."""
    from mini_mlflow import Store
    from mini_mlflow.read import _metric_parse

    log(f"writing a {big:,}-point metric ...")
    long_root = os.path.join(tmp, "long")
    run_id = write_big_metric(long_root, big)
    store = Store(long_root)
    no_cache = Store(long_root, metric_cache_bytes=1 << 62)
    index_dir = os.path.join(long_root, ".index")
    metric_file = os.path.join(long_root, "0", run_id, "metrics", "loss.jsonl")

    def drop_caches() -> None:
        shutil.rmtree(index_dir, ignore_errors=True)  # no metric cache: parse the whole file

    def drop_run_index() -> None:
        for name in os.listdir(index_dir):
            if name != "metrics":  # drop the run index, keep the metric cache
                path = os.path.join(index_dir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)

    def first_read() -> Any:
        return store.get_metric_history(run_id, "loss")

    next_step = [big]

    def grown_read() -> Any:
        with open(metric_file, "a") as f:  # a run still logging: 1,000 more points each time
            f.write(_points(next_step[0], 1000))
        next_step[0] += 1000
        return store.get_metric_history(run_id, "loss")

    first, hist = timed(first_read, 5, setup=drop_caches)
    assert len(hist) == big
    bare, _ = timed(lambda: no_cache.get_metric_history(run_id, "loss"), 5)
    again, hist2 = timed(first_read, 5)
    assert hist2.steps == hist.steps and hist2.timestamps == hist.timestamps
    original_size = os.path.getsize(metric_file)
    grown, _ = timed(grown_read, 3)
    os.truncate(metric_file, original_size)  # back to exactly {big} points for what follows
    rows: list[Row] = [
        (
            f"`get_metric_history`, {big:,} points, first read (parses the file, writes the cache)",
            ms(first),
            "≤ 1000 ms",
            _parser_note(),
        ),
        (
            f"`get_metric_history`, {big:,} points, with the metric cache off",
            ms(bare),
            "",
            f"the parse alone; building the cache adds {max(0.0, first / bare - 1) * 100:.0f}%",
        ),
        (
            f"`get_metric_history`, {big:,} points, again (binary cache in `.index/metrics`)",
            ms(again),
            "≤ 1000 ms",
            f"{first / again:.0f}× faster than the first read",
        ),
        (
            f"`get_metric_history` after 1,000 more points were appended (~{big:,} points)",
            ms(grown),
            "≤ 1000 ms",
            "cache + parse of the tail (the cache is rewritten once the tail is 1/16 of it)",
        ),
    ]
    if _metric_parse._array_loads(1 << 20) is not json.loads:
        _metric_parse._orjson_loads = json.loads  # the same read without orjson
        plain, _ = timed(first_read, 3, setup=drop_caches)
        _metric_parse._orjson_loads = None
        rows.append(
            (
                f"`get_metric_history`, {big:,} points, first read, stdlib json only",
                ms(plain),
                "",
                "the fallback where orjson (a dependency) has no wheel; orjson makes it "
                f"{plain / first:.1f}× faster; repeat reads use the cache either way",
            )
        )
    show = cli(long_root, "show", run_id[:8])
    show_cold, _ = timed(show, 3, setup=drop_caches)
    store.get_metric_history(run_id, "loss")  # leaves the metric cache
    show_cached, _ = timed(show, 3, setup=drop_run_index)
    show_warm, _ = timed(show, 3)
    rows += [
        (
            f"`mini-mlflow show` of that run, first time (parses all {big:,} points for count/min/max)",
            ms(show_cold),
            "≤ 1500 ms",
            "nothing cached: no `.index/` at all",
        ),
        (
            "`mini-mlflow show` of that run, first time after a `get_metric_history`",
            ms(show_cached),
            "≤ 1500 ms",
            "run index rebuilt from the metric cache",
        ),
        ("`mini-mlflow show` of that run, again (index warm)", ms(show_warm), "≤ 1500 ms", ""),
    ]
    log(
        f"history first {first:.3f}s again {again:.3f}s grown {grown:.3f}s; "
        f"show first {show_cold:.3f}s after read {show_cached:.3f}s warm {show_warm:.3f}s"
    )
    return rows


def _live_rows(tmp: str, runs: int, start_points: int, grow_mb: int) -> list[Row]:
    """`ls --all` beside live runs whose metric files grow by ``grow_mb`` MB each between calls."""
    from mini_mlflow.read import _index

    root = os.path.join(tmp, "live")
    ids = [write_big_metric(root, start_points, status="RUNNING") for _ in range(runs)]
    files = [os.path.join(root, "0", run_id, "metrics", "loss.jsonl") for run_id in ids]
    per_mb = os.path.getsize(files[0]) / start_points / 1e6  # MB per point
    grow_points = int(grow_mb / per_mb)
    steps = [start_points] * runs
    log(f"live: {runs} runs of {start_points:,} points, each growing {grow_points:,} points between calls")

    def grow() -> None:
        for i, path in enumerate(files):
            with open(path, "a") as f:
                f.write(_points(steps[i], grow_points))
            steps[i] += grow_points

    ls_all = cli(root, "ls", "--all", "--json")
    ls_all()  # first listing: the index notes where each file stands
    live, _ = timed(ls_all, 5, setup=grow)

    def full_look() -> Any:  # what `show` does: every new point parsed for count/min/max
        _index._MEMORY.clear()
        return [_index.metric_summary(root, "0", run_id) for run_id in ids]

    full_look()  # catches up with everything the listings left behind (untimed)
    full, _ = timed(full_look, 3, setup=grow)
    log(f"live ls {live:.3f}s; full look {full:.3f}s")
    return [
        (
            f"`mini-mlflow ls --all --json` beside {runs} live runs, each metric file grown by "
            f"{grow_mb} MB (~{grow_points:,} points) since the last call",
            ms(live),
            "≤ 1000 ms",
            "a backlog over 1 MiB is not parsed by a listing: only each file's last point is read",
        ),
        (
            f"the same growth read in full ({runs} runs × {grow_mb} MB, what `show` parses)",
            ms(full),
            "",
            f"what each `ls` parsed before it read only the tail: {full / live:.1f}× the listing",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 runs and a 100,000-point metric")
    parser.add_argument("--history-only", action="store_true", help="only the big metric history and `show`")
    args = parser.parse_args()
    n = 1_000 if args.quick else 10_000
    big = 100_000 if args.quick else 1_000_000
    rows: list[Row] = []
    tmp = tempfile.mkdtemp(prefix="bench_read_")
    try:
        if not args.history_only:
            search_rows, runs, found, warm = _search_rows(tmp, n)
            rows += search_rows
            rows.append(_mlflow_row(tmp, n, runs, found, warm))
        rows += _history_rows(tmp, big)
        if not args.history_only:
            rows += _live_rows(tmp, runs=4, start_points=big // 10, grow_mb=8 if args.quick else 16)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("## Reading: search, `ls`, `show` and metric histories\n")
    print(
        f"W1 store: {n:,} runs × 5 params × 3 metrics (20 points each), generated on disk, "
        f"then dated an hour back (finished runs); filter `{FILTER}`, order `{ORDER[0]}`. Medians; Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
        "(a shared machine: absolute times vary, ratios hold).\n"
    )
    print("| what | time | target | note |")
    print("|---|---|---|---|")
    for what, t, target, note in rows:
        print(f"| {what} | {t} | {target} | {note} |")


def _parser_note() -> str:
    try:
        import orjson  # noqa: F401

        return "orjson (a dependency); canonical lines parsed as one flat array of numbers"
    except ImportError:
        return "stdlib json (orjson missing); canonical lines parsed as one flat array of numbers"


if __name__ == "__main__":
    main()
