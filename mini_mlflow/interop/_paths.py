"""Containment checks for export and import: nothing is read from or written to outside the given tree."""

from __future__ import annotations

import os

from .._errors import InvalidInputError


def inside(base_real: str, path: str) -> bool:
    """True when ``path`` (resolved, symlinks followed) is ``base_real`` or below it."""
    real = os.path.realpath(path)
    return real == base_real or real.startswith(base_real.rstrip(os.sep) + os.sep)


def safe_join(base_real: str, *parts: str) -> str:
    """``base_real/parts...``, refused when a part is ``..``/absolute or a symlink leads outside.

    Raises:
        InvalidInputError: the path would escape ``base_real``.
    """
    for part in parts:
        for piece in part.split("/"):
            if piece in ("", ".", "..") or os.sep in piece or "\x00" in piece:
                raise InvalidInputError(
                    f"refusing path {'/'.join(parts)!r}: it must stay inside {base_real} "
                    "(no '..', no absolute or empty parts)"
                )
    path = os.path.join(base_real, *(p for part in parts for p in part.split("/")))
    if not inside(base_real, os.path.dirname(path)) or os.path.islink(path):
        raise InvalidInputError(f"refusing path {path}: a symlink leads outside {base_real}")
    return path


def make_dirs(base_real: str, path: str) -> None:
    """``os.makedirs``, refused when the deepest existing part of ``path`` resolves outside ``base_real``."""
    probe = path
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not inside(base_real, probe):
        raise InvalidInputError(f"refusing path {path}: {probe} leads outside {base_real}")
    os.makedirs(path, exist_ok=True)
