"""System metrics: CPU, memory, disk, network (and NVIDIA GPUs) as system/... metrics of a run."""

import time

from mini_mlflow import Run
from mini_mlflow.write._system_metrics import start_system_metrics

with Run(name="system-metrics") as run:
    sampler = start_system_metrics(run, interval=0.2)  # MINI_MLFLOW_SYSTEM_METRICS_INTERVAL by default
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # stand-in for training
        sum(i * i for i in range(10_000))
    sampler.stop()
print(f"{sampler.samples} samples")
