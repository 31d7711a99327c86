"""Artifacts: a folder, a file under a path, a dict as JSON and YAML, text; listed with the client."""

import os
import tempfile

import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("artifacts")
with mlflow.start_run(run_name="files") as run:
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "data", "sub"))
        for name in ("data/a.csv", "data/sub/b.csv"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write("x,y\n1,2\n")
        mlflow.log_artifacts(os.path.join(tmp, "data"), artifact_path="dataset")
        with open(os.path.join(tmp, "model.bin"), "wb") as f:
            f.write(b"\x00" * 100)
        mlflow.log_artifact(os.path.join(tmp, "model.bin"), artifact_path="models/v1")
    mlflow.log_dict({"a": 1, "b": [1, 2]}, "config/config.json")
    mlflow.log_dict({"a": 1, "b": [1, 2]}, "config/config.yaml")
    mlflow.log_text("hello world", "readme.txt")
    print("uri ends", mlflow.get_artifact_uri("readme.txt").endswith("/artifacts/readme.txt"))

client = MlflowClient()
print("top", sorted(f.path for f in client.list_artifacts(run.info.run_id)))
print("dataset", sorted(f.path for f in client.list_artifacts(run.info.run_id, "dataset")))
local = client.download_artifacts(run.info.run_id, "readme.txt", tempfile.mkdtemp())
print("downloaded", open(local).read())
