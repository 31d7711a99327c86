"""Keras 3 on the torch backend: a small model for 2 epochs, batch and epoch metrics at their steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from integrations.helpers import history, need, runs_of

import mini_mlflow as mm

os.environ.setdefault("KERAS_BACKEND", "torch")
need("torch", tier="torch")
keras = need("keras", tier="torch")
np = need("numpy", tier="torch")

from mini_mlflow.integrations.keras import MiniMlflowCallback  # noqa: E402


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def test_two_epochs_log_batches_at_the_optimizer_step_and_epochs_at_their_epoch(store: Path) -> None:
    assert keras.backend.backend() == "torch"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    callback = MiniMlflowCallback(experiment="keras", runs_dir=store)
    assert callback.async_safe is True
    model = _model()
    fit = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, callbacks=[callback], verbose=0)
    (run,) = runs_of(store, "1")
    run_id = run["metadata"]["run_id"]
    assert run["metadata"]["status"] == "FINISHED" and run["tags"]["mini_mlflow.framework"] == "keras (torch)"
    # 48 training rows in batches of 16: 3 optimizer steps per epoch, numbered 1 to 6. Keras calls
    # an async-safe callback on a pool of threads, so the file's order is not the steps' order.
    assert sorted(s for s, _ in history(store, run_id, "batch/loss")) == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "mae", "val_loss", "val_mae"):
        assert history(store, run_id, key) == list(enumerate(float(v) for v in fit.history[key]))
    params = run["params"]
    assert params["fit/epochs"] == 2 and abs(params["optimizer/learning_rate"] - 0.01) < 1e-8  # a float32
    assert params["num_parameters"] == model.count_params() == 4 * 8 + 8 + 8 + 1
    summary = Path(mm.Store(store).find_run(run_id)) / "artifacts" / "model_summary.txt"
    assert "Dense" in summary.read_text()


def test_a_fit_that_raised_ends_failed_and_the_next_fit_gets_its_own_run(store: Path) -> None:
    x = np.zeros((32, 4), dtype="float32")
    y = np.ones((32, 1), dtype="float32")

    class Diverged(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            if batch == 2:
                raise RuntimeError("loss diverged")

    callback = MiniMlflowCallback(runs_dir=store)
    model = _model()
    with pytest.raises(RuntimeError, match="diverged"):
        model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback, Diverged()], verbose=0)
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[callback], verbose=0)
    failed, second = runs_of(store, "0")
    assert failed["metadata"]["status"] == "FAILED" and second["metadata"]["status"] == "FINISHED"
    assert failed["params"]["fit/epochs"] == 1 and second["params"]["fit/epochs"] == 2
    # The optimizer's step goes on: 3 steps in the failed fit, then 4 per epoch.
    assert sorted(s for s, _ in history(store, failed["metadata"]["run_id"], "batch/loss")) == [1, 2, 3]
    steps = sorted(s for s, _ in history(store, second["metadata"]["run_id"], "batch/loss"))
    assert steps == list(range(4, 12))
