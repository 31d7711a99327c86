"""Keras 3 on the JAX backend: the same callback, the same runs, and TensorFlow never imported (the
W&B and DVCLive Keras callbacks import it and fail on other backends). Keras picks its backend once
per process, so the training runs in a child with ``KERAS_BACKEND=jax``."""

from __future__ import annotations

import json
from pathlib import Path

from integrations.helpers import history, need, run_python, runs_of

need("jax", tier="torch")
need("keras", tier="torch")

CHILD = """
import json, sys
import keras
import numpy as np
from mini_mlflow.integrations.keras import MiniMlflowCallback

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
callback = MiniMlflowCallback(experiment="keras", runs_dir=sys.argv[1])
fit = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, callbacks=[callback], verbose=0)
print(json.dumps({
    "backend": keras.backend.backend(),
    "tensorflow": "tensorflow" in sys.modules,
    "async_safe": callback.async_safe,
    "history": {k: [float(v) for v in values] for k, values in fit.history.items()},
}))
"""


def test_two_epochs_on_jax_log_as_on_torch_without_tensorflow(tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    done = run_python(["-c", CHILD, str(store)], tmp_path, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["backend"] == "jax" and child["tensorflow"] is False and child["async_safe"] is True
    (run,) = runs_of(store, "1")
    run_id = run["metadata"]["run_id"]
    assert run["metadata"]["status"] == "FINISHED" and run["tags"]["mini_mlflow.framework"] == "keras (jax)"
    # 48 training rows in batches of 16: 3 optimizer steps per epoch, numbered 1 to 6.
    assert sorted(s for s, _ in history(store, run_id, "batch/loss")) == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "mae", "val_loss", "val_mae"):
        assert history(store, run_id, key) == list(enumerate(child["history"][key]))
    assert run["params"]["num_parameters"] == 4 * 8 + 8 + 8 + 1
    assert abs(run["params"]["optimizer/learning_rate"] - 0.01) < 1e-8
