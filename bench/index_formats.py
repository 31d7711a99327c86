"""The two candidate index formats side by side: the standard library's SQLite and our columnar file.

Both hold the same runs (read from the columnar index of a store that ``bench_scale`` built) and answer
the same questions, each in a fresh process: the bench's filter and order with 1,000 records built
(``search_runs``' default), and ``ls``' question (how many runs, and the newest 20). SQLite gets every
advantage it can use: one table per kind with (key, value) indexes, the filter and the order pushed
down into SQL with a LIMIT, the count done by SQL. Validation against the run folders is the same for
both designs and is left out here: this measures the storage only.

    python bench/index_formats.py STORE     # a store whose .index/ holds a columnar file
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FILTER = "metrics.acc > 0.5 AND params.optimizer = 'adam'"
SCHEMA = """
CREATE TABLE runs(row INTEGER PRIMARY KEY, name TEXT, d INTEGER, ok INTEGER, run_name TEXT, status TEXT,
  start INTEGER, end_ INTEGER, stage TEXT, user TEXT, parent TEXT, newer INTEGER, detail BLOB);
CREATE TABLE params(row INTEGER, key TEXT, value TEXT, text TEXT, PRIMARY KEY(row, key)) WITHOUT ROWID;
CREATE TABLE tags(row INTEGER, key TEXT, value TEXT, text TEXT, PRIMARY KEY(row, key)) WITHOUT ROWID;
CREATE TABLE metrics(row INTEGER, key TEXT, last REAL, PRIMARY KEY(row, key)) WITHOUT ROWID;
"""
INDEXES = """
CREATE INDEX params_kv ON params(key, text);
CREATE INDEX tags_kv ON tags(key, text);
CREATE INDEX metrics_kv ON metrics(key, last);
CREATE INDEX runs_start ON runs(stage, start DESC, name);
"""


def build_sqlite(store: str, db: str) -> dict[str, float]:
    """The same runs in SQLite, with the indexes a pushed-down search needs; the write timed."""
    from mini_mlflow.read import _columns, _index
    from mini_mlflow.read._records import as_text

    index = _index._load(store, "0")
    main = index.main
    rows = list(range(main.n))
    records = main.records(rows, "0", index.exp_dir)
    details = [main.raw_detail(r) for r in rows]
    t = time.perf_counter()
    if os.path.exists(db):
        os.unlink(db)
    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    con.executemany(
        "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            (i, r.run_id, main.d[i], main.ok[i], r.run_name, r.stored_status, r.start_time, r.end_time,
             r.lifecycle_stage, r.user, r.parent_run_id, r.newer_format, details[i])
            for i, r in enumerate(records)
        ),
    )  # fmt: skip
    for table in ("params", "tags"):
        rows = (
            (i, k, _columns.dumps(v).decode(), as_text(v))
            for i, r in enumerate(records)
            for k, v in getattr(r, table).items()
        )
        con.executemany(f"INSERT INTO {table} VALUES (?,?,?,?)", rows)
    con.executemany(
        "INSERT INTO metrics VALUES (?,?,?)",
        ((i, k, v) for i, r in enumerate(records) for k, v in r.metrics.items()),
    )
    con.executescript(INDEXES)
    con.commit()
    con.close()
    return {"write": time.perf_counter() - t, "size": os.path.getsize(db)}


SQLITE_CHILD = """
import json, resource, sqlite3, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[2])
from mini_mlflow.read._records import RunRecord
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
def search():
    rows = [r for (r,) in con.execute(
        "SELECT m.row FROM metrics m JOIN runs r ON r.row = m.row WHERE m.key = 'acc' AND m.last > 0.5"
        " AND r.stage = 'active' AND EXISTS (SELECT 1 FROM params p WHERE p.row = m.row AND"
        " p.key = 'optimizer' AND p.text = 'adam') ORDER BY m.last DESC, r.start DESC, r.name LIMIT 1000")]
    con.execute("CREATE TEMP TABLE IF NOT EXISTS page(row INTEGER PRIMARY KEY)")
    con.execute("DELETE FROM page")
    con.executemany("INSERT INTO page VALUES (?)", [(r,) for r in rows])
    values = {r: ({}, {}, {}) for r in rows}
    for i, table in enumerate(("params", "tags")):
        query = f"SELECT row, key, value FROM {table} WHERE row IN page ORDER BY row, key"
        for row, key, value in con.execute(query):
            values[row][i][key] = json.loads(value)
    query = "SELECT row, key, last FROM metrics WHERE row IN page ORDER BY row, key"
    for row, key, last in con.execute(query):
        values[row][2][key] = last
    query = "SELECT row, name, run_name, status, start, end_, stage, user, parent, newer FROM runs"
    meta = {row: rest for row, *rest in con.execute(query + " WHERE row IN page")}
    return [RunRecord(m[0], m[1], "0", m[2], m[3], m[4], m[5], m[6], m[7], *values[r], "", m[2], m[8], [])
            for r in rows for m in [meta[r]]]
