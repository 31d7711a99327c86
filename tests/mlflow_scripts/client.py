"""The tracking client: an experiment with tags, runs created, logged in batches, terminated."""

import time

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

client = MlflowClient()
exp_id = client.create_experiment("client-api", tags={"team": "research"})
print("experiment tag", client.get_experiment(exp_id).tags.get("team"))
now = int(time.time() * 1000)
ok = client.create_run(exp_id, run_name="batch-ok")
client.log_batch(
    ok.info.run_id,
    metrics=[Metric("loss", 1.0 / (i + 1), now + i, i) for i in range(5)],
    params=[Param("batch_size", "32"), Param("model", "cnn")],
    tags=[RunTag("stage", "dev")],
)
client.log_metric(ok.info.run_id, "acc", 0.75, step=4)
client.log_param(ok.info.run_id, "seed", 7)
client.set_tag(ok.info.run_id, "reviewed", "yes")
client.set_terminated(ok.info.run_id)
bad = client.create_run(exp_id, run_name="batch-failed")
client.log_metric(bad.info.run_id, "loss", 9.0)
client.set_terminated(bad.info.run_id, status="FAILED")
print("statuses", sorted((r.info.run_name, r.info.status) for r in client.search_runs([exp_id])))
print("history", [(m.step, m.value) for m in client.get_metric_history(ok.info.run_id, "loss")])
client.delete_run(bad.info.run_id)
print("after delete", [r.info.run_name for r in client.search_runs([exp_id])])
