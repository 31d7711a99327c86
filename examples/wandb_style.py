"""The init / log / finish face, for people coming from W&B: same runs, same store as the fluent API.

Run it with `python examples/wandb_style.py`: it writes to ./mlruns (or MINI_MLFLOW_TRACKING_DIR).
"""

from __future__ import annotations

import os
import random
import tempfile

import mini_mlflow as mm


def main() -> None:
    rng = random.Random(0)
    config = {"lr": 0.05, "epochs": 5, "batches": 50, "model": {"kind": "mlp", "width": 64}}
    with mm.init(project="wandb-style", name="mlp-0.05", tags={"team": "demo"}, config=config) as run:
        print(f"run {run.id} in project {run.project!r}, offline={run.is_offline}")
        loss = 2.0
        for epoch in range(run.config["epochs"]):
            for _ in range(run.config["batches"]):
                loss *= 1 - run.config["lr"] * rng.uniform(0.1, 0.3)
                run.log({"train": {"loss": loss}})  # step counts up by itself; nested → train/loss
            run.log({"val/loss": loss * 1.1, "epoch": epoch})
        run.log_tags({"converged": loss < 0.1})
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "weights.txt")
            with open(weights, "w") as f:
                f.write(f"final loss {loss:.4f}\n")
            run.log_artifact(weights, type="model")  # → artifacts/model/weights.txt
    record = mm.get_run(run.id)
    print(f"status {record['metadata']['status']}, {run.step} steps, last metrics {record['metrics']}")
    print(f"params {record['params']}")
    print(f"folder {run.dir}")


if __name__ == "__main__":
    main()
