"""A sweep: several runs, then search_runs to pick the best one and record it in a summary run."""

import mlflow

mlflow.set_experiment("sweep")
for lr in [0.1, 0.03, 0.01, 0.003]:
    for optimizer in ["sgd", "adam"]:
        with mlflow.start_run(run_name=f"{optimizer}-{lr}"):
            mlflow.log_params({"lr": lr, "optimizer": optimizer})
            loss = abs(lr - 0.01) * 10 + (0.1 if optimizer == "sgd" else 0.0)
            for step in range(3):
                mlflow.log_metric("loss", loss + (2 - step) * 0.05, step=step)

runs = mlflow.search_runs(order_by=["metrics.loss ASC"], max_results=3)
print("top3", list(runs["tags.mlflow.runName"]))
print("best loss", round(float(runs["metrics.loss"].iloc[0]), 6))
adam = mlflow.search_runs(
    filter_string="params.optimizer = 'adam' and metrics.loss < 0.5", output_format="list"
)
print("adam under 0.5", sorted(r.info.run_name for r in adam))
with mlflow.start_run(run_name="summary"):
    mlflow.set_tag("best_run", runs["tags.mlflow.runName"].iloc[0])
    mlflow.log_metric("best_loss", float(runs["metrics.loss"].iloc[0]))
