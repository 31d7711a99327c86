"""Many writers at once: threads sharing a run, processes sharing a run, and fork."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

import mini_mlflow as mm

from conftest import python_child, read_jsonl, wait_until


def test_threads_times_points_gives_exactly_that_many_lines(store: Path) -> None:
    threads, points = 8, 20_000
    with mm.start_run() as run:
        barrier = threading.Barrier(threads)

        def work(t: int) -> None:
            barrier.wait()
            for i in range(points):
                run.log_metric("shared", float(t), step=i)
                run.log_metric(f"own/t{t}", float(i), step=i)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    rows = read_jsonl(Path(run.run_dir) / "metrics" / "shared.jsonl")
    assert len(rows) == threads * points
    for t in range(threads):
        steps = [r["step"] for r in rows if r["value"] == float(t)]
        assert steps == list(range(points))  # each thread's points in its own order
        own = read_jsonl(Path(run.run_dir) / "metrics" / "own" / f"t{t}.jsonl")
        assert [r["value"] for r in own] == [float(i) for i in range(points)]


def test_each_thread_its_own_fluent_run(store: Path) -> None:
    ids: dict[int, str] = {}

    def work(t: int) -> None:
        with mm.start_run(run_name=f"t{t}") as run:
            ids[t] = run.run_id
            for i in range(1000):
                mm.log_metric("m", float(t), step=i)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for t, run_id in ids.items():
        history = mm.get_metric_history(run_id, "m")
        assert len(history) == 1000 and {p.value for p in history} == {float(t)}


CHILD_APPEND = """
import sys, mini_mlflow as mm
rank, points = int(sys.argv[1]), int(sys.argv[2])
with mm.start_run(run_id=sys.argv[3]) as run:
    for i in range(points):
        mm.log_metric("loss", rank * 1_000_000 + i, step=i)
        if i % 997 == 0:
            mm.flush()  # many small concurrent appends, not one big one
"""


def test_four_processes_append_to_one_run(store: Path) -> None:
    with mm.start_run(run_name="ddp") as run:
        mm.log_param("world_size", 4)
    points = 20_000
    import subprocess

    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "MINI_MLFLOW_TRACKING_DIR": str(store),
    }
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD_APPEND, str(rank), str(points), run.run_id], env=env)
        for rank in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    rows = read_jsonl(Path(run.run_dir) / "metrics" / "loss.jsonl")  # every line parses
    assert len(rows) == 4 * points
    for rank in range(4):
        mine = [int(r["value"]) - rank * 1_000_000 for r in rows if r["value"] // 1_000_000 == rank]
        assert mine == list(range(points))
    got = mm.get_run(run.run_id)
    assert got["metadata"]["status"] == "FINISHED" and got["params"] == {"world_size": 4}


FORKS = """
import os, sys
import mini_mlflow as mm
run = mm.start_run()
for i in range(1000):
    mm.log_metric("m", float(i), step=i)  # still in the buffer: the flush interval is a minute
