"""A store on a file system that becomes read-only (a real tmpfs remounted ro), and permission denied."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import mini_mlflow as mm

from conftest import ROOT, read_jsonl


def _mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *args], capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB tmpfs that the test may remount read-only (needs root; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting and remounting a tmpfs needs root")
    mount = tmp_path / "fs"
    mount.mkdir()
    result = _mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _remount(mount: Path, mode: str) -> None:
    result = _mount("-o", f"remount,{mode}", str(mount))
    assert result.returncode == 0, result.stderr.decode()


def test_start_run_on_a_read_only_store_names_the_path(small_fs: Path) -> None:
    root = small_fs / "mlruns"
    with mm.Run(runs_dir=root):  # an existing store with experiment 0
        pass
    _remount(small_fs, "ro")
    with pytest.raises(mm.StorageError) as info:
        mm.Run(runs_dir=root)
    message = str(info.value)
    assert str(root) in message and "Read-only file system" in message, message
    with pytest.raises(mm.StorageError, match="Read-only file system"):
        mm.Run(runs_dir=small_fs / "fresh")  # a store that does not exist yet: same clear error
    assert len(mm.Store(root).list_runs(0)) == 1  # and nothing half-created


def test_live_run_on_a_store_turned_read_only_keeps_going_and_recovers(
    small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINI_MLFLOW_HEARTBEAT", "0.2")  # heartbeats fail too: still one warning
    run = mm.Run(runs_dir=small_fs / "mlruns")
    for i in range(100):
        run.log_metric("loss", float(i), step=i)
    run.flush()
    # The kernel refuses to remount read-only while a file is open for writing (EBUSY), so the
    # metric files the writer keeps open are closed first; a remount forced by the kernel on an I/O
    # error (errors=remount-ro) does not wait for that, and then writes fail exactly as here.
    with run._buffer.lock:
        run._buffer.close_files()
        _remount(small_fs, "ro")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(100, 300):  # the loop never sees an exception
            run.log_metric("loss", float(i), step=i)
            if i % 50 == 0:
                run._buffer.due = 0.0  # as if a flush interval had passed
        run.set_tag("phase", "ro")  # kept, retried later
        run._buffer._heartbeat_due = 0.0
        run._buffer.drain()
        with pytest.raises(mm.StorageError, match=r"points not yet written.*Read-only file system"):
            run.flush()
        with pytest.raises(mm.StorageError):
            run.end()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "Read-only file system" in messages[0], messages
    assert run.status == "RUNNING"
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    assert [r["step"] for r in read_jsonl(path)] == list(range(100))  # untouched, every line parses
    _remount(small_fs, "rw")
    run.end()
    assert [r["step"] for r in read_jsonl(path)] == list(range(300))
    got = mm.Store(small_fs / "mlruns").get_run(run.run_id)
    assert got["metadata"]["status"] == "FINISHED" and got["tags"] == {"phase": "ro"}


def test_permission_denied_is_a_clear_error(tmp_path: Path) -> None:
    # Root ignores file modes, so the child runs without the capabilities that let it do so
    # (setpriv drops CAP_DAC_OVERRIDE and friends): the kernel then refuses as for any user.
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop the permission-override capabilities")
    root = tmp_path / "mlruns"
    with mm.Run(runs_dir=root):
        pass
    for folder in (root, root / "0"):
        folder.chmod(0o555)
    code = f"""
import mini_mlflow as mm
try:
    mm.Run(runs_dir={str(root)!r})
except mm.StorageError as err:
    print("StorageError:", err)
print("listed", len(mm.Store({str(root)!r}).list_runs(0)))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env["PYTHONPATH"] = str(ROOT)
    try:
        proc = subprocess.run(
            [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        for folder in (root, root / "0"):
            folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert f"StorageError: [Errno 13] start run failed for {root}: Permission denied" in proc.stdout, (
        proc.stdout
    )
    assert "listed 1" in proc.stdout  # a store you cannot write can still be read
