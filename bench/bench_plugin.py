"""MLflow's own logging calls on the ``mini-mlflow:`` store against its SQLite store and its file store.

Each store is measured in a fresh process (one after another, then again in the reverse order; the
median of the two rounds is reported): ``mlflow.log_metric`` per call inside one run, and one
``MlflowClient.log_batch`` of 1,000 points. The time to read the points back with MLflow's client is
shown too. Ratios against the mini-mlflow: store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    mlflow.set_tracking_uri(sys.argv[1])
    n = int(sys.argv[2])
    mlflow.set_experiment("bench")
    with mlflow.start_run() as run:
        mlflow.log_metric("warm", 0.0)
        t0 = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        per_call = (time.perf_counter() - t0) / n
        client = MlflowClient()
        points = [Metric("batch", float(i), 1_700_000_000_000 + i, i) for i in range(1000)]
        t0 = time.perf_counter()
        client.log_batch(run.info.run_id, metrics=points)
        batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    history = client.get_metric_history(run.info.run_id, "loss")
    read = time.perf_counter() - t0
    assert len(history) == n, len(history)
    print(json.dumps({"per_call": per_call, "batch": batch, "read": read}))
    """
)


def measure(uri: str, n: int, workdir: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MINI_MLFLOW_"))}
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, uri, str(n)], cwd=workdir, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{uri}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 200 if args.quick else 2000
    import mlflow

    results: dict[str, list[dict[str, float]]] = {}
    names = ["mini-mlflow:", "sqlite:", "file:"]
    for order in (names, list(reversed(names))):
        for name in order:
            workdir = tempfile.mkdtemp(prefix="bench-plugin-")
            uri = {
                "mini-mlflow:": f"mini-mlflow:{workdir}/mlruns",
                "sqlite:": f"sqlite:///{workdir}/mlflow.db",
                "file:": f"file://{workdir}/mlruns",
            }[name]
            results.setdefault(name, []).append(measure(uri, n, workdir))
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in results.items()}
    ours = med["mini-mlflow:"]
    print(f"## MLflow's own API on the `mini-mlflow:` store (MLflow {mlflow.__version__})\n")
    print(
        f"`mlflow.log_metric` {n:,} times in one run, then one `MlflowClient.log_batch` of 1,000 points, "
        "then "
        "`get_metric_history` of the first metric; each store in a fresh process, two rounds in opposite "
        "orders, medians. MLflow's own per-call overhead (validation, entities) is in every row.\n"
    )
    print("| store | `log_metric` per call | vs mini-mlflow: | `log_batch` 1,000 points | history read |")
    print("|---|---|---|---|---|")
    labels = {
        "mini-mlflow:": "`mini-mlflow:` (this plugin: buffered, crash-safe)",
        "sqlite:": "`sqlite:` (MLflow's default)",
        "file:": "`file:` (MLflow's deprecated file store)",
    }
    for name in names:
        m = med[name]
        print(
            f"| {labels[name]} | {m['per_call'] * 1e6:,.0f} µs | {m['per_call'] / ours['per_call']:.1f}× | "
            f"{m['batch'] * 1e3:,.1f} ms | {m['read'] * 1e3:,.1f} ms |"
        )


if __name__ == "__main__":
    main()
