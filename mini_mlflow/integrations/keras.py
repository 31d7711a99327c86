"""Integrations: Keras 3, on any backend (jax, torch, tensorflow). A callback.

Usage::

    from mini_mlflow.integrations.keras import MiniMlflowCallback

    model.fit(x, y, epochs=10, callbacks=[MiniMlflowCallback(experiment="mnist")])

Batch metrics are ``batch/<name>`` at step = the optimizer's step count (its count when ``fit``
started, plus the batches since); epoch metrics (with validation ones) are ``<name>`` at step =
epoch. The fit's settings and the optimizer's config are params, with ``num_parameters``; the model
summary is the artifact ``model_summary.txt``. The callback is ``async_safe``: Keras keeps
dispatching batches asynchronously (a callback without it turns that off for every callback), so
batch points may reach the file out of order; it imports only ``keras`` (no TensorFlow).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import keras

from ..write._run import Run
from ._runs import TrainingRuns
from ._safety import guarded
from ._values import as_number, flatten, log_params, safe_key

__all__ = ["MiniMlflowCallback"]


class MiniMlflowCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Logs ``model.fit`` to a mini_mlflow run.

    Args:
        run: The run to log to (left open at the end). None: a new run per ``fit``, ended FINISHED
            (a fit that raised is ended FAILED when the next one starts, or at exit).
        experiment: Experiment name or id for a new run.
        run_name: Name of a new run.
        runs_dir: Store root for a new run.
        log_every_n_steps: Log batch metrics every n optimizer steps (0: epoch metrics only).
    """

    #: Keras may dispatch the next batch before this callback has seen the last one.
    async_safe = True

    def __init__(
        self,
        run: Run | None = None,
        *,
        experiment: str | int | None = None,
        run_name: str | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
        log_every_n_steps: int = 1,
    ) -> None:
        super().__init__()
        self._runs = TrainingRuns(
            run,
            experiment=experiment,
            run_name=run_name,
            runs_dir=runs_dir,
            framework="keras",
            tag=f"keras ({keras.backend.backend()})",
        )
        self._every = max(0, int(log_every_n_steps))
        self._keys: dict[str, str] = {}
        self._base_step = 0
        self._epoch = 0
        self._first_epoch: int | None = None
        self._count = 0
        self._count_lock = threading.Lock()

    @property
    def run(self) -> Run | None:
        """The run logged to (None before the first ``fit`` when no run was given)."""
        return self._runs.run

    @guarded("keras", "starting the run")
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # A run still open is the last fit's, which raised (Keras calls no on_train_end then): it
        # ends FAILED here, and this fit gets a run of its own, as every fit does.
        self._runs.end_left_open("FAILED")
        run = self._runs.open()
        optimizer = getattr(self.model, "optimizer", None)
        # Optimizer steps taken before this fit (a second fit continues the count); read once, here,
        # where no batch runs. The backend's own scalar: .item() is the cheap way out on each.
        iterations = getattr(optimizer, "iterations", None)
        self._base_step = int(as_number(getattr(iterations, "value", 0)) or 0)
        self._count = 0
        self._first_epoch = None
        params: dict[str, Any] = {f"fit/{k}": v for k, v in (self.params or {}).items()}
        if optimizer is not None:
            params.update(flatten(optimizer.get_config(), prefix="optimizer"))
        params["num_parameters"] = self.model.count_params()
        log_params(run, params, "keras")
        lines: list[str] = []
        self.model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        run.log_text("\n".join(lines) + "\n", "model_summary.txt")

    @guarded("keras", "logging a batch")
    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._every or not logs:
            return
        # Keras runs this on a pool of threads (async dispatch), possibly after later batches: the
        # step comes from the batch's own index, never from the optimizer's counter at this moment.
        steps = (self.params or {}).get("steps")
        if steps:
            step = self._base_step + self._epoch * steps + batch + 1
        else:  # a dataset of unknown length: count the calls
            with self._count_lock:
                self._count += 1
                step = self._base_step + self._count
        if step % self._every:
            return
        self._log(logs, step, "batch/")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # Keras waits for the batches' callbacks before an epoch ends: stable during the epoch.
        self._epoch = epoch - self._first_epoch if self._first_epoch is not None else 0
        if self._first_epoch is None:
            self._first_epoch = epoch

    @guarded("keras", "logging an epoch")
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs:
            self._log(logs, epoch, "")

    def _log(self, logs: dict[str, Any], step: int, prefix: str) -> None:
        metrics = {}
        for name, value in logs.items():
            number = as_number(value)
            if number is None:
                continue
            key = self._keys.get(prefix + name)
            if key is None:
                key = self._keys[prefix + name] = safe_key(prefix + name)
            metrics[key] = number
        self._runs.open().log_metrics(metrics, step=step)

    @guarded("keras", "ending the run")
    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._runs.end_left_open("FINISHED")
