"""The read side's fast paths give exactly what the careful paths give.

* the canonical-line parse (one flat JSON array) against a line-by-line reference, with orjson and with
  the stdlib, on canonical files and on every kind of line that must send it to the general path;
* the index's incremental metric reads (append → only the tail; truncate/rewrite → from the start) and
  a listing beside a big backlog (only the last point), checked against full parses;
* searches in the process that built a big index against a process that loaded it.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.read import _index, _metric_parse, _scan
from mini_mlflow.read._metric_parse import parse_columns
from mini_mlflow.read._search import search_runs

from conftest import ROOT, only_run_dir

try:
    import orjson

    LOADERS = {"stdlib": json.loads, "orjson": orjson.loads}
except ImportError:  # the stdlib path is still tested
    LOADERS = {"stdlib": json.loads}

SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def reference(data: bytes) -> tuple[list[int], list[float], list[int], int]:
    """Each line on its own, with the reader's rules: int step and timestamp, numeric value."""
    steps, values, stamps, skipped = [], [], [], 0
    lines = data.split(b"\n")
    if lines[-1].strip():
        skipped += 1  # a torn last line
    for line in lines[:-1]:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step, value, stamp = row["step"], row["value"], row["timestamp"]
        except (ValueError, KeyError, TypeError):
            skipped += 1
            continue
        if type(value) is int:
            value = float(value)
        elif type(value) is str and value in SPECIAL:
            value = SPECIAL[value]
        if type(step) is not int or type(stamp) is not int or type(value) is not float:
            skipped += 1
            continue
        steps.append(step)
        values.append(value)
        stamps.append(stamp)
    return steps, values, stamps, skipped


def same(a: list[float], b: list[float]) -> bool:
    """Equal, NaN equal to NaN, -0.0 told from 0.0."""
    return len(a) == len(b) and all(
        (x != x and y != y) or (x == y and math.copysign(1, x) == math.copysign(1, y)) for x, y in zip(a, b)
    )


def line(step: int, value: float, stamp: int) -> bytes:
    if value != value or value in (math.inf, -math.inf):
        text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        return f'{{"step":{step},"value":"{text}","timestamp":{stamp}}}\n'.encode()
    return f'{{"step":{step},"value":{value!r},"timestamp":{stamp}}}\n'.encode()


