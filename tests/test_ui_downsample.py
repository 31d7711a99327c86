"""The UI's downsampling (M4) and smoothing: what a chart shows is faithful to every point logged."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mini_mlflow.ui._downsample import bucket_width, ema, in_order, m4, smooth, x_values

NAN, INF = float("nan"), float("inf")


def noisy(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [1.0 / (1 + i / 1000) + rng.random() * 0.01 for i in range(n)]


def test_a_planted_spike_nan_and_infs_survive_full_zoom_out_of_a_million_points() -> None:
    n = 1_000_000
    x = list(range(n))
    y = noisy(n)
    y[123_457] = 50.0  # a loss spike
    y[400_001] = -40.0  # and one the other way
    y[654_321] = NAN
    y[777_777] = INF
    y[888_888] = -INF
    out = m4(x, y, 800)
    assert out.points == n
    assert 50.0 in out.y and -40.0 in out.y
    assert out.x[out.y.index(50.0)] == 123_457
    assert out.nan == [654_321] and out.pinf == [777_777] and out.ninf == [888_888]
    assert out.counts == {"nan": 1, "pinf": 1, "ninf": 1}
    assert all(v - v == 0 for v in out.y)  # nothing non-finite on the line itself
    # at most 4 points per bucket, and no more buckets than pixel columns (+1 for the edge)
    buckets = {math.floor(v / out.width) for v in out.x}
    assert len(buckets) <= 801
    assert len(out.x) <= 4 * len(buckets)
    assert len(out.x) < 4 * 801


def test_two_opposite_spikes_in_one_bucket_are_both_kept() -> None:
    x = list(range(100_000))
    y = [0.0] * 100_000
    y[50_000], y[50_007] = 9.0, -9.0  # 7 steps apart: one bucket at 100 columns
    out = m4(x, y, 100)
    assert 9.0 in out.y and -9.0 in out.y


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-5, 5)),
        min_size=1,
        max_size=400,
    ),
    st.integers(1, 50),
)
def test_every_bucket_keeps_its_first_min_max_and_last_finite_point(
    values: list[float], columns: int
) -> None:
    y = [float(v) for v in values]
    x = list(range(len(y)))
    out = m4(x, y, columns)
    w = out.width
    assert out.points == len(y)
    groups: dict[int, list[tuple[int, float]]] = {}
    for xi, yi in zip(x, y):
        groups.setdefault(math.floor(xi / w), []).append((xi, yi))
    kept: dict[int, list[tuple[float, float]]] = {}
    for xi, yi in zip(out.x, out.y):
        kept.setdefault(math.floor(xi / w), []).append((xi, yi))
    for b, points in groups.items():
        finite = [(xi, yi) for xi, yi in points if yi - yi == 0]
        got = kept.get(b, [])
        assert len(got) <= 4
        if not finite:
            assert not got
            continue
        ys = [yi for _, yi in got]
        assert min(ys) == min(yi for _, yi in finite) and max(ys) == max(yi for _, yi in finite)
        assert got[0] == finite[0] and got[-1] == finite[-1]
        kinds = {
            "nan": [xi for xi, yi in points if yi != yi],
            "pinf": [xi for xi, yi in points if yi == INF],
            "ninf": [xi for xi, yi in points if yi == -INF],
        }
        for kind, xs in kinds.items():
            marked = [m for m in getattr(out, kind) if math.floor(m / w) == b]
            assert marked == xs[:1]  # the first of each kind in the bucket is a marker
    assert out.counts == {
        "nan": sum(1 for v in y if v != v),
        "pinf": y.count(INF),
        "ninf": y.count(-INF),
    }


def test_bucket_edges_do_not_move_as_points_are_appended() -> None:
    """A live chart only changes in its last column: earlier buckets are the same points as before."""
    y = noisy(50_000, seed=3)
    x = list(range(50_000))
    before = m4(x[:20_000], y[:20_000], 500)
    after = m4(x[:30_000], y[:30_000], 500)
    assert before.width == after.width  # the range did not double
    last_old_bucket = math.floor(19_999 / before.width)
    old = [(a, b) for a, b in zip(before.x, before.y) if math.floor(a / before.width) < last_old_bucket]
    new = [(a, b) for a, b in zip(after.x, after.y) if math.floor(a / after.width) < last_old_bucket]
    assert old == new and len(old) > 1000
    # the width changes only when the range crosses a power of two
    assert bucket_width(0, 1000, 100) == 16 and bucket_width(0, 1600, 100) == 16
    assert bucket_width(0, 1601, 100) == 32


def test_a_zoomed_range_comes_back_at_full_resolution() -> None:
    n = 1_000_000
    x = list(range(n))
    y = noisy(n, seed=5)
    out = m4(x, y, 1000, lo=500_000, hi=500_999)
    assert out.points == 1000
    assert out.x == x[500_000:501_000] and out.y == y[500_000:501_000]  # every point, none invented
    wide = m4(x, y, 1000, lo=100_000, hi=900_000)
    assert wide.points == 800_001 and wide.x[0] == 100_000 and wide.x[-1] == 900_000


def test_ema_is_computed_on_every_point_and_does_not_depend_on_logging_density() -> None:
    def curve(n: int) -> tuple[list[float], list[float]]:
        xs = [i * 10_000 / (n - 1) for i in range(n)]
        return xs, [math.sin(v / 500) + (1 if int(v) % 2000 < 1000 else 0) for v in xs]

    x1, y1 = curve(10_001)  # every step
    x2, y2 = curve(100_001)  # ten times as often, same curve
    s1, s2 = smooth(x1, y1, 0.9), smooth(x2, y2, 0.9)
    for i in range(2000, 10_001, 997):  # same x in both: x1[i] == x2[10 * i]
        assert x1[i] == pytest.approx(x2[10 * i])
        assert s1[i] == pytest.approx(s2[10 * i], abs=0.03)
    # and on its full-resolution series the smoothed curve is the same whatever the chart's width
    assert m4(x1, s1, 200).y[:5] == m4(x1, s1, 200).y[:5]
    assert smooth(x1, y1, 0) == y1


def test_ema_edge_cases_constant_nan_and_repeated_steps() -> None:
    assert smooth([0, 1, 2, 3], [2.0, 2.0, 2.0, 2.0], 0.95) == [2.0, 2.0, 2.0, 2.0]  # no bias to zero
    out = smooth([0, 1, 2, 3, 4], [1.0, NAN, 1.0, INF, 1.0], 0.9)
    assert out[0] == 1.0 and out[2] == 1.0 and out[4] == 1.0  # one NaN does not blank the rest
    assert out[1] != out[1] and out[3] == INF  # and stays a marker in place
    same = smooth([0, 1, 1, 2], [0.0, 10.0, 20.0, 15.0], 0.5)
    assert same[1] != same[2]  # two points at one step both count (neither is dropped)
    values, state = ema([0, 1, 2], [1.0, 2.0, 3.0], 0.5)
    assert state["acc"] / state["norm"] == values[-1] and state["prev"] == 2.0
    with pytest.raises(ValueError, match="smoothing"):
        smooth([0], [1.0], 1.0)


def test_x_modes_and_ordering() -> None:
    steps, stamps = [0, 1, 2], [1_000_000, 1_000_500, 1_002_000]
    assert x_values(steps, stamps, "step", None) == steps
    assert x_values(steps, stamps, "wall", None) == stamps
    assert x_values(steps, stamps, "relative", 999_000) == [1.0, 1.5, 3.0]
    assert x_values(steps, stamps, "relative", None) == [0.0, 0.5, 2.0]  # from the first point
    with pytest.raises(ValueError, match="x mode"):
        x_values(steps, stamps, "epoch", None)
    x, y = in_order([3, 1, 2, 1], [30.0, 10.0, 20.0, 11.0])
    assert list(x) == [1, 1, 2, 3] and list(y) == [10.0, 11.0, 20.0, 30.0]  # stable: logging order kept
    with pytest.raises(ValueError, match="columns"):
        m4([1], [1.0], 0)
    assert m4([], [], 10).points == 0
