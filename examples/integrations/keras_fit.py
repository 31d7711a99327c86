"""Keras 3: a callback that works on any backend (this example sets torch)."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from mini_mlflow.integrations.keras import MiniMlflowCallback

x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
layers = [keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
model = keras.Sequential(layers)
model.compile(optimizer="adam", loss="mse")
callback = MiniMlflowCallback(experiment="keras-example")
model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, callbacks=[callback], verbose=0)
print(f"run {callback.run.run_id}")
