"""Reading a run's meta.yaml for listing: fast bytes, a clear reason when broken, normalized fields."""

from __future__ import annotations

import errno
from typing import Any

from .._errors import StorageError
from ._files import read_bytes, read_small
from ._layout import ms_from_iso
from ._yaml import load_meta_bytes


def read_meta_file(
    path: str, dir_fd: int | None = None, name: str = "meta.yaml"
) -> tuple[dict[str, Any] | None, str | None]:
    """``(mapping, None)``, or ``(None, "<path>: <what is wrong>")`` for a missing or corrupt file.

    With ``dir_fd``, the file read is ``name`` in that open folder and ``path`` only names it in messages.
    """
    try:
        data = read_bytes(path) if dir_fd is None else read_small(name, dir_fd)
    except FileNotFoundError:
        return None, f"{path}: meta.yaml is missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (
                None,
                f"{path}: meta.yaml is a symbolic link (not followed: nothing outside the store is read)",
            )
        return None, f"{path}: cannot read meta.yaml ({exc.strerror or exc})"
    if not data.strip():
        return None, f"{path}: meta.yaml is empty"
    try:
        raw = load_meta_bytes(data)
    except Exception as exc:  # any parser error: this run is broken, the listing goes on
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"{path}: meta.yaml is not valid YAML ({first})"
    if not isinstance(raw, dict):
        return None, f"{path}: meta.yaml is not a YAML mapping (got {type(raw).__name__})"
    return raw, None


def to_ms(value: Any) -> int | None:
    """A meta.yaml time (ISO string, or a datetime if a hand edit left it unquoted) in ms."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    stamp = getattr(value, "timestamp", None)
    if callable(stamp):
        if getattr(value, "tzinfo", 1) is None:
            from datetime import timezone

            value = value.replace(tzinfo=timezone.utc)
        return round(float(value.timestamp()) * 1000)
    try:
        return ms_from_iso(str(value))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def normalize_meta(raw: dict[str, Any], folder_name: str) -> dict[str, Any]:
    """The fields of a run's meta.yaml that listing and search use, with times in ms."""
    version = raw.get("format_version")
    return {
        "run_id": str(raw.get("run_id") or folder_name),
        "run_name": _text(raw.get("run_name")),
        "status": str(raw.get("status") or "UNKNOWN"),
        "start_time": to_ms(raw.get("start_time")),
        "end_time": to_ms(raw.get("end_time")),
        "user": _text(raw.get("user")),
        "lifecycle_stage": str(raw.get("lifecycle_stage") or "active"),
        "parent_run_id": _text(raw.get("parent_run_id")),
        "format_version": version if isinstance(version, int) and not isinstance(version, bool) else None,
    }


def read_meta(path: str, dir_fd: int | None = None) -> dict[str, Any]:
    """A meta.yaml, as the safe loader reads it (``path`` is a name in ``dir_fd`` if given)."""
    raw = read_bytes(path, dir_fd)  # a meta.yaml planted as a symlink: refused (ELOOP), never read through
    try:
        data = load_meta_bytes(raw)  # the files we write: ~15–30 µs each; the YAML loader took ~0.2 ms
    except Exception as exc:  # yaml errors (e.g. a !!python/object tag) mean a broken file, never code
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(errno.EINVAL, f"{path} is not a valid meta.yaml: {first}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data
