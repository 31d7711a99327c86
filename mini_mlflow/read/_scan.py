"""Reading one run folder for the index, through descriptors: meta.yaml, params, tags, metric tails.

The run folder is opened once, never through a symbolic link, and everything in it is read relative to
that descriptor (no path walked again): each value file with one open, one read and one close, each
metric file with one open, one ``fstat`` and one ``pread`` of its tail (a listing needs its last point;
count/min/max wait for a full look, see ``_metric_agg``). A run checked before is re-read only where
its signatures moved: params and tags when their folder's mtime changed, a metric file when its inode,
size or mtime did; meta.yaml is read every time (it is replaced by rename, and small).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from ..store._files import READ_FLAGS
from ..store._layout import FORMAT_VERSION, META_FILE, METRIC_SUFFIX, TMP_MARK, VALUE_SUFFIX
from ..store._meta import normalize_meta, read_meta_file
from ._columns import dump_fast, loads
from ._metric_agg import (
    BEHIND,
    COUNT,
    HIGH,
    INO,
    LAST,
    LAST_STEP,
    LIVE_PARSE_BYTES,
    LOW,
    MARK,
    MTIME,
    OFFSET,
    RACY_NS,
    SIZE,
    SKIPPED,
    TAIL_BAD,
    look_tail,
    sig_of,
    unreadable,
    update_metric,
)

__all__ = [  # the aggregate's fields, re-exported: tests and `show` read them from here
    "BEHIND", "COUNT", "HIGH", "INO", "LAST", "LAST_STEP", "LIVE_PARSE_BYTES", "LOW", "MARK", "MTIME",
    "OFFSET", "RACY_NS", "SIZE", "SKIPPED", "TAIL_BAD", "Scanned", "encode_detail", "scan_run", "sig_of",
]  # fmt: skip

DIR_FLAGS = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
_LINK_ERRORS = (errno.ELOOP, errno.ENOTDIR)
_intern = sys.intern


class Scanned(NamedTuple):
    """What one look at a run folder found."""

    #: The record's fields in ``_columns.FIELDS`` order (stored status), or None when broken.
    fields: tuple[Any, ...] | None
    #: Why the run cannot be read (meta.yaml missing or corrupt), or None.
    broken: str | None
    params: dict[str, Any]
    tags: dict[str, Any]
    #: Each metric's last value.
    metrics: dict[str, float]
    warnings: list[str]
    #: What a later look compares: ``at`` (when), ``r`` (something may still change unseen),
    #: ``ps``/``ts``/``xs`` (``[folder, mtime_ns]`` of params/tags/metrics and their sub-folders),
    #: ``x`` (per metric key, the aggregate of ``_metric_agg``).
    detail: dict[str, Any]
    #: The run folder's mtime_ns when it was opened.
    d: int
    #: ``detail`` as ``encode_detail`` writes it, when a worker process encoded it (``_scan_workers``):
    #: ``detail`` then holds only ``r``, all a merge into a new columnar file needs.
    encoded: bytes | None = None


def _spell(value: Any) -> Any:
    if value.__class__ is float and value - value != 0:  # NaN or ±inf: JSON has no number for them
        return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    return value


def encode_detail(detail: dict[str, Any]) -> bytes:
    """A detail as JSON; non-finite metric values are spelled as the store spells them."""
    aggs = detail.get("x")
    if aggs:
        for agg in aggs.values():
            a, b, c = agg[LAST], agg[LOW], agg[HIGH]
            if _spell(a) is not a or _spell(b) is not b or _spell(c) is not c:
                spelled = {
                    k: [_spell(v) if i in (LAST, LOW, HIGH) else v for i, v in enumerate(g)]
                    for k, g in aggs.items()
                }
                detail = {**detail, "x": spelled}
                break
    return dump_fast(detail)


class Old(NamedTuple):
    """A run as the index last saw it."""

    detail: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, Any]
    warnings: list[str]


def _open_folder(name: str, dir_fd: int, path: str = "", links: list[str] | None = None) -> int | None:
    """A sub-folder's descriptor; None if it is missing, a file or a symbolic link (never followed;
    with ``links``, a link there is reported in it)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if links is not None and exc.errno in _LINK_ERRORS and _is_link(name, dir_fd):
            links.append(f"{path}: a symbolic link (not followed: nothing outside the store is read)")
        return None


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _walk(
    fd: int,
    rel: str,
    suffix: str,
    visit: Callable[[int, str, str], bool],
    sigs: list[list[Any]],
) -> None:
    """Visit every ``<key><suffix>`` file under the open folder ``fd`` (keys with ``/``
    are sub-folders); ``visit(folder_fd, file name, key)`` returns False for a name that is a folder.
    Records ``[rel, mtime_ns]`` of each folder walked. Links and temporary files are passed over."""
    sigs.append([rel, os.fstat(fd).st_mtime_ns])
    prefix = "" if rel == "." else rel + "/"
    for entry in os.listdir(fd):  # through the descriptor: a folder swapped meanwhile leads nowhere
        if TMP_MARK in entry:
            continue
        if entry.endswith(suffix) and visit(fd, entry, _intern(prefix + entry[: -len(suffix)])):
            continue
        sub = _open_folder(entry, fd)
        if sub is not None:
            try:
                _walk(sub, prefix + entry, suffix, visit, sigs)
            finally:
                os.close(sub)


