"""Integrations: checkpoints shown in a run without copying them (hard links that follow deletions)."""

from __future__ import annotations

import os
import shutil

from ..store._files import run_folder
from ..write._run import Run
from ._safety import warn_once


def same_file(source: str, name: str, fd: int) -> bool:
    try:
        a, b = os.stat(source), os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def link_or_copy(source: str, name: str, fd: int, framework: str) -> None:
    """A hard link to ``source`` named ``name`` in the folder ``fd``; a copy across file systems."""
    tmp = f"{name}#tmp-{os.getpid()}"
    try:
        os.link(source, tmp, dst_dir_fd=fd)
    except OSError as exc:
        warn_once(framework, "hard-linking a checkpoint (copied instead)", exc)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with open(source, "rb") as src, os.fdopen(os.open(tmp, flags, 0o644, dir_fd=fd), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)


def mirror_folders(run: Run, folders: dict[str, str], artifact_dir: str, framework: str) -> None:
    """Make ``artifacts/<artifact_dir>/`` hold exactly ``folders`` (name → local folder), file by file
    as hard links; folders that disappeared locally (a save limit deleted them) go from the run too."""
    with run_folder(run.run_dir, f"artifacts/{artifact_dir}") as top:
        for name in sorted(os.listdir(top)):
            if name not in folders and not name.startswith("."):
                _remove_tree(top, name)
        for name, local in folders.items():
            for folder, _dirs, files in os.walk(local):
                rel = os.path.relpath(folder, local).replace(os.sep, "/")
                sub = f"artifacts/{artifact_dir}/{name}" + ("" if rel == "." else f"/{rel}")
                with run_folder(run.run_dir, sub) as fd:
                    for file in files:
                        source = os.path.join(folder, file)
                        if os.path.isfile(source) and not same_file(source, file, fd):
                            link_or_copy(source, file, fd, framework)


_DIR_NOFOLLOW = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _remove_tree(parent_fd: int, name: str) -> None:
    """Remove ``name`` under the folder ``parent_fd`` without following links out of it."""
    try:
        fd = os.open(
            name, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0), dir_fd=parent_fd
        )
    except NotADirectoryError:
        os.unlink(name, dir_fd=parent_fd)
        return
    except OSError:  # a symlink (ELOOP) or a file: unlink the entry itself
        os.unlink(name, dir_fd=parent_fd)
        return
    try:
        for entry in os.listdir(fd):
            _remove_tree(fd, entry)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
