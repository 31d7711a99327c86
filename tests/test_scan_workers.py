"""A cold index build shared with worker processes finds exactly what one process finds: the same
records, warnings, broken and stray folders and re-check details, in the same order; a worker that
cannot start or fails costs time, never a run."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow.read import _index, _scan_workers
from mini_mlflow.store import _pending


def make_varied_store(store: Path) -> None:
    """Runs of every shape a look must handle, plus folders that are not runs."""
    for i in range(30):
        with mm.start_run(run_name=f"r{i}") as run:
            mm.log_params({"i": i, "lr": [0.1, 0.01][i % 2], "opt": "adam" if i % 3 else "sgd"})
            mm.log_param("nested/key", i * 2)
            mm.set_tag("team", f"t{i % 4}")
            for step in range(5):
                mm.log_metric("loss", 1.0 / (step + 1 + i), step=step)
            mm.log_metric("weird", float("nan") if i % 5 == 0 else float(i))
            mm.log_metric("deep/acc", i / 30)
        if i == 7:  # a param file that is not JSON: a warning, the rest of the run still read
            (store / "0" / run.run_id / "params" / "bad.json").write_text("{not json")
    # A store as a stranger left it: this process takes no run as one it ended (nor its end's look).
    _pending.forget_ended()
    exp = store / "0"
    broken = exp / ("b" * 32)  # meta.yaml missing: a broken run
    (broken / "params").mkdir(parents=True)
    (exp / ("c" * 32)).mkdir()
    (exp / ("c" * 32) / "meta.yaml").write_text("status: [unclosed\n")  # not YAML
    (exp / "stray.txt").write_text("not a run")
    outside = store.parent / "outside"
    outside.mkdir()
    os.symlink(outside, exp / ("d" * 32))  # a planted link: never followed
    os.mkdir(os.fsencode(exp) + b"/e\xffe")  # a folder name that is not UTF-8


def build(store: Path, monkeypatch: pytest.MonkeyPatch, workers: int | None) -> str:
    """Everything a build from nothing finds, with ``workers`` worker processes (None: as many as it
    chooses), as text (NaN equals NaN there); ``at`` and ``r`` (when it looked, and whether that was
    within a clock tick of a change) depend on the moment, not on who looked."""
    monkeypatch.setattr(_scan_workers, "WORKERS", workers)
    monkeypatch.setattr(_index, "COMPACT_AFTER", 10)  # a build, as at thousands of runs
    shutil.rmtree(store / ".index", ignore_errors=True)
    _index._MEMORY.clear()
    index = _index.load_experiment(str(store), "0")
    assert index.main.n and not index.delta, "the runs went into one columnar file"
    names = list(index.main.names)
    found = {
        "names": names,
        "records": [index.record(n) for n in names],
        "details": [
            {k: v for k, v in (index.detail(n) or {}).items() if k not in ("at", "r")} for n in names
        ],
        "broken": dict(index.broken),
        "stray": dict(index.stray),
    }
    assert len(names) == 30
    assert any(any("bad.json" in w for w in r.warnings) for r in found["records"] if r is not None)
    assert sorted(index.broken) == ["b" * 32, "c" * 32, "e\udcffe"]  # no meta.yaml, or not YAML
    assert sorted(index.stray) == ["d" * 32, "stray.txt"]
    return repr(found)


def test_workers_find_exactly_what_one_process_finds(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_varied_store(store)
    alone = build(store, monkeypatch, 0)
    answered = []
    real_answers = _scan_workers._answers
    monkeypatch.setattr(
        _scan_workers, "_answers", lambda proc, n: answered.append(real_answers(proc, n)) or answered[-1]
    )
    shared = build(store, monkeypatch, 3)
    assert len(answered) == 3 and all(a is not None for a in answered), "three workers answered"
    assert sum(len(a) for a in answered if a is not None) < len(os.listdir(store / "0"))
    assert shared == alone
    assert "'nested/key': 4" in alone and "nan" in alone


@pytest.mark.parametrize("executable", ["/bin/false", "/nonexistent/python"])
def test_a_worker_that_fails_or_cannot_start_costs_time_not_runs(
    store: Path, monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    make_varied_store(store)
    alone = build(store, monkeypatch, 0)
    monkeypatch.setattr(sys, "executable", executable)
    assert build(store, monkeypatch, 2) == alone


def test_a_worker_reads_the_folder_this_process_opened(store: Path) -> None:
    """The worker looks through the passed descriptor: an experiment folder renamed and replaced at
    its path meanwhile is not what it reads."""
    with mm.start_run() as run:
        mm.log_param("where", "original")
    exp = store / "0"
    fd = os.open(exp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        exp.rename(store / "moved")
        shutil.copytree(store / "moved", exp)
        (exp / run.run_id / "params" / "where.json").write_text('"replaced"\n')
        proc = _scan_workers._start(fd, str(exp), [run.run_id, "gone" * 8], 0, None)
        answers = _scan_workers._answers(proc, 2)
    finally:
        os.close(fd)
    assert answers is not None
    assert answers[0][2] == {"where": "original"}
    assert answers[1][0] == errno.ENOENT and "gone" in answers[1][1]  # sent back as (errno, message)


def test_looks_that_wait_on_the_disk_get_more_workers_and_find_the_same(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker count follows the probe's timing: looks that wait on the disk get up to
    MAX_WORKERS workers, looks bound by the processor one fewer than the processors; either way the
    build finds exactly what one process finds. The probe's verdict is set here (``waited``): a
    page cache cold on demand would need root and would slow the whole machine."""
    assert _scan_workers.waited(1.0, 0.5) and not _scan_workers.waited(1.0, 0.9)
    make_varied_store(store)
    alone = build(store, monkeypatch, 0)
    monkeypatch.setattr(_scan_workers, "MIN_RUNS", 4)
    monkeypatch.setattr(_scan_workers, "MIN_PER_WORKER", 2)
    monkeypatch.setattr(_scan_workers, "PROBE", 3)
    started: list[int] = []
    real_start = _scan_workers._start

    def start(exp_fd: int, exp_dir: str, names: list[str], now_ns: int, root: str | None) -> object:
        started.append(len(names))
        return real_start(exp_fd, exp_dir, names, now_ns, root)

    monkeypatch.setattr(_scan_workers, "_start", start)
    cpus = len(os.sched_getaffinity(0))
    for disk_bound, expected in (
        (True, _scan_workers.MAX_WORKERS),
        (False, min(cpus - 1, _scan_workers.MAX_WORKERS)),
    ):
        monkeypatch.setattr(_scan_workers, "waited", lambda wall, cpu, verdict=disk_bound: verdict)
        started.clear()
        assert build(store, monkeypatch, None) == alone
        assert len(started) == expected, (disk_bound, started)
