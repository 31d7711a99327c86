"""meta.yaml and metric lines, row by row: the fast YAML subset reads exactly what the safe loader reads
(and is really taken for what we write), a broken meta.yaml gets a reason naming the file, times in
every form a hand edit leaves become the same milliseconds, and lines are formatted column-wise only
when every point of a round shares its step and time.

Tables, so that one changed word, bound or branch fails a row: the mutation run of ``store/_yaml.py``,
``store/_meta.py`` and ``store/_metric_lines.py`` found them checked only through the values the rest of
the suite happens to write.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mini_mlflow._errors import StorageError
from mini_mlflow.store import _metric_lines, _yaml
from mini_mlflow.store._meta import normalize_meta, read_meta, read_meta_file, to_ms
from mini_mlflow.store._metric_lines import column_texts, format_lines, format_point, in_rounds, join_lines
from mini_mlflow.store._yaml import dump_yaml, load_meta_bytes, load_yaml, parse_subset

# -- the YAML subset -------------------------------------------------------------------------------

#: Lines of the subset, as we write them or as simply as a hand edit would: each must take the fast path.
IN_SUBSET = [
    "a: null",
    "a: ~",
    "a: ''",
    "a: 'it''s'",
    "a: ''''",
    "a: 'x: y # z'",
    "a: 12",
    "a: -3",
    "a: 0",
    "a: word",
    "a: a/b.c-d_e",
    "a: 3f2a",
    "a: 1e",
    "run_id: 0bae40cfa746451a9121f2cc2e70aa85",  # starts like a binary number: 1 run id in 256
    "git_commit: 0b12ff0e4e6a399e06be2f2f4aaa2136218a8f85a",
    "status: RUNNING",
    "run_name: 'bright-owl-7'",
]

#: Values whose meaning YAML decides (booleans, nulls, numbers in other bases, floats, dates...): the
#: subset must either read them as the loader does or hand them over.
FOR_THE_LOADER = [
    "yes",
    "Yes",
    "no",
    "NO",
    "on",
    "On",
    "off",
    "OFF",
    "true",
    "True",
    "false",
    "FALSE",
    "Null",
    "NULL",
    "y",
    "n",
    "Y",
    "N",
    "0x1f",
    "0X1F",
    "0b101",
    "0B11",
    "0xdeadBEEF",
    "0o17",
    "017",
    "1.5",
    "1e3",
    "-0",
    "+1",
    "007",
    ".inf",
    "-.inf",
    ".nan",
    "2025-11-23",
    "2025-11-23T08:00:00Z",
    "12:30:00",
    "1_000",
    "'",
    "'a",
    "a'",
    "'a'b'",
    '"q"',
    "[1, 2]",
    "{a: 1}",
    "a # c",
    "|",
    ">",
    "&x a",
    "*x",
    "!!str 1",
    "'' x",
    "1:2",
    "a: b",
]


@pytest.mark.parametrize("line", IN_SUBSET)
def test_the_subset_reads_what_the_loader_reads_without_the_loader(line: str) -> None:
    data = f"{line}\n".encode()
    fast = parse_subset(data)
    assert fast is not None, f"{line!r} left the fast path"
    assert fast == load_yaml(data)
    assert load_meta_bytes(data) == fast


@pytest.mark.parametrize("value", FOR_THE_LOADER)
def test_a_value_yaml_gives_a_meaning_is_read_as_the_loader_reads_it(value: str) -> None:
    data = f"a: {value}\n".encode()
    try:
        expected = load_yaml(data)
    except Exception:
        expected = None
    fast = parse_subset(data)
    assert fast is None or fast == expected, f"{value!r}: subset {fast!r}, loader {expected!r}"
    if expected is not None:
        assert load_meta_bytes(data) == expected


@pytest.mark.parametrize(
    "text",
    [
        "  b: 1\n",  # indented with no mapping above it
        "a:\n  b: 1\n  b: 2\n",  # a key twice in the nested mapping
        "a: 1\na: 2\n",  # a key twice at the top
        "a:\n  b:\n    c: 1\n",  # nested deeper than the subset goes
        "a:\n   b: 1\n",  # three spaces
        "a:\n",  # a key with nothing under it is null
        "a:\nb: 1\n",
        "a: 1\n\tb: 2\n",
        "\xff: 1\n",
        "",
        "# only a comment\n",
        "a: 1 # comment\n",
    ],
)
def test_a_file_outside_the_subset_is_left_to_the_loader(text: str) -> None:
    data = text.encode("latin-1")
    fast = parse_subset(data)
    try:
        expected = load_yaml(data)
    except Exception:
        assert fast is None
        return
    assert fast is None or fast == expected


def test_a_meta_yaml_as_a_run_writes_it_takes_the_fast_path_whole(store: Path) -> None:
    import mini_mlflow as mm

    with mm.start_run(run_name="bright-owl-7") as run:
        run.log_param("lr", 0.1)
    data = (Path(run.run_dir) / "meta.yaml").read_bytes()
    fast = parse_subset(data)
    assert fast is not None and fast == load_yaml(data)
    assert fast["run_name"] == "bright-owl-7" and set(fast["source"]) == {"name", "git_commit"}
    assert fast["status"] == "FINISHED" and fast["experiment_id"] == "0"


def test_dump_yaml_keeps_text_readable() -> None:
    assert dump_yaml({"name": "café 東京"}) == "name: café 東京\n".encode()  # not \xE9 escapes


def test_dump_yaml_writes_block_style_in_the_given_order() -> None:
    meta = {"run_id": "0f3c", "run_name": "it's a run", "n": 1, "none": None, "tags": {"b": "x", "a": ""}}
    data = dump_yaml(meta)
    assert data == b"run_id: 0f3c\nrun_name: it's a run\nn: 1\nnone: null\ntags:\n  b: x\n  a: ''\n"
    assert load_yaml(data) == meta


def test_the_parsed_lines_kept_are_bounded() -> None:
    _yaml._LINES.clear()
    for i in range(9000):
        assert parse_subset(f"k: v{i}\n".encode()) == {"k": f"v{i}"}
        assert len(_yaml._LINES) <= 8192
    assert 0 < len(_yaml._LINES) < 8192  # cleared once when full, then filled again


# -- meta.yaml: reasons and fields -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "meta.yaml is missing"),
        (b"", "meta.yaml is empty"),
        (b" \n\n", "meta.yaml is empty"),
        (b"a: [1,\n", "meta.yaml is not valid YAML (while parsing a flow node)"),
        (
            b"a: !!python/object:os.system x\n",
            "meta.yaml is not valid YAML (could not determine a constructor",
        ),
        (b"- 1\n- 2\n", "meta.yaml is not a YAML mapping (got list)"),
        (b"just words\n", "meta.yaml is not a YAML mapping (got str)"),
    ],
)
def test_a_broken_meta_yaml_gets_a_reason_naming_the_file(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "meta.yaml"
    if content is not None:
        path.write_bytes(content)
    raw, why = read_meta_file(str(path))
    assert raw is None and why is not None
    assert why.startswith(f"{path}: {reason}"), why
    if content is not None:
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            assert read_meta_file("shown/name", dir_fd=fd) == (None, why.replace(str(path), "shown/name"))
        finally:
            os.close(fd)


def test_an_unreadable_meta_yaml_gets_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "meta.yaml"
    folder.mkdir()  # reading a folder fails with a reason (EISDIR), as a permission error would
    raw, why = read_meta_file(str(folder))
    assert raw is None and why == f"{folder}: cannot read meta.yaml (Is a directory)"


def test_a_good_meta_yaml_is_read(tmp_path: Path) -> None:
    path = tmp_path / "meta.yaml"
    path.write_bytes(b"run_id: abc\nstatus: RUNNING\n")
    assert read_meta_file(str(path)) == ({"run_id": "abc", "status": "RUNNING"}, None)


UTC = timezone.utc


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (None, None),
        (True, None),
        (False, None),
        (0, 0),
        (1_763_884_800_123, 1_763_884_800_123),
        (1.7e12, 1_700_000_000_000),
        ("2025-11-23T08:00:00.123Z", 1_763_884_800_123),
        ("2025-11-23T10:00:00.123+02:00", 1_763_884_800_123),
        (datetime(2025, 11, 23, 8, 0, 0, 123000, tzinfo=UTC), 1_763_884_800_123),
        (datetime(2025, 11, 23, 8, 0, 0, 123000), 1_763_884_800_123),  # unquoted by a hand edit: no zone, UTC
        (datetime(2025, 11, 23, 9, 0, 0, 123000, tzinfo=timezone(timedelta(hours=1))), 1_763_884_800_123),
        ("yesterday", None),
        ("", None),
    ],
)
def test_times_in_every_form_become_the_same_milliseconds(value: object, ms: int | None) -> None:
    got = to_ms(value)
    assert got == ms and (got is None or type(got) is int)


def test_a_time_left_without_a_zone_is_utc_whatever_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert to_ms(datetime(2025, 11, 23, 8, 0, 0, 123000)) == 1_763_884_800_123
    finally:
        monkeypatch.undo()
        time.tzset()


def test_read_meta_refuses_a_broken_file_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"a: !!python/object:os.system x\n")
    with pytest.raises(StorageError) as caught:
        read_meta(str(tmp_path / "bad"))
    assert caught.value.strerror is not None
    assert caught.value.strerror.startswith(
        f"{tmp_path / 'bad'} is not a valid meta.yaml: could not determine"
    )
    (tmp_path / "list").write_bytes(b"- 1\n")
    with pytest.raises(ValueError) as not_a_mapping:
        read_meta(str(tmp_path / "list"))
    assert str(not_a_mapping.value) == f"{tmp_path / 'list'} is not a YAML mapping"
    (tmp_path / "good").write_bytes(b"run_id: x\n")
    assert read_meta(str(tmp_path / "good")) == {"run_id": "x"}


def test_normalize_meta_fills_what_is_missing_and_keeps_what_is_there() -> None:
    empty = normalize_meta({}, "folder-id")
    assert empty == {
        "run_id": "folder-id",
        "run_name": None,
        "status": "UNKNOWN",
        "start_time": None,
        "end_time": None,
        "user": None,
        "lifecycle_stage": "active",
        "parent_run_id": None,
        "format_version": None,
    }
    full = normalize_meta(
        {
            "run_id": "abc",
            "run_name": 7,
            "status": "FAILED",
            "start_time": "2025-11-23T08:00:00.123Z",
            "end_time": "2025-11-23T08:00:01.123Z",
            "user": "ann",
            "lifecycle_stage": "deleted",
            "parent_run_id": "p1",
            "format_version": 1,
        },
        "folder-id",
    )
    assert full == {
        "run_id": "abc",
        "run_name": "7",
        "status": "FAILED",
        "start_time": 1_763_884_800_123,
        "end_time": 1_763_884_801_123,
        "user": "ann",
        "lifecycle_stage": "deleted",
        "parent_run_id": "p1",
        "format_version": 1,
    }
    for odd in (True, "1", 1.0, None):
        assert normalize_meta({"format_version": odd}, "f")["format_version"] is None


# -- metric lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5, "0.5"),
        (-2.0, "-2.0"),
        (0.0, "0.0"),
        (1e300, "1e+300"),
        (math.inf, '"Infinity"'),
        (-math.inf, '"-Infinity"'),
        (math.nan, '"NaN"'),
    ],
)
def test_a_point_is_one_json_line_with_integer_milliseconds(value: float, text: str) -> None:
    line = format_point(3, value, 1.5)
    assert line == f'{{"step":3,"value":{text},"timestamp":1500}}\n'
    assert format_point(3, value, 1500) == line  # a timestamp given in ms stays as it is


def test_columns_are_formatted_in_c_and_give_the_same_lines() -> None:
    _metric_lines.load_fast_formatter()
    points = [("k", 0.25, 1, 1.5), ("k", -1.0, 2, 2.0), ("k", 3.0, 3, 2500)]
    texts = column_texts(points)
    assert texts == ([b"1", b"2", b"3"], [b"0.25", b"-1.0", b"3.0"], [b"1500", b"2000", b"2500"])
    expected = "".join(format_point(s, v, t) for _, v, s, t in points).encode()
    assert join_lines(*texts) == format_lines(points) == expected
    # NaN, inf and steps beyond 64 bits leave the column path; the lines are the same.
    for odd in [("k", math.nan, 4, 3.0), ("k", math.inf, 4, 3.0), ("k", 1.0, 2**70, 3.0)]:
        assert column_texts([*points, odd]) is None
        assert format_lines([*points, odd]) == expected + format_point(odd[2], odd[1], odd[3]).encode()


def test_rounds_share_step_and_time_for_every_key() -> None:
    _metric_lines.load_fast_formatter()
    a = [("x", 1.0, 1, 10.0), ("y", 2.0, 1, 10.0), ("x", 3.0, 2, 11.0), ("y", 4.0, 2, 11.0)]
    assert in_rounds(a, 2) is True
    assert column_texts(a, 2) == ([b"1", b"2"], [b"1.0", b"2.0", b"3.0", b"4.0"], [b"10000", b"11000"])
    assert in_rounds(a, 1) is False  # one key: nothing to share
    assert in_rounds(a[:3], 2) is False  # a round cut short
    assert in_rounds([(k, 1.0, 1, 10.0) for k in "wxyz"], 4) is True  # one whole round of four keys
    assert in_rounds(a, 4) is False  # four keys would share one step
    steps_differ = [("x", 1.0, 1, 10.0), ("y", 2.0, 2, 10.0), ("x", 3.0, 3, 11.0), ("y", 4.0, 4, 11.0)]
    times_differ = [("x", 1.0, 1, 10.0), ("y", 2.0, 1, 10.5), ("x", 3.0, 2, 11.0), ("y", 4.0, 2, 11.5)]
    last_differs = [*a[:3], ("y", 4.0, 2, 12.0)]
    for points in (steps_differ, times_differ, last_differs):
        assert in_rounds(points, 2) is False
    three = [(k, 1.0, s, float(s)) for s in (1, 2) for k in "xyz"]
    assert in_rounds(three, 3) is True
    assert in_rounds([*three[:5], ("z", 1.0, 9, 2.0)], 3) is False
