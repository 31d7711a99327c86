"""Looking at many run folders at once: a cold index build shares its looks with worker processes.

A look at a run folder (``_scan.scan_run``) costs about as much time in the kernel (some 55 system
calls: a file per param and tag) as in Python, and both scale with processors only across processes
(threads contend for the GIL on every call). So a read that must look at thousands of runs no index
knows (a store copied in, an index deleted) starts worker processes, each of which looks at a
contiguous slice of the run folders through the experiment folder's own descriptor (passed down, so a
folder swapped meanwhile leads nowhere else) and sends back what it found with ``marshal``. This
process looks at the first slice itself meanwhile, then takes the workers' answers in order, so the
result, order included, is what one process would have found. A worker that cannot start or fails is
not an error: its slice is looked at here.

How many workers: one fewer than the processors while the looks are bound by the processor (the files
in the page cache). A store just copied in, or paged out, is bound by the disk instead: each look waits
for a dozen small reads, and more workers than processors overlap those waits (10,000 runs with the
page cache dropped: 7.3-11.6 s with one worker, 5.4-5.8 with three, 4.9-5.1 with six; with the files
cached, one worker was fastest). So this process first looks at a few runs alone and times them: when
their wall time is well over its CPU time, it takes up to ``MAX_WORKERS``. Reading from the disk costs
processor time too (measured: a cold look 1.6 ms of wall time and 0.85 ms of CPU, a warm one 0.14 ms
of each), hence the low ``WAITING``. With the page cache dropped this chose 3 workers for 10,000 runs
(6.6-6.7 s against 7.8-8.8 s with one) and 7 for 100,000 (48-49 s against 77-79 s); with the files
cached it still chose one.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from ._scan import Scanned, encode_detail, scan_run

__all__ = ["Failed", "looks", "workers_for"]

#: Fewer runs than this are looked at in this process (a worker takes ~0.1 s to start).
MIN_RUNS = 4000
#: Each worker gets at least this many runs.
MIN_PER_WORKER = 2000
#: At most this many workers: beyond, this process's share of merging the answers dominates.
MAX_WORKERS = 7
#: Runs this process looks at first, timed, to tell a disk-bound build from a processor-bound one.
PROBE = 32
#: Wall time over this thread's CPU time, in the probe, above which the looks wait on the disk.
WAITING = 1.4
#: Set to 0 to look at every run in this process (tests compare the two).
WORKERS: int | None = None
#: This process's slice against a worker's. It also adds every run to the new columns, but a worker
#: also sends its answers (``marshal``) and starts late: about even. Measured on 100,000 runs with
#: one worker, four interleaved pairs: 0.95 built in 8.8-9.8 s where 1.15 took 9.1-11.0 (its worker
#: sat idle while this process finished a larger slice); at 0.8 this process waited for the worker.
OWN_SHARE = 0.95


class Failed(tuple[int, str]):
    """A look that raised OSError: ``(errno, message)``, as a worker can send it back."""

    @property
    def errno(self) -> int:
        return self[0]

    def __str__(self) -> str:
        return self[1]


def workers_for(n: int, waiting: bool = False) -> int:
    """How many worker processes a look at ``n`` unknown runs should use (``waiting``: the looks
    wait on the disk, so more workers than processors pay)."""
    if WORKERS is not None:
        return WORKERS
    if n < MIN_RUNS:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_WORKERS if waiting else cpus - 1, MAX_WORKERS, n // MIN_PER_WORKER - 1))


def waited(wall_s: float, cpu_s: float) -> bool:
    """Whether looks that took ``wall_s`` seconds and ``cpu_s`` of this thread's CPU waited on the disk."""
    return wall_s > WAITING * cpu_s


def _look(exp_fd: int, exp_dir: str, name: str, now_ns: int, root: str | None) -> Scanned | Failed:
    try:
        return scan_run(exp_fd, exp_dir, name, now_ns, None, root, listing=True)
    except OSError as exc:
        return Failed((exc.errno or 0, str(exc)))


