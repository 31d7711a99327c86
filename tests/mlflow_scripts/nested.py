"""Nested runs: a parent with three children (MLflow's docs: hyperparameter search with nested runs)."""

import mlflow

mlflow.set_experiment("nested")
with mlflow.start_run(run_name="parent") as parent:
    mlflow.log_param("search", "grid")
    for i, alpha in enumerate([0.1, 0.5, 1.0]):
        with mlflow.start_run(run_name=f"child-{i}", nested=True) as child:
            mlflow.log_param("alpha", alpha)
            mlflow.log_metric("rmse", 1.0 - alpha / 2)
            print("child parent", child.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    mlflow.log_metric("best_rmse", 0.5)

children = mlflow.search_runs(
    filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", order_by=["params.alpha ASC"]
)
print("children", list(children["tags.mlflow.runName"]))
print("parent of child", mlflow.get_parent_run(children["run_id"][0]).info.run_name)
