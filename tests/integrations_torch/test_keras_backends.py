"""Keras 3 on its other backends, JAX and TensorFlow: the same callback, the same runs as on torch. On
JAX, TensorFlow is hidden from the child as if it were not installed (the W&B and DVCLive Keras
callbacks import it and fail there; Keras itself only imports it when present). Keras picks its
backend once per process, so each training runs in a child with its ``KERAS_BACKEND``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from integrations.helpers import history, need, run_python, runs_of

need("keras", tier="torch")
#: Each backend's own settings: the CPU only, TensorFlow's start-up notices off.
BACKENDS = {
    "jax": {"JAX_PLATFORMS": "cpu"},
    "tensorflow": {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
}

CHILD = """
import json, os, sys

class NoTensorFlow:  # on another backend, as where TensorFlow is not installed: importing it fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)

if os.environ["KERAS_BACKEND"] != "tensorflow":
    sys.meta_path.insert(0, NoTensorFlow())
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


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_two_epochs_log_as_on_torch(tmp_path: Path, backend: str) -> None:
    if importlib.util.find_spec(backend) is None:  # not imported here: the child alone runs it
        need(backend, tier="torch")  # skips, or fails where this tier's frameworks are required
    store = tmp_path / "mlruns"
    done = run_python(["-c", CHILD, str(store)], tmp_path, KERAS_BACKEND=backend, **BACKENDS[backend])
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["backend"] == backend and child["async_safe"] is True
    assert child["tensorflow"] is (backend == "tensorflow")  # on JAX, hidden: the callback never needs it
    (run,) = runs_of(store, "1")
    run_id = run["metadata"]["run_id"]
    assert run["metadata"]["status"] == "FINISHED"
    assert run["tags"]["mini_mlflow.framework"] == f"keras ({backend})"
    # 48 training rows in batches of 16: 3 optimizer steps per epoch, numbered 1 to 6.
    assert sorted(s for s, _ in history(store, run_id, "batch/loss")) == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "mae", "val_loss", "val_mae"):
        assert history(store, run_id, key) == list(enumerate(child["history"][key]))
    assert run["params"]["num_parameters"] == 4 * 8 + 8 + 8 + 1
    assert abs(run["params"]["optimizer/learning_rate"] - 0.01) < 1e-8