def _dir_sigs(rfd: int, kind: str, rels: list[str]) -> list[list[Any]]:
    """The current ``[rel, mtime_ns]`` of the folders a look walked (-1: gone)."""
    out = []
    for rel in rels:
        try:
            path = kind if rel == "." else f"{kind}/{rel}"
            out.append([rel, os.stat(path, dir_fd=rfd, follow_symlinks=False).st_mtime_ns])
        except OSError:
            out.append([rel, -1])
    return out


def _newest(sigs: list[list[Any]] | None) -> int:
    return max((s[-1] for s in sigs or ()), default=0)


def _read_text(name: str, dir_fd: int) -> bytes | None:
    """A value file's stripped bytes (b"" if unreadable), None for a planted link or a folder."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        return None if exc.errno == errno.ELOOP else b""  # a link is passed over, never read
    try:
        data = os.read(fd, 8192)
        while len(data) % 8192 == 0 and data:  # a short read is the end of a regular file
            more = os.read(fd, 1 << 16)
            if not more:
                break
            data += more
    except IsADirectoryError:
        return None
    except OSError:
        data = b""
    finally:
        os.close(fd)
    return data.strip()


def _read_values(
    rfd: int, kind: str, folder: str, links: list[str]
) -> tuple[dict[str, Any], list[str], list[list[Any]]]:
    """Every value file of ``params/`` or ``tags/``: values, problems, folder signatures."""
    texts: dict[str, bytes] = {}
    sigs: list[list[Any]] = []
    top = _open_folder(kind, rfd, folder, links)
    if top is None:
        return {}, [], [[".", -1]]
    try:
        sigs.append([".", os.fstat(top).st_mtime_ns])
        nested = []
        for entry in os.listdir(top):  # the usual flat folder, read in this loop
            if TMP_MARK in entry:
                continue
            text = _read_text(entry, top) if entry.endswith(VALUE_SUFFIX) else None
            if text is None:
                nested.append(entry)
            else:
                texts[_intern(entry[: -len(VALUE_SUFFIX)])] = text
        for entry in nested:  # keys with "/" (and anything else that may be a folder)
            sub = _open_folder(entry, top)
            if sub is not None:
                try:
                    visit = lambda fd, n, k: _keep(texts, k, _read_text(n, fd))  # noqa: E731
                    _walk(sub, entry, VALUE_SUFFIX, visit, sigs)
                finally:
                    os.close(sub)
    finally:
        os.close(top)
    keys = sorted(texts)
    problems: list[str] = []
    try:  # one parse for all values of the run; one bad file sends us to the careful path
        if all(texts.values()):
            parsed = loads(b"[" + b",".join([texts[k] for k in keys]) + b"]")
            return dict(zip(keys, parsed, strict=True)), problems, sigs
    except ValueError:
        pass
    values: dict[str, Any] = {}
    for key in keys:
        try:
            values[key] = loads(texts[key])
        except ValueError as exc:
            problems.append(f"{folder}/{key}{VALUE_SUFFIX}: unreadable ({type(exc).__name__})")
    return values, problems, sigs


def _keep(texts: dict[str, bytes], key: str, text: bytes | None) -> bool:
    """Record a nested value file's text; False when it is no file (a folder to walk)."""
    if text is None:
        return False
    texts[key] = text
    return True


