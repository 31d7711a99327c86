"""``mini-mlflow sync`` uploads a big artifact to a real MLflow server as a stream: the bytes arrive
exactly, and the sync process's peak memory grows by a few buffers, never by the file."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow.store._experiments import get_or_create_experiment

from .sync_helpers import sync_cli

SIZE_MB = 96
#: Peak memory a streamed upload may add: a few buffers, never the file.
MAX_GROWTH_MB = 24

pytestmark = pytest.mark.timeout(300)


def _make_file(path: Path, size_mb: int) -> str:
    """A file of distinct 1 MB blocks (a misplaced or repeated block changes the hash); its sha256."""
    digest = hashlib.sha256()
    block = bytearray(b"mini-mlflow" * ((1 << 20) // 11 + 1))[: 1 << 20]
    with open(path, "wb") as f:
        for i in range(size_mb):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


def test_sync_uploads_a_big_artifact_to_mlflow_as_a_stream(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    if shutil.disk_usage(tmp_path).free < 4 * SIZE_MB << 20:
        pytest.skip(f"needs {4 * SIZE_MB} MB of free disk")
    root = tmp_path / "mlruns"
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(b"x" * 4096)
    digest = _make_file(big, SIZE_MB)
    experiment = f"big-artifact-{tmp_path.name}"
    exp_id = get_or_create_experiment(str(root), experiment)
    with mm.Run(runs_dir=root, experiment_id=exp_id, name="small") as run:
        run.log_artifact(small, "data")
    # The first sync pays every import and first-call allocation: its peak is the baseline.
    code, _, err, _, baseline = sync_cli(root, mlflow_server.url)
    assert code == 0, err
    with mm.Run(runs_dir=root, experiment_id=exp_id, name="big") as run:
        run.log_artifact(big, "data")
    code, _, err, _, peak = sync_cli(root, mlflow_server.url)
    assert code == 0, err
    assert baseline > 0 and peak - baseline < MAX_GROWTH_MB * 1024, (
        f"peak memory grew by {(peak - baseline) / 1024:.0f} MB for a {SIZE_MB} MB artifact"
    )
    remote = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name(experiment).experiment_id], "tags.mlflow.runName = 'big'"
    )[0]
    local = mlflow_client.download_artifacts(remote.info.run_id, "data/big.bin", str(tmp_path / "down"))
    got = hashlib.sha256()
    with open(local, "rb") as f:
        while chunk := f.read(1 << 20):
            got.update(chunk)
    assert got.hexdigest() == digest  # every byte, in order, through MLflow's own artifact store
