"""The derived binary cache of big metric histories: exact results, growth, rewrites, damage, links."""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from array import array
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.read import _index
from mini_mlflow.read._metric_cache import _HEADER, Cached, _load, cache_path
from mini_mlflow.read._reader import MetricHistory, parse_metric_lines

from conftest import only_run_dir

# Small files get the cache too when the threshold is 1 byte: the tests stay fast.
TINY = 1


def _lines(start: int, n: int) -> bytes:
    specials = ['"NaN"', '"Infinity"', '"-Infinity"', "-0.0", "3", "1e308", "-2.5e-310"]
    out = []
    for s in range(start, start + n):
        value = specials[s % len(specials)] if s % 5 == 0 else repr(s * 0.37 - 1 / 3)
        out.append(f'{{"step":{s},"value":{value},"timestamp":{1763900000000 + s * 7}}}\n')
    return "".join(out).encode()


def _run(root: Path, data: bytes, key: str = "loss") -> tuple[str, Path]:
    with mm.Run(runs_dir=root) as run:
        run_id = run.run_id
    path = only_run_dir(root) / "metrics" / (key + ".jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return run_id, path


def _same(got: MetricHistory, want: MetricHistory) -> None:
    assert got.steps == want.steps
    assert got.timestamps == want.timestamps
    assert list(map(repr, got.values)) == list(map(repr, want.values))  # NaN, -0.0 and ±inf exactly
    assert all(type(v) is float for v in got.values)
    assert got.skipped_lines == want.skipped_lines


def _cached(root: Path, run_id: str, path: Path, key: str = "loss") -> Cached | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _load(cache_path(str(root), run_id, key), key, fd, os.fstat(fd))
    finally:
        os.close(fd)


def test_a_cache_hit_returns_exactly_what_a_fresh_parse_does(store: Path) -> None:
    data = _lines(0, 2000)
    run_id, path = _run(store, data)
    reader = mm.Store(store, metric_cache_bytes=TINY)
    first = reader.get_metric_history(run_id, "loss")
    cached = _cached(store, run_id, path)
    assert cached is not None and cached.consumed == len(data)
    second = reader.get_metric_history(run_id, "loss")
    want = parse_metric_lines(data, "loss")
    assert any(v != v for v in want.values) and float("inf") in want.values and float("-inf") in want.values
    _same(first, want)
    _same(second, want)
    assert len(second) == 2000


def test_small_files_get_no_cache_by_default(store: Path) -> None:
    run_id, _ = _run(store, _lines(0, 50))
    assert len(mm.Store(store).get_metric_history(run_id, "loss")) == 50
    assert not os.path.exists(cache_path(str(store), run_id, "loss"))


def test_a_grown_file_is_read_from_the_cache_plus_its_tail(store: Path) -> None:
    run_id, path = _run(store, _lines(0, 1000))
    reader = mm.Store(store, metric_cache_bytes=TINY)
    reader.get_metric_history(run_id, "loss")
    old_size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(_lines(1000, 300))
    before = _cached(store, run_id, path)
    assert before is not None and before.consumed == old_size  # the prefix still proves the cache
    got = reader.get_metric_history(run_id, "loss")
    _same(got, parse_metric_lines(path.read_bytes()))
    after = _cached(store, run_id, path)
    assert after is not None and after.consumed == path.stat().st_size  # extended
    _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(path.read_bytes()))


