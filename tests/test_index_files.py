"""The index's two files under ``.index/``: damaged, deleted, linked elsewhere, of the old format, or
written by several processes at once, a search still answers from the runs, exactly."""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.read import _columns, _index, _index_files
from mini_mlflow.read._search import search_runs

from conftest import python_child

FLT = "metrics.acc > 0.2"


def make_store(store: Path, n: int = 40) -> dict[str, float]:
    """``n`` finished runs (param i, metric acc) in one columnar file: run id → acc."""
    accs = {}
    for i in range(n):
        with mm.start_run(run_name=f"r{i}") as run:
            mm.log_param("i", i)
            mm.log_metric("acc", i / n)
        accs[run.run_id] = i / n
    compact(store)
    return accs


def compact(store: Path) -> None:
    """Every run of experiment 0 into one columnar file (as a big build does), then forget memory."""
    index = _index.load_experiment(str(store), "0")
    _index_files.save(str(store), index, _index_files.builder_of(index, set()))
    assert index.main.n and not index.delta and (store / ".index" / "0.cols").exists()
    _index._MEMORY.clear()


def answer(store: Path) -> list[tuple[str, float, Any]]:
    return [(r.run_id, r.metrics["acc"], r.params["i"]) for r in search_runs(filter_string=FLT, root=store)]


def expected(accs: dict[str, float]) -> list[tuple[str, float, Any]]:
    """What the files say, in search order (newest first; the runs started in order)."""
    n = len(accs)
    return [(rid, acc, round(acc * n)) for rid, acc in reversed(list(accs.items())) if acc > 0.2]


def _repack(path: Path, change: Any) -> None:
    """Rewrite a columnar file after ``change(header, blobs)``, with CRCs that match again."""
    data = path.read_bytes()
    _magic, size, _ = _columns._PREFIX.unpack_from(data)
    header = json.loads(data[_columns._PREFIX.size : _columns._PREFIX.size + size])
    base = _columns._PREFIX.size + size
    blobs = [data[base + off : base + off + length] for off, length, _ in header["blobs"]]
    change(header, blobs)
    del header["blobs"]
    path.write_bytes(_columns._pack(blobs, header))


def _codes_out_of_range(header: dict[str, Any], blobs: list[bytes]) -> None:
    spec = header["cols"]["f.status"]
    blobs[spec["codes"]] = bytes([7]) * len(blobs[spec["codes"]])  # one distinct value, code 7


def _rows_past_the_end(header: dict[str, Any], blobs: list[bytes]) -> None:
    spec = header["cols"]["x.acc"]
    rows = bytearray(blobs[spec["rows"]])
    rows[-4:] = (10**6).to_bytes(4, "little")
    blobs[spec["rows"]] = bytes(rows)


def _spec_of_another_shape(header: dict[str, Any], blobs: list[bytes]) -> None:
    header["cols"]["p.i"] = "not a column"


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "cut in the header": lambda p: p.write_bytes(p.read_bytes()[:30]),
    "cut among the blobs": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size * 2 // 3]),
    "a byte flipped in a blob": _flip_a_byte,
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "another magic": lambda p: p.write_bytes(b"MMCOLS9\n" + p.read_bytes()[8:]),
    "codes out of range, CRCs valid": lambda p: _repack(p, _codes_out_of_range),
    "rows past the end, CRCs valid": lambda p: _repack(p, _rows_past_the_end),
    "a column of another shape": lambda p: _repack(p, _spec_of_another_shape),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_columnar_file_is_rebuilt_from_the_runs(store: Path, damage: str) -> None:
    accs = make_store(store)
    cols = store / ".index" / "0.cols"
    DAMAGE[damage](cols)
    assert answer(store) == expected(accs)  # never an error: the index is derived
    _index._MEMORY.clear()
    index = _index._load(str(store), "0")  # rebuilt: a new process reads every run from it
    assert sorted(index.names()) == sorted(accs) and (index.main.file is None or not index.main.file.damaged)
    assert answer(store) == expected(accs)


