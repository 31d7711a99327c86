"""The column engine answers exactly as the record predicates do, and reads only the columns it needs.

``search_runs`` filters and orders on the index's columns (a mask per clause, one sort of the matches)
and on the delta's records. The reference here reads every run with the plain reader API and applies
the filter grammar's predicates to those runs one by one, with the sort rules written out again: any
difference in a random filter, order or store is a bug of the engine.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.read import _index, _index_files
from mini_mlflow.read._filter import Field, parse_filter, parse_order_by
from mini_mlflow.read._records import RunRecord, as_text
from mini_mlflow.read._search import find, search_runs
from mini_mlflow.store._layout import iso_from_ms
from mini_mlflow.store._yaml import dump_yaml

SYSTEM = {"mlflow.runName": "run_name", "mlflow.parentRunId": "parent_run_id", "mlflow.user": "user"}
PARAM_VALUES = [
    "adam",
    "sgd",
    "Adam",
    "a%b",
    "",
    1,
    2,
    0.5,
    1e-05,
    -3,
    True,
    False,
    None,
    [1, "x"],
    "0.5",
    "10",
]
METRIC_VALUES = [0.0, -0.0, 0.25, 0.5, 0.75, 1.0, -2.5, 3, math.nan, math.inf, -math.inf]
NAMES = ["alpha", "beta", "Beta", "gamma_1", "a b", None]


def _line(step: int, value: float) -> str:
    if value != value or value in (math.inf, -math.inf):
        text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        return f'{{"step":{step},"value":"{text}","timestamp":1}}\n'
    return f'{{"step":{step},"value":{value!r},"timestamp":1}}\n'


def default_experiment(folder: Path) -> Path:
    """A store root under ``folder`` holding the Default experiment (id 0) and no run yet."""
    root = folder / "mlruns"
    (root / "0").mkdir(parents=True)
    (root / "0" / "meta.yaml").write_text("experiment_id: '0'\nname: Default\nlifecycle_stage: active\n")
    return root


def settled_in_columns(root: Path) -> None:
    """Date every run an hour back (finished long ago: trusted on its folder's mtime, never re-read into
    the delta), build the index from nothing with every run in the columnar file, and drop it from
    memory: the next search starts from the files."""
    hour_ago = time.time() - 3600
    for path in [*root.glob("0/*/**/*"), *root.glob("0/*/")]:
        os.utime(path, (hour_ago, hour_ago))
    _index.forget(str(root), "0")
    index = _index.load_experiment(str(root), "0")
    _index_files.save(str(root), index, _index_files.builder_of(index, set()))
    _index._MEMORY.clear()


def write_run(root: Path, run: dict[str, Any]) -> None:
    """One run folder in the store's format, written directly (fast, any value the format allows)."""
    rdir = root / "0" / run["id"]
    for sub in ("params", "tags", "metrics"):
        (rdir / sub).mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": 1,
        "run_id": run["id"],
        "run_name": run["name"],
        "experiment_id": "0",
        "status": run["status"],
        "start_time": iso_from_ms(run["start"]),
        "end_time": iso_from_ms(run["end"]),
        "user": run["user"],
        "lifecycle_stage": run["stage"],
        "parent_run_id": None,
    }
    (rdir / "meta.yaml").write_bytes(dump_yaml(meta))
    for kind in ("params", "tags"):
        for key, value in run[kind].items():
            (rdir / kind / f"{key}.json").write_text(json.dumps(value) + "\n")
    for key, values in run["metrics"].items():
        (rdir / "metrics" / f"{key}.jsonl").write_text("".join(_line(i, v) for i, v in enumerate(values)))


def runs_strategy() -> st.SearchStrategy[list[dict[str, Any]]]:
    run = st.fixed_dictionaries(
        {
            "name": st.sampled_from(NAMES),
            "status": st.sampled_from(["FINISHED", "FAILED", "KILLED"]),
            "start": st.one_of(st.none(), st.integers(1_700_000_000_000, 1_700_000_000_020)),
            "end": st.one_of(st.none(), st.integers(1_700_000_000_000, 1_700_000_000_050)),
            "user": st.sampled_from(["ann", "bob", None]),
            "stage": st.sampled_from(["active", "active", "active", "deleted"]),
            "params": st.dictionaries(st.sampled_from(["p0", "p1", "opt"]), st.sampled_from(PARAM_VALUES)),
            "tags": st.dictionaries(
                st.sampled_from(["t0", "mlflow.runName", "note"]), st.sampled_from(["x", "y", "beta", ""])
            ),
            "metrics": st.dictionaries(
                st.sampled_from(["m0", "m1", "loss"]),
                st.lists(st.sampled_from(METRIC_VALUES), min_size=1, max_size=3),
            ),
        }
    )
    return st.lists(run, min_size=1, max_size=25)


