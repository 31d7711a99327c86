"""The store's naming and time rules, row by row: what each accepts as it is, what it refuses, and the
message that names the bad thing and what is allowed.

Tables, so that a rule changed in any one place (a bound moved by one, a character class, a message)
fails a row: the mutation run of ``store/_layout.py`` found these rules checked only through the few
values the rest of the suite happens to use.
"""

from __future__ import annotations

import os
import random
import re
from datetime import datetime, timezone

import pytest

from mini_mlflow._errors import InvalidInputError
from mini_mlflow.store import _layout
from mini_mlflow.store._layout import (
    END_STATUSES,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    RUN_STATUSES,
    experiment_dir,
    iso_from_ms,
    metric_path,
    ms_from_iso,
    normalize_experiment_id,
    now_ms,
    param_path,
    run_dir,
    tag_path,
    validate_artifact_path,
    validate_experiment_name,
    validate_key,
    validate_run_id,
    walk_keys,
)


def test_the_limits_and_statuses_are_mlflows() -> None:
    # MLflow's own limits (mlflow/utils/validation.py) and run statuses (RunStatus, less SCHEDULED).
    assert (MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH) == (250, 6000, 8000)
    assert MAX_EXPERIMENT_NAME_LENGTH == 500
    assert RUN_STATUSES == ("RUNNING", "FINISHED", "FAILED", "KILLED")
    assert END_STATUSES == ("FINISHED", "FAILED", "KILLED")


@pytest.mark.parametrize(
    "key",
    ["a", "loss", "a/b", "a/b/c", "val loss", "x:1", "a.b-c_d", "é/ü", "b/a.json", "a..b", "k" * 250],
)
def test_a_valid_key_comes_back_as_it_is(key: str) -> None:
    assert validate_key(key) is key
    assert validate_key(key, "metric key") is key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "invalid metric key '': must be 1 to 250 characters long (got 0)"),
        ("k" * 251, f"invalid metric key '{'k' * 251}': must be 1 to 250 characters long (got 251)"),
        (
            "loss\n",
            "invalid metric key 'loss\\n': may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'",
        ),
        ("a#b", "may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'"),
        ("a\\b", "may only contain"),
        (".", "invalid metric key '.': must be a normalized relative path"),
        ("..", "must be a normalized relative path"),
        ("../a", "must be a normalized relative path"),
        ("..a", "must be a normalized relative path"),
        (
            "/a",
            "must be a normalized relative path (no leading '/', no '.' or '..' parts, no '//', no trailing '/')",
        ),
        ("a/", "must be a normalized relative path"),
        ("a//b", "must be a normalized relative path"),
        ("a/./b", "must be a normalized relative path"),
        ("a/../b", "must be a normalized relative path"),
        (
            "a.json/b",
            "invalid metric key 'a.json/b': a folder part may not end in .json or .jsonl ('a.json')",
        ),
        ("a.jsonl/b", "a folder part may not end in .json or .jsonl ('a.jsonl')"),
        ("a/b.json/c", "a folder part may not end in .json or .jsonl ('b.json')"),
    ],
)
def test_a_bad_key_is_refused_with_the_rule_it_breaks(key: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_key(key, "metric key")
    assert str(caught.value).startswith(f"invalid metric key {key!r}: ") and message in str(caught.value)


def test_a_key_that_is_not_text_is_named_with_its_type() -> None:
    with pytest.raises(InvalidInputError, match=re.escape("key must be a str, got int: 5")) as caught:
        validate_key(5)
    assert str(caught.value).startswith("key must be")  # the default kind
    with pytest.raises(InvalidInputError, match=re.escape("param key must be a str, got NoneType: None")):
        validate_key(None, "param key")


@pytest.mark.parametrize("run_id", ["a", "0", "Z9", "a" + "_-x" * 85])
def test_a_valid_run_id_comes_back(run_id: str) -> None:
    assert validate_run_id(run_id) is run_id


@pytest.mark.parametrize("run_id", ["", "_a", "-a", "a/b", "a.b", "a\n", "a" * 257, 5, None])
def test_a_bad_run_id_is_refused_with_the_rule(run_id: object) -> None:
    with pytest.raises(
        InvalidInputError, match=re.escape(f"invalid run id {run_id!r}: must match ^[a-zA-Z0-9]")
    ):
        validate_run_id(run_id)


@pytest.mark.parametrize(
    ("given", "on_disk"), [(0, "0"), (7, "7"), ("7", "7"), ("007", "7"), ("9" * 18, "9" * 18)]
)
def test_an_experiment_id_has_one_form_on_disk(given: object, on_disk: str) -> None:
    assert normalize_experiment_id(given) == on_disk


@pytest.mark.parametrize(
    ("given", "allowed"),
    [
        (True, "must be an int or digits"),
        (False, "must be an int or digits"),
        (-1, "must be a non-negative integer or a string of digits"),
        ("-1", "must be a non-negative integer or a string of digits"),
        ("9" * 19, "must be a non-negative integer"),
        ("\u0661", "must be a non-negative integer"),  # an Arabic-Indic digit: not a folder name we write
        ("", "must be a non-negative integer"),
        (1.0, "must be a non-negative integer"),
        ("1\n", "must be a non-negative integer"),
    ],
)
def test_a_bad_experiment_id_is_refused(given: object, allowed: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalize_experiment_id(given)
    assert str(caught.value).startswith(f"invalid experiment id {given!r}: {allowed}")


@pytest.mark.parametrize("name", ["a", " a ", "n" * 500, "é x/y"])
def test_a_valid_experiment_name_comes_back(name: str) -> None:
    assert validate_experiment_name(name) is name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (5, "experiment name must be a str, got int"),
        ("", "invalid experiment name '': must be 1 to 500 characters and not only spaces"),
        ("   ", "invalid experiment name '   ': must be 1 to 500 characters and not only spaces"),
        ("n" * 501, f"invalid experiment name '{'n' * 501}': must be 1 to 500 characters"),
        ("a\x00b", "invalid experiment name 'a\\x00b': must not contain NUL characters"),
        ("a\ud800", "invalid experiment name 'a\\ud800': must be valid Unicode (no lone surrogates)"),
    ],
)
def test_a_bad_experiment_name_is_refused(name: object, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_experiment_name(name)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        (None, ""),
        ("", ""),
        (".", ""),
        ("./", ""),
        ("a", "a"),
        ("a/./b", "a/b"),
        ("a//b/", "a/b"),
        ("a..b", "a..b"),
    ],
)
def test_an_artifact_path_is_normalized(path: object, normal: str) -> None:
    assert validate_artifact_path(path) == normal