def _look_metrics(
    rfd: int,
    folder: str,
    old_x: dict[str, list[Any]],
    problems: list[str],
    cache: tuple[str, str] | None,
    listing: bool,
    links: list[str],
) -> tuple[dict[str, list[Any]], list[list[Any]]]:
    """Each metric file's aggregate after a look, and the metrics folders' signatures."""
    aggs: dict[str, list[Any]] = {}
    errors: dict[str, str] = {}
    sigs: list[list[Any]] = []

    def visit(fd: int, name: str, key: str) -> bool:
        old = old_x.get(key)
        try:
            if listing and old is None:  # a file not seen before: opened once, its tail read
                mfd = os.open(name, READ_FLAGS, dir_fd=fd)
                try:
                    st = os.fstat(mfd)
                    if st.st_mode & 0o170000 == stat.S_IFDIR:
                        return False
                    aggs[key] = look_tail(mfd, st)
                finally:
                    os.close(mfd)
                return True
            path = f"{folder}/{key}{METRIC_SUFFIX}"  # seen before: a stat may be all it needs
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                return False
            if stat.S_ISLNK(mode):
                return True  # a planted link: passed over, never read
            check = (cache[0], cache[1], key) if cache is not None else None
            aggs[key] = update_metric(path, old, check, listing)
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # a planted link is passed over silently, as walk_keys does
                errors[key] = f"{folder}/{key}{METRIC_SUFFIX}: unreadable ({exc.strerror or exc})"
        return True

    top = _open_folder("metrics", rfd, folder, links)
    if top is None:
        return aggs, [[".", -1]]
    try:
        _walk(top, ".", METRIC_SUFFIX, visit, sigs)
    finally:
        os.close(top)
    for key in sorted({*aggs, *errors}):
        if key in errors:
            problems.append(errors[key])
        else:
            bad = unreadable(aggs[key])
            if bad:
                problems.append(f"{folder}/{key}{METRIC_SUFFIX}: {bad} unreadable line(s) skipped")
    return {k: aggs[k] for k in sorted(aggs)}, sigs


def scan_run(
    exp_fd: int,
    exp_dir: str,
    name: str,
    now_ns: int,
    old: Old | None = None,
    root: str | None = None,
    listing: bool = True,
) -> Scanned:
    """Look at run folder ``name`` of the experiment open as ``exp_fd`` (OSError if it cannot be
    opened as a folder). ``old``: how the index last saw it (unchanged parts are not read again).
    ``listing``: only last points are needed; otherwise every metric file is read to its end (and
    big ones come from the metric cache under ``root`` when it is valid)."""
    rdir = f"{exp_dir}/{name}"
    rfd = os.open(name, DIR_FLAGS, dir_fd=exp_fd)
    try:
        d = os.fstat(rfd).st_mtime_ns
        raw, broken = read_meta_file(f"{rdir}/{META_FILE}", rfd)
        if raw is None:
            return Scanned(None, broken, {}, {}, {}, [], {"at": now_ns}, d)
        meta = normalize_meta(raw, name)
        detail: dict[str, Any] = {"at": now_ns}
        problems: list[str] = []
        links: list[str] = []  # params/, tags/ or metrics/ planted as a link: said first
        settled = (old.detail.get("at", 0) if old is not None else 0) - RACY_NS
        values: list[dict[str, Any]] = []
        for kind in ("params", "tags"):
            old_sigs = old.detail.get(kind[0] + "s") if old is not None else None
            sigs = _dir_sigs(rfd, kind, [s[0] for s in old_sigs]) if old_sigs else None
            if old is not None and sigs == old_sigs and _newest(sigs) < settled:
                values.append(old.params if kind == "params" else old.tags)
                problems += [p for p in old.warnings if f"/{kind}/" in p]
                links += [p for p in old.warnings if p.startswith(f"{rdir}/{kind}: a symbolic link")]
            else:
                found, bad, sigs = _read_values(rfd, kind, f"{rdir}/{kind}", links)
                values.append(found)
                problems += bad
            detail[kind[0] + "s"] = sigs
        old_x = old.detail.get("x", {}) if old is not None else {}
        cache = (root, name) if root is not None else None
        aggs, msigs = _look_metrics(rfd, f"{rdir}/metrics", old_x, problems, cache, listing, links)
    finally:
        os.close(rfd)
    if links:
        problems[:0] = sorted(links, key=lambda p: ("/params:" not in p, "/tags:" not in p))
    detail["xs"], detail["x"] = msigs, aggs
    newest = max(d, _newest(detail["ps"]), _newest(detail["ts"]), _newest(msigs))
    newest = max([newest, *(a[MTIME] for a in aggs.values())])
    detail["r"] = newest >= now_ns - RACY_NS  # something may still change unseen: check again next time
    version = meta["format_version"]
    fields = (
        meta["run_name"],
        meta["status"],
        meta["start_time"],
        meta["end_time"],
        meta["lifecycle_stage"],
        meta["user"],
        meta["parent_run_id"],
        version if isinstance(version, int) and version > FORMAT_VERSION else None,
    )
    metrics = {k: a[LAST] for k, a in aggs.items() if a[LAST] is not None}
    return Scanned(fields, None, values[0], values[1], metrics, problems, detail, d)