def _rewrite_in_place(path: Path, data: bytes) -> None:
    stat = path.stat()
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("change", ["same size", "truncated", "regrown", "replaced", "middle"])
def test_a_rewritten_truncated_or_replaced_file_is_not_served_from_the_cache(
    store: Path, change: str
) -> None:
    data = _lines(0, 1000)
    run_id, path = _run(store, data)
    reader = mm.Store(store, metric_cache_bytes=TINY)
    reader.get_metric_history(run_id, "loss")
    assert _cached(store, run_id, path) is not None
    if change == "same size":  # other values, not one byte more or less
        _rewrite_in_place(path, data.replace(b'"timestamp":17639', b'"timestamp":27639'))
    elif change == "truncated":
        _rewrite_in_place(path, data[: len(data) // 2 + data[len(data) // 2 :].index(b"\n") + 1])
    elif change == "regrown":  # shorter rewrite, then appended past the old size
        _rewrite_in_place(path, _lines(5, 1200))
    elif change == "replaced":  # same bytes, a new file (another inode)
        os.replace(path, path.with_suffix(".old"))
        path.write_bytes(data.replace(b'"step":1,', b'"step":9,'))
    else:  # one digit in the middle, file size and both ends unchanged
        middle = data.index(b'"step":500,')
        _rewrite_in_place(path, data[:middle] + b'"step":501,' + data[middle + 11 :])
    assert _cached(store, run_id, path) is None
    got = reader.get_metric_history(run_id, "loss")
    _same(got, parse_metric_lines(path.read_bytes()))
    assert _cached(store, run_id, path) is not None  # rebuilt for the new content


def test_a_torn_last_line_is_reported_and_never_cached(store: Path) -> None:
    whole = _lines(0, 600)
    run_id, path = _run(store, whole + b'{"step":600,"val')
    reader = mm.Store(store, metric_cache_bytes=TINY)
    got = reader.get_metric_history(run_id, "loss")
    _same(got, parse_metric_lines(path.read_bytes()))
    assert got.skipped_lines == 1 and len(got) == 600
    cached = _cached(store, run_id, path)
    assert cached is not None and cached.consumed == len(whole)
    _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(path.read_bytes()))
    with open(path, "ab") as f:  # a later writer appends after the torn bytes
        f.write(_lines(601, 10))
    got = reader.get_metric_history(run_id, "loss")
    _same(got, parse_metric_lines(path.read_bytes()))
    assert got.skipped_lines == 1 and got.steps[-1] == 610  # the torn line glued to the next is garbage


def test_garbage_lines_are_counted_the_same_from_the_cache(store: Path) -> None:
    data = _lines(0, 300) + b"not json\n" + _lines(300, 300) + b'{"step":"x","value":1,"timestamp":1}\n'
    run_id, _ = _run(store, data)
    reader = mm.Store(store, metric_cache_bytes=TINY)
    want = parse_metric_lines(data)
    assert want.skipped_lines == 2
    _same(reader.get_metric_history(run_id, "loss"), want)
    _same(reader.get_metric_history(run_id, "loss"), want)


@pytest.mark.parametrize("damage", ["garbage", "cut", "empty", "flipped", "directory"])
def test_a_damaged_cache_file_is_ignored_and_rebuilt(store: Path, damage: str) -> None:
    data = _lines(0, 800)
    run_id, path = _run(store, data)
    reader = mm.Store(store, metric_cache_bytes=TINY)
    reader.get_metric_history(run_id, "loss")
    cache = Path(cache_path(str(store), run_id, "loss"))
    blob = cache.read_bytes()
    if damage == "garbage":
        cache.write_bytes(os.urandom(len(blob)))
    elif damage == "cut":
        cache.write_bytes(blob[: len(blob) - 100])
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "flipped":  # one payload byte changed: the checksum catches it
        cache.write_bytes(blob[:-50] + bytes([blob[-50] ^ 0xFF]) + blob[-49:])
    else:
        cache.unlink()
        cache.mkdir()
    assert _cached(store, run_id, path) is None
    _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(data))
    if damage != "directory":
        assert _cached(store, run_id, path) is not None  # rebuilt
        _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(data))


def test_deleting_the_caches_at_any_time_is_safe(store: Path) -> None:
    data = _lines(0, 500)
    run_id, path = _run(store, data)
    reader = mm.Store(store, metric_cache_bytes=TINY)
    reader.get_metric_history(run_id, "loss")
    shutil.rmtree(store / ".index")
    _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(data))
    assert _cached(store, run_id, path) is not None


def test_keys_with_slashes_and_similar_keys_have_their_own_caches(store: Path) -> None:
    run_id, path = _run(store, _lines(0, 200), key="train/loss")
    (path.parent.parent / "loss.jsonl").write_bytes(_lines(50, 100))
    reader = mm.Store(store, metric_cache_bytes=TINY)
    for _ in range(2):
        _same(reader.get_metric_history(run_id, "train/loss"), parse_metric_lines(_lines(0, 200)))
        _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(_lines(50, 100)))
    assert cache_path(str(store), run_id, "train/loss") != cache_path(str(store), run_id, "loss")


