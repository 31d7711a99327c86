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


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds over ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def timed_after(setup: Callable[[], Any], fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Like ``timed``, with ``setup`` run untimed before each call."""
    times, out = [], None
    for _ in range(repeat):
        setup()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


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
        "from mini_mlflow._search import search_runs\n"
        "def once():\n"
        "    t = time.perf_counter()\n"
        f"    search_runs(filter_string={FILTER!r}, order_by={ORDER!r}, root={root!r})\n"
        "    return time.perf_counter() - t\n"
        "first = once()\n"
        "print(json.dumps({'first': first, 'warm': statistics.median(once() for _ in range(7))}))\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def write_big_metric(root: str, points: int) -> str:
    run_id = uuid.uuid4().hex
    rdir = os.path.join(root, "0", run_id)
    for sub in ("params", "metrics", "tags", "artifacts"):
        os.makedirs(os.path.join(rdir, sub))
    with open(os.path.join(root, "0", "meta.yaml"), "w") as f:
        f.write("format_version: 1\nexperiment_id: '0'\nname: Default\nlifecycle_stage: active\n")
    with open(os.path.join(rdir, "meta.yaml"), "w") as f:
        f.write(
            f"format_version: 1\nrun_id: {run_id}\nrun_name: long\nexperiment_id: '0'\nstatus: FINISHED\n"
            f"start_time: '{iso(T0)}'\nend_time: '{iso(T0 + points)}'\nlifecycle_stage: active\n"
        )
    with open(os.path.join(rdir, "metrics", "loss.jsonl"), "w") as f:
        chunk = 100_000
        for start in range(0, points, chunk):
            f.write(
                "".join(
                    f'{{"step":{s},"value":{_curve(s)!r},"timestamp":{T0 + s}}}\n'
                    for s in range(start, min(points, start + chunk))
                )
            )
    return run_id


def _history_rows(tmp: str, big: int) -> list[tuple[str, str, str, str]]:
    """A big metric: first and cached `get_metric_history`, a grown file, and `show` as a process."""
    from mini_mlflow import Store

    rows: list[tuple[str, str, str, str]] = []
    log(f"writing a {big:,}-point metric ...")
    long_root = os.path.join(tmp, "long")
    run_id = write_big_metric(long_root, big)
    store = Store(long_root)
    index_dir = os.path.join(long_root, ".index")

    def drop_caches() -> None:
        shutil.rmtree(index_dir, ignore_errors=True)  # no metric cache: parse the whole file

    def first_read() -> Any:
        return store.get_metric_history(run_id, "loss")

    no_cache = Store(long_root, metric_cache_bytes=1 << 62)
    hist_time, hist = timed_after(drop_caches, first_read, 3)
    assert len(hist) == big
    rows.append(
        (
            f"`get_metric_history`, {big:,} points, first read (parses the file, writes the cache)",
            f"{hist_time * 1000:.0f} ms",
            "≤ 1000 ms",
            _parser_note(),
        )
    )
    bare, _ = timed(lambda: no_cache.get_metric_history(run_id, "loss"), 3)
    rows.append(
        (
            f"`get_metric_history`, {big:,} points, with the metric cache off",
            f"{bare * 1000:.0f} ms",
            "",
            f"the parse alone; building the cache adds {max(0.0, hist_time / bare - 1) * 100:.0f}%",
        )
    )
    again, hist2 = timed(lambda: store.get_metric_history(run_id, "loss"), 5)
    assert hist2.steps == hist.steps and hist2.timestamps == hist.timestamps
    rows.append(
        (
            f"`get_metric_history`, {big:,} points, again (binary cache in `.index/metrics`)",
            f"{again * 1000:.0f} ms",
            "≤ 1000 ms",
            f"{hist_time / again:.0f}× faster than the first read",
        )
    )
    metric_file = os.path.join(long_root, "0", run_id, "metrics", "loss.jsonl")

    next_step = [big]

    def grown_read() -> Any:
        first = next_step[0]
        next_step[0] += 1000
        with open(metric_file, "a") as f:  # a run still logging: 1,000 more points each time
            f.write(
                "".join(
                    f'{{"step":{s},"value":{_curve(s)!r},"timestamp":{T0 + s}}}\n'
                    for s in range(first, first + 1000)
                )
            )
        return store.get_metric_history(run_id, "loss")

    original_size = os.path.getsize(metric_file)
    grown, _ = timed(grown_read, 3)
    os.truncate(metric_file, original_size)  # back to exactly {big} points for what follows
    rows.append(
        (
            f"`get_metric_history` after 1,000 more points were appended (~{big:,} points)",
            f"{grown * 1000:.0f} ms",
            "≤ 1000 ms",
            "cache + parse of the tail (the cache is rewritten once the tail is 1/16 of it)",
        )
    )
    from mini_mlflow import _reader

    if _reader._array_loads(1 << 20) is not json.loads:
        _reader._orjson_loads = json.loads  # the same read without the optional orjson
        plain, _ = timed_after(drop_caches, first_read, 3)
        _reader._orjson_loads = None
        rows.append(
            (
                f"`get_metric_history`, {big:,} points, first read, stdlib json only",
                f"{plain * 1000:.0f} ms",
                "≤ 1000 ms",
                f"orjson makes it {plain / hist_time:.1f}× faster; repeat reads use the cache either way",
            )
        )

    show_cold, _ = timed_after(drop_caches, cli(long_root, "show", run_id[:8]), 3)
    store.get_metric_history(run_id, "loss")  # leaves the metric cache

    def drop_run_index() -> None:
        for name in os.listdir(index_dir):
            if name != "metrics":  # drop the run index, keep the metric cache
                path = os.path.join(index_dir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)

    show_cached, _ = timed_after(drop_run_index, cli(long_root, "show", run_id[:8]), 3)
    show_warm, _ = timed(cli(long_root, "show", run_id[:8]), 3)
    rows.append(
        (
            f"`mini-mlflow show` of that run, first time (parses all {big:,} points for count/min/max)",
            f"{show_cold * 1000:.0f} ms",
            "≤ 1500 ms",
            "nothing cached: no `.index/` at all",
        )
    )
    rows.append(
        (
            "`mini-mlflow show` of that run, first time after a `get_metric_history`",
            f"{show_cached * 1000:.0f} ms",
            "≤ 1500 ms",
            "run index rebuilt from the metric cache",
        )
    )
    rows.append(
        (
            "`mini-mlflow show` of that run, again (index warm)",
            f"{show_warm * 1000:.0f} ms",
            "≤ 1500 ms",
            "",
        )
    )
    log(
        f"history first {hist_time:.3f}s again {again:.3f}s grown {grown:.3f}s; "
        f"show first {show_cold:.3f}s after read {show_cached:.3f}s warm {show_warm:.3f}s"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 runs and a 100,000-point metric")
    parser.add_argument("--history-only", action="store_true", help="only the big metric history and `show`")
    args = parser.parse_args()
    n = 1_000 if args.quick else 10_000
    big = 100_000 if args.quick else 1_000_000
    from mini_mlflow._search import search_runs

    rows: list[tuple[str, str, str, str]] = []
    tmp = tempfile.mkdtemp(prefix="bench_read_")
    try:
        if not args.history_only:
            ours = os.path.join(tmp, "mlruns")
            runs = make_runs(n, points=20)
            log(f"writing {n} runs in mini_mlflow's format ...")
            write_ours(ours, runs)

            cold, _ = timed(lambda: search_runs(filter_string=FILTER, order_by=ORDER, root=ours), 1)
            rows.append(
                (
                    f"`search_runs` filter + order, {n:,} runs, first call (builds the index)",
                    f"{cold * 1000:.0f} ms",
                    "",
                    "",
                )
            )
            fresh, _ = timed(lambda: search_runs(filter_string=FILTER, order_by=ORDER, root=ours), 1)
            note = "runs changed < 30 s ago may still be flushing: their files are re-checked"
            rows.append(
                (
                    f"`search_runs` again, all {n:,} runs written < 30 s ago",
                    f"{fresh * 1000:.0f} ms",
                    "",
                    note,
                )
            )
            backdate(ours)
            warm, found = timed(lambda: search_runs(filter_string=FILTER, order_by=ORDER, root=ours), 5)
            rows.append(
                (
                    f"`search_runs` filter + order, {n:,} runs, warm (same process that built the index)",
                    f"{warm * 1000:.1f} ms",
                    "≤ 100 ms",
                    "",
                )
            )
            other = _search_in_new_process(ours)
            rows.append(
                (
                    f"`search_runs` filter + order, {n:,} runs, in a new process (first call, then warm)",
                    f"{other['first'] * 1000:.0f} ms, then {other['warm'] * 1000:.1f} ms",
                    "≤ 100 ms",
                    "first call loads the index file",
                )
            )
            log(f"search_runs: cold {cold:.3f}s warm {warm * 1000:.1f}ms, {len(found)} found")

            ls_time, _ = timed(cli(ours, "ls"), 5)
            rows.append(
                (
                    f"`mini-mlflow ls` whole process, {n:,} runs (warm index)",
                    f"{ls_time * 1000:.0f} ms",
                    "≤ 500 ms",
                    "",
                )
            )
            ls_f, _ = timed(cli(ours, "ls", "--filter", FILTER, "--order-by", ORDER[0]), 3)
            rows.append(
                (
                    f"`mini-mlflow ls --filter ... --order-by ...`, {n:,} runs",
                    f"{ls_f * 1000:.0f} ms",
                    "≤ 500 ms",
                    "",
                )
            )
            log(f"ls: {ls_time:.3f}s, with filter {ls_f:.3f}s")

            try:
                import mlflow  # noqa: F401

                have_mlflow = True
            except ImportError:
                have_mlflow = False
            if have_mlflow:
                ml = os.path.join(tmp, "mlflow_runs")
                log(f"writing the same {n} runs in MLflow's FileStore format ...")
                write_mlflow(ml, runs)
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
                from mlflow.tracking import MlflowClient

                client = MlflowClient(tracking_uri=f"file://{ml}")
                flt = FILTER.replace("params.optimizer", "params.optimizer")
                ml_time, ml_found = timed(
                    lambda: client.search_runs(["0"], filter_string=flt, order_by=ORDER, max_results=1000),
                    1 if n > 2000 else 3,
                )
                same = [r.info.run_id for r in ml_found] == [r.run_id for r in found]
                rows.append(
                    (
                        f"MLflow `MlflowClient.search_runs`, same {n:,} runs, file store",
                        f"{ml_time * 1000:.0f} ms",
                        "",
                        f"**{ml_time / warm:.0f}×** slower than ours (warm); same result: {same}",
                    )
                )
                log(f"mlflow: {ml_time:.2f}s, {len(ml_found)} found, same={same}")
            else:
                rows.append(("MLflow `search_runs`", "not installed", "", ""))
        rows += _history_rows(tmp, big)
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

        return "orjson installed (optional fast path)"
    except ImportError:
        return "stdlib json (install orjson for the fast path)"


if __name__ == "__main__":
    main()
