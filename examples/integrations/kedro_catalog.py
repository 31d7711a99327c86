"""Kedro: the mini_mlflow datasets in a catalog, a pipeline run with a ThreadRunner into one run.

In a Kedro project the hook does the binding (settings.py: HOOKS = (MiniMlflowHook(...),)) and the
same entries live in conf/base/catalog.yml.
"""

import pandas as pd
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline, node
from kedro.runner import ThreadRunner

from mini_mlflow import Run
from mini_mlflow.integrations.kedro import bind_run

DATASETS = "mini_mlflow.integrations.kedro."
catalog = DataCatalog.from_config(
    {
        "table": {"type": DATASETS + "MiniMlflowDataFrameDataset", "artifact_path": "table.csv"},
        "model": {"type": DATASETS + "MiniMlflowModelDataset"},
        "metrics": {"type": DATASETS + "MiniMlflowMetricsDataset", "prefix": "eval"},
        "results": {"type": DATASETS + "MiniMlflowResultDataset"},
    }
)


def fit(table: pd.DataFrame) -> dict:
    return {"slope": float((table["y"] / table["x"]).mean())}


def evaluate(model: dict, table: pd.DataFrame) -> tuple[dict, dict]:
    error = float(((table["x"] * model["slope"] - table["y"]) ** 2).mean())
    return {"mse": error}, {"slope": model["slope"]}


pipeline = Pipeline(
    [
        node(lambda: pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.1, 5.9]}), None, "table", name="load"),
        node(fit, "table", "model", name="fit"),
        node(evaluate, ["model", "table"], ["metrics", "results"], name="evaluate"),
    ]
)

with Run(name="kedro-example") as run:
    bind_run(run)  # what MiniMlflowHook does when a pipeline starts
    ThreadRunner().run(pipeline, catalog)
    print(f"run {run.run_id}: {catalog.load('metrics')} {catalog.load('results')}")
    bind_run(None)
