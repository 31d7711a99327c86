"""Lightning: BoringModel steps, checkpoints following top-k, resume into the same run, ddp_spawn and ddp
-> one run."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path
from typing import Any

import pytest
from integrations.helpers import experiment_ids, history, need, run_python, runs_of

import mini_mlflow as mm

need("torch", tier="torch")
need("lightning", tier="torch")
import torch  # noqa: E402
from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.demos.boring_classes import BoringModel  # noqa: E402

from mini_mlflow.integrations.lightning import MiniMlflowLogger  # noqa: E402

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LitLogger.*")


class Model(BoringModel):
    """BoringModel logging its loss and a deterministic value at every step."""

    def __init__(self, lr: float = 0.1, fail_at: int = -1) -> None:
        super().__init__()
        self.save_hyperparameters(
            {"lr": lr, "optimizer": {"name": "sgd", "momentum": 0.9}, "notes": "x" * 7000}
        )
        self.fail_at = fail_at

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.global_step == self.fail_at:
            raise RuntimeError("loss exploded")
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"])
        self.log("seen_step", float(self.global_step))
        return out


class SpawnedModel(Model):
    """Model for ``ddp_spawn``: its workers leave the process group cleanly."""

    def teardown(self, stage: str) -> None:
        # Lightning leaves a gloo process group alive when a spawned worker exits (it destroys only
        # NCCL groups, at exit). Its C++ threads then sometimes abort the worker ("terminate called
        # without an active exception", SIGABRT: seen once in CI). So the group is destroyed here, the
        # last hook of the fit, once every rank has reached it.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _trainer(root_dir: Path, logger: Any, *extra: Any, **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {
        "max_steps": 8,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "default_root_dir": str(root_dir),
    }
    options.update(kwargs)
    return Trainer(logger=logger, callbacks=[logger.callback, *extra], **options)


def _artifacts(root: Path, run_id: str) -> Path:
    return Path(mm.Store(root).find_run(run_id)) / "artifacts" / "checkpoints"


def test_steps_params_and_checkpoints_following_top_k(store: Path, tmp_path: Path) -> None:
    logger = MiniMlflowLogger(experiment="boring", runs_dir=store)
    ckpt_dir = tmp_path / "ckpts"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, every_n_train_steps=1, save_top_k=2, monitor="seen_step", mode="min"
    )
    _trainer(tmp_path, logger, checkpoint).fit(Model())
    (run,) = runs_of(store, experiment_ids(store)["boring"])
    run_id = run["metadata"]["run_id"]
    assert run_id == logger.run_id and run["metadata"]["status"] == "FINISHED"
    # Metrics at the trainer's own step, once each; "epoch" beside them.
    assert [s for s, _ in history(store, run_id, "seen_step")] == list(range(8))
    assert history(store, run_id, "seen_step") == [(s, float(s)) for s in range(8)]
    assert [s for s, _ in history(store, run_id, "epoch")] == list(range(8))
    params = run["params"]
    assert params["lr"] == 0.1 and params["optimizer/name"] == "sgd" and params["optimizer/momentum"] == 0.9
    assert len(params["notes"]) == 6000 and "7000 characters" in params["notes"]  # cut, kept as an artifact
    assert (
        Path(mm.Store(store).find_run(run_id)) / "artifacts" / "params" / "notes.txt"
    ).read_text() == "x" * 7000
    # save_top_k=2 of the smallest steps: Lightning deleted the others, and so did the run.
    kept = sorted(os.listdir(ckpt_dir))
    assert len(kept) == 2
    linked = _artifacts(store, run_id)
    assert sorted(os.listdir(linked)) == kept
    for name in kept:  # hard links: the same file, no copy
        assert os.path.samefile(linked / name, ckpt_dir / name)


def test_resume_from_a_checkpoint_continues_the_same_run_and_supersedes_later_points(
    store: Path, tmp_path: Path
) -> None:
    ckpt_dir = tmp_path / "ckpts"
    first = MiniMlflowLogger(experiment="resume", runs_dir=store)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_top_k=-1)
    # The first attempt dies at step 5, after logging steps 0-4; its last checkpoint is at step 3.
    with pytest.raises(RuntimeError, match="loss exploded"):
        _trainer(tmp_path, first, checkpoint).fit(Model(fail_at=5))
    run_id = first.run_id
    assert mm.Store(store).get_run(run_id)["metadata"]["status"] == "FAILED"
    ckpt = ckpt_dir / "epoch=0-step=3.ckpt"
    assert ckpt.is_file()
    # A new process would build a new logger: it learns the run from the checkpoint.
    second = MiniMlflowLogger(experiment="resume", runs_dir=store)
    checkpoint2 = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_top_k=-1)
    _trainer(tmp_path, second, checkpoint2).fit(Model(), ckpt_path=str(ckpt))
    assert second.run_id == run_id
    (run,) = runs_of(store, experiment_ids(store)["resume"])
    assert run["metadata"]["status"] == "FINISHED"
    assert history(store, run_id, "seen_step") == [(s, float(s)) for s in range(8)]  # no step twice
    everything = mm.Store(store).get_metric_history(run_id, "seen_step", include_superseded=True)
    assert everything.steps == [0, 1, 2, 3, 4, 3, 4, 5, 6, 7]  # the files stay append-only


def test_ddp_spawn_with_two_processes_is_one_run_without_duplicate_points(
    store: Path, tmp_path: Path
) -> None:
    logger = MiniMlflowLogger(experiment="ddp", runs_dir=store)
    trainer = _trainer(tmp_path, logger, strategy="ddp_spawn", devices=2, max_steps=4)
    trainer.fit(SpawnedModel())
    runs = runs_of(store, experiment_ids(store)["ddp"])
    assert len(runs) == 1
    (run,) = runs
    assert run["metadata"]["run_id"] == logger.run_id and run["metadata"]["status"] == "FINISHED"
    assert history(store, logger.run_id, "seen_step") == [(s, float(s)) for s in range(4)]
    assert set(experiment_ids(store)) == {"ddp"}  # no run anywhere else either


def test_a_failed_fit_ends_the_run_failed_and_the_logger_needs_no_run_on_other_ranks(
    store: Path, tmp_path: Path
) -> None:
    logger = MiniMlflowLogger(runs_dir=store)
    assert logger.name == "0" and logger.version == logger.run_id
    assert mm.Store(store).list_runs("0") == []  # name/version opened nothing
    with pytest.raises(RuntimeError, match="loss exploded"):
        _trainer(tmp_path, logger).fit(Model(fail_at=2))
    (run,) = runs_of(store, "0")
    assert run["metadata"]["status"] == "FAILED"
    assert [s for s, _ in history(store, logger.run_id, "seen_step")] == [0, 1]


def test_a_logging_failure_warns_once_per_hook_and_the_fit_goes_on(tmp_path: Path) -> None:
    # The store's place is taken by a file: opening the run fails at every logged step. The logger's
    # per-step method is written without the ``guarded`` decorator (for speed), so this checks that it
    # still warns once and never stops the training.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store should be")
    logger = MiniMlflowLogger(runs_dir=blocked)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _trainer(tmp_path / "fit", logger, enable_checkpointing=False)
        trainer.fit(Model())
    assert trainer.global_step == 8
    ours = [str(w.message) for w in caught if "mini_mlflow lightning integration" in str(w.message)]
    assert sum("logging metrics failed" in m for m in ours) == 1, ours
    assert blocked.read_text() == "a file where the store should be"


def test_ctrl_c_ends_the_run_killed(store: Path, tmp_path: Path) -> None:
    class Interrupted(Model):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if self.global_step == 2:
                raise KeyboardInterrupt
            return super().training_step(batch, batch_idx)

    logger = MiniMlflowLogger(runs_dir=store)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into a graceful shutdown and exit 1
            _trainer(tmp_path, logger).fit(Interrupted())
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C from then on
    (run,) = runs_of(store, "0")
    assert run["metadata"]["status"] == "KILLED"


def test_the_pytorch_lightning_namespace_has_its_own_logger(store: Path, tmp_path: Path) -> None:
    need("pytorch_lightning", tier="torch")
    import pytorch_lightning as pl
    from pytorch_lightning.demos.boring_classes import BoringModel as PlBoringModel

    from mini_mlflow.integrations.pytorch_lightning import MiniMlflowLogger as PlLogger

    class PlModel(PlBoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            out = super().training_step(batch, batch_idx)
            self.log("seen_step", float(self.global_step))
            return out

    logger = PlLogger(experiment="pl", runs_dir=store)
    trainer = pl.Trainer(
        logger=logger,
        callbacks=[logger.callback],
        max_steps=3,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(tmp_path),
    )
    trainer.fit(PlModel())
    assert history(store, logger.run_id, "seen_step") == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_torch_is_the_cpu_build() -> None:
    assert torch.__version__.startswith("2.13.0")


DDP_SCRIPT = """
import sys
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from mini_mlflow.integrations.lightning import MiniMlflowLogger

