"""UI stage: a metric series made chart-sized without losing a spike, a NaN or an inf (M4), and smoothed.

M4 (Jugel et al., VLDB 2014) keeps the first, minimum, maximum and last point of each pixel column:
drawn as a line at that width, the chart is the same as with every point. Value-blind samplers
(MLflow's 320 evenly spaced steps, TensorBoard's 1,000-point reservoir, Aim's every k-th point) drop a
lone spike; this never does. Non-finite values never reach the line: each column reports them as
markers (the first NaN, +inf and -inf of the column) and the whole range as exact counts.

Bucket edges are multiples of a power of two (in x units), counted from zero: a live series that grows
keeps the same edges until its range doubles, so only the last column of a chart changes as points
arrive and the line does not jiggle.

Smoothing is a time-weighted, debiased exponential moving average computed on the full-resolution series
(before any downsampling), with its time constant a fixed fraction of the series' x span: the result
depends on neither the chart's width nor how densely the run logged.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import le

X_MODES = ("step", "wall", "relative")
#: The smoothing time constant is the series' x span divided by this (TensorBoard's and W&B's
#: smoothing also scale with the view, not with the number of points).
SMOOTHING_SPAN = 1000
_SMALLEST_WIDTH = 2.0**-30


@dataclass
class Downsampled:
    """A chart-ready series: finite points (≤ 4 per bucket), non-finite markers and exact counts."""

    #: x and y of the kept finite points, x ascending.
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    #: x of the non-finite points kept as markers (at most one of each kind per bucket).
    nan: list[float] = field(default_factory=list)
    pinf: list[float] = field(default_factory=list)
    ninf: list[float] = field(default_factory=list)
    #: Exact number of points in the range, and of each non-finite kind.
    points: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"nan": 0, "pinf": 0, "ninf": 0})
    #: The bucket width used (a power of two, in x units); 0 when nothing was bucketed.
    width: float = 0.0


def x_values(
    steps: Sequence[int], timestamps: Sequence[int], mode: str, start_ms: int | None
) -> Sequence[float]:
    """The x of each point: its step, its wall time (ms since the epoch) or seconds since ``start_ms``.

    ``start_ms`` is the run's start (the first point's time when unknown).
    """
    if mode == "step":
        return steps
    if mode == "wall":
        return timestamps
    if mode == "relative":
        origin = start_ms if start_ms is not None else (timestamps[0] if timestamps else 0)
        return [(t - origin) / 1000.0 for t in timestamps]
    raise ValueError(f"invalid x mode {mode!r}: must be one of {', '.join(X_MODES)}")


def in_order(x: Sequence[float], y: Sequence[float]) -> tuple[Sequence[float], Sequence[float]]:
    """The points sorted by x (stable: a re-logged step keeps its logging order); as given if already."""
    if all(map(le, x, islice(x, 1, None))):  # pairwise, in C: half the time of a generator (1M points)
        return x, y
    order = sorted(range(len(x)), key=x.__getitem__)
    return [x[i] for i in order], [y[i] for i in order]


def bucket_width(lo: float, hi: float, columns: int) -> float:
    """The smallest power of two ``w`` with ``(hi - lo) / w <= columns`` (edges at multiples of ``w``)."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return 1.0
    return max(_SMALLEST_WIDTH, 2.0 ** math.ceil(math.log2(span / columns)))


def _classify(
    out: Downsampled, x: Sequence[float], y: Sequence[float], a: int, b: int
) -> tuple[list[int], list[float]]:
    """Indices and values of the finite points of ``[a, b)``; non-finite ones become markers and counts."""
    finite_i, finite_v = [], []
    seen_nan = seen_pinf = seen_ninf = False
    counts = out.counts
    for i in range(a, b):
        v = y[i]
        if v != v:
            counts["nan"] += 1
            if not seen_nan:
                out.nan.append(x[i])
                seen_nan = True
        elif v == math.inf:
            counts["pinf"] += 1
            if not seen_pinf:
                out.pinf.append(x[i])
                seen_pinf = True
        elif v == -math.inf:
            counts["ninf"] += 1
            if not seen_ninf:
                out.ninf.append(x[i])
                seen_ninf = True
        else:
            finite_i.append(i)
            finite_v.append(v)
    return finite_i, finite_v