NUMERIC_FIELDS = ["metrics.m0", "metrics.m1", "metrics.loss", "attributes.start_time", "attributes.end_time"]
# params.p_new appears only on runs changed after the columnar file was written
TEXT_FIELDS = [
    "params.p0", "params.p1", "params.opt", "params.p_new", "tags.t0", "tags.note", "tags.`mlflow.runName`",
    "tags.`mlflow.user`", "attributes.status", "attributes.run_name", "attributes.user",
    "attributes.lifecycle_stage",
]  # fmt: skip
NUMBERS = ["0", "0.5", "-0.0", "1", "3", "1e-05", "1700000000010", "-2.5"]
TEXTS = ["'adam'", "'sgd'", "'beta'", "'x'", "''", "'0.5'", "'10'", "'FINISHED'", "'KILLED'", "'alpha'", "'ann'", "'deleted'"]  # fmt: skip
PATTERNS = ["'%a%'", "'b%'", "'_eta'", "'%'", "'A%'", "'%.5'"]


def clause() -> st.SearchStrategy[str]:
    numeric = st.tuples(
        st.sampled_from([*NUMERIC_FIELDS, "params.p1", "params.p0"]),
        st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
        st.sampled_from(NUMBERS),
    ).map(" ".join)
    text = st.tuples(st.sampled_from(TEXT_FIELDS), st.sampled_from(["=", "!="]), st.sampled_from(TEXTS)).map(
        " ".join
    )
    like = st.tuples(
        st.sampled_from(TEXT_FIELDS), st.sampled_from(["LIKE", "ILIKE"]), st.sampled_from(PATTERNS)
    ).map(" ".join)
    member = st.tuples(
        st.sampled_from(TEXT_FIELDS),
        st.sampled_from(["IN", "NOT IN"]),
        st.lists(st.sampled_from([*TEXTS, "1", "0.5"]), min_size=1, max_size=3).map(
            lambda v: f"({', '.join(v)})"
        ),
    ).map(" ".join)
    return st.one_of(numeric, text, like, member)


ORDER_FIELDS = NUMERIC_FIELDS + TEXT_FIELDS + ["attributes.run_id", "params.p1"]


def reference(root: Path, filter_string: str, order_by: list[str], view: str) -> list[str]:
    """The matching run ids in order, from the reader API and the grammar's record predicates."""
    store = mm.Store(root)
    records = []
    for run_dir in store.run_dirs("0"):
        run = store.get_run(os.path.basename(run_dir))
        meta = run["metadata"]
        if view != "all" and (meta.get("lifecycle_stage") == "deleted") != (view == "deleted"):
            continue
        records.append(
            RunRecord(
                str(meta["run_id"]),
                meta.get("run_name"),
                "0",
                meta["status"],
                _ms(meta.get("start_time")),
                _ms(meta.get("end_time")),
                meta.get("lifecycle_stage", "active"),
                meta.get("user"),
                meta.get("parent_run_id"),
                run["params"],
                run["tags"],
                run["metrics"],
                run_dir,
            )
        )
    predicate = parse_filter(filter_string, _getter)
    found = [r for r in records if predicate is None or predicate(r)]
    keys = parse_order_by(
        ["start_time DESC", "run_id", *order_by] if order_by else ["start_time DESC", "run_id"]
    )
    if order_by:  # the default order first, then the caller's keys (stable), as search_runs sorts
        found = _sort(_sort(found, keys[:2]), keys[2:])
    else:
        found = _sort(found, keys)
    return [r.run_id for r in found]


def _ms(text: str | None) -> int | None:
    from mini_mlflow.store._layout import ms_from_iso

    return ms_from_iso(text)


def _getter(f: Field) -> Any:
    if f.entity in ("metrics", "params"):
        return lambda r: getattr(r, f.entity).get(f.key)
    if f.entity == "tags":
        return lambda r: r.tags.get(f.key, getattr(r, SYSTEM[f.key]) if f.key in SYSTEM else None)
    return lambda r: getattr(r, f.key)


