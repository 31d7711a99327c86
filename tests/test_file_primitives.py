"""The safe file primitives, one by one: no descriptor left open on any path through them, the modes
files and folders get, whole content read back at every size, a failed replace leaves no temporary
file, stale temporaries go and fresh ones stay, and every refusal names the link that caused it.

The mutation run of ``store/_files.py`` found these properties checked only where the rest of the
suite happens to pass through them (a leaked descriptor, a chunk loop cut short, a message changed).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mini_mlflow._errors import StorageError
from mini_mlflow.store import _files
from mini_mlflow.store._files import (
    SymlinkRefusedError,
    check_inside,
    copy_atomic,
    create_once,
    exists_in,
    folder_beneath,
    fsync_dir,
    fsync_path,
    open_append,
    open_append_beneath,
    open_binary,
    open_dir_beneath,
    read_bytes,
    read_small,
    remove_stale_temporaries,
    replace_file,
    run_folder,
    storage_error,
    write_atomic,
)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _leaves_no_descriptor(action: Callable[[], Any], raises: type[BaseException] | None = None) -> None:
    before = _open_fds()
    for _ in range(3):
        if raises is None:
            action()
        else:
            with pytest.raises(raises):
                action()
    assert _open_fds() - before == set()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="descriptors are listed in /proc (Linux)")
def test_no_path_through_the_primitives_leaves_a_descriptor_open(tmp_path: Path) -> None:
    big = os.urandom(200_000)
    (tmp_path / "src").write_bytes(big)
    (tmp_path / "small").write_bytes(b"x" * 100)
    (tmp_path / "exp" / "run").mkdir(parents=True)
    (tmp_path / "exp" / "run" / "meta.yaml").write_text("run_id: run\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "exp" / "gone").mkdir()  # a run folder without its meta.yaml
    dir_fd = os.open(tmp_path, os.O_RDONLY)
    try:

        def fail(fd: int) -> None:
            raise ValueError("fill failed")

        _leaves_no_descriptor(lambda: write_atomic(str(tmp_path / "a"), b"1", fsync=True))
        _leaves_no_descriptor(lambda: write_atomic("b", b"1", fsync=True, dir_fd=dir_fd))
        _leaves_no_descriptor(lambda: replace_file(str(tmp_path / "c"), fail), ValueError)
        _leaves_no_descriptor(lambda: copy_atomic(str(tmp_path / "src"), str(tmp_path / "copy")))
        _leaves_no_descriptor(lambda: copy_atomic(str(tmp_path / "absent"), str(tmp_path / "copy")), OSError)
        _leaves_no_descriptor(lambda: create_once(str(tmp_path / "once"), b"1"))
        _leaves_no_descriptor(lambda: create_once("link", b"1", dir_fd=dir_fd), SymlinkRefusedError)
        _leaves_no_descriptor(lambda: read_bytes(str(tmp_path / "src")))
        _leaves_no_descriptor(lambda: read_small("src", dir_fd))
        _leaves_no_descriptor(lambda: read_small("small", dir_fd))
        _leaves_no_descriptor(lambda: os.close(open_dir_beneath(str(tmp_path), "new/sub", fixed=0)))
        _leaves_no_descriptor(lambda: open_dir_beneath(str(tmp_path), "link/x", fixed=0), SymlinkRefusedError)
        _leaves_no_descriptor(lambda: open_dir_beneath(str(tmp_path), "absent/x", fixed=1), FileNotFoundError)
        _leaves_no_descriptor(lambda: open_dir_beneath(str(tmp_path), "src/x", fixed=0), NotADirectoryError)

        def in_folder() -> None:
            with folder_beneath(str(tmp_path), "new"):
                pass

        def in_run() -> None:
            with run_folder(str(tmp_path / "exp" / "run"), "metrics"):
                pass

        def in_gone_run() -> None:
            with run_folder(str(tmp_path / "exp" / "gone"), "metrics"):
                pass

        _leaves_no_descriptor(in_folder)
        _leaves_no_descriptor(in_run)
        _leaves_no_descriptor(in_gone_run, FileNotFoundError)
        _leaves_no_descriptor(lambda: os.close(open_append_beneath(str(tmp_path), "new/f.jsonl", fixed=0)))
        _leaves_no_descriptor(
            lambda: open_append_beneath(str(tmp_path), "link/f.jsonl", fixed=0), SymlinkRefusedError
        )
        _leaves_no_descriptor(lambda: fsync_path(str(tmp_path / "src")))
        _leaves_no_descriptor(lambda: fsync_dir(str(tmp_path)))
        _leaves_no_descriptor(lambda: fsync_dir(str(tmp_path / "absent")))
        _leaves_no_descriptor(lambda: remove_stale_temporaries(dir_fd))
    finally:
        os.close(dir_fd)


def test_files_are_created_rw_r_r_and_folders_rwx_r_x(tmp_path: Path, umask_022: None) -> None:
    def mode(path: Path) -> int:
        return path.lstat().st_mode & 0o7777

    write_atomic(str(tmp_path / "atomic"), b"1")
    create_once(str(tmp_path / "once"), b"1")
    os.close(open_append(str(tmp_path / "appended")))
    (tmp_path / "src").write_bytes(b"abc")
    copy_atomic(str(tmp_path / "src"), str(tmp_path / "copied"))
    os.close(open_append_beneath(str(tmp_path), "made/deeper/f.jsonl", fixed=0))
    for name in ["atomic", "once", "appended", "copied", "made/deeper/f.jsonl"]:
        assert mode(tmp_path / name) == 0o644, name
    for name in ["made", "made/deeper"]:
        assert mode(tmp_path / name) == 0o755, name


@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 8193, 65_536, 65_537, 200_000])
def test_a_file_is_read_back_whole_at_every_size(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert read_bytes(str(tmp_path / "f")) == data
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert read_small("f", fd) == data
        assert read_bytes("f", fd) == data
    finally:
        os.close(fd)
    with open_binary(str(tmp_path / "f")) as f:
        assert f.read() == data


def test_reads_and_syncs_refuse_a_planted_link(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"s")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    for read in (read_bytes, fsync_path, open_binary, open_append):
        with pytest.raises(OSError) as caught:
            read(str(tmp_path / "link"))  # type: ignore[operator]
        assert caught.value.errno == errno.ELOOP, read
    assert (tmp_path / "secret").read_bytes() == b"s"


def test_copies_are_whole(tmp_path: Path) -> None:
    for size in (0, 10, 3_000_000):
        data = os.urandom(size)
        (tmp_path / "src").write_bytes(data)
        copy_atomic(str(tmp_path / "src"), str(tmp_path / "dst"))
        assert (tmp_path / "dst").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if "#" in p.name] == []


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def fail(fd: int) -> None:
        os.write(fd, b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        replace_file(str(target), fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_create_once_gives_the_first_content_to_everyone(tmp_path: Path) -> None:
    assert create_once(str(tmp_path / "f"), b"first") is None
    assert create_once(str(tmp_path / "f"), b"second") == b"first"
    assert (tmp_path / "f").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_folder_path_through_a_link_is_refused_naming_the_link(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").symlink_to(tmp_path / "outside")
    with pytest.raises(SymlinkRefusedError) as caught:
        open_dir_beneath(str(tmp_path), "a/b/c", fixed=0)
    assert caught.value.errno == errno.ELOOP
    assert caught.value.filename == str(tmp_path / "a" / "b")
    assert caught.value.strerror == "is a symbolic link; refusing to follow it out of the store"
    assert list((tmp_path / "outside").iterdir()) == []
    (tmp_path / "plain").write_text("")
    with pytest.raises(NotADirectoryError):
        open_dir_beneath(str(tmp_path), "plain/c", fixed=0)  # a file is not a folder to create in


def test_check_inside_names_the_link_on_the_way(tmp_path: Path) -> None:
    base = tmp_path / "run"
    (base / "metrics" / "deep").mkdir(parents=True)
    (tmp_path / "outside" / "x").mkdir(parents=True)
    check_inside(str(base), str(base / "metrics" / "deep" / "k.jsonl"))  # inside: no error
    (base / "metrics" / "away").symlink_to(tmp_path / "outside")
    with pytest.raises(SymlinkRefusedError) as caught:
        check_inside(str(base), str(base / "metrics" / "away" / "x" / "k.jsonl"))
    assert caught.value.filename == str(base / "metrics" / "away")
    (tmp_path / "linked-run").symlink_to(base)
    with pytest.raises(SymlinkRefusedError) as caught:
        check_inside(str(tmp_path / "linked-run"), str(tmp_path / "linked-run" / "metrics" / "k.jsonl"))
    assert caught.value.filename == str(tmp_path / "linked-run")


def test_a_run_folder_without_its_meta_yaml_is_never_filled_piecemeal(tmp_path: Path) -> None:
    run = tmp_path / "0" / "abc"
    run.mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as caught:
        with run_folder(str(run), "metrics"):
            pass
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.ENOENT,
        "the run folder was deleted",
        str(run),
    )
    assert list(run.iterdir()) == []
    (run / "meta.yaml").write_text("run_id: abc\n")
    with run_folder(str(run), "metrics/a") as fd:
        assert exists_in("..", fd) is True
    assert (run / "metrics" / "a").is_dir()


def test_stale_temporaries_go_and_fresh_ones_stay(tmp_path: Path) -> None:
    now = time.time()
    ages = {"#tmp.1.old": 600.5, "#tmp.2.fresh": 599, "#tmp.3.new": 0, "plain": 5000}
    for name, age in ages.items():
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (now - age, now - age))
    (tmp_path / "target").write_text("")
    (tmp_path / "#tmp.4.link").symlink_to(tmp_path / "target")  # old link to a fresh file: the link goes
    os.utime(tmp_path / "#tmp.4.link", (now - 5000, now - 5000), follow_symlinks=False)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        remove_stale_temporaries(fd)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["#tmp.2.fresh", "#tmp.3.new", "plain", "target"]
        remove_stale_temporaries(fd, older_than_s=0)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "target"]
    finally:
        os.close(fd)


def test_exists_in_counts_a_link_without_following_it(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert exists_in("f", fd) is True
        assert exists_in("dangling", fd) is True
        assert exists_in("absent", fd) is False
    finally:
        os.close(fd)


def test_a_storage_error_says_what_where_and_why() -> None:
    full = storage_error("write metric", "/s/m.jsonl", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(full, StorageError)
    assert (full.errno, full.filename) == (errno.ENOSPC, "/s/m.jsonl")
    assert str(full.strerror) == "write metric failed for /s/m.jsonl: no space left on device"
    other = storage_error("open", "/s/x", OSError("odd"))
    assert (other.errno, other.strerror) == (0, "open failed for /s/x: odd")
    denied = storage_error("open", "/s/x", OSError(errno.EACCES, "Permission denied"))
    assert denied.strerror == "open failed for /s/x: Permission denied"


def test_append_fd_returns_what_it_wrote(tmp_path: Path) -> None:
    fd = open_append(str(tmp_path / "f"))
    try:
        assert _files.append_fd(fd, b"a\n") == 2
        assert _files.append_fd(fd, b"") == 0
        assert _files.append_fd(fd, b"b\n" * 100_000) == 200_000
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"a\n" + b"b\n" * 100_000


def test_meta_yaml_is_replaced_whole_while_a_reader_reads_it(tmp_path: Path) -> None:
    # A reader of meta.yaml sees the old file or the new one, never an empty or half-written one: the
    # update writes a temporary file and renames it over meta.yaml (a new inode), never rewrites in place.
    # The reader is another process (a thread would share the GIL and rarely run inside an update).
    import json
    import subprocess
    import sys

    import mini_mlflow as mm
    from mini_mlflow.store import _operations

    run = mm.Run(runs_dir=tmp_path / "mlruns")
    meta_path = os.path.join(run.run_dir, "meta.yaml")
    inode = os.stat(meta_path).st_ino
    _operations.update_run_meta(run.run_dir, run_name="first")
    # One update: the new file existed beside the old one before the rename, so its inode differs (over
    # many updates a freed inode number comes back, so only a single step can tell).
    assert os.stat(meta_path).st_ino != inode, "meta.yaml was rewritten in place, not replaced"
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, meta_path, run.run_id, str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "reading\n"
        for i in range(2000):
            _operations.update_run_meta(run.run_dir, run_name=f"n{i}")
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    run.end()
    found = json.loads(out)
    assert found["reads"] > 0 and found["bad"] == [], found  # (thousands of reads here: 16,769 in one run)


READER = """
import json, os, sys
from mini_mlflow.store._meta import read_meta
path, run_id, stop = sys.argv[1:]
reads, bad = 0, []
print("reading", flush=True)
while not os.path.exists(stop):
    try:
        if read_meta(path).get("run_id") != run_id:
            bad.append("another run id")
    except Exception as exc:  # an empty or torn file
        bad.append(repr(exc))
    reads += 1
print(json.dumps({"reads": reads, "bad": bad[:3]}))
"""