def ls():
    total = con.execute("SELECT count(*) FROM runs WHERE stage = 'active'").fetchone()[0]
    query = "SELECT row FROM runs WHERE stage = 'active' ORDER BY start DESC, name LIMIT 20"
    page = con.execute(query).fetchall()
    return total, page
"""

COLUMNAR_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[2])
from mini_mlflow.read import _index
from mini_mlflow.read._filter import parse_clauses, parse_order_by
from mini_mlflow.read._query import Source
from mini_mlflow.read._search import Found
index = _index._load(sys.argv[1], "0")
clauses, keys = parse_clauses(FILTER), parse_order_by(["metrics.acc DESC"])
def search():
    return Found([Source(index, "active")], clauses, keys).records(0, 1000)
def ls():
    found = Found([Source(index, "active")], [], [])
    return found.total, found.records(0, 20)
""".replace("FILTER", repr(FILTER))

TAIL = """
what = sys.argv[3]
t = time.perf_counter()
first = (search if what == "search" else ls)()
t1 = time.perf_counter()
warm = []
for _ in range(7):
    t2 = time.perf_counter()
    (search if what == "search" else ls)()
    warm.append(time.perf_counter() - t2)
print(json.dumps({"process": t1 - t0, "first": t1 - t, "warm": sorted(warm)[3],
                  "rss": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024,
                  "n": len(first) if what == "search" else first[0]}))
"""


def measure(child: str, target: str, what: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", child + TAIL, target, ROOT, what], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def compare(store: str) -> dict[str, Any]:
    """Both formats on the same runs: write time and size, then each question in a fresh process."""
    db = os.path.join(store, ".index", "compare.sqlite")
    try:
        sql = build_sqlite(store, db)
        cols_file = os.path.join(store, ".index", "0.cols")
        out: dict[str, Any] = {"sqlite": sql, "columnar": {"size": os.path.getsize(cols_file)}}
        out["columnar"]["write"] = _columnar_write(store)
        for what in ("search", "ls"):
            out["sqlite"][what] = measure(SQLITE_CHILD, db, what)
            out["columnar"][what] = measure(COLUMNAR_CHILD, store, what)
    finally:
        if os.path.exists(db):
            os.unlink(db)
    return out


def _columnar_write(store: str) -> float:
    """Seconds to pack every run into a columnar file and write it (what a compaction pays)."""
    from mini_mlflow.read import _index, _index_files

    index = _index._load(store, "0")
    builder = _index_files.builder_of(index, set())
    t = time.perf_counter()
    data = builder.encode(index.extra(), "compare")
    with open(os.path.join(store, ".index", "compare.cols"), "wb") as f:
        f.write(data)
    took = time.perf_counter() - t
    os.unlink(os.path.join(store, ".index", "compare.cols"))
    return took


if __name__ == "__main__":
    result = compare(sys.argv[1])
    print(json.dumps(result, indent=1))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