@pytest.mark.parametrize("where", [".index", ".index/metrics", "run"])
def test_the_cache_is_never_written_through_a_symbolic_link(store: Path, tmp_path: Path, where: str) -> None:
    data = _lines(0, 300)
    run_id, _ = _run(store, data)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = {".index": store / ".index", ".index/metrics": store / ".index" / "metrics"}.get(
        where, store / ".index" / "metrics" / run_id
    )
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    reader = mm.Store(store, metric_cache_bytes=TINY)
    for _ in range(2):
        _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(data))
    assert list(outside.rglob("*")) == []
    assert link.is_symlink()


def test_a_store_where_the_cache_cannot_be_written_still_reads(store: Path) -> None:
    data = _lines(0, 300)
    run_id, _ = _run(store, data)
    shutil.rmtree(store / ".index", ignore_errors=True)
    (store / ".index").write_bytes(b"a file, not a folder")
    reader = mm.Store(store, metric_cache_bytes=TINY)
    for _ in range(2):
        _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(data))
    assert (store / ".index").read_bytes() == b"a file, not a folder"


def test_a_read_only_file_system_still_reads(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs read-only needs root")
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        root = mount / "mlruns"
        data = _lines(0, 400)
        run_id, _ = _run(root, data)
        shutil.rmtree(root / ".index", ignore_errors=True)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True)
        assert remount.returncode == 0, remount.stderr.decode()
        reader = mm.Store(root, metric_cache_bytes=TINY)
        for _ in range(2):
            _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(data))
        assert not (root / ".index").exists()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_index_uses_a_valid_cache_and_gets_exact_count_min_max(store: Path) -> None:
    data = _lines(0, 700)
    run_id, path = _run(store, data, key="acc")
    (path.parent / "plain.jsonl").write_bytes(_lines(1, 3).replace(b'"NaN"', b"0.5"))
    mm.Store(store, metric_cache_bytes=TINY).get_metric_history(run_id, "acc")
    want = parse_metric_lines(data)
    summary = _index.metric_summary(str(store), "0", run_id)
    finite = [v for v in want.values if v == v]
    assert summary["acc"][4:9] == [700, want.values[-1], min(finite), max(finite), 699]
    plain = parse_metric_lines(_lines(1, 3).replace(b'"NaN"', b"0.5")).values
    assert summary["plain"][4:8] == [3, plain[-1], min(plain), max(plain)]


def test_a_small_tail_is_parsed_on_each_read_until_it_is_worth_rewriting_the_cache(store: Path) -> None:
    run_id, path = _run(store, _lines(0, 1600))
    reader = mm.Store(store, metric_cache_bytes=TINY)
    reader.get_metric_history(run_id, "loss")
    cached_size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(_lines(1600, 10))  # far below 1/16 of the cached part
    _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(path.read_bytes()))
    kept = _cached(store, run_id, path)
    assert kept is not None and kept.consumed == cached_size  # not rewritten for 10 points
    with open(path, "ab") as f:
        f.write(_lines(1610, 200))
    _same(reader.get_metric_history(run_id, "loss"), parse_metric_lines(path.read_bytes()))
    grown = _cached(store, run_id, path)
    assert grown is not None and grown.consumed == path.stat().st_size


def test_a_cache_behind_a_symbolic_link_is_not_read(store: Path, tmp_path: Path) -> None:
    data = _lines(0, 400)
    run_id, path = _run(store, data)
    mm.Store(store, metric_cache_bytes=TINY).get_metric_history(run_id, "loss")
    cache = Path(cache_path(str(store), run_id, "loss"))
    blob = cache.read_bytes()
    fields = list(_HEADER.unpack(blob[: _HEADER.size]))
    count, key_len = fields[6], fields[10]
    start = _HEADER.size + key_len
    forged = array("d", [42.0] * count).tobytes()
    payload = blob[start : start + count * 8] + forged + blob[start + 2 * count * 8 :]
    fields[8] = zlib.crc32(payload)
    cache.write_bytes(_HEADER.pack(*fields) + blob[_HEADER.size : start] + payload)
    forged_hit = _cached(store, run_id, path)
    assert forged_hit is not None and forged_hit.values == [42.0] * count  # a valid-looking cache
    outside = tmp_path / "elsewhere"
    (store / ".index").rename(outside)
    (store / ".index").symlink_to(outside, target_is_directory=True)
    _same(
        mm.Store(store, metric_cache_bytes=TINY).get_metric_history(run_id, "loss"), parse_metric_lines(data)
    )
