"""Tables: log_table from a dict and from a DataFrame, read back with load_table."""

import mlflow
import pandas as pd

mlflow.set_experiment("tables")
with mlflow.start_run(run_name="eval") as run:
    mlflow.log_table({"input": ["a", "b", "c"], "score": [0.1, 0.5, 0.9]}, "eval/results.json")
    frame = pd.DataFrame({"k": [1, 2], "v": ["x", "y"]})
    mlflow.log_table(frame, "eval/frame.json")

back = mlflow.load_table("eval/results.json", run_ids=[run.info.run_id])
print("columns", list(back.columns))
print("scores", list(back["score"]))
print("frame", mlflow.load_table("eval/frame.json", run_ids=[run.info.run_id])["v"].tolist())