class Model(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("seen_step", float(self.global_step))
        return out

    def teardown(self, stage):  # leave the gloo group cleanly (see SpawnedModel)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

logger = MiniMlflowLogger(experiment="ddp", runs_dir=sys.argv[1])
trainer = Trainer(
    logger=logger, callbacks=[logger.callback], strategy="ddp", devices=2, accelerator="cpu",
    max_steps=4, log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
    enable_checkpointing=False, default_root_dir=sys.argv[2],
)
trainer.fit(Model())
print("rank", trainer.global_rank, "run", logger.run_id if trainer.global_rank == 0 else "-")
"""


def test_ddp_with_the_script_launched_again_per_rank_is_one_run(tmp_path: Path) -> None:
    """``strategy="ddp"`` outside a notebook: Lightning starts the script again for rank 1 (a new
    process that builds its own logger). Rank 1 reads the logger's name and version and logs every
    step, yet opens no run and writes nothing."""
    store, script = tmp_path / "mlruns", tmp_path / "train_ddp.py"
    script.write_text(DDP_SCRIPT)
    done = run_python([str(script), str(store), str(tmp_path / "fit")], tmp_path)
    assert "rank 1 run -" in done.stdout  # the script really ran twice, as two ranks
    run_id = next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("rank 0 run"))
    assert set(experiment_ids(store)) == {"ddp"}  # no run anywhere else either
    (run,) = runs_of(store, experiment_ids(store)["ddp"])
    assert run["metadata"]["run_id"] == run_id and run["metadata"]["status"] == "FINISHED"
    assert history(store, run_id, "seen_step") == [(s, float(s)) for s in range(4)]