@pytest.mark.parametrize("path", ["/etc/passwd", "a\\b", "a\x00", "C:x", "c:/x", "..", "a/../b", "a/.."])
def test_an_artifact_path_leaving_the_run_is_refused(path: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_artifact_path(path)
    assert str(caught.value).startswith(f"invalid artifact path {path!r}: must be a relative path")
    with pytest.raises(InvalidInputError) as caught:
        validate_artifact_path(3)
    assert str(caught.value) == "artifact path must be a str, got int"


def test_paths_inside_a_run() -> None:
    root = os.path.join("s", "mlruns")
    assert experiment_dir(root, "3") == os.path.join(root, "3")
    rdir = run_dir(root, "3", "abc")
    assert rdir == os.path.join(root, "3", "abc")
    assert metric_path(rdir, "a/b") == os.path.join(rdir, "metrics", "a/b.jsonl")
    assert param_path(rdir, "lr") == os.path.join(rdir, "params", "lr.json")
    assert tag_path(rdir, "t") == os.path.join(rdir, "tags", "t.json")


def test_walk_keys_finds_nested_keys_and_names_every_folder_it_walked(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path)) / "metrics"
    for rel in ["loss.jsonl", "a/b.jsonl", "a/c/d.jsonl", "a/c/e.json", "x#tmp1.jsonl", "f/g#tmp.jsonl"]:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("")
    keys, rels = walk_keys(str(folder), ".jsonl")
    assert keys == ["a/b", "a/c/d", "loss"]
    assert rels[0] == "." and sorted(rels) == [".", "a", "a/c", "f"]
    assert walk_keys(str(folder / "absent"), ".jsonl") == ([], ["."])
    (Path(str(tmp_path)) / "linked").symlink_to(folder)
    assert walk_keys(str(Path(str(tmp_path)) / "linked"), ".jsonl") == ([], ["."])  # never followed


# -- time ----------------------------------------------------------------------------------------


