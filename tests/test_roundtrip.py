"""Property tests: any key or value either round-trips exactly through the store or is refused clearly."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.store._layout import validate_key

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

key_chars = st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs", "Cc"])
any_key = st.text(key_chars, min_size=0, max_size=40) | st.sampled_from(
    ["a/b", "..", "a//b", "/x", "x/", "ü/ñ", "a:b c-d.e_f"]
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> mm.Run:
    root = tmp_path_factory.mktemp("store") / "mlruns"
    r = mm.Run(runs_dir=root)
    yield r  # type: ignore[misc]
    r.end()


def _inside(path: str, root: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base + os.sep)


@SETTINGS
@given(key=any_key, value=st.floats(allow_nan=True, allow_infinity=True))
def test_metric_keys_and_values_round_trip_or_are_refused(run: mm.Run, key: str, value: float) -> None:
    try:
        validate_key(key)
    except ValueError as err:
        assert "key" in str(err)
        with pytest.raises(ValueError):
            run.log_metric(key, value)
        return
    run.log_metric(key, value, step=7)
    run._buffer.drain()
    path = os.path.join(run.run_dir, "metrics", key + ".jsonl")
    assert _inside(path, os.path.join(run.run_dir, "metrics"))
    history = mm.Store(Path(run.run_dir).parent.parent).get_metric_history(run.run_id, key)
    got = history.values[-1]
    assert (math.isnan(got) and math.isnan(value)) or (
        got == value and math.copysign(1, got) == math.copysign(1, value)
    )
    assert history.steps[-1] == 7


point_batches = st.lists(
    st.tuples(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**70), 2**70),  # beyond 64 bits too: orjson refuses those, the slow path takes them
        st.floats(0, 4e9, allow_nan=False)
        | st.integers(0, 2**62),  # seconds from time.time(), or caller's ms
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.parametrize("formatter", ["orjson", "stdlib"])
@SETTINGS
@given(points=point_batches)
def test_a_batch_of_points_formats_to_lines_that_read_back_exactly(
    formatter: str, points: list[tuple[float, int, float | int]]
) -> None:
    """Both ways of formatting a drain (orjson columns, and the pure-Python fallback) give the same data."""
    from mini_mlflow.read._reader import parse_metric_lines
    from mini_mlflow.store import _metric_lines as _lines

    if formatter == "orjson":
        pytest.importorskip("orjson")
    saved = _lines._dumps
    _lines._dumps = None if formatter == "orjson" else False
    _lines.load_fast_formatter()
    try:
        data = _lines.format_lines([("k", v, s, t) for v, s, t in points])
    finally:
        _lines._dumps = saved
    assert data.count(b"\n") == len(points) and data.endswith(b"\n")
    history = parse_metric_lines(data, "k")
    assert history.skipped_lines == 0
    assert history.steps == [s for _, s, _ in points]
    assert history.timestamps == [t if isinstance(t, int) else int(t * 1000) for _, _, t in points]
    for got, (want, _, _) in zip(history.values, points, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or (
            got == want and math.copysign(1, got) == math.copysign(1, want)
        )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@SETTINGS
@given(key=any_key, value=json_values)
def test_param_values_round_trip(run: mm.Run, key: str, value: object) -> None:
    key = "p/" + key if key else key
    try:
        validate_key(key)
    except ValueError:
        with pytest.raises(ValueError):
            run.log_param(key, value)
        return
    try:
        run.log_param(key, value)
    except mm.ParamConflictError:
        return  # hypothesis reused a key with another value: refused, as it must be
    except ValueError as err:  # e.g. a string with a lone surrogate
        assert repr(key) in str(err)
        return
    got = mm.Store(Path(run.run_dir).parent.parent).get_run(run.run_id)["params"][key]
    assert got == value


@SETTINGS
@given(key=any_key, value=st.text(max_size=200))
def test_tag_values_round_trip(run: mm.Run, key: str, value: str) -> None:
    try:
        validate_key(key)
        run.set_tag(key, value)
    except ValueError as err:
        assert "tag" in str(err) or "key" in str(err)
        return
    assert mm.Store(Path(run.run_dir).parent.parent).get_run(run.run_id)["tags"][key] == value


@SETTINGS
@given(name=st.text(max_size=60))
def test_experiment_names_round_trip(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    root = tmp_path_factory.mktemp("names") / "mlruns"
    mm.set_tracking_dir(root)
    try:
        try:
            experiment_id = mm.set_experiment(name).experiment_id
        except ValueError as err:
            assert "experiment name" in str(err)
            return
        assert mm.get_experiment_by_name(name)["experiment_id"] == experiment_id
        assert os.listdir(root) == [experiment_id] or set(os.listdir(root)) >= {experiment_id}
    finally:
        mm.set_tracking_dir(None)