def test_a_damaged_file_found_by_show_or_ls_is_rebuilt_too(store: Path) -> None:
    accs = make_store(store)
    _repack(store / ".index" / "0.cols", _codes_out_of_range)
    from click.testing import CliRunner

    from mini_mlflow.cli._main import cli

    done = CliRunner().invoke(cli, ["ls", "--root", str(store), "--json", "--limit", "3"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    assert doc["total"] == len(accs) and [r["run_id"] for r in doc["runs"]] == list(reversed(accs))[:3]
    run_id = next(iter(accs))
    compact(store)
    _repack(store / ".index" / "0.cols", _codes_out_of_range)
    done = CliRunner().invoke(cli, ["show", run_id[:8], "--root", str(store), "--json"])
    assert done.exit_code == 0 and json.loads(done.output)["status"] == "FINISHED", done.output


def test_the_index_folder_can_be_deleted_at_any_moment(store: Path) -> None:
    accs = make_store(store, 60)
    stop = threading.Event()
    removed = [0]

    def remove_again_and_again() -> None:
        while not stop.is_set():
            shutil.rmtree(store / ".index", ignore_errors=True)
            removed[0] += 1

    remover = threading.Thread(target=remove_again_and_again)
    remover.start()
    try:
        for i in range(40):
            if i % 3 == 0:
                _index._MEMORY.clear()  # as a new process: from whatever files are there, or none
            assert answer(store) == expected(accs)
    finally:
        stop.set()
        remover.join()
    assert removed[0] > 0
    assert answer(store) == expected(accs)


def test_links_planted_in_the_index_folder_are_never_followed(store: Path, tmp_path: Path) -> None:
    accs = make_store(store)
    outside = tmp_path / "outside"
    outside.mkdir()
    forged = outside / "forged.cols"  # a valid columnar file that lies about every run
    index = _index._load(str(store), "0")
    builder = _index_files.builder_of(index, set())
    builder.keys["x"]["acc"] = (builder.keys["x"]["acc"][0], [9.0] * len(accs))
    forged.write_bytes(builder.encode(index.extra(), "forged"))
    (outside / "forged.delta").write_text('{"v": 1, "main": "forged", "runs": {}}')
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    for name in ("0.cols", "0.delta"):
        (store / ".index" / name).unlink()
        (store / ".index" / name).symlink_to(outside / f"forged{Path(name).suffix}")
    _index._MEMORY.clear()
    assert answer(store) == expected(accs)  # the links are not read
    (store / "0" / next(iter(accs)) / "tags" / "t.json").write_text('"x"\n')  # a change: the index is saved
    os.utime(store / "0" / next(iter(accs)))
    _index._MEMORY.clear()
    assert answer(store) == expected(accs)
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before  # nothing written through them
    assert not (store / ".index" / "0.delta").is_symlink()  # the link itself was replaced


def test_an_index_of_the_first_format_is_ignored_and_removed(store: Path) -> None:
    with mm.start_run(run_name="a") as run:
        mm.log_metric("acc", 0.5)
    old = store / ".index"
    (old / "0").mkdir(parents=True)
    # The first format: a JSON summary, and one JSON file per run, here saying what is no longer so.
    (old / "0.json").write_text(json.dumps({"v": 3, "names": [run.run_id], "m": {}, "d": [0], "ok": [1]}))
    (old / "0" / f"{run.run_id}.json").write_text(json.dumps({"v": 3, "x": {"acc": [1, 2, 3, 0, 1, 9.0]}}))
    assert [r.metrics for r in search_runs(root=store)] == [{"acc": 0.5}]
    assert not (old / "0.json").exists() and not (old / "0").exists()
    assert (old / "0.delta").exists()


WRITER = """
import sys, mini_mlflow as mm
for i in range({n}):
    with mm.start_run(run_name=f"r{{i}}"):
        mm.log_param("i", i)
        mm.log_metric("acc", i / 1000)
"""

READER = """
import json, sys, time
from mini_mlflow.read import _index
from mini_mlflow.read._search import search_runs
_index.COMPACT_AFTER = 16  # fold the delta into a new columnar file often: processes race on both files
root, n = {root!r}, {n}
seen, last, files = 0, 0, set()
while True:
    if seen % 4 == 3:
        _index._MEMORY.clear()  # start from the files, as a new process: the others wrote them meanwhile
    found = search_runs(root=root, max_results=100_000)
    index = _index._MEMORY.get((root, "0"))  # none until the writer made its experiment
    files.add(index.main.id if index is not None else "")
    for r in found:
        assert r.status in ("RUNNING", "FINISHED"), r.status
        # A finished run is read whole: meta.yaml is read first, so all it ended with was on disk. A
        # running one may be read as it is written (params, then metrics, each as it was at its
        # look): what it shows is never wrong, only not yet there.
        if r.status == "FINISHED":
            assert r.metrics["acc"] == r.params["i"] / 1000, (r.run_id, r.metrics, r.params)
        elif "acc" in r.metrics and "i" in r.params:
            assert r.metrics["acc"] == r.params["i"] / 1000, (r.run_id, r.metrics, r.params)
    assert len(found) >= last, (len(found), last)  # runs are only added: never fewer
    last = len(found)
    seen += 1
    done = [r for r in found if r.status == "FINISHED" and "acc" in r.metrics]
    if len(done) == n:
        break
print(json.dumps({{"searches": seen, "files": len(files - {{""}})}}))
"""


def test_readers_beside_a_writer_process_see_every_run_whole(store: Path, tmp_path: Path) -> None:
    n = 150
    env = {"MINI_MLFLOW_TRACKING_DIR": str(store)}
    writer = python_child(WRITER.format(n=n), tmp_path, env=env)
    readers = [python_child(READER.format(root=str(store), n=n), tmp_path, env=env) for _ in range(2)]
    assert writer.wait(timeout=300) == 0, writer.stderr.read() if writer.stderr else ""
    files = 0
    for reader in readers:
        out, err = reader.communicate(timeout=300)
        assert reader.returncode == 0, err
        files += json.loads(out)["files"]
    assert files >= 2  # columnar files were written (and read) while the runs came in
    final = search_runs(root=store, max_results=1000)
    assert sorted(r.params["i"] for r in final) == list(range(n))
    assert all(r.metrics == {"acc": r.params["i"] / 1000} for r in final)
    _index._MEMORY.clear()  # a new process, from the files the three processes left
    assert [r.to_dict() for r in search_runs(root=store, max_results=1000)] == [r.to_dict() for r in final]


def _encoded_one_by_one(values: list[Any]) -> tuple[list[int], list[Any]]:
    """The dictionary encoding's rule written out: one key per value, as its JSON tells it apart."""
    keyed: dict[Any, int] = {}
    distinct: list[Any] = []
    codes = []
    for value in values:
        key = _columns._value_key(value)
        if key not in keyed:
            keyed[key] = len(distinct)
            distinct.append(value)
        codes.append(keyed[key])
    return codes, distinct


_FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.nan, -math.nan, math.inf, 1.0, 0.5]))
_MIXED = st.one_of(_FLOATS, st.integers(-3, 3), st.booleans(), st.sampled_from(["1", "a", "0.0"]), st.none())