def _reference_ms(text: str) -> int:
    """What any ISO 8601 string means, by the standard library alone (no zone: UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return round(value.timestamp() * 1000)


def test_now_ms_is_integer_milliseconds() -> None:
    before = datetime.now(timezone.utc).timestamp() * 1000
    now = now_ms()
    assert type(now) is int and before - 1 <= now <= datetime.now(timezone.utc).timestamp() * 1000 + 1


def test_times_written_read_back_exactly_by_the_fast_path_and_the_general_one() -> None:
    rng = random.Random(7)
    edges = [
        0,
        999,
        1000,
        59_999,
        86_399_999,
        86_400_000,
        951_782_400_000,
        1_763_884_800_123,
        4_102_444_799_999,
    ]
    for ms in edges + [rng.randrange(0, 4_102_444_800_000) for _ in range(300)]:
        text = iso_from_ms(ms)
        assert text is not None and len(text) == 24 and text.endswith("Z")
        assert (
            text
            == datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{ms % 1000:03d}Z"
        )
        _layout._DAYS.pop(text[:10], None)
        assert ms_from_iso(text) == ms  # the general path, which learns the day
        assert text[:10] in _layout._DAYS  # so the next time of that day takes the fast path
        assert ms_from_iso(text) == ms
    assert iso_from_ms(None) is None and ms_from_iso(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "2025-11-23T08:00:00.123+00:00",
        "2025-11-23T08:00:00.123+02:00",
        "2025-11-23T23:30:00.000-05:00",
        "2025-11-23T08:00:00Z",
        "2025-11-23T08:00:00.5Z",
        "2025-11-23T08:00:00.123",  # no zone: UTC
        "2025-11-23 08:00:00.123Z",
        "2025-11-23T08:00:59.999Z",
        "2025-11-23T23:59:59.999Z",
    ],
)
def test_other_iso_forms_mean_what_the_standard_says(text: str) -> None:
    _layout._DAYS.setdefault("2025-11-23", _reference_ms("2025-11-23T00:00:00Z"))  # the fast path is armed
    assert ms_from_iso(text) == _reference_ms(text)
    assert ms_from_iso(text) == _reference_ms(text)


@pytest.mark.parametrize(
    "text",
    [
        "2025-11-23T24:00:00.000Z",
        "2025-11-23T08:60:00.000Z",
        "2025-11-23T08:00:60.000Z",
        "2025-11-23T0a:00:00.000Z",
        "2025-11-23T\u0661\u0662:00:00.000Z",  # digits, but not ASCII ones
        "2025-11-23T08:00:00.1a3Z",
        "not a time",
    ],
)
def test_a_time_out_of_range_is_refused_even_for_a_known_day(text: str) -> None:
    _layout._DAYS.setdefault("2025-11-23", _reference_ms("2025-11-23T00:00:00Z"))
    with pytest.raises(ValueError):
        ms_from_iso(text)


def test_a_time_of_a_learned_day_is_read_from_the_day_learned() -> None:
    # The fast path (integers, no datetime) is what a listing of 10,000 runs takes: a day learned with
    # a marked value shows which path read each form.
    text = "2025-11-23T08:00:00.123Z"
    day = _reference_ms("2025-11-23T00:00:00Z")
    _layout._DAYS["2025-11-23"] = day + 5  # marked
    try:
        assert ms_from_iso(text) == _reference_ms(text) + 5  # read with the learned day
        for other in ["2025-11-23T08:00:00.123+00:00", "2025-11-23 08:00:00.123Z", "2025-11-23T08:00:00Z"]:
            assert ms_from_iso(other) == _reference_ms(other)  # not this form: the general path
        assert ms_from_iso("2025-11-23T23:59:59.999Z") == day + 5 + 86_399_999
    finally:
        _layout._DAYS["2025-11-23"] = day


def test_the_days_learned_are_bounded() -> None:
    _layout._DAYS.clear()
    day0 = 1_600_000_000_000 - 1_600_000_000_000 % 86_400_000
    for i in range(4100):
        text = iso_from_ms(day0 + i * 86_400_000 + 1234)
        assert text is not None and ms_from_iso(text) == day0 + i * 86_400_000 + 1234
    assert len(_layout._DAYS) == 4096
    assert _layout._DAYS[iso_from_ms(day0)[:10]] == day0  # type: ignore[index]
