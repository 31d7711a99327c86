"""The derived index: always agrees with the files (live writes, crashes, garbage, deletion), and the
read side never lets one broken run hide the others."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.read import _index
from mini_mlflow.read._search import search_runs
from mini_mlflow.store import _operations
from mini_mlflow.store._yaml import dump_yaml, load_meta_bytes, load_yaml, parse_subset

from conftest import python_child, wait_until


def fresh_search(root: Path, **kwargs: object) -> mm.SearchResult:
    """A search as a new process would do it: nothing cached in memory, only the files."""
    _index._MEMORY.clear()
    return search_runs(root=root, **kwargs)  # type: ignore[arg-type]


def by_name(result: list[mm.RunRecord]) -> dict[str, mm.RunRecord]:
    return {r.run_name or "": r for r in result}


def make_run(name: str, **metrics: float) -> mm.Run:
    with mm.start_run(run_name=name) as run:
        mm.log_param("p", name)
        for key, value in metrics.items():
            mm.log_metric(key, value)
    return run


def test_index_is_written_and_reused_then_rebuilt_when_deleted(store: Path) -> None:
    make_run("a", acc=0.5)
    assert by_name(fresh_search(store))["a"].metrics == {"acc": 0.5}
    index_file = store / ".index" / "0.delta"  # a small experiment's runs are all in its delta
    assert index_file.exists()
    before = index_file.stat().st_mtime_ns
    assert by_name(fresh_search(store))["a"].params == {"p": "a"}
    assert index_file.stat().st_mtime_ns == before  # nothing changed: not rewritten
    for path in sorted((store / ".index").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert by_name(fresh_search(store))["a"].metrics == {"acc": 0.5}


@pytest.mark.parametrize("garbage", [b"", b"{not json", b'{"v": 2, "names": 5}', b'{"v": 999}', b"[1,2,3]"])
def test_garbage_index_is_ignored(store: Path, garbage: bytes) -> None:
    make_run("a", acc=0.5)
    fresh_search(store)
    (store / ".index" / "0.delta").write_bytes(garbage)
    (store / ".index" / "0.cols").write_bytes(garbage)
    assert by_name(fresh_search(store))["a"].metrics == {"acc": 0.5}


def test_index_follows_every_kind_of_change(store: Path) -> None:
    run = mm.start_run(run_name="live")
    mm.log_metric("loss", 1.0)
    mm.flush()
    assert by_name(fresh_search(store))["live"].metrics == {"loss": 1.0}
    for value in (0.5, 0.25):  # appends, read incrementally, in this process and from the files
        mm.log_metric("loss", value)
        mm.flush()
        assert by_name(search_runs(root=store))["live"].metrics == {"loss": value}
        assert by_name(fresh_search(store))["live"].metrics == {"loss": value}
    mm.log_param("late", 1)
    mm.set_tag("t", "x")
    mm.log_metric("nested/key", 3.0)
    mm.flush()
    got = by_name(search_runs(root=store))["live"]
    assert got.params == {"late": 1} and got.tags == {"t": "x"} and got.metrics["nested/key"] == 3.0
    mm.end_run()
    assert by_name(search_runs(root=store))["live"].status == "FINISHED"
    summary = _index.metric_summary(str(store), "0", run.run_id)
    assert summary["loss"][4:8] == [3, 0.25, 0.25, 1.0]  # count, last, min, max
    # A finished run changed right after it was indexed (same clock tick) is still seen.
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    with open(path, "a") as f:
        f.write('{"step":9,"value":0.125,"timestamp":1}\n')
    assert by_name(search_runs(root=store))["live"].metrics["loss"] == 0.125
    assert by_name(fresh_search(store))["live"].metrics["loss"] == 0.125
    # New runs appear, removed runs disappear.
    make_run("second")
    assert set(by_name(search_runs(root=store))) == {"live", "second"}
    import shutil

    shutil.rmtree(run.run_dir)
    assert set(by_name(search_runs(root=store))) == {"second"}
    assert _index._load(str(store), "0").state(run.run_id) is None  # forgotten on disk too


def test_settled_runs_are_trusted_on_their_folder_mtime(store: Path) -> None:
    run = make_run("old", acc=0.5)
    hour_ago = time.time() - 3600
    for path in Path(run.run_dir).rglob("*"):
        os.utime(path, (hour_ago, hour_ago))
    os.utime(run.run_dir, (hour_ago, hour_ago))
    fresh_search(store)
    fresh_search(store)  # now settled: the next reads open nothing in the run folder
    # Overwrite meta.yaml in place (no rename, so the folder mtime stays): a settled run is not re-read.
    meta = Path(run.run_dir) / "meta.yaml"
    original = meta.read_bytes()
    meta.write_bytes(b"#" * len(original))
    os.utime(run.run_dir, (hour_ago, hour_ago))
    assert by_name(fresh_search(store))["old"].metrics == {"acc": 0.5}
    os.utime(run.run_dir)  # the folder changed: the run is re-read, and now it is broken
    assert "meta.yaml" in fresh_search(store).broken[0].reason
    meta.write_bytes(original)
    _operations.update_run_meta(run.run_dir, run_name="renamed")  # replacing meta.yaml touches the folder
    assert "renamed" in by_name(fresh_search(store))


def _age_everything(store: Path, seconds: float = 3600) -> None:
    """Backdate every file and folder of the experiment: a store of runs that finished long ago."""
    stamp = time.time() - seconds
    for path in (store / "0").rglob("*"):
        os.utime(path, (stamp, stamp))
    os.utime(store / "0", (stamp, stamp))


@pytest.mark.parametrize("kept_in", ["delta", "columns"])
def test_a_run_folder_moved_out_and_back_is_gone_then_back(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept_in: str
) -> None:
    a, _ = make_run("a", acc=0.5), make_run("b", acc=0.6)
    _age_everything(store)
    with monkeypatch.context() as m:
        if kept_in == "columns":  # the runs go to the columnar file; a removal is then a delta entry over it
            m.setattr(_index, "COMPACT_AFTER", 1)
        assert set(by_name(fresh_search(store))) == {"a", "b"}
    assert _index._MEMORY[(str(store), "0")].main.n == (2 if kept_in == "columns" else 0)
    away = tmp_path / "away"
    os.rename(a.run_dir, away)
    assert set(by_name(search_runs(root=store))) == {"b"}
    assert (a.run_id in _index._MEMORY[(str(store), "0")].delta) == (kept_in == "columns")
    assert set(by_name(fresh_search(store))) == {"b"}  # the removal is on disk too
    os.rename(away, a.run_dir)
    assert by_name(search_runs(root=store))["a"].metrics == {"acc": 0.5}
    assert set(by_name(fresh_search(store))) == {"a", "b"}


@pytest.mark.parametrize("kept_in", ["delta", "columns"])
def test_between_sweeps_settled_runs_are_skipped_but_store_changes_are_seen(
    store: Path, monkeypatch: pytest.MonkeyPatch, kept_in: str
) -> None:
    if kept_in == "columns":  # as in a big store: every read writes the columnar file, the sweep's fast path
        monkeypatch.setattr(_index, "COMPACT_AFTER", 1)
    a, b = make_run("a", acc=0.5), make_run("b", acc=0.6)
    _age_everything(store)
    assert set(by_name(fresh_search(store))) == {"a", "b"}  # a full sweep: both settled
    assert _index._MEMORY[(str(store), "0")].main.n == (2 if kept_in == "columns" else 0)
    swept = _index._MEMORY[(str(store), "0")].swept
    # Changed behind mini_mlflow's back (in place, then the run folder's mtime moved by hand): a read
    # between sweeps does not even lstat a settled run, in this process or a new one.
    meta = Path(a.run_dir) / "meta.yaml"
    original = meta.read_bytes()
    meta.write_bytes(b"#" * len(original))
    os.utime(a.run_dir)
    assert by_name(search_runs(root=store))["a"].metrics == {"acc": 0.5}
    assert by_name(fresh_search(store))["a"].metrics == {"acc": 0.5}
    assert _index._MEMORY[(str(store), "0")].swept == swept  # no sweep happened
    # The next full sweep sees the hand edit: 5 s after the last one (the promise in reliability.md), as
    # the index's clock reads it (a clock 5.1 s ahead here, rather than a 5 s sleep).
    assert "meta.yaml" not in str(search_runs(root=store).broken)  # 0 s later: still between sweeps

    class Later:
        @staticmethod
        def time_ns() -> int:
            return time.time_ns() + 5_100_000_000

    with monkeypatch.context() as m:
        m.setattr(_index, "time", Later)
        assert "meta.yaml" in search_runs(root=store).broken[0].reason
    meta.write_bytes(original)
    _age_everything(store)
    assert set(by_name(fresh_search(store))) == {"a", "b"}
    # A change made through the store touches the experiment folder: seen at once.
    _operations.update_run_meta(b.run_dir, lifecycle_stage="deleted")
    assert set(by_name(search_runs(root=store))) == {"a"}
    assert by_name(search_runs(root=store, run_view="deleted"))["b"].lifecycle_stage == "deleted"
    # So is a run folder added or removed (the kernel moves the experiment folder's mtime).
    _age_everything(store)
    fresh_search(store)
    make_run("c")
    assert set(by_name(search_runs(root=store))) == {"a", "c"}
    _age_everything(store)
    fresh_search(store)
    import shutil

    shutil.rmtree(a.run_dir)
    assert set(by_name(search_runs(root=store))) == {"c"}


def test_a_run_still_written_after_it_ended_is_rechecked_between_sweeps(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers on one run (ranks); the first ends it while the second still logs. Its heartbeat keeps
    # the run folder's mtime moving, so the run must never count as settled between sweeps.
    monkeypatch.setattr(_index, "SETTLED_S", 2)
    monkeypatch.setattr(_index, "SWEEP_S", 3600)  # no sweep but the first: a slow machine changes nothing
    monkeypatch.setenv("MINI_MLFLOW_HEARTBEAT", "0.1")
    first = mm.Run(name="shared", runs_dir=store)
    second = mm.Run(run_id=first.run_id, runs_dir=store)
    second.log_metric("loss", 1.0)
    second.flush()
    first.end()

    def beat_now() -> None:
        # The second writer beats (its flush beats once the 0.1 s interval has passed, whether or not
        # the writer thread got the CPU): the run folder's mtime is fresh at the read that follows.
        before = time.time()
        time.sleep(0.15)
        second.flush()
        beats = [p.stat().st_mtime for p in Path(first.run_dir).glob(".heartbeat-*")]
        assert beats and max(beats) >= before, (beats, before)

    time.sleep(_index.RACY_NS / 1e9 + 0.5)  # its files are old enough to trust; only heartbeats move
    old = time.time() - 3600
    os.utime(store / "0", (old, old))  # the end's touch aged: the next reads may skip settled runs
    beat_now()
    assert by_name(fresh_search(store))["shared"].metrics == {"loss": 1.0}
    swept = _index._MEMORY[(str(store), "0")].swept
    time.sleep(2.5)  # longer than SETTLED_S: only the heartbeats show the run is still written
    second.log_metric("loss", 0.25)
    second.flush()
    beat_now()
    assert by_name(search_runs(root=store))["shared"].metrics == {"loss": 0.25}
    assert _index._MEMORY[(str(store), "0")].swept == swept  # served between sweeps
    second.end()


def test_torn_tail_is_not_counted_until_completed(store: Path) -> None:
    run = make_run("torn", m=1.0)
    path = Path(run.run_dir) / "metrics" / "m.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"step":1,"value":2.0,"time')
    assert by_name(fresh_search(store))["torn"].metrics == {"m": 1.0}
    with open(path, "ab") as f:
        f.write(b'stamp":5}\n{"step":2,"value":-3.0,"timestamp":6}\n')
    assert by_name(search_runs(root=store))["torn"].metrics == {"m": -3.0}
    assert _index.metric_summary(str(store), "0", run.run_id)["m"][4:8] == [3, -3.0, -3.0, 2.0]


def test_broken_runs_never_hide_the_others(store: Path, tmp_path: Path) -> None:
    good = make_run("good", acc=0.9)
    exp = store / "0"
    empty = exp / "empty0000"
    (empty / "metrics").mkdir(parents=True)
    (empty / "meta.yaml").write_bytes(b"")
    garbage = exp / "garbage00"
    garbage.mkdir()
    (garbage / "meta.yaml").write_bytes(b"run_id: [unclosed\n\x00\xff")
    scalar = exp / "scalar000"
    scalar.mkdir()
    (scalar / "meta.yaml").write_text("just a string\n")
    (exp / "stray_folder").mkdir()
    (exp / "notes.txt").write_text("a stray file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (exp / "linked0000").symlink_to(outside)
    torn = make_run("torn", acc=0.1)
    with open(Path(torn.run_dir) / "metrics" / "acc.jsonl", "ab") as f:
        f.write(b"garbage line\n")
    (Path(torn.run_dir) / "params" / "bad.json").write_bytes(b"{nope")
    result = fresh_search(store)
    assert set(by_name(result)) == {"good", "torn"}
    assert by_name(result)["good"].metrics == {"acc": 0.9}
    torn_rec = by_name(result)["torn"]
    assert torn_rec.metrics == {"acc": 0.1}
    assert any("1 unreadable line" in w for w in torn_rec.warnings)
    assert any("bad.json" in w for w in torn_rec.warnings)
    reasons = {Path(b.path).name: b.reason for b in result.broken}
    assert "meta.yaml is empty" in reasons["empty0000"]
    assert "not valid YAML" in reasons["garbage00"]
    assert "not a YAML mapping" in reasons["scalar000"]
    assert "meta.yaml is missing" in reasons["stray_folder"]
    assert "stray file" in reasons["notes.txt"]
    assert "symbolic link" in reasons["linked0000"]
    assert all(str(exp) in b.reason for b in result.broken)
    assert good.run_id not in reasons


def test_newer_format_version_is_read_and_flagged(store: Path) -> None:
    run = make_run("future", acc=0.7)
    _operations.update_run_meta(run.run_dir, format_version=mm.FORMAT_VERSION + 1, hologram={"x": [1, 2]})
    rec = by_name(fresh_search(store))["future"]
    assert rec.newer_format == mm.FORMAT_VERSION + 1 and rec.metrics == {"acc": 0.7}
    assert by_name(fresh_search(store))["future"].newer_format == mm.FORMAT_VERSION + 1  # from the index


def test_killed_writer_shows_as_crashed(store: Path, tmp_path: Path) -> None:
    child = python_child(
        """
        import time, mini_mlflow as mm
        run = mm.start_run(run_name="doomed")
        mm.log_metric("loss", 0.5)
        mm.flush()
        print(run.run_id, flush=True)
        time.sleep(60)
        """,
        tmp_path,
        env={"MINI_MLFLOW_TRACKING_DIR": str(store), "MINI_MLFLOW_HEARTBEAT": "0.2"},
    )
    assert child.stdout is not None
    child.stdout.readline()
    assert by_name(fresh_search(store))["doomed"].status == "RUNNING"
    child.send_signal(signal.SIGKILL)
    child.wait()
    wait_until(lambda: by_name(fresh_search(store))["doomed"].status == "CRASHED")
    rec = by_name(search_runs(root=store, filter_string="attributes.status = 'CRASHED'"))["doomed"]
    assert rec.stored_status == "RUNNING" and rec.metrics == {"loss": 0.5}


def test_index_never_leaves_the_store_through_a_symlink(store: Path, tmp_path: Path) -> None:
    make_run("a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store / ".index").symlink_to(elsewhere)
    assert set(by_name(fresh_search(store))) == {"a"}
    assert list(elsewhere.iterdir()) == []


def test_readers_never_read_through_a_symlink_planted_in_a_run(store: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "x.jsonl").write_text('{"step":0,"value":4242.125,"timestamp":1}\n')
    (secret / "x.json").write_text('"stolen-secret"\n')
    (secret / "meta.yaml").write_text("run_id: forged\nstatus: FINISHED\n")
    files = make_run("files", loss=0.5)
    folders = make_run("folders", loss=0.5)
    meta = make_run("meta", loss=0.5)
    rdir, fdir = Path(files.run_dir), Path(folders.run_dir)
    (rdir / "metrics" / "x.jsonl").symlink_to(secret / "x.jsonl")  # the files themselves
    (rdir / "params" / "x.json").symlink_to(secret / "x.json")
    (rdir / "tags" / "x.json").symlink_to(secret / "x.json")
    (rdir / "metrics" / "sub").symlink_to(secret)  # a key's folder (keys "sub/x")
    for kind in ("metrics", "params", "tags"):  # whole folders
        shutil.rmtree(fdir / kind)
        (fdir / kind).symlink_to(secret)
    (Path(meta.run_dir) / "meta.yaml").unlink()
    (Path(meta.run_dir) / "meta.yaml").symlink_to(secret / "meta.yaml")

    result = fresh_search(store)
    found = by_name(result)
    assert found["files"].metrics == {"loss": 0.5} and found["files"].params == {"p": "files"}
    assert "x" not in found["files"].tags
    assert found["folders"].metrics == {} and found["folders"].params == {}
    assert sum("symbolic link" in w for w in found["folders"].warnings) == 3
    assert "meta" not in found and "forged" not in found
    assert any("meta.yaml is a symbolic link" in b.reason for b in result.broken)

    reader = mm.Store(store)
    with pytest.raises(OSError, match="symbolic link"):
        reader.get_metric_history(files.run_id, "x")
    with pytest.raises(OSError, match="symbolic link"):
        reader.get_metric_history(files.run_id, "sub/x")
    with pytest.raises(OSError, match="symbolic link"):
        reader.get_metric_history(folders.run_id, "x")
    assert reader.metric_keys(files.run_id) == ["loss"]
    read = json.dumps([reader.get_run(files.run_id), reader.get_run(folders.run_id)])
    shown = mm_cli(store, "show", files.run_id) + mm_cli(store, "show", folders.run_id)
    for text in (read, shown):
        assert "4242" not in text and "stolen-secret" not in text and "loss" in text
    exported = tmp_path / "exported"
    assert "exported" in mm_cli(store, "export", "--format", "mlflow", str(exported), "--all")
    out = b"".join(p.read_bytes() for p in exported.rglob("*") if p.is_file())
    assert b"4242" not in out and b"stolen-secret" not in out
    assert len(list(exported.rglob("metrics/loss"))) == 1  # "files" keeps its own metric


def mm_cli(store: Path, *args: str) -> str:
    from click.testing import CliRunner

    from mini_mlflow.cli._main import cli

    done = CliRunner().invoke(cli, ["--root", str(store), *args, "--json"])
    assert done.exit_code == 0, done.output
    return done.output


# -- the fast meta.yaml reader gives exactly what the safe YAML loader gives ------------------------

_scalars = st.one_of(
    st.none(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(min_size=0, max_size=20),
    st.sampled_from(
        ["yes", "No", "on", "null", "~", "1.5", "1e3", "0x1f", "007", "2025-11-20", "1:20", "-", "a b"]
    ),
    st.floats(allow_nan=False),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
        st.one_of(
            _scalars, st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _scalars, max_size=3)
        ),
        min_size=1,
        max_size=8,
    )
)
def test_meta_subset_reader_matches_the_yaml_loader(doc: dict[str, object]) -> None:
    data = dump_yaml(doc)
    assert load_meta_bytes(data) == load_yaml(data)


@pytest.mark.parametrize(
    "text",
    [
        b"a: yes\n",
        b"a: 1.5\n",
        b"a: 2025-11-20\n",
        b"a: 0o17\n",
        b"a: [1, 2]\n",
        b"a: 'x' # c\n",
        b'a: "x"\n',
        b"a: |\n  x\n",
        b"a:\n",
        b"a: 1\na: 2\n",
        b"   a: 1\n",
        b"a: !!python/object x\n",
    ],
)
def test_meta_subset_declines_anything_unusual(text: bytes) -> None:
    assert parse_subset(text) is None


def test_real_meta_files_take_the_fast_path(store: Path) -> None:
    run = make_run("fast")
    data = (Path(run.run_dir) / "meta.yaml").read_bytes()
    assert parse_subset(data) == load_yaml(data)
    assert json.loads(json.dumps(parse_subset(data)))["run_name"] == "fast"


def test_a_new_process_trusts_what_an_earlier_one_checked(store: Path) -> None:
    """Regression: a run re-checked only because its folder mtime moved must be saved as checked."""
    run = make_run("moved", acc=0.5)
    fresh_search(store)
    hour_ago = time.time() - 3600
    os.utime(run.run_dir, (hour_ago, hour_ago))  # folder mtime moves, content does not
    os.utime(Path(run.run_dir) / "metrics" / "acc.jsonl", (hour_ago, hour_ago))
    fresh_search(store)
    assert _index._load(str(store), "0").state(run.run_id)[0] == os.stat(run.run_dir).st_mtime_ns  # type: ignore[index]


def test_searching_while_another_process_writes(store: Path, tmp_path: Path) -> None:
    """Readers racing a live writer see a growing, never corrupt, view; the index then matches the files."""
    child = python_child(
        """
        import time, mini_mlflow as mm
        with mm.start_run(run_name="busy"):
            mm.log_param("p", 1)
            print("started", flush=True)
            for step in range(3000):
                mm.log_metric("x", float(step), step=step)
                if step % 100 == 0:
                    mm.set_tag("at", str(step))
                    mm.flush()
                    time.sleep(0.03)
        """,
        tmp_path,
        env={"MINI_MLFLOW_TRACKING_DIR": str(store), "MINI_MLFLOW_FLUSH_INTERVAL": "0.01"},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "started"
    seen = []
    while child.poll() is None:
        for got in (search_runs(root=store), fresh_search(store)):
            busy = by_name(got).get("busy")
            if busy is not None and "x" in busy.metrics:
                seen.append(busy.metrics["x"])
    assert child.wait() == 0
    assert seen == sorted(seen) and len(set(seen)) >= 3  # last values only move forward
    final = by_name(fresh_search(store))["busy"]
    assert final.status == "FINISHED" and final.metrics == {"x": 2999.0} and final.tags == {"at": "2900"}
    run_id = final.run_id
    assert _index.metric_summary(str(store), "0", run_id)["x"][4:8] == [3000, 2999.0, 0.0, 2999.0]


def test_stale_index_temporaries_are_removed(store: Path) -> None:
    make_run("a", acc=0.5)
    fresh_search(store)
    stale = store / ".index" / "#tmp.123.abcd.0.json"
    stale.write_text("{half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    make_run("b")  # a change, so the index is saved again
    fresh_search(store)
    assert not stale.exists()


class _Rows:
    """The three columns of a columnar file the sweep compares (folder mtimes, settled flags, names)."""

    def __init__(self, d: list[int], ok: bytes) -> None:
        from array import array

        self.d, self.ok, self.names = array("q", d), ok, [f"r{i}" for i in range(len(d))]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(-1, 1)), min_size=1, max_size=12),
    st.integers(0, 4),
    st.sets(st.integers(0, 11)),
)
def test_a_sweep_checks_every_row_moved_unsettled_or_recent(
    rows: list[tuple[int, bool, int]], settled_before: int, in_delta: set[int]
) -> None:
    # The sweep's quick answer for the usual store (nothing moved, all settled) must be the row-by-row
    # rule's: a row is passed over only if settled, its folder untouched and older than the threshold.
    main = _Rows([d for d, _, _ in rows], bytes(int(ok) for _, ok, _ in rows))
    mtimes = [d + moved for d, _, moved in rows]
    delta = {f"r{i}": None for i in in_delta}
    want = [
        f"r{i}"
        for i, (d, ok, moved) in enumerate(rows)
        if not (ok and moved == 0 and d < settled_before) and i not in in_delta
    ]
    assert _index._unsettled_rows(main, delta, mtimes, settled_before) == want  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=12), st.integers(0, 5))
def test_between_sweeps_the_unsettled_rows_are_those_of_the_row_rule(
    rows: list[tuple[int, bool]], threshold: int
) -> None:
    # The quick answer for a store whose runs are all settled must be the row-by-row rule's.
    from array import array

    d, ok = array("q", [d for d, _ in rows]), bytes(int(ok) for _, ok in rows)
    want = [r for r, (when, done) in enumerate(rows) if not done or when >= threshold]
    assert _index._unsettled_positions(d, ok, threshold) == want
