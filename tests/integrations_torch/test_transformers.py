"""Transformers: a tiny BertForSequenceClassification (built from a config, no download) trained a few
steps with save_total_limit, then resumed into the same run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from integrations.helpers import experiment_ids, history, need, runs_of

import mini_mlflow as mm

need("torch", tier="torch")
need("transformers", tier="torch")
need("accelerate", tier="torch")
import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # noqa: E402

from mini_mlflow.integrations.transformers import MiniMlflowCallback  # noqa: E402


class Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 100, (n, 8), generator=generator)
        self.labels = torch.randint(0, 2, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": self.labels[i],
        }


def _model() -> Any:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    return BertForSequenceClassification(config)


def _args(out: Path, max_steps: int, limit: int | None = 1) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        logging_steps=1,
        save_steps=3,
        save_total_limit=limit,
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )


def _checkpoints(root: Path, run_id: str) -> list[str]:
    folder = Path(mm.Store(root).find_run(run_id)) / "artifacts" / "checkpoints"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_train_save_total_limit_and_resume_into_the_same_run(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    callback = MiniMlflowCallback(experiment="bert", runs_dir=str(store))
    Trainer(model=_model(), args=_args(out, 6), train_dataset=Data(), callbacks=[callback]).train()
    run_id = callback.run_id
    (run,) = runs_of(store, experiment_ids(store)["bert"])
    assert run["metadata"]["run_id"] == run_id and run["metadata"]["status"] == "FINISHED"
    params = run["params"]
    assert params["max_steps"] == 6 and params["hidden_size"] == 32 and params["save_total_limit"] == 1
    assert params["num_parameters"] == sum(p.numel() for p in _model().parameters())
    for key in ("loss", "learning_rate", "grad_norm"):
        assert [s for s, _ in history(store, run_id, key)] == [1, 2, 3, 4, 5, 6]
    # save_total_limit=1: the Trainer kept checkpoint-6 only, and so does the run (hard links).
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-6"]
    assert _checkpoints(store, run_id) == ["checkpoint-6"]
    kept = Path(mm.Store(store).find_run(run_id)) / "artifacts" / "checkpoints" / "checkpoint-6"
    weights = next(p for p in kept.iterdir() if p.name.startswith("model"))
    assert os.path.samefile(weights, out / "checkpoint-6" / weights.name)

    # Resume from checkpoint-6 with a longer schedule: a new callback learns the run from the state.
    second = MiniMlflowCallback(experiment="bert", runs_dir=str(store))
    trainer = Trainer(model=_model(), args=_args(out, 9), train_dataset=Data(), callbacks=[second])
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-6"))
    restored = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MiniMlflowCallback))
    assert restored.run_id == run_id
    (run,) = runs_of(store, experiment_ids(store)["bert"])
    assert run["metadata"]["status"] == "FINISHED"
    assert [s for s, _ in history(store, run_id, "loss")] == list(range(1, 10))
    assert _checkpoints(store, run_id) == ["checkpoint-9"]


def test_a_resumed_attempt_supersedes_the_steps_logged_after_its_checkpoint(
    store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    callback = MiniMlflowCallback(runs_dir=str(store))
    args = _args(out, 5, limit=None)  # keeps checkpoint-3 and checkpoint-5
    Trainer(model=_model(), args=args, train_dataset=Data(), callbacks=[callback]).train()
    # As if the machine had died after step 5 with the last good checkpoint at step 3.
    again = MiniMlflowCallback(runs_dir=str(store))
    Trainer(model=_model(), args=args, train_dataset=Data(), callbacks=[again]).train(
        resume_from_checkpoint=str(out / "checkpoint-3")
    )
    assert again.run_id == callback.run_id
    assert [s for s, _ in history(store, callback.run_id, "loss")] == [1, 2, 3, 4, 5]
    raw = mm.Store(store).get_metric_history(callback.run_id, "loss", include_superseded=True)
    assert raw.steps == [1, 2, 3, 4, 5, 4, 5]


def test_evaluate_after_train_logs_into_the_run_and_leaves_it_finished(store: Path, tmp_path: Path) -> None:
    callback = MiniMlflowCallback(runs_dir=str(store))
    trainer = Trainer(
        model=_model(),
        args=_args(tmp_path / "out", 2),
        train_dataset=Data(),
        eval_dataset=Data(8),
        callbacks=[callback],
    )
    trainer.train()
    results = trainer.evaluate()
    (run,) = runs_of(store, "0")
    # Logged at the step training reached, into the same run, which training had ended FINISHED:
    # evaluating must not leave it RUNNING (no train end comes to end it again).
    assert run["metadata"]["status"] == "FINISHED"
    assert history(store, callback.run_id, "eval_loss") == [(2, results["eval_loss"])]
