"""MLflow's quickstart: an experiment, one run with params, a metric per epoch, a tag, a file artifact."""

import os
import tempfile

import mlflow

mlflow.set_experiment("quickstart")
params = {"learning_rate": 0.01, "epochs": 5, "optimizer": "adam", "layers": [64, 32], "dropout": None}

with mlflow.start_run(run_name="baseline") as run:
    mlflow.log_params(params)
    for epoch in range(params["epochs"]):
        mlflow.log_metric("train_loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_metric("val_acc", 0.5 + epoch * 0.1, step=epoch)
    mlflow.log_metrics({"final_loss": 0.2, "final_acc": 0.9})
    mlflow.set_tag("model", "mlp")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notes.txt")
        with open(path, "w") as f:
            f.write("trained\n")
        mlflow.log_artifact(path)
    print("active", mlflow.active_run().info.run_id == run.info.run_id)

finished = mlflow.get_run(run.info.run_id)
print("status", finished.info.status)
print("params", sorted(finished.data.params.items()))
print("metrics", sorted(finished.data.metrics.items()))
