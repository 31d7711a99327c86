"""The store's inter-process locks (store/_lock): exclusive across processes and threads, released when
the holder dies, bounded by their timeout, and never created or taken through a symlink."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.store import _operations
from mini_mlflow.store._files import SymlinkRefusedError, folder_beneath
from mini_mlflow.store._lock import lock_in, try_lock_in

from conftest import python_child

HOLDER = """
import time
from mini_mlflow.store._files import folder_beneath
from mini_mlflow.store._lock import lock_in
with folder_beneath({folder!r}, "") as fd, lock_in(fd, ".lock"):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold_in_a_child(folder: Path) -> subprocess.Popen[str]:
    child = python_child(HOLDER.format(folder=str(folder)), cwd=folder)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"  # the child holds it now
    return child


def test_a_lock_held_by_another_process_times_out_and_is_freed_when_that_process_dies(tmp_path: Path) -> None:
    child = _hold_in_a_child(tmp_path)
    try:
        with folder_beneath(str(tmp_path), "") as fd:
            with pytest.raises(TimeoutError, match="'.lock'"), lock_in(fd, ".lock", timeout=0.2):
                pass
            with try_lock_in(fd, ".lock") as held:
                assert held is False
            child.send_signal(signal.SIGKILL)
            child.wait()
            with lock_in(fd, ".lock", timeout=5):  # the kernel dropped the dead holder's lock
                pass
    finally:
        if child.poll() is None:
            child.kill()


def test_two_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    inside = 0
    most = 0
    counter_lock = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        with folder_beneath(str(tmp_path), "") as fd:
            for _ in range(200):
                with lock_in(fd, ".lock"):
                    with counter_lock:
                        inside += 1
                        most = max(most, inside)
                    with counter_lock:
                        inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1


def test_a_lock_file_planted_as_a_symlink_is_refused_and_nothing_is_made_behind_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / ".lock").symlink_to(outside / "made-through-the-link")
    with folder_beneath(str(folder), "") as fd:
        with pytest.raises(SymlinkRefusedError), lock_in(fd, ".lock"):
            pass
        with pytest.raises(SymlinkRefusedError), try_lock_in(fd, ".lock"):
            pass
    assert list(outside.iterdir()) == []


def test_meta_yaml_updates_wait_for_the_runs_lock_and_give_up_after_the_timeout(store: Path) -> None:
    run = mm.Run(runs_dir=store)
    child = _hold_in_a_child(Path(run.run_dir))
    try:
        with pytest.raises(TimeoutError):
            _operations.update_run_meta(run.run_dir, lock_timeout=0.3, run_name="late")
        assert mm.Store(store).load_meta(run.run_dir)["run_name"] is None  # nothing was changed
    finally:
        child.kill()
        child.wait()
    _operations.update_run_meta(run.run_dir, lock_timeout=5, run_name="on time")
    assert mm.Store(store).load_meta(run.run_dir)["run_name"] == "on time"
    run.end()
    assert not os.path.islink(Path(run.run_dir) / ".lock")
