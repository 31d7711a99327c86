"""Export to and import from MLflow's FileStore, checked by MLflow's own client reading the same files."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mini_mlflow as mm
from mini_mlflow.cli._main import cli
from mini_mlflow.store._layout import ms_from_iso

from .sync_helpers import make_run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def file_client(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make an MlflowClient on a file store (allowed explicitly since MLflow 3.13)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return lambda path: mlflow.MlflowClient(tracking_uri=Path(path).resolve().as_uri())


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def build_source(root: Path, tmp_path: Path) -> list[mm.Run]:
    a = make_run(root, "vision", "a", points=300, keys=("loss", "train/acc"), end=None)
    a.log_params({"lr": 0.01, "arch": "resnet", "dims": [1, 2]})
    a.set_tags({"team": "cv", "mlflow.note.content": "a note"})
    for step, value in enumerate([float("nan"), float("inf"), float("-inf"), 1e-300]):
        a.log_metric("edge", value, step=step, timestamp=1_763_900_100_000 + step)
    a.log_metric("dup", 1.0, step=0, timestamp=1_763_900_100_000)
    a.log_metric("dup", 1.0, step=0, timestamp=1_763_900_100_000)
    a.log_text("hello", "docs/hello.txt")
    a.end("FINISHED")
    b = make_run(root, "vision", "b", points=5, end="KILLED")
    c = mm.Run(experiment_id=a.experiment_id, name="c", runs_dir=root, parent_run_id=a.run_id)
    c.log_metric("x", 3.0, step=1, timestamp=1_763_900_000_001)
    c.end("FAILED")
    d = make_run(root, "nlp", "d", points=3)
    return [a, b, c, d]


def test_export_is_read_back_by_mlflow_as_the_source(tmp_path: Path, file_client: Any) -> None:
    root, dest = tmp_path / "mlruns", tmp_path / "exported"
    runs = build_source(root, tmp_path)
    result = run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all")
    assert result.exit_code == 0, result.output
    assert (dest / ".trash").is_dir() and (dest / "models").is_dir()
    client = file_client(dest)
    assert_mlflow_sees(client, root, runs)
    a, _, c, _ = runs
    assert client.get_run(c.run_id).data.tags["mlflow.parentRunId"] == a.run_id
    assert [m.value for m in client.get_metric_history(a.run_id, "edge")][1:3] == [math.inf, -math.inf]
    assert len(client.get_metric_history(a.run_id, "dup")) == 1  # logged twice, identical: kept once
    assert "1 repeated identical points written once" in result.output
    vision = client.get_experiment_by_name("vision")
    assert {r.info.run_name for r in client.search_runs([vision.experiment_id])} == {"a", "b", "c"}
    path = client.download_artifacts(a.run_id, "docs/hello.txt", str(tmp_path))
    assert Path(path).read_text() == "hello"
    # Exporting again rewrites the same store without duplicating anything.
    assert run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all").exit_code == 0
    assert len(file_client(dest).get_metric_history(a.run_id, "loss")) == 300


def assert_mlflow_sees(client: Any, root: Path, runs: list[mm.Run], sql: bool = False) -> None:
    """MLflow's client reports each run as our store holds it (``sql``: ±inf kept as ±float max)."""
    store = mm.Store(root)
    for run in runs:
        local = store.get_run(run.run_id)
        remote = client.get_run(run.run_id)  # ids are kept
        meta = local["metadata"]
        assert remote.info.status == meta["status"]
        assert remote.info.run_name == meta["run_name"]
        assert remote.info.start_time == ms_from_iso(meta["start_time"])
        assert remote.info.end_time == ms_from_iso(meta["end_time"])
        assert remote.info.user_id == meta["user"]
        assert remote.data.params == {
            k: v if isinstance(v, str) else str(v) for k, v in local["params"].items()
        }
        assert {k: v for k, v in remote.data.tags.items() if k in local["tags"]} == local["tags"]
        for key in store.metric_keys(run.run_id):
            mine = store.get_metric_history(run.run_id, key)
            theirs = sorted(client.get_metric_history(run.run_id, key), key=lambda m: (m.timestamp, m.step))
            first: dict[tuple[Any, ...], int] = {}  # an identical point repeated is exported once
            for i in range(len(mine)):
                value = mine.values[i]
                first.setdefault((mine.timestamps[i], mine.steps[i], "nan" if value != value else value), i)
            order = sorted(first.values(), key=lambda i: (mine.timestamps[i], mine.steps[i]))
            assert [m.step for m in theirs] == [mine.steps[i] for i in order]
            assert [m.timestamp for m in theirs] == [mine.timestamps[i] for i in order]
            for m, i in zip(theirs, order, strict=True):
                want = mine.values[i]
                if sql and math.isinf(want):
                    want = math.copysign(sys.float_info.max, want)
                assert (math.isnan(m.value) and math.isnan(want)) or m.value == want, (key, m, want)


