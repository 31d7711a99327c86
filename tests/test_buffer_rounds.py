"""The writer's shortcuts for rounds of keys write exactly the lines of the general path.

A drain groups points by key. Points logged as rounds of the same keys (``log_metrics`` of one dict)
are grouped by slicing, and when each round has one step and one time those are formatted once for
every key. Whatever the points (rounds cut by a chunk, steps that differ inside a round, NaN, explicit
timestamps, keys that come and go), each file must hold exactly the lines of each point, in order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.store._metric_lines import format_point
from mini_mlflow.write import _buffer
from mini_mlflow.write._writer import WRITER

KEYS = ["loss", "acc", "lr", "a/b"]


def drained(root: Path, points: list[tuple[str, float, int, Any]]) -> dict[str, bytes]:
    """Queue ``points`` on a run as the logging calls do, drain once by hand, read each file."""
    run = mm.Run(runs_dir=root)
    WRITER.unregister(run._buffer)  # nothing drains but this test
    run._buffer.queue.extend(points)
    run._buffer.drain()
    out = {
        key: (Path(run.run_dir) / "metrics" / f"{key}.jsonl").read_bytes() for key in {p[0] for p in points}
    }
    WRITER.register(run._buffer)
    run.end()
    return out


def expected(points: list[tuple[str, float, int, Any]]) -> dict[str, bytes]:
    lines: dict[str, list[str]] = {}
    for key, value, step, stamp in points:
        lines.setdefault(key, []).append(format_point(step, value, stamp))
    return {key: "".join(v).encode() for key, v in lines.items()}


def parsed(files: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    """Each file's lines as JSON: orjson and ``repr`` may spell one float two ways (``6.1e-05``,
    ``0.000061``); the number is the same, and that is what a reader gets back."""
    for data in files.values():
        assert data.endswith(b"\n")
    return {key: [json.loads(line) for line in data.splitlines()] for key, data in files.items()}


def rounds(draw: Any) -> list[tuple[str, float, int, Any]]:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    count = draw(st.integers(1, 900))
    pool = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=7))
    same_step = draw(st.booleans())  # log_metrics; otherwise log_metric per key with its own step
    explicit = draw(st.booleans())  # timestamps given in ms rather than time.time()
    points = []
    for i in range(count):
        stamp: Any = 1_700_000_000_000 + i if explicit else 1_700_000_000.25 + i / 1000
        for j, key in enumerate(keys):
            step = i if same_step else i * len(keys) + j
            points.append((key, pool[(i * 7 + j) % len(pool)], step, stamp))
    cut = draw(st.integers(0, len(keys) - 1))  # a drain may start inside a round
    return points[cut:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_rounds_are_written_exactly_as_points(store: Path, data: st.DataObject) -> None:
    points = data.draw(st.composite(rounds)())
    if data.draw(st.booleans()):  # a key that comes and goes breaks the rounds
        points.insert(data.draw(st.integers(0, len(points))), ("extra", 1.0, 7, 1.5))
    assert parsed(drained(store, points)) == parsed(expected(points))


def test_a_long_drain_cut_into_chunks_keeps_every_round(store: Path) -> None:
    # 3 keys × 1,001 rounds: the drain's chunks of _CHUNK points cut rounds in the middle
    points = [
        (k, i + j / 10, i, 1_700_000_000.5 + i) for i in range(1001) for j, k in enumerate(["a", "b", "c"])
    ]
    assert len(points) > _buffer._CHUNK and _buffer._CHUNK % 3
    assert drained(store, points) == expected(points)
    assert _buffer._period([p[0] for p in points]) == 3


def test_nan_and_infinities_in_rounds(store: Path) -> None:
    points = [(k, v, i, 1.5) for i, v in enumerate([math.nan, math.inf, -math.inf, 0.25]) for k in ["x", "y"]]
    got = drained(store, points)
    assert got == expected(points) and b'"value":"NaN"' in got["x"] and b'"value":"-Infinity"' in got["y"]


@pytest.mark.parametrize(
    ("keys", "period"),
    [
        (["a", "b", "a", "b"], 2),  # the shortest input with rounds: 4 keys
        (["a", "b", "a"], 0),  # fewer than 4 keys: not worth the slicing
        (["a"] * 4, 1),  # one key logged over and over
        (["a", "b", "c", "a", "b"], 3),  # the last round cut short
        (["a", "b", "c", "d"], 0),  # the first key never comes back
        (["a", "b", "a", "c"], 0),  # the second round differs
        (["a", "b", "b", "a", "b", "b"], 0),  # a key twice in one round: not k distinct keys
    ],
)
def test_period_finds_the_rounds_of_log_metrics(keys: list[str], period: int) -> None:
    # The rounds shortcut only changes speed (the lines are the same either way, tested above); this
    # pins when it is taken, so that a broken detection cannot silently fall back to the slow path.
    assert _buffer._period(keys) == period
