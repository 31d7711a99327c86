"""Runs this process wrote and ended are known to it: its index trusts them at once (store._pending),
where a stranger's run ended less than ``SETTLED_S`` ago is checked file by file on every read.

The probe: a point appended to a metric file moves neither the run folder's mtime nor the metrics
folder's. A read that checks the run deeply sees it; a read that trusts the run does not. (The format
allows that append only to a live writer: here it only tells which reads looked.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.read import _index
from mini_mlflow.read._index_state import ExperimentIndex
from mini_mlflow.read._search import search_runs
from mini_mlflow.store import _operations, _pending

from conftest import python_child


@pytest.fixture
def no_racy_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # A run's files are trusted once their mtimes are RACY_NS old (coarse file-system clocks); the
    # tests below are about who ended a run, not about clocks, so they need not wait those 2 s.
    monkeypatch.setattr(_index, "RACY_NS", 0)


def acc_of(store: Path, run_id: str) -> float:
    return next(r.metrics["acc"] for r in search_runs(root=store) if r.run_id == run_id)


def append_point(run_dir: str, value: float) -> None:
    with open(Path(run_dir) / "metrics" / "acc.jsonl", "a") as f:
        f.write(f'{{"step":9,"value":{value},"timestamp":1}}\n')


def test_a_run_this_process_ended_is_trusted_at_once(store: Path, no_racy_wait: None) -> None:
    with mm.start_run() as run:
        mm.log_metric("acc", 0.5)
    assert run.run_id in _pending.ended_runs(str(store), "0")
    assert acc_of(store, run.run_id) == 0.5  # the first read reads it
    append_point(run.run_dir, 0.75)
    assert acc_of(store, run.run_id) == 0.5  # trusted: not opened again
    _index._MEMORY.clear()
    assert acc_of(store, run.run_id) == 0.5  # trusted from the index's files too (a full sweep)
    _operations.update_run_meta(run.run_dir, run_name="renamed")  # its folder changed: read again
    assert acc_of(store, run.run_id) == 0.75


def test_a_run_another_process_ended_is_checked_until_settled(
    store: Path, tmp_path: Path, no_racy_wait: None
) -> None:
    child = python_child(
        """
        import mini_mlflow as mm
        with mm.start_run() as run:
            mm.log_metric("acc", 0.5)
        print(run.run_id, run.run_dir)
        """,
        tmp_path,
        env={"MINI_MLFLOW_TRACKING_DIR": str(store)},
    )
    out, _ = child.communicate(timeout=60)
    run_id, run_dir = out.split()
    assert run_id not in _pending.ended_runs(str(store), "0")
    assert acc_of(store, run_id) == 0.5
    append_point(run_dir, 0.75)  # it may still be flushing from a second writer: read deeply
    assert acc_of(store, run_id) == 0.75


def test_a_run_still_open_elsewhere_in_this_process_is_not_trusted(store: Path, no_racy_wait: None) -> None:
    first = mm.Run(runs_dir=store)
    second = mm.Run(run_id=first.run_id, runs_dir=store)  # two writers of one run (ranks)
    first.log_metric("acc", 0.5)
    first.end()
    assert first.run_id not in _pending.ended_runs(str(store), "0")
    assert acc_of(store, first.run_id) == 0.5
    second.log_metric("acc", 0.75)
    second.flush()
    assert acc_of(store, first.run_id) == 0.75
    second.end()  # the last writer: now it is final
    assert first.run_id in _pending.ended_runs(str(store), "0")


def test_a_run_with_another_process_heartbeat_is_not_trusted(store: Path, no_racy_wait: None) -> None:
    run = mm.Run(runs_dir=store)
    run.log_metric("acc", 0.5)
    beat = Path(run.run_dir) / ".heartbeat-999999@elsewhere"  # a writer on another machine
    beat.write_text('{"time": 1, "interval": 10, "pid": 999999, "host": "elsewhere"}')
    run.end()
    assert run.run_id not in _pending.ended_runs(str(store), "0")
    assert acc_of(store, run.run_id) == 0.5
    append_point(run.run_dir, 0.75)
    assert acc_of(store, run.run_id) == 0.75
    os.unlink(beat)


def test_a_forked_child_forgets_the_runs_its_parent_ended(store: Path) -> None:
    with mm.start_run() as run:
        mm.log_metric("acc", 0.5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its parent may resume the run, it knows nothing of it
        os.close(read)
        os.write(write, b"1" if run.run_id in _pending.ended_runs(str(store), "0") else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"0"
    os.close(read)
    os.waitpid(pid, 0)
    assert run.run_id in _pending.ended_runs(str(store), "0")


def test_a_run_ended_here_is_trusted_once_its_clock_tick_has_passed(tmp_path: Path) -> None:
    # The folder's mtime may hide a change made by someone else in the same clock tick. A file system
    # with times finer than a millisecond ticks every few ms; one with coarse times (FAT: 2 s) does not.
    fine, coarse = 1_700_000_000_123_456_789, 1_700_000_000_000_000_000
    assert _index.racy_ns(fine) == _index.FINE_RACY_NS < _index.RACY_NS == _index.racy_ns(coarse)
    for mtime, too_soon, late_enough in (
        (fine, _index.FINE_RACY_NS // 2, _index.FINE_RACY_NS * 2),
        (coarse, _index.FINE_RACY_NS * 2, _index.RACY_NS * 2),
    ):
        for after, trusted in ((too_soon, False), (late_enough, True)):
            trust = _index._Trust(str(tmp_path), "0", mtime + after)
            trust.ended = {"run": mtime}
            assert trust.ended_here("run", mtime) is trusted
            assert not trust.ended_here("run", mtime + 1)  # its folder changed since: read it again


def test_a_sweep_is_skipped_once_the_folders_clock_tick_has_passed(tmp_path: Path) -> None:
    # The process that just wrote its runs searches again a moment later: the experiment folder's mtime
    # (its last run created) is trusted after a few ms of a fine clock, not after 2 s.
    exp = tmp_path / "0"
    exp.mkdir()
    fine, coarse = 1_700_000_000_123_456_789, 1_700_000_000_000_000_000
    for mtime, too_soon, late_enough in (
        (fine, _index.FINE_RACY_NS // 2, _index.FINE_RACY_NS * 2),
        (coarse, _index.FINE_RACY_NS * 2, _index.RACY_NS * 2),
    ):
        os.utime(exp, ns=(mtime, mtime))
        fd = os.open(exp, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for after, skipped in ((too_soon, False), (late_enough, True)):
                index = ExperimentIndex(str(tmp_path), "0")
                index.swept = [mtime, mtime + after]
                assert _index._can_skip_sweep(fd, index, mtime + after + 1) is skipped
            index.swept = [mtime, mtime + late_enough]
            assert not _index._can_skip_sweep(fd, index, mtime + late_enough + _index.SWEEP_S * 10**9 + 1)
            os.utime(exp, ns=(mtime + 1, mtime + 1))  # a run created or removed since: sweep
            assert not _index._can_skip_sweep(fd, index, mtime + late_enough + 1)
        finally:
            os.close(fd)


# -- the look taken at a run's end, handed to this process's first search ----------------------------


@pytest.fixture
def fresh_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs ended by earlier tests of this process fill the bounded store of looks: start from none.
    monkeypatch.setattr(_pending, "_looked", {})
    monkeypatch.setattr(_pending, "_looked_count", 0)


def test_the_first_search_takes_the_look_taken_when_the_run_ended(
    store: Path, no_racy_wait: None, fresh_looks: None
) -> None:
    # The probe's point is appended after the end: a first search that reads the run sees it; one that
    # takes the look of the run's end does not.
    with mm.start_run() as run:
        mm.log_metric("acc", 0.5)
    assert run.run_id in _pending._looked[(os.path.realpath(store), "0")]
    append_point(run.run_dir, 0.75)
    assert acc_of(store, run.run_id) == 0.5
    assert not _pending._looked.get((os.path.realpath(store), "0"))  # handed over once
    _operations.update_run_meta(run.run_dir, run_name="renamed")
    assert acc_of(store, run.run_id) == 0.75  # its folder changed: read as usual


def test_a_run_whose_folder_changed_after_its_end_is_read(
    store: Path, no_racy_wait: None, fresh_looks: None
) -> None:
    with mm.start_run() as run:
        mm.log_metric("acc", 0.5)
    append_point(run.run_dir, 0.75)
    _operations.update_run_meta(run.run_dir, run_name="renamed")  # moves the folder's mtime
    (found,) = search_runs(root=store)
    assert found.metrics["acc"] == 0.75 and found.info.run_name == "renamed"


def test_a_run_written_again_after_its_end_is_read(
    store: Path, no_racy_wait: None, fresh_looks: None
) -> None:
    # MLflow lets a client log to a finished run; a tag file written into tags/ moves the tags folder's
    # mtime, not the run folder's, so the look of the run's end must not be taken after it.
    with mm.start_run() as run:
        mm.log_metric("acc", 0.5)
    mm.MlflowClient().set_tag(run.run_id, "note", "after the end")
    assert run.run_id not in _pending.ended_runs(str(store), "0")
    (found,) = search_runs(root=store)
    assert found.data.tags["note"] == "after the end"


def test_looks_kept_are_bounded(
    store: Path, no_racy_wait: None, fresh_looks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pending, "MAX_LOOKED", 1)
    runs = []
    for value in (0.5, 0.25):
        with mm.start_run() as run:
            mm.log_metric("acc", value)
        runs.append(run)
    assert list(_pending._looked[(os.path.realpath(store), "0")]) == [os.path.basename(runs[0].run_dir)]
    assert all(run.run_id in _pending.ended_runs(str(store), "0") for run in runs)  # both still trusted
    assert sorted(r.metrics["acc"] for r in search_runs(root=store)) == [0.25, 0.5]
