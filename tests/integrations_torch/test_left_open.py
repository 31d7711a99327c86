"""A run a Keras fit or a Transformers training left open (it raised: the framework calls no end hook)
ends at exit by that training, not by the program's end: FAILED even when the program caught the error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from integrations.helpers import ROOT, need, runs_of

need("torch", tier="torch")
need("keras", tier="torch")
need("transformers", tier="torch")
need("accelerate", tier="torch")

_KERAS = """
    import keras, numpy as np
    from mini_mlflow.integrations.keras import MiniMlflowCallback
    class Broken(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise {error}
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((32, 4), "float32"), np.ones((32, 1), "float32")
    try:
        model.fit(x, y, epochs=1, batch_size=8, callbacks=[MiniMlflowCallback(runs_dir=store), Broken()], verbose=0)
    except RuntimeError:
        print("the program caught it and ended well")
"""
_TRANSFORMERS = """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments
    from mini_mlflow.integrations.transformers import MiniMlflowCallback
    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 16
        def __getitem__(self, i):
            return {{"input_ids": torch.ones(8, dtype=torch.long), "labels": torch.tensor(i % 2)}}
    class Broken(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise {error}
    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    args = TrainingArguments(output_dir=store + "-out", max_steps=4, logging_steps=1, per_device_train_batch_size=4,
                             report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no")
    trainer = Trainer(BertForSequenceClassification(config), args, train_dataset=Data(),
                      callbacks=[MiniMlflowCallback(runs_dir=store), Broken()])
    try:
        trainer.train()
    except RuntimeError:
        print("the program caught it and ended well")
"""


@pytest.mark.parametrize(
    ("framework", "error", "status"),
    [
        ("keras", "RuntimeError('loss diverged')", "FAILED"),  # caught: the program ends well
        ("keras", "KeyboardInterrupt", "KILLED"),  # the program's own end decides (Ctrl-C)
        ("transformers", "RuntimeError('loss diverged')", "FAILED"),
    ],
)
def test_a_run_a_training_left_open_ends_by_that_training_at_exit(
    store: Path, framework: str, error: str, status: str
) -> None:
    script = store.parent / "train.py"
    body = _KERAS if framework == "keras" else _TRANSFORMERS
    script.write_text("import sys\nstore = sys.argv[1]\n" + textwrap.dedent(body).format(error=error))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env.update(PYTHONPATH=str(ROOT), KERAS_BACKEND="torch")
    done = subprocess.run(
        [sys.executable, str(script), str(store)], env=env, capture_output=True, text=True, timeout=300
    )
    caught = error.startswith("RuntimeError")
    assert (done.returncode == 0) == caught, done.stderr[-3000:]
    assert ("ended well" in done.stdout) == caught, done.stderr[-3000:]
    assert [r["metadata"]["status"] for r in runs_of(store, "0")] == [status], done.stderr[-3000:]