def m4(
    x: Sequence[float],
    y: Sequence[float],
    columns: int,
    lo: float | None = None,
    hi: float | None = None,
) -> Downsampled:
    """First, min, max and last finite point of each bucket of ``[lo, hi]`` (the whole series by default).

    Args:
        x: ascending x of every point (see :func:`in_order`).
        y: the values, NaN and ±inf included.
        columns: pixel columns of the chart; the range is cut into at most ``columns + 1`` buckets.
        lo, hi: the zoomed range; every point in it is considered (full resolution).
    """
    if columns < 1:
        raise ValueError(f"invalid columns {columns!r}: must be at least 1")
    out = Downsampled()
    if not x:
        return out
    lo = x[0] if lo is None else lo
    hi = x[-1] if hi is None else hi
    start, stop = bisect_left(x, lo), bisect_right(x, hi)
    out.points = max(0, stop - start)
    if stop <= start:
        return out
    w = bucket_width(x[start], x[stop - 1], columns)
    out.width = w
    xs, ys = out.x, out.y
    a = start
    while a < stop:
        edge = (math.floor(x[a] / w) + 1) * w  # the next multiple of w: where this bucket ends
        b = bisect_left(x, edge, a + 1, stop)
        part = y[a:b]
        total = sum(part)
        if total - total == 0:  # every value finite (an inf or NaN makes the sum non-finite)
            low, high = min(part), max(part)
            picks = {a, b - 1, a + part.index(low), a + part.index(high)}
        else:
            indices, values = _classify(out, x, y, a, b)
            if not values:
                a = b
                continue
            low, high = min(values), max(values)
            picks = {
                indices[0],
                indices[-1],
                indices[values.index(low)],
                indices[values.index(high)],
            }
        for i in sorted(picks):
            xs.append(x[i])
            ys.append(y[i])
        a = b
    return out


def smooth(x: Sequence[float], y: Sequence[float], weight: float) -> list[float]:
    """Time-weighted, debiased EMA of the full series (see :func:`ema`)."""
    return ema(x, y, weight)[0]


def ema(x: Sequence[float], y: Sequence[float], weight: float) -> tuple[list[float], dict[str, float]]:
    """Time-weighted, debiased EMA of the full series: each point weighs ``weight ** (dx / unit)``.

    ``unit`` is the x span over :data:`SMOOTHING_SPAN` (over the number of gaps for a shorter series), so
    a run that logged ten times as often gets the same curve. Every point counts, two at the same x
    included (no point is silently dropped), and the average is normalised by the weights seen so far
    (no pull toward zero at the start). NaN and ±inf are kept in place and left out of the average (one
    NaN does not blank the rest of the curve).

    Args:
        x: ascending x of every point.
        y: the values.
        weight: 0 (no smoothing) to below 1 (heavier).

    Returns:
        The smoothed values, and the state after the last point (``acc``, ``norm``, ``prev``, ``unit``,
        ``log_w``), from which the page extends the curve with live points by the same rule.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"invalid smoothing {weight!r}: must be from 0 to below 1")
    span = float(x[-1] - x[0]) if len(x) else 0.0
    # A short series smooths point by point (as TensorBoard's EMA); past SMOOTHING_SPAN points the
    # constant is a fraction of the span, so logging more often no longer changes the curve.
    unit = span / min(SMOOTHING_SPAN, max(len(x) - 1, 1)) if span > 0 else 1.0
    state = {"acc": 0.0, "norm": 0.0, "prev": float(x[0]) if len(x) else 0.0, "unit": unit, "log_w": 0.0}
    if weight == 0 or not y:
        return list(y), state
    log_w = math.log(weight)
    out: list[float] = []
    append = out.append
    acc = norm = 0.0
    prev = x[0]
    last_dx, decay = 0.0, 1.0
    for xi, yi in zip(x, y, strict=False):
        if yi - yi != 0:  # NaN or ±inf: a marker, not part of the average
            append(yi)
            continue
        dx = xi - prev
        if dx != last_dx:
            decay = math.exp(log_w * dx / unit)
            last_dx = dx
        acc = acc * decay + yi
        norm = norm * decay + 1.0
        prev = xi
        append(acc / norm)
    state.update(acc=acc, norm=norm, prev=float(prev), log_w=log_w)
    return out, state