def _slices(names: list[str], workers: int) -> list[list[str]]:
    """``workers + 1`` contiguous slices, the first this process's (``OWN_SHARE`` of a worker's)."""
    own = int(len(names) * OWN_SHARE / (workers + OWN_SHARE))
    rest = len(names) - own
    bounds = [0, own] + [own + rest * (k + 1) // workers for k in range(workers)]
    return [names[bounds[k] : bounds[k + 1]] for k in range(workers + 1)]


def _start(
    exp_fd: int, exp_dir: str, names: list[str], now_ns: int, root: str | None
) -> subprocess.Popen[bytes] | None:
    """A worker looking at ``names``; None if it cannot start."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    args = [sys.executable, "-m", __name__, str(exp_fd), exp_dir, str(now_ns), root or ""]
    try:
        with tempfile.TemporaryFile() as stdin:  # not a pipe: this process need not wait for the worker
            stdin.write("\0".join(names).encode("utf-8", "surrogateescape"))
            stdin.seek(0)
            return subprocess.Popen(
                args,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(exp_fd,),
                env=env,
            )
    except (OSError, ValueError):
        return None


def _answers(proc: subprocess.Popen[bytes] | None, count: int) -> list[Any] | None:
    """A worker's answers, or None if it failed (its slice is then looked at here)."""
    if proc is None:
        return None
    try:
        data, _ = proc.communicate()
        # marshal, not pickle: plain values only, and the bytes come from our own child
        answers = marshal.loads(data) if proc.returncode == 0 else None  # noqa: S302
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(answers, list) or len(answers) != count:
        return None
    return answers


def looks(
    exp_fd: int, exp_dir: str, names: list[str], now_ns: int, root: str | None
) -> Iterator[tuple[str, Scanned | Failed]]:
    """``(name, what a look found)`` for each of ``names`` (runs the index does not know), in order."""
    workers = workers_for(len(names))
    if workers <= 0:
        for name in names:
            yield name, _look(exp_fd, exp_dir, name, now_ns, root)
        return
    if WORKERS is None:  # a few looks alone first, timed: do they wait on the disk?
        wall, cpu = time.perf_counter(), time.thread_time()
        for name in names[:PROBE]:
            yield name, _look(exp_fd, exp_dir, name, now_ns, root)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        names = names[PROBE:]
        workers = workers_for(len(names), waited(wall, cpu))
    slices = _slices(names, workers)
    procs = [_start(exp_fd, exp_dir, part, now_ns, root) for part in slices[1:]]
    try:
        for name in slices[0]:
            yield name, _look(exp_fd, exp_dir, name, now_ns, root)
        for part, proc in zip(slices[1:], procs, strict=True):
            answers = _answers(proc, len(part))
            for k, name in enumerate(part):
                if answers is None:
                    yield name, _look(exp_fd, exp_dir, name, now_ns, root)
                else:
                    got = answers[k]
                    yield name, Scanned(*got) if len(got) == len(Scanned._fields) else Failed(got)
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _answer(look: Scanned | Failed) -> tuple[Any, ...]:
    """A look as a worker sends it: a run's detail already encoded (as the new columnar file stores
    it), which spares the merge in the other process, the one left to do after the looks, decoding
    and encoding it again (measured on 100,000 runs: ~0.25 s of a ~10 s build)."""
    if isinstance(look, Scanned) and look.fields is not None:
        return (*look[:6], {"r": look.detail.get("r", False)}, look.d, encode_detail(look.detail))
    return tuple(look)


def _serve(argv: list[str]) -> int:
    """The worker: look at the runs named on stdin, write the answers to stdout with ``marshal``."""
    import gc

    gc.disable()  # nothing allocated here is garbage before the answers are written
    exp_fd, exp_dir, now_ns, root = int(argv[0]), argv[1], int(argv[2]), argv[3] or None
    names = sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\0")
    answers = [_answer(_look(exp_fd, exp_dir, name, now_ns, root)) for name in names if name]
    sys.stdout.buffer.write(marshal.dumps(answers))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
