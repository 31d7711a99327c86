"""Crashes for real: child processes killed with SIGKILL/SIGTERM at random moments, then read back."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.read._reader import parse_metric_lines

from conftest import python_child, wait_until

# A training loop that is pure Python and holds the GIL nearly all the time, logging 20 metrics. Every
# 10 steps it notes (time after the call, step) in a shared memory ring that outlives a SIGKILL: what it
# had logged by any moment is then known exactly, even if the machine starved it of CPU for a while.
HOG = """
import mmap, os, struct, sys, time, mini_mlflow as mm
ring = mmap.mmap(os.open(os.environ["PROGRESS"], os.O_RDWR), 0)
run = mm.start_run(run_name="hog")
print(run.run_id, flush=True)
i = 0
while True:
    x = 0
    for j in range(200):  # pure-Python work between steps: the GIL is almost never free
        x += j * j
    mm.log_metrics({f"m{k:02d}": float(i) for k in range(20)}, step=i)
    if i % 10 == 0:
        struct.pack_into("<qq", ring, (i // 10 % 65536) * 16, int(time.time() * 1000), i)
    i += 1
    if i == 2000:
        print("logging", flush=True)
"""


def _noted(tmp_path: Path) -> list[tuple[int, int]]:
    """The child's ring: ``(time in ms after a logging call returned, step)``, every 10th step."""
    data = (tmp_path / "progress").read_bytes()
    return [n for n in (struct.unpack_from("<qq", data, at) for at in range(0, len(data), 16)) if n[0] > 0]


def _span_ms(tmp_path: Path) -> int:
    """How long the child has been logging, by its own ring."""
    stamps = [stamp for stamp, _ in _noted(tmp_path)]
    return max(stamps) - min(stamps) if stamps else 0


def _logged_by(tmp_path: Path, moment_ms: float) -> int:
    """The last step the child had logged (the call returned) by ``moment_ms``, from its ring."""
    before = [step for stamp, step in _noted(tmp_path) if stamp <= moment_ms]
    assert before, "the child logged nothing before that moment"
    return max(before)


def _start(tmp_path: Path, code: str, **env: str):  # type: ignore[no-untyped-def]
    (tmp_path / "progress").write_bytes(bytes(16 * 65536))
    env = {
        "MINI_MLFLOW_TRACKING_DIR": str(tmp_path / "mlruns"),
        "PROGRESS": str(tmp_path / "progress"),
        **env,
    }
    proc = python_child(code, tmp_path, env=env)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else ""
    return proc, run_id


def _histories(root: Path, run_id: str) -> dict[str, tuple[list[int], list[int], int]]:
    rdir = mm.Store(root).find_run(run_id)
    out = {}
    for path in sorted(Path(rdir, "metrics").glob("*.jsonl")):
        data = path.read_bytes()
        history = parse_metric_lines(data)
        lines = data.split(b"\n")
        # every complete line parses; only a torn last line (no newline yet) may be skipped
        for line in lines[:-1]:
            json.loads(line)
        assert history.skipped_lines == (1 if lines[-1] else 0)
        out[path.stem] = (history.steps, history.timestamps, history.skipped_lines)
    return out


@pytest.mark.parametrize("attempt", range(4))
def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path: Path, attempt: int) -> None:
    interval = 0.2
    proc, run_id = _start(tmp_path, HOG, MINI_MLFLOW_FLUSH_INTERVAL=str(interval))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "logging"
        # Kill once the child has been logging for 0.5-1.5 s of its own (its ring says so): longer than
        # the cutoff below (interval + 150 ms), so the ring always names a step logged before the
        # cutoff, however little CPU the machine gave the child meanwhile.
        span_ms = random.uniform(500, 1500)
        wait_until(lambda: _span_ms(tmp_path) >= span_ms, timeout=60)
        killed_ms = time.time() * 1000
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    histories = _histories(tmp_path / "mlruns", run_id)
    assert len(histories) == 20
    # On disk: every point logged up to one flush interval (+ 150 ms for the drain itself) before the
    # child's last logging call, which its own ring dates. Measured from the child's last call and not
    # from the kill, the bound depends on what the child did, not on the machine: a child the kernel
    # kept off the CPU for the last second before the SIGKILL had no chance to drain, and under load
    # (the suite beside a soak) the bound taken from the kill failed that way.
    last_call_ms = min(killed_ms, max(stamp for stamp, _ in _noted(tmp_path)))
    due = _logged_by(tmp_path, last_call_ms - interval * 1000 - 150)
    for key, (steps, _, _) in histories.items():
        assert steps == list(range(len(steps))), f"{key}: points missing in the middle"
        assert steps[-1] >= due, f"{key}: step {due} was logged before the cutoff, on disk only {steps[-1]}"
    meta = mm.Store(tmp_path / "mlruns").load_meta(mm.Store(tmp_path / "mlruns").find_run(run_id))
    assert meta["status"] == "RUNNING" and meta.get("crashed") is True  # the pid is gone: crashed


# Runs one after another, each logging flat out (1 ms flush interval: the logging calls drain the buffer
# themselves), each stopped by a Ctrl-C that the test sends at a random moment.
INTERRUPTED = """
import mini_mlflow as mm
while True:
    try:
        with mm.start_run() as run:
            step = 0
            while True:
                for k in range(5):
                    mm.log_metric(f"m{k}", step, step=step)
                step += 1
                if step == 20:
                    print("go", flush=True)
    except KeyboardInterrupt:
        print(run.run_id, run.status, flush=True)
"""


def test_ctrl_c_at_any_moment_of_a_drain_ends_the_run_and_loses_nothing(tmp_path: Path) -> None:
    # A KeyboardInterrupt raised right after a lock's acquire() (CPython checks for signals as a call
    # returns) used to keep the lock: the next end_run waited forever. Found with 2 ms flushes: a hang
    # within ~20 interrupts.
    proc = python_child(
        INTERRUPTED,
        tmp_path,
        env={"MINI_MLFLOW_TRACKING_DIR": str(tmp_path / "mlruns"), "MINI_MLFLOW_FLUSH_INTERVAL": "0.001"},
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()
    ended = {}
    try:
        for _ in range(150):
            assert lines.get(timeout=30) == "go"
            time.sleep(random.uniform(0, 0.01))
            proc.send_signal(signal.SIGINT)
            try:
                line = lines.get(timeout=10)
            except queue.Empty:
                raise AssertionError("the run did not end within 10 s of Ctrl-C (a lock kept?)") from None
            run_id, status = line.split()
            ended[run_id] = status
    finally:
        proc.kill()
        proc.wait()
    assert set(ended.values()) == {"KILLED"} and len(ended) == 150
    store = mm.Store(tmp_path / "mlruns")
    for run_id in ended:
        assert store.load_meta(store.find_run(run_id))["status"] == "KILLED"
        histories = _histories(tmp_path / "mlruns", run_id)
        assert len(histories) == 5
        lengths = set()
        for steps, _, skipped in histories.values():
            assert steps == list(range(len(steps))) and skipped == 0  # nothing taken and lost
            lengths.add(len(steps))
        assert max(lengths) - min(lengths) <= 1  # every point logged before Ctrl-C is on disk


@pytest.mark.parametrize("attempt", range(2))
def test_sigterm_flushes_marks_killed_and_dies_of_the_signal(tmp_path: Path, attempt: int) -> None:
    proc, run_id = _start(tmp_path, HOG, MINI_MLFLOW_FLUSH_INTERVAL="5")  # no timed flush would help
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "logging"
        time.sleep(random.uniform(0.1, 0.8))
        termed_ms = time.time() * 1000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
    root = tmp_path / "mlruns"
    histories = _histories(root, run_id)
    lengths = {len(steps) for steps, _, _ in histories.values()}
    assert len(lengths) == 1, "log_metrics calls are all-or-nothing"
    due = _logged_by(tmp_path, termed_ms)  # everything logged before the signal was sent
    for steps, _, skipped in histories.values():
        assert steps == list(range(len(steps))) and skipped == 0
        assert steps[-1] >= due  # flushed at the signal, not 5 s earlier
    assert mm.Store(root).get_run(run_id)["metadata"]["status"] == "KILLED"


ENDINGS = {
    "normal": ("pass", 0, "FINISHED"),
    "exception": ("raise RuntimeError('boom')", 1, "FAILED"),
    "keyboard": ("raise KeyboardInterrupt", -signal.SIGINT, "KILLED"),  # Python dies of SIGINT
    "sys.exit(3)": ("import sys; sys.exit(3)", 3, "FAILED"),
    "sys.exit(message)": ("import sys; sys.exit('gave up')", 1, "FAILED"),
    "sys.exit(0)": ("import sys; sys.exit(0)", 0, "FINISHED"),
    "sys.exit() in a function": ("import sys\ndef main():\n    sys.exit(4)\nmain()", 4, "FAILED"),
    # a SystemExit the program catches does not end it: the normal end that follows counts
    "caught sys.exit(2)": ("import sys\ntry:\n    sys.exit(2)\nexcept SystemExit:\n    pass", 0, "FINISHED"),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_interpreter_exit_with_an_open_run(tmp_path: Path, ending: str) -> None:
    statement, code, status = ENDINGS[ending]
    proc, run_id = _start(
        tmp_path,
        f"""
import mini_mlflow as mm
run = mm.start_run()
print(run.run_id, flush=True)
for i in range(10_000):
    mm.log_metric("m", float(i), step=i)
{statement}
""",
        MINI_MLFLOW_FLUSH_INTERVAL="30",
    )
    proc.communicate(timeout=60)
    assert proc.returncode == code
    got = mm.Store(tmp_path / "mlruns").get_run(run_id)
    assert got["metadata"]["status"] == status
    assert len(mm.Store(tmp_path / "mlruns").get_metric_history(run_id, "m")) == 10_000


def test_sigterm_chains_to_the_programs_own_handler(tmp_path: Path) -> None:
    proc, run_id = _start(
        tmp_path,
        """
import signal, sys, time, mini_mlflow as mm
def mine(signum, frame):
    print("own handler", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, mine)
run = mm.start_run()
print(run.run_id, flush=True)
mm.log_metric("m", 1.0)
print("ready", flush=True)
time.sleep(60)
""",
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7 and "own handler" in out
    assert mm.Store(tmp_path / "mlruns").get_run(run_id)["metadata"]["status"] == "KILLED"


def test_heartbeat_tells_live_runs_from_crashed_ones(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    proc, run_id = _start(
        tmp_path,
        """
import time, mini_mlflow as mm
run = mm.start_run()
print(run.run_id, flush=True)
while True:
    mm.log_metric("m", 1.0)
    time.sleep(0.01)
""",
        MINI_MLFLOW_HEARTBEAT="0.2",
    )
    store = mm.Store(root)
    try:
        rdir = store.find_run(run_id)
        wait_until(lambda: any(n.startswith(".heartbeat-") for n in os.listdir(rdir)))
        assert "crashed" not in store.load_meta(rdir)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert store.load_meta(rdir)["crashed"] is True


def test_an_idle_run_keeps_beating(tmp_path: Path) -> None:
    # A run that logs nothing for a while (a long evaluation, a slow data load) must not look crashed:
    # the writer thread beats it on schedule without any point to write. Liveness only: how soon the
    # beats come depends on the load, so the test waits for two of them, however long they take.
    root = tmp_path / "mlruns"
    proc, run_id = _start(
        tmp_path,
        """
import time, mini_mlflow as mm
run = mm.start_run()
print(run.run_id, flush=True)
time.sleep(600)
""",
        MINI_MLFLOW_HEARTBEAT="0.1",
    )
    try:
        rdir = Path(mm.Store(root).find_run(run_id))

        def beat_time() -> int:
            for beat in rdir.glob(".heartbeat-*"):
                try:
                    return int(json.loads(beat.read_text())["time"])
                except (OSError, ValueError):
                    pass
            return 0

        seen: set[int] = set()

        def beats_seen() -> bool:  # the start's beat, then two from the writer thread
            seen.add(beat_time())
            return len(seen - {0}) >= 3

        wait_until(beats_seen, timeout=60)
        assert "crashed" not in mm.Store(root).load_meta(str(rdir))
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_heartbeat_from_another_host_goes_stale(store: Path) -> None:
    with mm.start_run() as run:
        pass
    rdir = Path(run.run_dir)
    now = int(time.time() * 1000)
    meta_text = (rdir / "meta.yaml").read_text().replace("status: FINISHED", "status: RUNNING")
    (rdir / "meta.yaml").write_text(meta_text)
    beat = rdir / ".heartbeat-1@elsewhere"
    beat.write_text(json.dumps({"time": now - 5_000, "interval": 10, "pid": 1, "host": "elsewhere"}))
    assert "crashed" not in mm.Store(store).load_meta(str(rdir))  # 5 s old: within 3 beats
    beat.write_text(json.dumps({"time": now - 120_000, "interval": 10, "pid": 1, "host": "elsewhere"}))
    assert mm.Store(store).load_meta(str(rdir))["crashed"] is True
    assert socket.gethostname() != "elsewhere"


def test_a_run_whose_beat_vanishes_as_it_is_read_is_not_called_crashed(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader holding a status read just before the run ended lists the writer's heartbeat, which the
    # end then removes before the reader opens it. The run ended cleanly: it must not show as CRASHED.
    from mini_mlflow.read import _reader

    with mm.start_run() as run:
        pass
    rdir = Path(run.run_dir)
    beat = rdir / ".heartbeat-1@elsewhere"  # a writer elsewhere, its last beat long ago
    beat.write_text(json.dumps({"time": 1_000, "interval": 10, "pid": 1, "host": "elsewhere"}))
    stale = {"start_time": "2001-01-01T00:00:00.000Z"}  # the RUNNING meta the reader holds
    assert _reader.heartbeat_state(str(rdir), stale) == "crashed"  # still there, and stale
    read = _reader._read_json_value

    def removed_first(path: str) -> object:
        os.unlink(path)  # the writer's end removes its beat between the listing and the read
        return read(path)

    monkeypatch.setattr(_reader, "_read_json_value", removed_first)
    assert _reader.heartbeat_state(str(rdir), stale) == "alive"
    assert not beat.exists()