def canonical(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        value = rng.choice(
            [
                rng.random(),
                -rng.random(),
                rng.random() * 1e-9,
                -rng.uniform(1e17, 1e300),
                5e-324,
                -0.0,
                0.0,
                3.0,
            ]
        )
        out.append(line(rng.choice([i, -i, 2**63 - 1 - i]), value, 1763900000000 + rng.randrange(10**6)))
    return b"".join(out)


def check(data: bytes, loads: Any, fast: bool | None = None) -> None:
    history, packed = parse_columns(bytearray(data), loads=loads)
    steps, values, stamps, skipped = reference(data)
    assert history.steps == steps
    assert history.timestamps == stamps
    assert same(history.values, values)
    assert all(type(v) is float for v in history.values)
    assert history.skipped_lines == skipped
    if fast is not None:
        assert (packed is not None) == fast
    if packed is not None:  # the packed columns are the same points
        assert packed[0].tolist() == steps and packed[2].tolist() == stamps
        assert same(packed[1].tolist(), values)


@pytest.mark.parametrize("loads", LOADERS.values(), ids=list(LOADERS))
def test_canonical_files_take_the_fast_path_and_read_exactly(loads: Any) -> None:
    data = canonical(5000)
    check(data, loads, fast=True)
    check(data + b'{"step":5000,"val', loads, fast=True)  # a torn last line is skipped and counted
    check(line(0, 1e-05, 1) + line(1, 1.5e16, 2) + line(2, -2.5e-300, 3), loads, fast=True)
    check(line(0, 7.0, 1).replace(b"7.0", b"7"), loads, fast=True)  # an int value reads as a float


# Lines the flat parse must never read as points of its own: each goes to the general path, which
# reads it the way json.loads does (or skips it).
ODD_LINES = [
    b'{"step":1,"timestamp":5,"value":2.0}',  # keys in another order
    b'{"value":2.0,"step":1,"timestamp":5}',
    b'{"step":1,"value":2.0,"timestamp":5,"extra":3}',  # an extra key
    b'{"step":1,"value":2.0}',  # a missing key
    b'{"step": 1,"value":2.0,"timestamp":5}',  # spacing
    b'{"stp":1,"value":2.0,"timestamp":5}',  # a key misspelt...
    b'{"steep":1,"value":2.0,"timestamp":5}',  # ...and one with the letter to spare
    b'5{"step":,"value":2.0,"timestamp":5}',  # a number outside its slot, the slot empty
    b'{"st5ep":,"value":2.0,"timestamp":5}',
    b'{"step":1,"value":2.0,"timestamp":}5',
    b'{"step":1,"value":2.0,"timestamp":5}7',
    b'{"step":1,"value":,"timestamp":5}',
    b'{"step":1.0,"value":2.0,"timestamp":5}',  # a float step
    b'{"step":1,"value":2.0,"timestamp":5e3}',
    b'{"step":1,"value":"NaN","timestamp":5}',  # special values: valid, read by the general path
    b'{"step":1,"value":"-Infinity","timestamp":5}',
    b'{"step":1,"value":"nan","timestamp":5}',
    b'{"step":1,"value":1e5,"timestamp":5}',  # an exponent without a sign
    b'{"step":1,"value":true,"timestamp":5}',
    b'{"step":99999999999999999999,"value":2.0,"timestamp":5}',  # beyond int64
    b'{"step":1,"value":2.0,"timestamp":5}{"step":2,"value":3.0,"timestamp":6}',
    b"",  # a blank line
    b"garbage",
    b'{"ste-p":1,"value":2.0,"timestamp":5}',
    b'{"step":--1,"value":2.0,"timestamp":5}',
    b'{"step":1,"value":2.0\n"timestamp":5}',  # one line cut in two: two unreadable lines
]


@pytest.mark.parametrize("loads", LOADERS.values(), ids=list(LOADERS))
@pytest.mark.parametrize("odd", ODD_LINES)
def test_an_odd_line_anywhere_sends_the_file_to_the_general_path(loads: Any, odd: bytes) -> None:
    good = canonical(50, seed=1)
    for at in (0, 25 * len(line(0, 0.5, 1)), len(good)):
        cut = good.rfind(b"\n", 0, at) + 1 if at else 0
        data = good[:cut] + odd + b"\n" + good[cut:]
        check(data, loads, fast=False)


NUMBER_BYTES = b'0123456789.-+eE{}":,\n ast'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    edits=st.lists(
        st.tuples(
            st.integers(0, 10**6), st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 24)
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_random_damage_is_never_misread(seed: int, edits: list[tuple[int, str, int]]) -> None:
    data = bytearray(canonical(12, seed))
    for at, op, which in edits:
        at %= len(data) + 1
        byte = NUMBER_BYTES[which : which + 1]
        if op == "insert":
            data[at:at] = byte
        elif op == "delete" and at < len(data):
            del data[at]
        elif at < len(data):
            data[at : at + 1] = byte
    for loads in LOADERS.values():
        check(bytes(data), loads)
        with small_pieces(200):  # the same damage where the buffer is read a few lines at a time
            check(bytes(data), loads)


@contextmanager
def small_pieces(size: int) -> Iterator[None]:
    """Parse in pieces of ``size`` bytes (1 MiB normally), so small inputs cross piece boundaries."""
    saved = _metric_parse._PIECE
    _metric_parse._PIECE = size
    try:
        yield
    finally:
        _metric_parse._PIECE = saved


@pytest.mark.parametrize("loads", LOADERS.values(), ids=list(LOADERS))
def test_a_buffer_read_in_pieces_reads_exactly_as_a_whole(loads: Any) -> None:
    good = canonical(400, seed=3)
    long_line = line(10**6, 0.5, 1).replace(b'{"step"', b'{"pad":"' + b"x" * 5000 + b'","step"')
    with small_pieces(1000):
        check(good, loads, fast=True)  # every piece canonical: packed columns joined across pieces
        check(good + b'{"step":400,"val', loads, fast=True)
        # One odd piece takes the general path; the pieces around it are still read exactly.
        middle = good.find(b"\n", len(good) // 2) + 1
        for odd in (line(7, math.nan, 8), b"garbage\n", long_line, b"\n"):
            check(good[:middle] + odd + good[middle:], loads, fast=False)
        check(long_line + good, loads, fast=False)  # a line longer than a piece opens the buffer
        check(good + long_line, loads, fast=False)
    # At the real piece size: a NaN among 100,000 points (several pieces).
    big = canonical(100_000, seed=4)
    cut = big.find(b"\n", len(big) // 3) + 1
    check(big, loads, fast=True)
    check(big[:cut] + line(1, math.inf, 2) + big[cut:], loads, fast=False)


# -- the index's incremental metric reads ------------------------------------------------------


def _run_with_metric(store: Path, n: int) -> tuple[str, Path]:
    with mm.start_run():
        for i in range(n):
            mm.log_metric("loss", 1.0 / (i + 1), step=i)
    rdir = only_run_dir(store)
    return rdir.name, rdir / "metrics" / "loss.jsonl"


def _append(path: Path, start: int, n: int, value: float | None = None) -> None:
    with open(path, "ab") as f:
        f.write(
            b"".join(
                line(i, value if value is not None else 1.0 / (i + 1), 1 + i) for i in range(start, start + n)
            )
        )


def _summary(store: Path, name: str) -> list[Any]:
    return _index.metric_summary(str(store), "0", name)["loss"]


def _expect(path: Path) -> tuple[int, float, float, float]:
    _, values, _, _ = reference(path.read_bytes())
    return len(values), values[-1], min(values), max(values)


def test_a_grown_metric_file_is_read_from_where_the_last_look_stopped(store: Path) -> None:
    _, path = _run_with_metric(store, 100)
    name = path.parent.parent.name
    first = _summary(store, name)
    assert first[_scan.COUNT] == 100 and first[_scan.OFFSET] == path.stat().st_size
    # Prove the second look parses only the appended tail: the stored count is made 1,000 too high
    # (as if 1,000 more points had been covered); an incremental read keeps that offset, a full read
    # would not. (A small experiment's runs live in its delta file.)
    delta_path = store / ".index" / "0.delta"
    delta = json.loads(delta_path.read_text())
    delta["runs"][name]["det"]["x"]["loss"][_scan.COUNT] += 1000
    delta_path.write_text(json.dumps(delta))
    _index._MEMORY.clear()
    _append(path, 100, 50, value=-7.0)
    grown = _summary(store, name)
    assert grown[_scan.COUNT] == 1000 + 150
    assert grown[_scan.LAST] == -7.0 and grown[_scan.LOW] == -7.0 and grown[_scan.HIGH] == 1.0
    assert grown[_scan.OFFSET] == path.stat().st_size and grown[_scan.LAST_STEP] == 149


@pytest.mark.parametrize("how", ["truncate", "rewrite-longer", "rewrite-same-size", "replace"])
def test_a_shrunk_or_rewritten_metric_file_is_read_again_from_the_start(store: Path, how: str) -> None:
    _, path = _run_with_metric(store, 200)
    name = path.parent.parent.name
    assert _summary(store, name)[_scan.COUNT] == 200
    if how == "truncate":
        data = path.read_bytes()
        os.truncate(path, data.find(b"\n", len(data) // 2) + 1)
    elif how == "rewrite-longer":  # same inode, different bytes, grown: only the fingerprint tells
        with open(path, "r+b") as f:
            f.write(b"".join(line(i, 100.0 + i, 1 + i) for i in range(300)))
    elif how == "rewrite-same-size":
        data = path.read_bytes()
        with open(path, "r+b") as f:
            f.write(data.replace(b'"value":1.0,', b'"value":9.0,', 1))
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    else:
        tmp = path.with_name("loss.jsonl.new")
        tmp.write_bytes(b"".join(line(i, -float(i), 1 + i) for i in range(120)))
        os.replace(tmp, path)
    got = _summary(store, name)
    count, last, low, high = _expect(path)
    assert (got[_scan.COUNT], got[_scan.LAST], got[_scan.LOW], got[_scan.HIGH]) == (count, last, low, high)
    assert got[_scan.OFFSET] == path.stat().st_size


def test_a_listing_beside_a_big_backlog_reads_only_the_last_point(store: Path) -> None:
    # The run stays open while the test appends by hand. A run this process ended is trusted on its
    # folder's mtime, and a hand append changes no folder: whether a listing looked again depended on
    # the clock tick the run ended in (this test failed about one time in six under load).
    run = mm.start_run()
    for i in range(10):
        mm.log_metric("loss", 1.0 / (i + 1), step=i)
    run.flush()
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    try:
        _listing_beside_a_big_backlog(store, path)
    finally:
        mm.end_run()


def _listing_beside_a_big_backlog(store: Path, path: Path) -> None:
    name = path.parent.parent.name
    root = str(store)
    first = _index.load_experiment(root, "0")
    assert first.records[name].metrics["loss"] == 0.1
    # A listing's first look at a file reads its last point only: count/min/max wait for a full look.
    assert first.details[name]["x"]["loss"][_scan.BEHIND] == 1
    points = _scan.LIVE_PARSE_BYTES // 40 + 1000  # more new bytes than a listing parses
    _append(path, 10, points)
    _append(path, 10 + points, 1, value=-3.5)
    with open(path, "ab") as f:
        f.write(b'{"step":99999,"val')  # a writer mid-line: not the last point
    index = _index.load_experiment(root, "0")
    assert index.records[name].metrics["loss"] == -3.5
    agg = (index.details.get(name) or _index._load_detail(root, "0", name) or {})["x"]["loss"]
    assert agg[_scan.BEHIND] == 1 and agg[_scan.COUNT] == 0  # count/min/max wait for a full look
    full = _summary(store, name)  # what `show` uses: every point
    assert full[_scan.BEHIND] == 0
    assert full[_scan.COUNT] == 10 + points + 1 and full[_scan.LOW] == -3.5 and full[_scan.LAST] == -3.5
    assert full[_scan.SKIPPED] == 0 and full[_scan.LAST_STEP] == 10 + points
    # a small growth after that is parsed by a listing again (the torn line and the first new one
    # make one unreadable line)
    _append(path, 0, 3, value=42.0)
    again = _index.load_experiment(root, "0")
    assert again.records[name].metrics["loss"] == 42.0
    agg = (again.details.get(name) or _index._load_detail(root, "0", name) or {})["x"]["loss"]
    assert agg[_scan.BEHIND] == 0 and agg[_scan.COUNT] == 10 + points + 1 + 2 and agg[_scan.SKIPPED] == 1


# -- searches in the process that built the index ----------------------------------------------


def _write_runs(root: Path, n: int) -> None:
    exp = root / "0"
    exp.mkdir(parents=True)
    (exp / "meta.yaml").write_text(
        "format_version: 1\nexperiment_id: '0'\nname: Default\nlifecycle_stage: active\n"
    )
    for i in range(n):
        rdir = exp / f"{i:032x}"
        for sub in ("params", "metrics", "tags"):
            (rdir / sub).mkdir(parents=True)
        (rdir / "meta.yaml").write_text(
            f"format_version: 1\nrun_id: {i:032x}\nrun_name: r{i}\nexperiment_id: '0'\nstatus: FINISHED\n"
            f"start_time: '2026-01-01T00:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 10:03d}Z'\n"
            "lifecycle_stage: active\n"
        )
        (rdir / "params" / "opt.json").write_text(json.dumps(["adam", "sgd"][i % 2]) + "\n")
        (rdir / "metrics" / "acc.jsonl").write_bytes(line(0, (i * 7919 % 1000) / 1000, 1))
        stamp = 1_600_000_000
        os.utime(rdir, (stamp, stamp))


def test_a_search_after_a_big_build_matches_a_fresh_process(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    _write_runs(root, _index.COMPACT_AFTER + 10)
    flt, order = "metrics.acc > 0.5 AND params.opt = 'adam'", ["metrics.acc DESC"]
    built = search_runs(filter_string=flt, order_by=order, root=str(root), max_results=5000)
    again = search_runs(filter_string=flt, order_by=order, root=str(root), max_results=5000)
    code = (
        "import json, sys\nfrom mini_mlflow.read._search import search_runs\n"
        f"r = search_runs(filter_string={flt!r}, order_by={order!r}, root={str(root)!r}, max_results=5000)\n"
        "print(json.dumps([x.to_dict() for x in r]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    fresh = json.loads(out.stdout)
    assert len(built) == sum(
        1 for i in range(_index.COMPACT_AFTER + 10) if i % 2 == 0 and i * 7919 % 1000 > 500
    )
    assert [r.to_dict() for r in built] == [r.to_dict() for r in again] == fresh


def test_records_read_the_same_built_or_loaded_from_the_summary(store: Path) -> None:
    # key sets whose first appearance across runs is rarely in sorted order
    for tags in ({"m": 1}, {"a": 1, "m": 2, "z": 3}, {"z": 1}, {"q": 1}, {"b": 1, "q": 2, "y": 3}, {"y": 1}):
        with mm.start_run():
            mm.set_tags({k: str(v) for k, v in tags.items()})
            mm.log_params({f"p{k}": v for k, v in tags.items()})
    root = str(store)
    built = {n: r.to_dict() for n, r in _index.load_experiment(root, "0").records.items()}
    loaded = {n: r.to_dict() for n, r in _index._load(root, "0").records.items()}
    assert json.dumps(built) == json.dumps(loaded)  # same runs, same values, keys in the same order
    assert all(list(r["tags"]) == sorted(r["tags"]) for r in loaded.values())


def test_files_from_the_writer_take_the_fast_path(store: Path) -> None:
    rng = random.Random(7)
    values = [
        rng.choice([rng.random(), -rng.random() * 1e-7, rng.random() * 1e20, 5e-324, -0.0, 2.0])
        for _ in range(3000)
    ]
    with mm.start_run():
        for i, value in enumerate(values):
            mm.log_metric("m", value, step=i * 7 - 50)
    data = (only_run_dir(store) / "metrics" / "m.jsonl").read_bytes()
    for loads in LOADERS.values():
        check(data, loads, fast=True)
    history, _ = parse_columns(data)
    assert same(history.values, values) and history.steps == [i * 7 - 50 for i in range(3000)]