@settings(max_examples=300, deadline=None)
@example([1, 1.0])
@example([0.0, -0.0, 0.0, 2.5])
@example([math.nan, float("nan"), 1.5])
@example([1, 1.0, True, "1", None])
@example([None, "a", None, "a"])
@example([None, 0.0, -0.0, None])
@example([None, math.nan, math.nan, "nan"])
@example([None, 2, "2", 2, True])
@given(
    st.lists(_FLOATS, max_size=40)
    | st.lists(_FLOATS | st.integers(-3, 3), max_size=40)
    | st.lists(_MIXED, max_size=40)
    # strings and None with one kind of number: the values' own keys, as long as the numbers allow
    | st.lists(_FLOATS | st.none() | st.sampled_from(["1", "a"]), max_size=40)
    | st.lists(st.integers(-3, 3) | st.none() | st.sampled_from(["1", "a"]), max_size=40)
)
def test_dictionary_encoding_tells_values_apart_as_their_json_does(values: list[Any]) -> None:
    # Each path of encode_values (values their own keys, floats with a zero or a NaN, anything else)
    # must give the codes and distinct values of the rule applied one value at a time.
    codes, distinct = _columns.encode_values(values)
    want_codes, want_distinct = _encoded_one_by_one(values)
    assert list(codes) == want_codes
    assert [_columns._value_key(v) for v in distinct] == [_columns._value_key(v) for v in want_distinct]


@pytest.mark.parametrize(
    "times",
    [
        [3, None, 7, 0],  # int64 values with rows that have none
        [3, 1 << 70, None],  # beyond int64: kept whole as distinct values
        [3, 2.5, None],  # a float among the integers: kept as the float
        [None, None],
    ],
)
def test_time_columns_keep_each_value_as_added(times: list[Any]) -> None:
    builder = _columns.Builder()
    for i, when in enumerate(times):
        fields = ("name", "FINISHED", when, when, "active", "u", None, None)
        builder.add(f"run{i}", 0, True, fields, ({}, {}, {}), [], b"{}")
    main = _index_files.Main(_columns.ColumnFile.from_bytes(builder.encode({}, "id")))
    for column in ("start_time", "end_time"):
        got = {main.names[row]: main.field(column).get(row) for row in range(main.n)}
        assert got == {f"run{i}": when for i, when in enumerate(times)}
        assert all(type(got[f"run{i}"]) is type(when) for i, when in enumerate(times))


def test_integers_beyond_64_bits_come_back_whole_from_the_index_and_its_delta(store: Path) -> None:
    # orjson reads such an integer as a float: a 128-bit seed would come back changed.
    seed, big = 0x1F2E3D4C5B6A79880123456789ABCDEF, 2**70 + 1
    with mm.start_run() as run:
        mm.log_params({"seed": seed, "big": big, "nested": {"n": -big}})
        mm.set_tag("t", str(seed))
        mm.log_metric("acc", 0.5)
    want = {"seed": seed, "big": big, "nested": {"n": -big}}
    for _ in range(2):  # from the delta, then from a columnar file in a new process's memory
        found = search_runs(filter_string="metrics.acc > 0.2", root=store)
        assert [r.params for r in found] == [want] and found[0].tags["t"] == str(seed)
        assert mm.get_run(run.run_id).data.params["seed"] == str(seed)  # MLflow's params are strings
        compact(store)


@pytest.mark.parametrize(
    "number", [2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**19, -(10**19), 1765000000123456789, 2**200]
)
@pytest.mark.parametrize("padding", [0, 5000])  # a small text, and one past the short cut for big ones
def test_json_integers_at_the_64_bit_edges_read_back_whole(number: int, padding: int) -> None:
    text = _columns.dumps(["x" * padding, number, {"k": number}])
    assert _columns.loads(text) == ["x" * padding, number, {"k": number}]
    assert type(_columns.loads(text)[1]) is int
