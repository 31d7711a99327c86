"""The fsync policy does what docs/format.md (Durability) says, watched at the system-call level."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

# A power cut cannot be staged here; what can be checked is that the promised fsync calls are made
# (and not made) on the right files, which is what the durability table rests on.
CHILD = """
import mini_mlflow as mm
run = mm.Run(runs_dir="mlruns")
for k in range(5):
    for i in range(100):
        run.log_metric("a", float(i), step=k * 100 + i)
        run.log_metric("b/c", float(i), step=k * 100 + i)
    for j in range(18):  # 20 keys: more files than a run keeps open, so some are closed between drains
        run.log_metric(f"many/{j}", float(k), step=k)
    run.flush()
run.end()
"""


def _fsyncs(tmp_path: Path, policy: str) -> list[str]:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    work = tmp_path / policy
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env.update(PYTHONPATH=str(ROOT), MINI_MLFLOW_FSYNC=policy)
    trace = work / "trace"
    result = subprocess.run(
        [strace, "-f", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace), sys.executable, "-c", CHILD],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0 and "ptrace" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    # e.g. "1234 fsync(3</tmp/.../metrics/a.jsonl>) = 0": keep the path of each successful call
    return re.findall(r"f(?:data)?sync\(\d+<([^>]*)>\) = 0", trace.read_text())


def test_fsync_policy_never_end_flush(tmp_path: Path) -> None:
    never = _fsyncs(tmp_path, "never")
    end = _fsyncs(tmp_path, "end")
    flush = _fsyncs(tmp_path, "flush")
    assert never == []
    ends_with = lambda paths, suffix: sum(p.endswith(suffix) for p in paths)  # noqa: E731
    # end: each metric file once, and meta.yaml (then its folder) when the run ends; the files closed
    # by then (a run keeps 16 open) are opened again to be synced
    assert ends_with(end, "/metrics/a.jsonl") == 1 and ends_with(end, "/metrics/b/c.jsonl") == 1
    assert [ends_with(end, f"/metrics/many/{j}.jsonl") for j in range(18)] == [1] * 18
    assert ends_with(end, "meta.yaml") == 1  # the temporary file, before it replaces meta.yaml
    # ... in that order: every point is on disk before the status saying the run ended
    meta_at = next(i for i, p in enumerate(end) if p.endswith("meta.yaml"))
    assert all(i < meta_at for i, p in enumerate(end) if p.endswith(".jsonl")), end
    run_folders = [p for p in end if re.search(r"/mlruns/0/[0-9a-f]{32}$", p)]
    assert len(run_folders) == 1  # then the run folder, so that the rename itself is on disk
    # flush: each metric file on every one of the 5 flushes (drains may add more), meta.yaml too
    assert ends_with(flush, "/metrics/a.jsonl") >= 5 and ends_with(flush, "/metrics/b/c.jsonl") >= 5
    assert all(ends_with(flush, f"/metrics/many/{j}.jsonl") >= 5 for j in range(18))
    assert ends_with(flush, "meta.yaml") == 1
