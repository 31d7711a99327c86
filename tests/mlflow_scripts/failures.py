"""Failure statuses: an exception inside a run, an explicit KILLED, a run left open at exit."""

import mlflow

mlflow.set_experiment("failures")
try:
    with mlflow.start_run(run_name="raises"):
        mlflow.log_metric("progress", 0.3)
        raise ValueError("diverged")
except ValueError:
    pass
with mlflow.start_run(run_name="killed"):
    mlflow.log_param("reason", "preempted")
    mlflow.end_run(status="KILLED")
mlflow.start_run(run_name="left-open")
mlflow.log_metric("progress", 0.9)
print(
    "statuses so far",
    sorted((r.info.run_name, r.info.status) for r in mlflow.search_runs(output_format="list")),
)
# the process ends with the run still open: both end it at exit
