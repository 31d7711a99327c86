"""Reading one run folder for the index: signatures, values, and incremental metric aggregates.

Everything here is keyed by file-system signatures (inode, size, mtime) so that the index re-reads only
what changed: meta.yaml when it was replaced, params/tags when their folders changed, and for a metric
file only the bytes appended since the last read (metric files are append-only).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..store._files import READ_FLAGS, read_bytes
from ..store._layout import FORMAT_VERSION, META_FILE, METRIC_SUFFIX, VALUE_SUFFIX, walk_keys
from ..store._meta import normalize_meta, read_meta_file
from ._metric_cache import fingerprint, read_metric
from ._metric_parse import parse_metric_lines
from ._records import RunRecord

#: An mtime this close to the moment it was read may hide a later write in the same clock tick.
RACY_NS = 2_000_000_000


_intern = sys.intern


def sig_of(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _dir_sigs(folder: str, rels: list[str]) -> list[list[Any]]:
    """mtimes of ``folder`` and its sub-folders (a new key shows up as a changed folder mtime)."""
    out: list[list[Any]] = []
    for rel in rels:
        try:
            out.append([rel, os.stat(folder if rel == "." else f"{folder}/{rel}").st_mtime_ns])
        except OSError:
            out.append([rel, -1])
    return out


def _newest(sigs: list[list[Any]] | None) -> int:
    return max((s[-1] for s in sigs or ()), default=0)


def _read_values(folder: str, keys: list[str]) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    texts: list[bytes] = []
    for key in keys:
        try:
            texts.append(read_bytes(f"{folder}/{key}{VALUE_SUFFIX}").strip())
        except OSError:
            texts.append(b"")
    try:  # one parse for all values of the run; one bad file sends us to the careful path
        if texts and all(texts):
            return dict(zip(keys, json.loads(b"[" + b",".join(texts) + b"]"), strict=True)), problems
    except ValueError:
        pass
    for key, text in zip(keys, texts, strict=True):
        path = f"{folder}/{key}{VALUE_SUFFIX}"
        try:
            values[key] = json.loads(text)
        except ValueError as exc:
            problems.append(f"{path}: unreadable ({type(exc).__name__})")
    return values, problems


#: Aggregates of one metric file: what the index keeps per metric (a JSON list).
INO, SIZE, MTIME, OFFSET, COUNT, LAST, LOW, HIGH, LAST_STEP, SKIPPED, MARK, BEHIND = range(12)
#: A listing parses at most this many new bytes of a metric file per look (about 15,000 points, ~15 ms);
#: past that it reads only the last point, and count/min/max catch up when the run is shown. A live run
#: logging half a million points a second thus costs a listing a few small reads, not seconds of parsing.
LIVE_PARSE_BYTES = 1 << 20


def _empty(sig: list[int]) -> list[Any]:
    return [*sig, 0, 0, None, None, None, None, 0, "", 0]


def _mark(fd: int, offset: int) -> str:
    """A fingerprint of the first ``offset`` bytes (both ends and windows between), "" for none."""
    if not offset:
        return ""
    mark = fingerprint(fd, offset)
    return mark.hex() if mark is not None else "?"


def _tail_point(fd: int, size: int) -> tuple[int, float] | None:
    """``(step, value)`` of the last complete point of the file, reading only its tail."""
    chunk = 512
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        history = parse_metric_lines(data[data.find(b"\n") + 1 :] if start else data)
        if history.values:
            return history.steps[-1], history.values[-1]
        if start == 0:
            return None
        chunk *= 8


def _update_metric(
    path: str, old: list[Any] | None, cache: tuple[str, str, str] | None = None, listing: bool = False
) -> list[Any]:
    """``[ino, size, mtime, offset, count, last, min, max, last_step, skipped, mark, behind]``.

    count/min/max/skipped cover the first ``offset`` bytes (whole lines), whose fingerprint is
    ``mark``: metric files are append-only, so a later look parses only what follows, after checking
    that the covered bytes are still the same (a truncated, rewritten or replaced file is read again
    from the start). ``last``/``last_step`` are the file's last complete point. With ``listing`` (only
    last values are needed) a backlog over ``LIVE_PARSE_BYTES`` is not parsed: the last point is read
    from the tail and ``behind`` is set until a full look catches up.

    ``cache`` is ``(root, run_id, key)``: a big file read from its start is taken from the metric cache
    when ``get_metric_history`` left a valid one (only the tail appended since is parsed). The index
    does not write that cache: building it costs about a fifth of the parse, and the index keeps what
    it needs (count, min, max) itself, so a first ``show`` stays as fast as the parse allows.
    """
    if old is not None and len(old) != BEHIND + 1:
        old = None  # another layout: start over
    if old is not None:
        sig = sig_of(path)
        if sig is None:
            return _empty([0, 0, 0])
        if old[:3] == sig and (listing or not old[BEHIND]):
            return old  # unchanged: not even opened
    fd = os.open(path, READ_FLAGS)
    try:
        st = os.fstat(fd)
        sig = [st.st_ino, st.st_size, st.st_mtime_ns]
        same_file = (
            old is not None
            and old[INO] == sig[0]
            and sig[1] >= old[OFFSET]
            and (sig[1] != old[SIZE] or sig[2] == old[MTIME] or old[BEHIND])  # changed in place?
            and old[MARK] != "?"
            and old[MARK] == _mark(fd, old[OFFSET])
        )
        agg = [*sig, *old[3:]] if same_file and old is not None else _empty(sig)
        if listing and sig[1] - agg[OFFSET] > LIVE_PARSE_BYTES:
            point = _tail_point(fd, sig[1])
            agg[LAST_STEP], agg[LAST] = point if point is not None else (None, None)
            agg[BEHIND] = 1
            return agg
        root, run_id, key = cache if cache is not None and agg[OFFSET] == 0 else (None, None, "")
        history, consumed, _ = read_metric(fd, key, root, run_id, offset=agg[OFFSET], write=False)
        agg[BEHIND] = 0
        if consumed:
            agg[OFFSET] += consumed
            agg[MARK] = _mark(fd, agg[OFFSET])
    finally:
        os.close(fd)
    if not consumed:
        return agg
    agg[SKIPPED] += history.skipped_lines
    values = history.values
    if values:
        agg[COUNT] += len(values)
        agg[LAST] = values[-1]
        agg[LAST_STEP] = history.steps[-1]
        # sum() is NaN when a NaN (or both infinities) is present; otherwise min/max need no filter
        total = sum(values)
        finite = values if total == total else [v for v in values if v == v]
        if finite:
            low, high = min(finite), max(finite)
            agg[LOW] = low if agg[LOW] is None else min(agg[LOW], low)
            agg[HIGH] = high if agg[HIGH] is None else max(agg[HIGH], high)
    return agg


def build_run(
    rdir: str,
    name: str,
    exp_id: str,
    old: dict[str, Any] | None,
    now_ns: int,
    root: str | None = None,
    listing: bool = False,
) -> tuple[RunRecord | None, str | None, dict[str, Any]]:
    """Re-read what changed in one run folder: ``(record, broken reason, detail)``.

    With the store ``root``, big metric files read whole come from their metric cache when it is valid.
    With ``listing``, metric aggregates may stay behind a big backlog (see ``_update_metric``).
    """
    settled = (old or {}).get("at", 0) - RACY_NS

    def reusable(key: str, sig: Any) -> bool:
        return old is not None and old.get(key) == sig and _newest([[sig[-1]]] if sig else None) < settled

    detail: dict[str, Any] = {"at": now_ns}
    meta_sig = sig_of(f"{rdir}/{META_FILE}")
    if meta_sig is not None and old is not None and reusable("ms", meta_sig) and old.get("m"):
        meta = old["m"]
    else:
        raw, broken = read_meta_file(f"{rdir}/{META_FILE}")
        if raw is None:
            return None, broken, {"at": now_ns}
        meta = normalize_meta(raw, name)
    detail["ms"], detail["m"] = meta_sig, meta
    problems = [
        f"{rdir}/{kind}: a symbolic link (not followed: nothing outside the store is read)"
        for kind in ("params", "tags", "metrics")
        if os.path.islink(f"{rdir}/{kind}")
    ]
    values: dict[str, dict[str, Any]] = {}
    for kind in ("params", "tags"):
        folder = f"{rdir}/{kind}"
        old_sigs = (old or {}).get(kind[0] + "s")
        sigs = _dir_sigs(folder, [s[0] for s in old_sigs]) if old_sigs else None
        if old is not None and sigs == old_sigs and _newest(sigs) < settled and kind in old:
            detail[kind[0] + "s"], values[kind] = old_sigs, old[kind]
            problems += [p for p in old.get("w", []) if f"/{kind}/" in p]
        else:
            keys, rels = walk_keys(folder, VALUE_SUFFIX)
            detail[kind[0] + "s"] = _dir_sigs(folder, rels)
            values[kind], bad = _read_values(folder, keys)
            problems += bad
        detail[kind] = values[kind]
    folder = f"{rdir}/metrics"
    old_sigs = (old or {}).get("xs")
    sigs = _dir_sigs(folder, [s[0] for s in old_sigs]) if old_sigs else None
    if old is not None and sigs == old_sigs and _newest(sigs) < settled and "x" in old:
        keys = list(old["x"])
    else:
        keys, rels = walk_keys(folder, METRIC_SUFFIX)
        sigs = _dir_sigs(folder, rels)
    detail["xs"] = sigs
    old_x = (old or {}).get("x", {})
    aggs: dict[str, list[Any]] = {}
    for key in keys:
        cache = (root, name, key) if root is not None else None
        path = f"{folder}/{key}{METRIC_SUFFIX}"
        try:
            aggs[key] = agg = _update_metric(path, old_x.get(key), cache, listing)
        except OSError as exc:
            problems.append(f"{path}: unreadable ({exc.strerror or exc})")
            continue
        if agg[SKIPPED]:
            problems.append(f"{path}: {agg[SKIPPED]} unreadable line(s) skipped")
    detail["x"], detail["w"] = aggs, problems
    newest = max(_newest(detail["ps"]), _newest(detail["ts"]), _newest(sigs), (meta_sig or [0])[-1])
    newest = max([newest, *(a[MTIME] for a in aggs.values())])
    detail["r"] = newest >= now_ns - RACY_NS  # something may still change unseen: check again next time
    record = RunRecord(
        name,
        meta["run_name"],
        exp_id,
        meta["status"],
        meta["start_time"],
        meta["end_time"],
        meta["lifecycle_stage"],
        meta["user"],
        meta["parent_run_id"],
        {_intern(k): v for k, v in values["params"].items()},
        {_intern(k): v for k, v in values["tags"].items()},
        {_intern(k): a[LAST] for k, a in aggs.items() if a[LAST] is not None},
        rdir,
        meta["status"],
        newer_format(meta),
        problems,
    )
    return record, None, detail


def newer_format(meta: dict[str, Any]) -> int | None:
    version = meta.get("format_version")
    return version if isinstance(version, int) and version > FORMAT_VERSION else None