def test_mlflow_migrate_filestore_moves_an_export_to_sqlite(tmp_path: Path) -> None:
    import mlflow

    root, dest = tmp_path / "mlruns", tmp_path / "exported"
    runs = build_source(root, tmp_path)
    assert run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all").exit_code == 0
    target = f"sqlite:///{tmp_path / 'migrated.db'}"
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    done = subprocess.run(
        [str(mlflow_bin), "migrate-filestore", "--source", str(dest), "--target", target],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_mlflow_sees(mlflow.MlflowClient(tracking_uri=target), root, runs, sql=True)


def _write_with_mlflow(src: Path, file_client: Any) -> tuple[Any, dict[str, Any]]:
    """An MLflow store written by MLflow itself, and what MLflow reports about it."""
    from mlflow.entities import Metric, Param, RunTag

    client = file_client(src)
    exp = client.create_experiment("legacy")
    run = client.create_run(exp, run_name="old-run", tags={"team": "x"})
    rid = run.info.run_id
    client.log_batch(
        rid,
        metrics=[Metric("loss", 1.0 / (i + 1), 1_763_900_000_000 + i, i) for i in range(50)]
        + [Metric("loss", 0.5, 1_763_900_000_000, 0)] * 2  # duplicated lines, as MLflow stores them
        + [Metric("nan", float("nan"), 1_763_900_000_000, 0)],
        params=[Param("lr", "0.1"), Param("nested/key", "v")],
        tags=[RunTag("mlflow.note.content", "hi")],
    )
    artifact = src.parent / "art.txt"
    artifact.write_text("artifact body")
    client.log_artifact(rid, str(artifact), "sub")
    client.set_terminated(rid, "FAILED")
    child = client.create_run(exp, tags={"mlflow.parentRunId": rid}, run_name="child")
    client.log_metric(child.info.run_id, "m", 2.0, step=3)
    fetched = client.get_run(rid)
    expected = {
        "run_id": rid,
        "child": child.info.run_id,
        "params": fetched.data.params,
        "tags": fetched.data.tags,
        "status": fetched.info.status,
        "start": fetched.info.start_time,
        "end": fetched.info.end_time,
        "user": fetched.info.user_id,
        "histories": {
            key: [(m.timestamp, m.step, m.value) for m in client.get_metric_history(rid, key)]
            for key in ("loss", "nan")
        },
        "experiment": exp,
    }
    return client, expected


def test_import_of_a_store_written_by_mlflow_equals_what_mlflow_reports(
    tmp_path: Path, file_client: Any
) -> None:
    src, root = tmp_path / "mlflow-store", tmp_path / "mlruns"
    _, expected = _write_with_mlflow(src, file_client)
    rid = expected["run_id"]
    # MLflow's quirks: a legacy integer experiment id, no run_uuid, a torn last metric line.
    exp_meta = src / expected["experiment"] / "meta.yaml"
    exp_meta.write_text(
        exp_meta.read_text().replace(f"experiment_id: '{expected['experiment']}'", "experiment_id: 1")
    )
    run_meta = src / expected["experiment"] / rid / "meta.yaml"
    run_meta.write_text(
        "".join(x for x in run_meta.read_text().splitlines(True) if not x.startswith("run_uuid"))
    )
    with open(src / expected["experiment"] / rid / "metrics" / "loss", "a") as f:
        f.write("17639")

    result = run_cli("--root", str(root), "import", "--format", "mlflow", str(src))
    assert result.exit_code == 0, result.output
    assert "imported 2 runs" in result.output and "1 unreadable metric lines skipped" in result.output
    store = mm.Store(root)
    data = store.get_run(rid)
    meta = data["metadata"]
    assert meta["status"] == expected["status"] == "FAILED"
    assert ms_from_iso(meta["start_time"]) == expected["start"]
    assert ms_from_iso(meta["end_time"]) == expected["end"]
    assert meta["user"] == expected["user"] and meta["run_name"] == "old-run"
    assert data["params"] == expected["params"]
    assert data["tags"] == expected["tags"]
    for key, points in expected["histories"].items():
        history = store.get_metric_history(rid, key)
        mine = list(zip(history.timestamps, history.steps, history.values))
        assert len(mine) == len(points)
        assert all(
            a[:2] == b[:2] and (a[2] == b[2] or (math.isnan(a[2]) and math.isnan(b[2])))
            for a, b in zip(mine, points)
        )
    artifact = Path(store.find_run(rid)) / "artifacts" / "sub" / "art.txt"
    assert artifact.read_text() == "artifact body"
    assert store.get_run(expected["child"])["metadata"]["parent_run_id"] == rid
    assert store.get_experiment_by_name("legacy") is not None
    # Importing twice changes nothing.
    again = run_cli("--root", str(root), "import", "--format", "mlflow", str(src))
    assert "imported 0 runs" in again.output and "2 already here" in again.output
    assert len(store.get_metric_history(rid, "loss")) == len(expected["histories"]["loss"])


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    root, dest, back = tmp_path / "mlruns", tmp_path / "exported", tmp_path / "back"
    runs = build_source(root, tmp_path)
    assert run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all").exit_code == 0
    assert run_cli("--root", str(back), "import", "--format", "mlflow", str(dest)).exit_code == 0
    one, two = mm.Store(root), mm.Store(back)
    for run in runs:
        x, y = one.get_run(run.run_id), two.get_run(run.run_id)
        assert {k: str(v) if not isinstance(v, str) else v for k, v in x["params"].items()} == y["params"]
        for field in ("status", "start_time", "end_time", "run_name", "user", "parent_run_id"):
            assert x["metadata"][field] == y["metadata"][field], field
        for key in one.metric_keys(run.run_id):
            h1, h2 = one.get_metric_history(run.run_id, key), two.get_metric_history(run.run_id, key)
            p1 = list(dict.fromkeys(zip(h1.timestamps, h1.steps, map(str, h1.values), strict=True)))
            assert p1 == list(zip(h2.timestamps, h2.steps, map(str, h2.values), strict=True))  # repeats once


def test_import_refuses_a_mini_mlflow_store_and_writes_nothing(tmp_path: Path) -> None:
    """Our own store read as a FileStore "imported" with exit 0: params named `lr.json`, no metrics."""
    root, dest = tmp_path / "mlruns", tmp_path / "new"
    build_source(root, tmp_path)
    for sign in ("has mini_mlflow's format_version", "holds JSON lines"):
        result = CliRunner().invoke(cli, ["--root", str(dest), "import", "--format", "mlflow", str(root)])
        assert result.exit_code == 1, result.output
        assert result.output.startswith(
            f"error: {str(root)!r} looks like a mini_mlflow store, not an MLflow FileStore ("
        ), result.output
        assert sign in result.output and "it needs no import: point --root at it" in result.output
        assert len(result.output.splitlines()) == 1
        assert not dest.exists()
        # Without format_version (hand-edited, or written by an older version) the metric files tell.
        for meta in root.rglob("meta.yaml"):
            lines = meta.read_text().splitlines(keepends=True)
            meta.write_text("".join(line for line in lines if not line.startswith("format_version")))


def test_export_refuses_a_destination_that_escapes(tmp_path: Path) -> None:
    root, dest, outside = tmp_path / "mlruns", tmp_path / "exported", tmp_path / "outside"
    run = make_run(root, "esc", "esc", points=3)
    run_exp = Path(run.run_dir).parent.name
    dest.mkdir()
    outside.mkdir()
    os.symlink(outside, dest / run_exp)  # the experiment folder would lead out of DEST
    result = run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all")
    assert result.exit_code == 1
    assert "refusing" in result.output and "outside" in result.output.lower()
    assert list(outside.iterdir()) == []


def test_export_skips_symlinked_artifacts(tmp_path: Path) -> None:
    root, dest = tmp_path / "mlruns", tmp_path / "exported"
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    run = make_run(root, "links", "links", points=1)
    os.symlink(secret, Path(run.run_dir) / "artifacts" / "leak.txt")
    secret_dir = tmp_path / "secret-dir"
    secret_dir.mkdir()
    (secret_dir / "inside.txt").write_text("do not copy")
    os.symlink(secret_dir, Path(run.run_dir) / "artifacts" / "leak-dir")
    (Path(run.run_dir) / "artifacts" / "kept.txt").write_text("mine")
    result = run_cli("--root", str(root), "export", "--format", "mlflow", str(dest), "--all")
    assert result.exit_code == 0
    assert "symlink" in result.output
    exported = list(dest.rglob("*"))
    # Left out entirely: not copied, not re-created as a link (which would read the secret through it).
    assert not any(p.is_symlink() for p in exported)
    assert {p.name for p in exported}.isdisjoint({"leak.txt", "leak-dir", "inside.txt"})
    assert not any("do not copy" in p.read_text() for p in exported if p.is_file())
    assert [p.read_text() for p in exported if p.name == "kept.txt"] == ["mine"]  # the rest exported


def test_import_refuses_paths_leading_out_of_the_source(tmp_path: Path, file_client: Any) -> None:
    src, root = tmp_path / "mlflow-store", tmp_path / "mlruns"
    _, expected = _write_with_mlflow(src, file_client)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("TOP-SECRET")
    run_dir = src / expected["experiment"] / expected["run_id"]
    os.symlink(secret / "key.txt", run_dir / "artifacts" / "stolen.txt")
    os.symlink(secret, run_dir / "artifacts" / "stolen_dir")
    os.symlink(secret / "key.txt", run_dir / "params" / "leak")
    child_dir = src / expected["experiment"] / expected["child"]
    child_meta = child_dir / "meta.yaml"
    import shutil

    shutil.rmtree(child_dir / "artifacts")  # its artifact_uri now points out of the tree via '..'
    text = child_meta.read_text()
    uri_line = next(line for line in text.splitlines() if line.startswith("artifact_uri"))
    child_meta.write_text(text.replace(uri_line, f"artifact_uri: file://{src}/../secret"))
    result = run_cli("--root", str(root), "import", "--format", "mlflow", str(src))
    assert result.exit_code == 0, result.output
    assert "symlink" in result.output and "outside" in result.output
    for path in root.rglob("*"):
        if path.is_file():
            assert b"TOP-SECRET" not in path.read_bytes(), path
    assert "leak" not in mm.Store(root).get_run(expected["run_id"])["params"]
