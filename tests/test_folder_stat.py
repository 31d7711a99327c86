"""The sweep's ``lstat`` of every run folder, shared with a forked child: the same mtimes, in the
same order, as one process finds; a child that fails leaves its half to the parent; a process with
another thread never forks. Each case runs in a fresh interpreter (a pytest process may still hold a
writer thread from an earlier test, and a fork is counted there with ``os.register_at_fork``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mini_mlflow as mm

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not os.path.isdir("/proc/self/task") or len(os.sched_getaffinity(0)) < 2,
    reason="the split needs fork, /proc and two processors",
)

CHILD = textwrap.dedent(
    """
    import json, os, sys, threading
    from mini_mlflow.read import _folder_stat

    exp, case = sys.argv[1], sys.argv[2]
    forks = []
    os.register_at_fork(before=lambda: forks.append(1))
    fd = os.open(exp, os.O_RDONLY | os.O_DIRECTORY)
    names = sorted(os.listdir(fd)) + ["missing-1", "missing-2"]
    alone = _folder_stat._mtimes(names, fd)
    _folder_stat.SPLIT_MIN = 10
    if case == "short":  # a child that sends half of its half, then leaves
        send = _folder_stat._send
        _folder_stat._send = lambda w, mtimes: send(w, mtimes[: len(mtimes) // 2])
    stop = threading.Event()
    if case == "thread":
        threading.Thread(target=stop.wait).start()
    split = _folder_stat.folder_mtimes(names, fd)
    stop.set()
    print(json.dumps({"forks": len(forks), "same": split == alone, "n": len(names),
                      "folders": sum(m != -1 for m in alone)}))
    """
)


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment folder with 40 runs, a stray file and a planted link."""
    root = tmp_path_factory.mktemp("store")
    mm.set_tracking_dir(root)
    for i in range(40):
        with mm.start_run(run_name=f"r{i}"):
            mm.log_metric("m", i)
    exp = root / "0"
    (exp / "stray.txt").write_text("not a run")
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    os.symlink(outside, exp / ("d" * 32))
    return exp


def split(exp: Path, case: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(exp), case], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_forked_half_finds_what_one_process_finds(exp_dir: Path) -> None:
    found = split(exp_dir, "plain")
    # 40 runs and meta.yaml are not folders' mtimes alone: a file, a link and two missing names are -1
    assert found == {"forks": 1, "same": True, "n": 45, "folders": 40}


def test_a_child_that_sends_too_little_leaves_its_half_here(exp_dir: Path) -> None:
    assert split(exp_dir, "short") == {"forks": 1, "same": True, "n": 45, "folders": 40}


def test_a_process_with_another_thread_never_forks(exp_dir: Path) -> None:
    assert split(exp_dir, "thread") == {"forks": 0, "same": True, "n": 45, "folders": 40}