pid = os.fork()
if pid == 0:  # the child: the parent's buffer and runs are not its own; its own run works
    assert mm.active_run() is None
    with mm.start_run(run_name="child") as child:
        mm.log_metric("c", 1.0)
    run.flush()  # the parent's Run object, copied into the child: it holds none of the parent's points
    print("child", child.run_id, flush=True)
    sys.exit(0)  # a normal exit: the exit hooks run here, and must not write or end the parent's run
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
mm.log_metric("m", 1000.0, step=1000)
mm.end_run()
print("parent", run.run_id, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_does_not_duplicate_parent_points(tmp_path: Path) -> None:
    proc = python_child(
        FORKS,
        tmp_path,
        env={"MINI_MLFLOW_TRACKING_DIR": str(tmp_path / "mlruns"), "MINI_MLFLOW_FLUSH_INTERVAL": "60"},
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    ids = dict(line.split() for line in out.splitlines())
    root = tmp_path / "mlruns"
    rows = read_jsonl(Path(mm.Store(root).find_run(ids["parent"])) / "metrics" / "m.jsonl")
    assert [r["step"] for r in rows] == list(range(1001))  # each point once: none from the child
    assert mm.Store(root).get_run(ids["child"])["metrics"] == {"c": 1.0}
    assert mm.Store(root).get_run(ids["parent"])["metadata"]["status"] == "FINISHED"


FORK_WITH_HELD_BYTES = """
import os, sys, warnings
from pathlib import Path
import mini_mlflow as mm
from mini_mlflow._config import resolve
run = mm.Run(runs_dir=os.environ["MINI_MLFLOW_TRACKING_DIR"], settings=resolve(flush_interval=3600, heartbeat_interval=3600))
metrics = Path(run.run_dir) / "metrics"
metrics.rmdir()
metrics.write_text("blocked")  # every append fails: the drain keeps the formatted lines as held bytes
for i in range(10):
    run.log_metric("m", float(i), step=i)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    run._buffer.drain()
assert run._buffer.held_points == 10 and not run._buffer.queue
metrics.unlink()
metrics.mkdir()  # writable again, but not yet retried
pid = os.fork()
if pid == 0:
    run.flush()  # the parent's Run object in the child: the held bytes are the parent's, not written here
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
run.end()
print(run.run_dir, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_does_not_write_the_parents_held_bytes(tmp_path: Path) -> None:
    # Lines formatted by a failed drain wait as bytes, not as points: the child must forget them too
    # (and their count, or its flush() would report the parent's points as its own unwritten ones).
    proc = python_child(
        FORK_WITH_HELD_BYTES, tmp_path, env={"MINI_MLFLOW_TRACKING_DIR": str(tmp_path / "mlruns")}
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rows = read_jsonl(Path(out.strip()) / "metrics" / "m.jsonl")
    assert [r["step"] for r in rows] == list(range(10))  # each point once: written by the parent only


def test_many_runs_in_one_process(store: Path) -> None:
    runs = [mm.Run(runs_dir=store) for _ in range(200)]
    for i, run in enumerate(runs):
        run.log_metric("m", float(i))
    for run in runs:
        run.end()
    assert sorted(mm.Store(store).get_run(r.run_id)["metrics"]["m"] for r in runs) == [
        float(i) for i in range(200)
    ]


SLOW_THEN_FAST = """
import os, time, mini_mlflow as mm
from mini_mlflow._config import resolve
root = os.environ["MINI_MLFLOW_TRACKING_DIR"]
slow = mm.Run(runs_dir=root, settings=resolve(flush_interval=3600, heartbeat_interval=3600))
time.sleep(0.5)  # the writer thread now waits half an hour: the only run flushes hourly
fast = mm.Run(runs_dir=root, settings=resolve(flush_interval=0.05))
fast.log_metric("m", 1.0)  # not due yet: only the writer thread writes it
print(fast.run_dir, flush=True)
time.sleep(600)
"""


def test_a_run_started_beside_a_slow_one_is_written_on_its_own_schedule(tmp_path: Path) -> None:
    # The writer thread sleeps most of the shortest flush interval of the runs it knows. A run registered
    # with a shorter interval wakes it: otherwise that run went unwritten (and unbeaten) until the
    # slow run's 48 minutes had passed. Liveness only: how soon it is written depends on the load.
    proc = python_child(SLOW_THEN_FAST, tmp_path, env={"MINI_MLFLOW_TRACKING_DIR": str(tmp_path / "mlruns")})
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip()) / "metrics" / "m.jsonl"
        wait_until(lambda: path.exists() and path.read_bytes().endswith(b"\n"), timeout=60)
        assert [r["value"] for r in read_jsonl(path)] == [1.0]
    finally:
        proc.kill()
        proc.wait(timeout=30)
