"""search_runs: MLflow's filter and order grammar on real stores written through the public API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow import InvalidInputError
from mini_mlflow.read._query import _first_in_order
from mini_mlflow.read._search import search_runs


@pytest.fixture
def runs(store: Path) -> dict[str, str]:
    """Six runs in two experiments with params, tags and metrics that differ; name → run id."""
    ids = {}
    specs = [
        ("a", 0, {"lr": 0.1, "optimizer": "adam"}, {"model": "resnet18"}, {"acc": 0.91, "train/loss": 0.3}),
        ("b", 0, {"lr": 0.01, "optimizer": "sgd"}, {"model": "resnet50"}, {"acc": 0.95, "train/loss": 0.2}),
        ("c", 0, {"lr": 0.001, "optimizer": "adam"}, {"model": "vit"}, {"acc": 0.80}),
        ("d", 0, {"lr": "0.01", "optimizer": "rmsprop"}, {"model": "ResNet-tiny"}, {"acc": float("nan")}),
        ("e", 0, {"lr": 0.1}, {}, {}),
    ]
    for name, exp, params, tags, metrics in specs:
        with mm.start_run(run_name=name, experiment_id=exp) as run:
            mm.log_params(params)
            mm.set_tags(tags)
            for key, value in metrics.items():
                mm.log_metric(key, value - 0.5 if value == value else value, step=0)
                mm.log_metric(key, value, step=1)
        ids[name] = run.run_id
    mm.set_experiment("other")
    with mm.start_run(run_name="f") as run:
        mm.log_param("optimizer", "adam")
        mm.log_metric("acc", 0.99)
    ids["f"] = run.run_id
    return ids


def names(result: list[mm.RunRecord]) -> list[str]:
    return [r.run_name or "" for r in result]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("metrics.acc > 0.9", {"a", "b", "f"}),
        ("metrics.acc >= 0.95", {"b", "f"}),
        ("metrics.acc < 0.9", {"c"}),  # NaN never matches; runs without the metric never match
        ("metrics.acc <= 0.8", {"c"}),
        ("metrics.acc = 0.8", {"c"}),
        ("metrics.acc != 0.8", {"a", "b", "f"}),
        ("metric.acc > 0.9 AND params.optimizer = 'adam'", {"a", "f"}),
        ("metrics.`train/loss` < 0.25", {"b"}),
        ('metrics."train/loss" < 0.25', {"b"}),
        ("params.lr = '0.01'", {"b", "d"}),  # 0.01 logged as a number and as a string read the same
        ("params.lr = 0.1", {"a", "e"}),
        ("params.lr < 0.05", {"b", "c", "d"}),
        ("params.optimizer != 'adam'", {"b", "d"}),
        ("params.optimizer IN ('adam', 'sgd')", {"a", "b", "c", "f"}),
        ("params.optimizer NOT IN ('adam', 'sgd')", {"d"}),
        ("tags.model LIKE 'res%'", {"a", "b"}),
        ("tags.model ILIKE 'res%'", {"a", "b", "d"}),
        ("tags.model LIKE 'resnet__'", {"a", "b"}),
        ("attributes.run_name = 'c'", {"c"}),
        ("run_name ILIKE 'A'", {"a"}),
        ("attributes.status = 'FINISHED' and params.lr = 0.1", {"a", "e"}),
        ("", {"a", "b", "c", "d", "e", "f"}),
    ],
)
def test_filters(runs: dict[str, str], store: Path, filter_string: str, expected: set[str]) -> None:
    assert set(names(search_runs(filter_string=filter_string, root=store))) == expected


def test_attribute_times_and_ids(runs: dict[str, str], store: Path) -> None:
    all_runs = search_runs(root=store)
    b = next(r for r in all_runs if r.run_name == "b")
    assert b.start_time is not None and b.end_time is not None and b.end_time >= b.start_time
    got = search_runs(filter_string=f"attributes.start_time >= {b.start_time}", root=store)
    assert "b" in names(got) and "a" not in names(got)
    got = search_runs(filter_string=f"attributes.run_id = '{runs['c']}'", root=store)
    assert names(got) == ["c"]
    got = search_runs(filter_string=f"attributes.run_id IN ('{runs['c']}', '{runs['a']}')", root=store)
    assert set(names(got)) == {"a", "c"}


def test_default_order_is_newest_first_and_order_by(runs: dict[str, str], store: Path) -> None:
    assert names(search_runs(experiment_ids=[0], root=store)) == ["e", "d", "c", "b", "a"]
    # Missing values go last in either direction; NaN just before them.
    assert names(search_runs([0], order_by=["metrics.acc DESC"], root=store)) == ["b", "a", "c", "d", "e"]
    assert names(search_runs([0], order_by=["metrics.acc"], root=store)) == ["c", "a", "b", "d", "e"]
    got = search_runs([0], order_by=["params.optimizer ASC", "metrics.acc DESC"], root=store)
    assert names(got) == ["a", "c", "d", "b", "e"]
    assert names(search_runs([0], order_by="attributes.run_name DESC", root=store)) == [
        "e",
        "d",
        "c",
        "b",
        "a",
    ]
    assert names(search_runs([0], order_by=["start_time ASC"], max_results=2, root=store)) == ["a", "b"]


def test_experiments_views_and_records(runs: dict[str, str], store: Path) -> None:
    other = mm.get_experiment_by_name("other")
    assert other is not None
    assert names(search_runs(experiment_ids=[other["experiment_id"]], root=store)) == ["f"]
    b = next(r for r in search_runs(root=store) if r.run_name == "b")
    assert b.run_id == runs["b"] and b.experiment_id == "0" and b.status == "FINISHED"
    assert b.params == {"lr": 0.01, "optimizer": "sgd"} and b.tags == {"model": "resnet50"}
    assert b.metrics == {"acc": 0.95, "train/loss": 0.2}  # the last logged value
    assert b.to_dict()["start_time"].endswith("Z")
    b.params["lr"] = "changed"  # records are copies: the index is not affected
    assert next(r for r in search_runs(root=store) if r.run_name == "b").params["lr"] == 0.01
    from mini_mlflow.store import _operations

    _operations.update_run_meta(str(Path(b.run_dir)), lifecycle_stage="deleted")
    assert "b" not in names(search_runs(root=store))
    assert names(search_runs(run_view="deleted", root=store)) == ["b"]
    assert len(search_runs(run_view="all", root=store)) == 6


def test_search_sees_own_unflushed_writes_through_the_fluent_default(store: Path) -> None:
    with mm.start_run(run_name="live"):
        mm.log_metric("acc", 0.5)
        got = search_runs(filter_string="metrics.acc = 0.5")
        assert names(got) == ["live"] and got[0].status == "RUNNING"


def test_to_pandas(runs: dict[str, str], store: Path) -> None:
    pytest.importorskip("pandas")
    df = search_runs(order_by=["metrics.acc DESC"], root=store, output="pandas")
    # MLflow's shape: info columns, then metrics., params. (MLflow's text), tags. (its system tags too)
    assert list(df.columns[:6]) == [
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
    ]
    assert list(df["tags.mlflow.runName"])[:2] == ["f", "b"]
    assert {"metrics.acc", "params.lr", "tags.model"} <= set(df.columns)
    assert df.loc[df["tags.mlflow.runName"] == "b", "params.lr"].item() == "0.01"


def test_offset_leaves_out_the_first_matches_in_the_same_order(runs: dict[str, str], store: Path) -> None:
    # The client's later pages: only the runs returned are read, the order is the full search's.
    for order in (None, ["metrics.acc DESC"], ["params.lr ASC", "attributes.run_name DESC"]):
        every = names(search_runs(order_by=order, run_view="all", root=store))
        for offset in range(len(every) + 2):
            page = search_runs(order_by=order, run_view="all", root=store, offset=offset, max_results=2)
            assert names(page) == every[offset : offset + 2], (order, offset)
    with pytest.raises(InvalidInputError, match=r"invalid offset -1: must be an int ≥ 0"):
        search_runs(root=store, offset=-1)


def test_to_pandas_holds_each_records_mlflow_entities(runs: dict[str, str], store: Path) -> None:
    # The frame is built column by column: it must hold what each record's .info and .data say,
    # for a run still open (no end time), a crashed one (KILLED), a child, params that are not text.
    pd = pytest.importorskip("pandas")
    from dataclasses import replace

    from mini_mlflow.read._records import SearchResult

    with mm.start_run(run_name="child", experiment_id="0", nested=False) as parent:
        with mm.start_run(run_name="kid", nested=True):
            mm.log_params({"flag": True, "layers": [1, 2], "none": None})
            mm.set_tag("n", 3)
        live = mm.start_run(run_name="live", experiment_id="0", nested=True)
        mm.log_metric("acc", 0.5)
        found = search_runs(run_view="all", root=store)
        live.end()
    assert parent.run_id
    records = SearchResult([*found, replace(found[0], status="CRASHED")])
    df = records.to_pandas()
    expected: dict[str, list[object]] = {
        "run_id": [r.info.run_id for r in records],
        "experiment_id": [r.info.experiment_id for r in records],
        "status": [r.info.status for r in records],
        "artifact_uri": [r.info.artifact_uri for r in records],
        "start_time": [pd.to_datetime(r.info.start_time, unit="ms", utc=True) for r in records],
        "end_time": [pd.to_datetime(r.info.end_time, unit="ms", utc=True) for r in records],
    }
    datas = [r.data for r in records]
    for prefix, missing in (("metrics", float("nan")), ("params", None), ("tags", None)):
        keys = dict.fromkeys(k for d in datas for k in getattr(d, prefix))
        for key in keys:
            expected[f"{prefix}.{key}"] = [getattr(d, prefix).get(key, missing) for d in datas]
    pd.testing.assert_frame_equal(df, pd.DataFrame(expected))
    for column in ("start_time", "end_time"):
        assert isinstance(df[column].dtype, pd.DatetimeTZDtype) and str(df[column].dt.tz) == "UTC"
    # Open: "live", its parent, and the crashed copy of "live" (the newest run comes first).
    assert df["status"].iloc[-1] == "KILLED" and df["end_time"].isna().sum() == 3
    assert {"params.flag", "params.layers", "tags.n", "tags.mlflow.parentRunId"} <= set(df.columns)


@pytest.mark.parametrize(
    ("filter_string", "token", "reason"),
    [
        ("metrics.acc foo 0.9", "foo", "expected a comparator"),
        ("metrics.acc > 'high'", "'high'", "compares with a number"),
        ("params.a = 'x' OR params.b = 'y'", "OR", "OR is not supported"),
        ("params.a = 'x' params.b = 'y'", "params.b", "expected AND"),
        ("foo.bar = 1", "foo.bar", "unknown entity"),
        ("bogus = 1", "bogus", "unknown identifier"),
        ("attributes.colour = 'red'", "attributes.colour", "unknown attribute"),
        ("metrics.acc LIKE 'a%'", "LIKE", "is numeric"),
        ("params.optimizer IN 'adam'", "'adam'", "parenthesised list"),
        ("params.optimizer IN ('adam' 'sgd')", "'sgd'", "expected ',' or ')'"),
        ("params.lr > 'a'", "'a'", "needs a number"),
        ("params.x = 'unclosed", "'", "unexpected character"),
        ("metrics.acc >", None, "expected a value"),
    ],
)
def test_malformed_filters_point_at_the_token(
    runs: dict[str, str], store: Path, filter_string: str, token: str | None, reason: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        search_runs(filter_string=filter_string, root=store)
    message = str(info.value)
    assert reason in message
    position = int(re.search(r"at position (\d+)", message).group(1))  # type: ignore[union-attr]
    lines = message.splitlines()
    assert lines[1] == f"  {filter_string}"
    caret = lines[2].index("^") - 2
    assert caret == position
    if token is not None:
        assert filter_string[position:].startswith(token)
    else:
        assert position == len(filter_string)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"order_by": ["metrics.acc SIDEWAYS"]}, "expected ASC or DESC"),
        ({"order_by": ["nope.acc"]}, "unknown entity"),
        ({"max_results": 0}, "max_results"),
        ({"run_view": "gone"}, "run_view"),
        ({"output": "xml"}, "output"),
        ({"experiment_ids": ["x"]}, "experiment id"),
    ],
)
def test_bad_arguments(runs: dict[str, str], store: Path, kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        search_runs(root=store, **kwargs)  # type: ignore[arg-type]


def test_unknown_experiment_is_not_found(store: Path, runs: dict[str, str]) -> None:
    with pytest.raises(mm.NotFoundError, match="no experiment 42"):
        search_runs(experiment_ids=[42], root=store)


def test_empty_or_missing_store(tmp_path: Path) -> None:
    assert list(search_runs(root=tmp_path / "nothing")) == []


# -- a page of a big match: only its runs are put in order ---------------------------------------------

_VALUES = st.one_of(
    st.lists(st.sampled_from([0, 1, 2, 2.5, -0.0, 0.0, 1.0, 1e300]), min_size=1, max_size=60),
    st.lists(st.sampled_from(["", "a", "B", "b", "aa"]), min_size=1, max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(values=_VALUES, data=st.data(), descending=st.booleans())
def test_the_first_runs_of_a_page_are_those_a_full_sort_puts_first(
    values: list[object], data: st.DataObject, descending: bool
) -> None:
    # Ties (1 and 1.0, -0.0 and 0.0, repeated values) keep their order, as in the full stable sort.
    need = data.draw(st.integers(1, len(values)))
    items = list(range(len(values)))
    full = sorted(items, key=values.__getitem__, reverse=descending)
    got = _first_in_order(items, values, need, descending)
    assert got[:need] == full[:need]
    assert sorted(got) == items  # every item still there, once


def test_a_search_for_a_page_returns_what_a_full_sort_returns(store: Path) -> None:
    for i in range(40):
        with mm.start_run(run_name=f"r{i}"):
            mm.log_metric("acc", float(i % 7))  # many ties
    everything = search_runs(order_by=["metrics.acc DESC"], root=store, copy=False)
    for max_results in (1, 5, 6, 39, 40):
        page = search_runs(order_by=["metrics.acc DESC"], max_results=max_results, root=store)
        assert [r.run_id for r in page] == [r.run_id for r in everything][:max_results]
