"""A small, realistic training loop logged with mini_mlflow, then a look at what landed on disk.

Run it with `make demo` (or `python examples/quickstart.py`): it writes to ./mlruns.
"""

from __future__ import annotations

import math
import os
import random

import mini_mlflow as mm


def train(lr: float, epochs: int = 20, steps_per_epoch: int = 200) -> str:
    """Fit y = 3x + 1 with SGD on noisy data; log loss per step and accuracy-like metrics per epoch."""
    rng = random.Random(0)
    data = [(x / 100, 3 * x / 100 + 1 + rng.gauss(0, 0.1)) for x in range(-100, 100)]
    w, b = 0.0, 0.0
    with mm.start_run(run_name=f"sgd-lr-{lr}") as run:
        mm.log_params({"lr": lr, "epochs": epochs, "model": "linear", "optimizer": "sgd"})
        mm.set_tag("purpose", "quickstart")
        step = 0
        for epoch in range(epochs):
            total = 0.0
            for _ in range(steps_per_epoch):
                x, y = rng.choice(data)
                err = (w * x + b) - y
                w -= lr * 2 * err * x
                b -= lr * 2 * err
                total += err * err
                mm.log_metric("train/loss", err * err, step=step)
                step += 1
            mse = sum(((w * x + b) - y) ** 2 for x, y in data) / len(data)
            mm.log_metrics(
                {"val/mse": mse, "val/rmse": math.sqrt(mse), "epoch_loss": total / steps_per_epoch},
                step=epoch,
            )
        mm.log_dict({"w": w, "b": b}, "model/weights.json")
        return run.run_id


def main() -> None:
    mm.set_experiment("quickstart")
    run_ids = [train(lr) for lr in (0.3, 0.1, 0.01)]
    root = mm.get_tracking_dir()
    print(f"Logged {len(run_ids)} runs to {os.path.abspath(root)}\n")
    for run_id in run_ids:
        run = mm.get_run(run_id)
        meta = run["metadata"]
        print(f"run {run_id}  name={meta['run_name']}  status={meta['status']}")
        print(f"  folder:  {os.path.join(root, meta['experiment_id'], run_id)}")
        print(f"  params:  {run['params']}")
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run["metrics"].items()))
        print(f"  metrics (last value): {metrics}")
        points = mm.get_metric_history(run_id, "train/loss")
        print(
            f"  train/loss history: {len(points)} points, "
            f"first {points[0].value:.4g}, last {points[-1].value:.4g}"
        )
    first = os.path.join(root, mm.get_run(run_ids[0])["metadata"]["experiment_id"], run_ids[0])
    print(f"\nOn disk ({first}):")
    for folder, _dirs, files in sorted(os.walk(first)):
        for name in sorted(files):
            if not name.startswith("."):
                path = os.path.join(folder, name)
                print(f"  {os.path.relpath(path, first):32} {os.path.getsize(path):>8} bytes")
    with open(os.path.join(first, "metrics", "train", "loss.jsonl")) as f:
        print("\nFirst lines of metrics/train/loss.jsonl:")
        for _ in range(3):
            print("  " + f.readline().rstrip())
    print("\nTry: mini-mlflow ls -e quickstart    (or: .venv/bin/mini-mlflow ls -e quickstart)")


if __name__ == "__main__":
    main()