def _sort(records: list[RunRecord], keys: list[Any]) -> list[RunRecord]:
    """The sort rules, written out: present values, then NaN, then missing; mixed types as text."""
    for order in reversed(keys):
        get = _getter(order.field)
        present = [(get(r), r) for r in records if get(r) is not None and get(r) == get(r)]
        nan = [r for r in records if get(r) is not None and get(r) != get(r)]
        missing = [r for r in records if get(r) is None]
        if not all(type(v) in (int, float) for v, _ in present):
            present = [(as_text(v), r) for v, r in present]
        present.sort(key=itemgetter(0), reverse=order.descending)
        records = [r for _, r in present] + nan + missing
    return records


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    runs=runs_strategy(),
    changed=st.lists(st.integers(0, 24), max_size=4),
    filters=st.lists(st.lists(clause(), min_size=0, max_size=3).map(" AND ".join), min_size=1, max_size=6),
    orders=st.lists(
        st.lists(
            st.tuples(st.sampled_from(ORDER_FIELDS), st.sampled_from(["", " DESC", " ASC"])).map("".join),
            max_size=2,
        ),
        min_size=1,
        max_size=3,
    ),
    view=st.sampled_from(["active", "deleted", "all"]),
)
def test_the_column_engine_answers_as_the_record_predicates_do(
    runs: list[dict[str, Any]], changed: list[int], filters: list[str], orders: list[list[str]], view: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = default_experiment(Path(tmp))
        for i, run in enumerate(runs):
            run["id"] = f"{i:032x}"
            write_run(root, run)
        index = _index.load_experiment(str(root), "0")
        _index_files.save(str(root), index, _index_files.builder_of(index, set()))  # every run in columns
        assert index.main.n == len(runs) and not index.delta
        touched = set()
        for i in changed:  # runs changed or added since, as the format allows: the delta holds them
            if i >= len(runs):
                run = dict(runs[i % len(runs)], id=f"{1000 + i:032x}")
                write_run(root, run)
            else:
                run = runs[i]
                rdir = root / "0" / run["id"]
                with open(rdir / "metrics" / "m1.jsonl", "a") as f:  # metric files are append-only
                    f.write(_line(9, 0.5))
                if not (rdir / "params" / "p_new.json").exists():  # params are written once
                    (rdir / "params" / "p_new.json").write_text('"10"\n')
                os.utime(rdir, ns=(0, 10**18 + i))  # as a meta.yaml replaced by rename moves it
            touched.add(run["id"])
        _index._MEMORY.clear()
        for filter_string in filters:
            for order_by in orders:
                got = search_runs(filter_string=filter_string, order_by=order_by, run_view=view, root=root)
                expected = reference(root, filter_string, order_by, view)
                assert [r.run_id for r in got] == expected, (filter_string, order_by)
        assert set(_index._MEMORY[(str(root), "0")].delta) == touched  # the mixed path was taken


def test_a_metric_bound_tested_on_the_rows_other_clauses_left_answers_as_a_mask_does(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A metric compared with a number is tested on the rows a param clause left when it left fewer
    than half (and as a mask otherwise): every operator, NaN, ±inf and -0.0 answer as the reference."""
    from mini_mlflow.read import _query

    root = default_experiment(tmp_path)
    for i in range(44):
        run = {
            "id": f"{i:032x}", "name": f"r{i}", "status": "FINISHED", "start": 1_700_000_000_000 + i, "end": None,
            "user": "ann", "stage": "active", "tags": {},
            "params": {"p": "rare" if i % 4 == 0 else "common" if i % 4 != 3 else "half"},
            "metrics": {"m": [METRIC_VALUES[i % len(METRIC_VALUES)]], "n": [float(i)]},
        }  # fmt: skip
        write_run(root, run)
    settled_in_columns(root)
    tested = []
    row_test = _query.Source._row_test

    def spy(self: Any, clause: Any) -> Any:
        found = row_test(self, clause)
        tested.append(found is not None)
        return found

    monkeypatch.setattr(_query.Source, "_row_test", spy)
    for op in ("=", "<", "<=", ">", ">=", "!="):
        for bound in ("0.5", "0", "-0.0", "-2.5", "3", "1e308"):
            for rest in ("params.p = 'rare'", "params.p != 'rare'", "metrics.n < 30"):
                for flt in (f"{rest} AND metrics.m {op} {bound}", f"metrics.m {op} {bound} AND {rest}"):
                    got = search_runs(filter_string=flt, root=root, max_results=1000)
                    assert [r.run_id for r in got] == reference(root, flt, [], "active"), flt
    assert any(tested) and not all(tested)  # both paths were taken ("!=" never is a row test)
    assert not _index._MEMORY[(str(root), "0")].delta  # every search read the columns


def test_a_search_reads_only_the_columns_it_needs(tmp_path: Path) -> None:
    root = default_experiment(tmp_path)
    for i in range(50):
        run = {
            "id": f"{i:032x}", "name": f"r{i}", "status": "FINISHED", "start": 1_700_000_000_000 + i, "end": None,
            "user": "ann", "stage": "active", "params": {"lr": i / 10, "opt": "adam" if i % 2 else "sgd"},
            "tags": {"t": "x"}, "metrics": {"acc": [i / 50], "loss": [1 - i / 50]},
        }  # fmt: skip
        write_run(root, run)
    settled_in_columns(root)
    found = find(None, "metrics.acc > 0.5", ["metrics.acc DESC"], "active", str(root))
    main = _index._MEMORY[(str(root), "0")].main
    decoded = {name for name, column in chain(main._keys.items(), main._fields.items()) if column is not None}
    assert decoded == {"x.acc", "lifecycle_stage"}  # the filter's and the order's column, and the view's
    assert found.total == 24
    page = found.records(0, 3)
    assert [r.metrics["acc"] for r in page] == [0.98, 0.96, 0.94]
    assert page[0].params == {"lr": 4.9, "opt": "adam"} and page[0].tags == {"t": "x"}


def test_the_table_of_a_search_is_its_records_as_columns(tmp_path: Path) -> None:
    root = default_experiment(tmp_path)
    runs = [
        {"id": f"{i:032x}", "name": NAMES[i % len(NAMES)], "status": "RUNNING" if i == 7 else "FINISHED", "start": 1_700_000_000_000 + i % 7,
         "end": None, "user": "ann", "stage": "active", "params": {"p": PARAM_VALUES[i % len(PARAM_VALUES)]},
         "tags": {"mlflow.runName": "x"} if i % 3 else {}, "metrics": {"m": [METRIC_VALUES[i % 11]]} if i % 4 else {}}
        for i in range(30)
    ]  # fmt: skip
    for run in runs[:20]:
        write_run(root, run)
    index = _index.load_experiment(str(root), "0")
    _index_files.save(str(root), index, _index_files.builder_of(index, set()))
    for run in runs[20:]:  # and some in the delta
        write_run(root, run)
    found = find(None, "", ["params.p"], "active", str(root))
    table = found.table()
    records = found.records(0, found.total)
    assert table["count"] == len(records) == 30
    assert table["runs"]["id"] == [r.run_id for r in records]
    assert table["runs"]["name"] == [r.run_name for r in records]
    assert table["runs"]["start"] == [r.start_time for r in records]
    for entity in ("params", "tags", "metrics"):
        rebuilt: dict[str, list[list[Any]]] = {}
        for i, r in enumerate(records):
            for key, value in getattr(r, entity).items():
                rebuilt.setdefault(key, [[], []])
                rebuilt[key][0].append(i)
                rebuilt[key][1].append(value)
        got = table[entity]
        assert sorted(got) == sorted(rebuilt)
        for key in got:
            assert got[key][0] == rebuilt[key][0]
            assert json.dumps(got[key][1]) == json.dumps(rebuilt[key][1])  # NaN equal to NaN
    # every run in the columnar file (the path that reads whole columns), filtered, ordered, with the
    # values given as a page shows them: params and tags as text, non-finite metrics spelled out
    settled_in_columns(root)

    def text(v: Any) -> str:
        return f"<{v!r}>"

    def spelled(v: float) -> str:
        return "NaN" if v != v else "inf" if v > 0 else "-inf"

    for flt, order in (
        ("", []),
        ("params.p != 'sgd'", ["metrics.m DESC"]),
        ("attributes.run_name = 'beta'", []),
    ):
        found = find(None, flt, order, "active", str(root))
        assert found._rows_only  # every match read from the columns
        table = found.table(text, spelled)
        records = found.records(0, found.total)
        assert table["count"] == len(records) > 0
        for field, attribute in (
            ("id", "run_id"),
            ("name", "run_name"),
            ("status", "status"),
            ("end", "end_time"),
        ):
            assert table["runs"][field] == [getattr(r, attribute) for r in records]
        for entity in ("params", "tags", "metrics"):
            rebuilt = {}
            for i, r in enumerate(records):
                for key, value in getattr(r, entity).items():
                    shown = (
                        text(value)
                        if entity != "metrics"
                        else value
                        if value - value == 0
                        else spelled(value)
                    )
                    rebuilt.setdefault(key, [[], []])
                    rebuilt[key][0].append(i)
                    rebuilt[key][1].append(shown)
            assert {k: v for k, v in table[entity].items() if v[0]} == rebuilt
    statuses = find(None, "", [], "active", str(root)).table()["runs"]["status"]
    assert "RUNNING" not in statuses and "CRASHED" in statuses  # its writer long gone (no heartbeat)
