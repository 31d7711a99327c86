"""Hydra: a real ``-m`` sweep in a subprocess gives a parent run and a child per job; a failed job is FAILED."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .helpers import experiment_ids, history, need, runs_of
from conftest import ROOT

need("hydra")

CONFIG = """\
lr: 0.1
model:
  depth: 3
  name: mlp
hydra:
  callbacks:
    mini_mlflow:
      _target_: mini_mlflow.integrations.hydra.MiniMlflowCallback
      experiment: sweeps
      runs_dir: {root}
"""

APP = """\
import hydra
from mini_mlflow.integrations.hydra import current_run

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    run = current_run()
    for step in range(3):
        run.log_metric("loss", cfg.lr * (3 - step), step=step)
    if cfg.lr == 0.2:
        raise ValueError("diverged at lr=0.2")
    return {"score": cfg.lr * 10}

main()
"""


def _app(tmp_path: Path, root: Path) -> Path:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(CONFIG.format(root=root))
    (tmp_path / "app.py").write_text(APP)
    return tmp_path / "app.py"


def _run(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(app), *args],
        cwd=app.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_multirun_is_a_parent_with_a_child_per_job_and_the_failed_job_is_failed(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    app = _app(tmp_path, root)
    done = _run(app, "-m", "lr=0.1,0.2,0.3")
    assert done.returncode == 1, done.stderr  # Hydra reports the failed job with exit status 1
    assert "diverged at lr=0.2" in done.stderr
    runs = runs_of(root, experiment_ids(root)["sweeps"])
    parents = [r for r in runs if r["metadata"]["parent_run_id"] is None]
    children = [r for r in runs if r["metadata"]["parent_run_id"] is not None]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent["tags"]["hydra.mode"] == "MULTIRUN"
    sweep_dir = Path(parent["tags"]["hydra.sweep_dir"])  # absolute, as each job's output_dir is
    assert sweep_dir.is_absolute() and sweep_dir.is_dir()
    assert all(Path(c["tags"]["hydra.output_dir"]).parent == sweep_dir for c in children)
    # Hydra raises the job's error after the batch, before on_multirun_end: the process's exit
    # hook ends the parent with the failure status.
    assert parent["metadata"]["status"] == "FAILED"
    assert {c["metadata"]["parent_run_id"] for c in children} == {parent["metadata"]["run_id"]}
    by_lr = {c["params"]["lr"]: c for c in children}
    assert set(by_lr) == {0.1, 0.2, 0.3}
    assert {lr: c["metadata"]["status"] for lr, c in by_lr.items()} == {
        0.1: "FINISHED",
        0.2: "FAILED",
        0.3: "FINISHED",
    }
    for lr, child in by_lr.items():
        assert child["params"]["model/depth"] == 3 and child["params"]["model/name"] == "mlp"
        assert child["metadata"]["run_name"] == f"lr={lr}"
        assert child["tags"]["hydra.overrides"] == f"lr={lr}"
        assert history(root, child["metadata"]["run_id"], "loss") == [(s, lr * (3 - s)) for s in range(3)]
        run_dir = Path(_run_dir(root, child["metadata"]["run_id"]))
        assert (run_dir / "artifacts" / "hydra" / "config.yaml").is_file()
    assert by_lr[0.1]["metrics"]["score"] == 0.1 * 10 and by_lr[0.3]["metrics"]["score"] == 0.3 * 10
    assert "score" not in by_lr[0.2]["metrics"]
    assert "diverged at lr=0.2" in by_lr[0.2]["tags"]["hydra.error"]


def test_a_sweep_without_failures_ends_its_parent_finished(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    app = _app(tmp_path, root)
    done = _run(app, "-m", "lr=0.1,0.3", "model.depth=1")
    assert done.returncode == 0, done.stderr
    runs = runs_of(root, experiment_ids(root)["sweeps"])
    assert [r["metadata"]["status"] for r in runs] == ["FINISHED"] * 3
    assert sum(r["metadata"]["parent_run_id"] is None for r in runs) == 1
    assert all(r["params"]["model/depth"] == 1 for r in runs if r["metadata"]["parent_run_id"])


def test_a_single_run_is_one_run_without_a_parent(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    app = _app(tmp_path, root)
    done = _run(app, "lr=0.3")
    assert done.returncode == 0, done.stderr
    (run,) = runs_of(root, experiment_ids(root)["sweeps"])
    assert run["metadata"]["parent_run_id"] is None and run["metadata"]["status"] == "FINISHED"
    assert run["params"]["lr"] == 0.3 and run["metrics"]["score"] == 3.0


def test_current_run_names_why_the_jobs_run_could_not_be_started(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    app = _app(tmp_path, blocker / "mlruns")  # a store under a file cannot be made
    done = _run(app, "lr=0.3", "~hydra.callbacks.mini_mlflow.experiment")
    assert done.returncode == 1  # current_run() has no run to give
    assert "mini_mlflow hydra integration: starting the job's run failed" in done.stderr
    assert "RuntimeError: the Hydra job's run could not be started: StorageError" in done.stderr


def test_current_run_outside_a_job_says_what_to_do() -> None:
    from mini_mlflow.integrations.hydra import current_run

    try:
        current_run()
    except RuntimeError as exc:
        assert "hydra.callbacks" in str(exc)
    else:
        raise AssertionError("current_run() outside a job must raise")


def _run_dir(root: Path, run_id: str) -> str:
    import mini_mlflow as mm

    return mm.Store(root).find_run(run_id)
