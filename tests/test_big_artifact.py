"""A big artifact is copied, exported and imported as a stream: bounded memory, exact bytes (the upload by
`mini-mlflow sync` to a real MLflow server: tests/sync/test_big_artifact_sync.py).

Each step runs in a fresh child process that measures its own peak resident memory
(``resource.getrusage().ru_maxrss``) before and after; the file is ``SIZE_MB`` and the growth must stay
far below it. ``bench/soak_scale.py`` does the same with 1 GB. (``log_artifact`` alone is also covered by
``test_hardening.py``; this file follows the bytes through every path that copies or sends them.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZE_MB = 96
#: Peak memory a streamed copy may add: a few buffers, never the file.
MAX_GROWTH_MB = 24

pytestmark = pytest.mark.timeout(240)

CHILD = r"""
import json, os, resource, sys
import mini_mlflow as mm
from mini_mlflow.interop._export import export_mlflow
from mini_mlflow.interop._import import import_mlflow
from mini_mlflow.sync import select_runs

step, root, src, extra = sys.argv[1:5]

def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

# Warm up every code path on a small file first, so imports and first-call allocations are not counted.
small = os.path.join(os.path.dirname(src), "small.bin")
with open(small, "wb") as f:
    f.write(b"x" * 4096)
if step == "log":
    warm = mm.Run(runs_dir=root, name="warm-up")
    warm.log_artifact(small)
    warm.end()
    run = mm.Run(runs_dir=root, name="big")
    before = peak_kb()
    run.log_artifact(src, "data")
    run.end()
    print(json.dumps({"growth_kb": peak_kb() - before, "run_id": run.run_id}))
elif step == "export":  # warmed up on the small run, measured on the big one
    dest, run_id = extra.split("#")
    small_runs = [t for t in select_runs(root, all_runs=True) if os.path.basename(t.run_dir) != run_id]
    export_mlflow(root, dest + "-warm", small_runs)
    before = peak_kb()
    report = export_mlflow(root, dest, select_runs(root, [run_id]))
    print(json.dumps({"growth_kb": peak_kb() - before, "artifacts": report.artifacts}))
elif step == "import":
    import_mlflow(extra + "-warm", root + "-warm")
    before = peak_kb()
    report = import_mlflow(extra, root)
    print(json.dumps({"growth_kb": peak_kb() - before, "artifacts": report.artifacts}))
"""


def _make_file(path: Path, size_mb: int) -> str:
    """A file of distinct 1 MB blocks (a misplaced or repeated block changes the hash); its sha256."""
    digest = hashlib.sha256()
    seed = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size_mb):
            block = i.to_bytes(8, "little") + seed[8:]
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _child(step: str, root: Path, src: Path, extra: str = "") -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINI_MLFLOW_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, step, str(root), str(src), extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["growth_kb"] < MAX_GROWTH_MB * 1024, (
        f"{step}: peak memory grew by {result['growth_kb'] / 1024:.0f} MB for a {SIZE_MB} MB file"
    )
    return result


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, str]:
    free = shutil.disk_usage(tmp_path).free
    if free < 6 * SIZE_MB << 20:
        pytest.skip(f"needs {6 * SIZE_MB} MB of free disk, {free >> 20} MB free")
    src = tmp_path / "big.bin"
    return src, _make_file(src, SIZE_MB)


def test_log_export_import_of_a_big_artifact_stream_and_keep_every_byte(
    tmp_path: Path, big_file: tuple[Path, str]
) -> None:
    src, digest = big_file
    root = tmp_path / "mlruns"
    run_id = str(_child("log", root, src)["run_id"])
    (stored,) = list(root.glob(f"*/{run_id}/artifacts/data/big.bin"))
    assert stored.stat().st_size == SIZE_MB << 20 and _sha256(stored) == digest
    assert not list(stored.parent.glob("*#tmp*"))  # the temporary copy was renamed into place

    exported = tmp_path / "exported"
    assert _child("export", root, src, f"{exported}#{run_id}")["artifacts"] == 1
    (copy,) = list(exported.glob(f"*/{run_id}/artifacts/data/big.bin"))
    assert copy.stat().st_size == SIZE_MB << 20 and _sha256(copy) == digest

    back = tmp_path / "imported"
    assert _child("import", back, src, str(exported))["artifacts"] == 1
    (again,) = list(back.glob("*/*/artifacts/data/big.bin"))
    assert again.stat().st_size == SIZE_MB << 20 and _sha256(again) == digest
