"""Soak: SIGKILL a GIL-bound training loop at random moments, many times in a row, and check the store.

Each round starts a child that logs several metrics at full speed from a pure-Python loop (the GIL is
almost never free, the default flush interval), kills it with SIGKILL after a random delay, and then
checks every file of the run: every complete line of every metric file parses, only a last line
without its newline may be torn, steps have no gaps, meta.yaml/params/tags/heartbeat parse, and the
newest point on disk is at most one flush interval (plus scheduling slack) older than the kill.

    python bench/soak_kill.py [--kills 200] [--quick]

Run by ``make soak`` (not ``make bench``); prints one Markdown section.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import mini_mlflow as mm  # noqa: E402
from mini_mlflow._config import resolve  # noqa: E402
from mini_mlflow.read._reader import parse_metric_lines  # noqa: E402
from mini_mlflow.store._layout import ms_from_iso  # noqa: E402

CHILD = """
import sys, mini_mlflow as mm
keys = int(sys.argv[1])
run = mm.start_run(run_name="soak-kill")
mm.log_params({"keys": keys, "lr": 0.001})
mm.set_tag("phase", "soak")
print(run.run_id, flush=True)
names = [f"m{k:02d}" for k in range(keys)]
i = 0
while True:
    x = 0
    for j in range(200):  # pure-Python work between steps: the GIL is almost never free
        x += j * j
    mm.log_metrics({name: float(i) for name in names}, step=i)
    i += 1
    if i == 2000:
        print("logging", flush=True)
"""

#: Scheduling slack on top of the flush interval: the kill, the wake-up of the writer, a busy machine.
SLACK_MS = 150


def check_run(root: Path, run_id: str, keys: int, killed_ms: float) -> tuple[list[str], dict[str, float]]:
    """Problems found in the run's files, and numbers: points, torn lines, lag of the newest point."""
    problems: list[str] = []
    store = mm.Store(root)
    rdir = Path(store.find_run(run_id))
    meta = store.load_meta(str(rdir))
    if "broken" in meta:
        problems.append(f"meta.yaml: {meta['broken']}")
    for kind in ("params", "tags"):
        for path in (rdir / kind).glob("*.json"):
            try:
                json.loads(path.read_bytes())
            except ValueError as exc:
                problems.append(f"{path.name}: {exc}")
    for path in rdir.glob(".heartbeat-*"):
        try:
            json.loads(path.read_bytes())
        except ValueError as exc:
            problems.append(f"{path.name}: {exc}")
    files = sorted((rdir / "metrics").glob("*.jsonl"))
    names = {f"m{k:02d}.jsonl" for k in range(keys)}
    if not {p.name for p in files} <= names:
        problems.append(f"unexpected metric files: {sorted(p.name for p in files)}")
    # A key with no file yet lost everything since the run started: that too must be under one
    # flush interval (a kill right after the first steps, before the first write).
    start_ms = meta.get("start_time")
    start = float(ms_from_iso(start_ms) or 0) if isinstance(start_ms, str) else 0.0
    points, torn = 0, 0
    oldest_last = start if len(files) < keys else float("inf")
    for path in files:
        data = path.read_bytes()
        lines = data.split(b"\n")
        for n, line in enumerate(lines[:-1]):
            try:
                json.loads(line)
            except ValueError:
                problems.append(f"{path.name}: line {n + 1} does not parse")
        torn += 1 if lines[-1] else 0
        history = parse_metric_lines(data)
        if history.steps != list(range(len(history.steps))):
            problems.append(f"{path.name}: steps have gaps")
        points += len(history.steps)
        # the key whose newest point is oldest decides: every key may lose only the last interval
        oldest_last = min(oldest_last, history.timestamps[-1] if history.timestamps else 0)
    lag = killed_ms - oldest_last
    return problems, {"points": points, "torn": torn, "lag": lag, "early": float(len(files) < keys)}


def one_round(work: Path, keys: int, rng: random.Random) -> tuple[list[str], dict[str, float]]:
    root = work / "mlruns"
    env = dict(os.environ)  # MINI_MLFLOW_FLUSH_INTERVAL etc. reach the child, if set
    env.update(PYTHONPATH=str(ROOT), MINI_MLFLOW_TRACKING_DIR=str(root))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(keys)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        ready = proc.stdout.readline().strip()
        if not run_id or ready != "logging":
            err = proc.stderr.read() if proc.stderr else ""
            return [f"child did not start: {err.strip()[-300:]}"], {}
        time.sleep(rng.uniform(0.0, 1.0))
        killed_ms = time.time() * 1000
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        return check_run(root, run_id, keys, killed_ms)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200, help="rounds (default 200)")
    parser.add_argument("--keys", type=int, default=8, help="metric keys logged per step (default 8)")
    parser.add_argument("--quick", action="store_true", help="20 rounds, for a smoke run")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    kills = 20 if args.quick else args.kills
    interval_ms = resolve().flush_interval * 1000  # the default unless MINI_MLFLOW_FLUSH_INTERVAL is set
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    failures: list[tuple[int, str]] = []
    lags: list[float] = []
    points: list[float] = []
    torn_rounds = 0
    late = 0
    early = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mm-soak-kill-") as tmp:
        for n in range(kills):
            problems, numbers = one_round(Path(tmp), args.keys, rng)
            if numbers:
                lags.append(numbers["lag"])
                points.append(numbers["points"])
                torn_rounds += numbers["torn"] > 0
                early += int(numbers["early"])
                if numbers["lag"] > interval_ms + SLACK_MS:
                    problems.append(f"newest point {numbers['lag']:.0f} ms before the kill")
                    late += 1
            failures.extend((n, p) for p in problems)
            if (n + 1) % 10 == 0 or problems:
                worst = max(lags, default=0)
                print(
                    f"{n + 1}/{kills} kills, {len(failures)} problems, worst lag {worst:.0f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    took = time.perf_counter() - t0
    bad_rounds = len({n for n, _ in failures})
    lags_sorted = sorted(lags)
    p99 = lags_sorted[min(len(lags_sorted) - 1, int(len(lags_sorted) * 0.99))] if lags_sorted else 0
    print("## Soak: SIGKILL at random moments\n")
    print(
        f"`python bench/soak_kill.py --kills {kills}`: a child logs {args.keys} metrics per step from a "
        "GIL-bound pure-Python loop (flush interval "
        f"{interval_ms:.0f} ms, the default) and is killed with SIGKILL after a random 0-1 s; then "
        "every file of the run is parsed. Seed "
        f"{seed}.\n"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| kills | {kills} |")
    print(f"| rounds with any problem | **{bad_rounds}** |")
    print(
        f"| files that did not parse (beyond a torn last line) | {sum('parse' in p for _, p in failures)} |"
    )
    print(f"| metric files with gaps in their steps | {sum('gaps' in p for _, p in failures)} |")
    print(f"| rounds with a torn (unterminated) last line, skipped by readers | {torn_rounds} |")
    print(f"| rounds killed before every key had reached the disk (within the first interval) | {early} |")
    print(f"| rounds whose newest point was older than interval + {SLACK_MS} ms | {late} |")
    if lags:
        print(
            f"| lag of each key's newest point on disk behind the kill (worst key): median / p99 / worst | "
            f"{statistics.median(lags):.0f} / {p99:.0f} / {max(lags):.0f} ms |"
        )
        print(f"| points on disk per round (median) | {statistics.median(points):,.0f} |")
    print(f"| time taken | {took:.0f} s ({took / max(kills, 1):.2f} s per kill) |")
    if failures:
        print("\nFirst problems:\n")
        for n, problem in failures[:10]:
            print(f"- round {n}: {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
