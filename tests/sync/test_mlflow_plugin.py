"""Real MLflow on the native store through the ``mini-mlflow:`` tracking-store plugin: its fluent API and
client write what mini_mlflow reads exactly, its client reads exactly what mini_mlflow wrote, its server
answers the UI's calls, and sklearn autologging (a model flavor included) logs into the store.

MLflow runs in child processes (``mlflow`` finds the plugin through the package's entry points), so each
test also shows that a plain ``import mlflow`` picks the scheme up."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow.read._search import search_runs

from .sync_helpers import ROOT, MlflowServer, clean_env

pytest.importorskip("mlflow")
NAN, INF = float("nan"), float("inf")


def run_mlflow(code: str, cwd: Path) -> Any:
    """Run MLflow code in a child process; it prints one JSON document, returned here."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=clean_env(PYTHONPATH=str(ROOT), MPLBACKEND="Agg"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_mlflow_writes_through_the_plugin_and_mini_mlflow_reads_it_exactly(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    ids = run_mlflow(
        f"""
        import json, math
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag
        mlflow.set_tracking_uri("mini-mlflow:{root}")
        exp = mlflow.set_experiment("plug")
        with mlflow.start_run(run_name="fluent") as run:
            mlflow.log_param("lr", 0.1)
            mlflow.log_params({{"opt": "adam", "layers": [1, 2]}})
            for i, v in enumerate([1.0, math.nan, math.inf, -math.inf, 0.5]):
                mlflow.log_metric("m", v, step=i, timestamp=1000 + i)
            mlflow.set_tag("team", "x")
            mlflow.log_text("hi", "notes/a.txt")
            with mlflow.start_run(run_name="child", nested=True) as child:
                mlflow.log_metric("c", 2.0)
        try:
            with mlflow.start_run(run_name="fails"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        client = MlflowClient()
        batch = client.create_run(exp.experiment_id, run_name="batch")
        metrics = [Metric("b", float(i), 5000 + i, i) for i in range(1500)]
        client.log_batch(batch.info.run_id, metrics=metrics, params=[Param("p", "v")], tags=[RunTag("t", "u")])
        client.set_terminated(batch.info.run_id, "KILLED")
        print(json.dumps({{"run": run.info.run_id, "child": child.info.run_id, "batch": batch.info.run_id}}))
        """,
        tmp_path,
    )
    store = mm.Store(root)
    found = {r.run_name: r for r in search_runs(root=root, run_view="all")}
    assert {name: r.status for name, r in found.items()} == {
        "fluent": "FINISHED",
        "child": "FINISHED",
        "fails": "FAILED",
        "batch": "KILLED",
    }
    fluent = store.get_run(ids["run"])
    assert fluent["params"] == {"lr": "0.1", "opt": "adam", "layers": "[1, 2]"}  # MLflow sends text
    assert fluent["tags"]["team"] == "x" and fluent["tags"]["mlflow.runName"] == "fluent"
    points = store.get_metric_history(ids["run"], "m").points()
    expected = [(0, 1.0, 1000), (1, NAN, 1001), (2, INF, 1002), (3, -INF, 1003), (4, 0.5, 1004)]
    assert len(points) == len(expected)
    for p, (step, value, stamp) in zip(points, expected, strict=True):
        assert p.step == step and same(p.value, value) and p.timestamp == stamp
    assert (Path(store.find_run(ids["run"])) / "artifacts" / "notes" / "a.txt").read_text() == "hi"
    assert found["child"].parent_run_id == ids["run"]
    batch = store.get_metric_history(ids["batch"], "b")
    assert batch.steps == list(range(1500)) and batch.values == [float(i) for i in range(1500)]
    assert batch.timestamps == [5000 + i for i in range(1500)]
    assert store.get_run(ids["batch"])["params"] == {"p": "v"}
    done = subprocess.run(
        [sys.executable, "-m", "mini_mlflow", "--root", str(root), "ls", "-e", "plug", "--json"],
        env=clean_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert {r["run_name"] for r in json.loads(done.stdout)["runs"]} == {"fluent", "child", "fails", "batch"}


def _write_store_with_mini(root: Path, tmp_path: Path) -> dict[str, str]:
    """A store written by mini_mlflow: every status (a crashed writer too), typed params, NaN/±inf."""
    mm.set_tracking_dir(root)
    try:
        mm.set_experiment("ours")
        ids = {}
        with mm.start_run(run_name="done") as run:
            mm.log_params({"lr": 0.01, "flag": True, "layers": [1, 2], "none": None, "s": "text"})
            mm.set_tag("team", "y")
            for i, v in enumerate([0.5, NAN, INF, -INF]):
                mm.log_metric("m", v, step=i, timestamp=2000 + i)
            (tmp_path / "f.txt").write_text("file")
            mm.log_artifact(tmp_path / "f.txt", "sub/dir")
            ids["done"] = run.run_id
        for status in ("FAILED", "KILLED"):
            with mm.start_run(run_name=status.lower()) as run:
                mm.log_metric("m", 1.0, step=0, timestamp=3000)
                mm.end_run(status)
            ids[status.lower()] = run.run_id
    finally:
        mm.set_tracking_dir(None)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time, mini_mlflow as mm\nr = mm.Run(name='crashed', experiment_id=1)\n"
            "r.log_metric('m', 7.0, step=0, timestamp=4000)\nr.flush()\nprint(r.run_id, flush=True)\ntime.sleep(60)",
        ],
        env=clean_env(PYTHONPATH=str(ROOT), MINI_MLFLOW_TRACKING_DIR=str(root)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    ids["crashed"] = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)  # a writer that died: RUNNING on disk, KILLED as MLflow sees it
    child.wait()
    return ids


def test_mlflow_reads_a_store_written_by_mini_mlflow_exactly(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    ids = _write_store_with_mini(root, tmp_path)
    seen = run_mlflow(
        f"""
        import json
        from mlflow import MlflowClient
        from mlflow.entities import ViewType
        client = MlflowClient(tracking_uri="mini-mlflow://{root}")
        exp = client.get_experiment_by_name("ours")
        out = {{}}
        def files(run_id, path=None):
            found = []
            for f in client.list_artifacts(run_id, path):
                found += files(run_id, f.path) if f.is_dir else [f.path]
            return found
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
            rid = run.info.run_id
            out[rid] = {{
                "status": run.info.status,
                "name": run.info.run_name,
                "params": run.data.params,
                "tags": {{k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}},
                "metrics": {{k: [[m.step, repr(m.value), m.timestamp] for m in client.get_metric_history(rid, k)]
                            for k in run.data.metrics}},
                "artifacts": files(rid),
            }}
        print(json.dumps(out))
        """,
        tmp_path,
    )
    assert seen[ids["done"]] == {
        "status": "FINISHED",
        "name": "done",
        "params": {"lr": "0.01", "flag": "True", "layers": "[1, 2]", "none": "None", "s": "text"},
        "tags": {"team": "y"},
        "metrics": {"m": [[0, "0.5", 2000], [1, "nan", 2001], [2, "inf", 2002], [3, "-inf", 2003]]},
        "artifacts": ["sub/dir/f.txt"],
    }
    statuses = {seen[ids[k]]["name"]: seen[ids[k]]["status"] for k in ("failed", "killed", "crashed")}
    assert statuses == {"failed": "FAILED", "killed": "KILLED", "crashed": "KILLED"}
    assert seen[ids["crashed"]]["metrics"] == {"m": [[0, "7.0", 4000]]}


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_mlflow_server_on_the_plugin_answers_the_ui_calls_exactly(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    ids = _write_store_with_mini(root, tmp_path)
    server = MlflowServer(tmp_path / "server", backend=f"mini-mlflow:{root}")
    server.start()
    live = None
    try:
        ajax = f"{server.url}/ajax-api/2.0/mlflow"
        status, body = _post(f"{ajax}/experiments/search", {"max_results": 100})
        assert status == 200
        assert {e["name"] for e in body["experiments"]} == {"Default", "ours"}
        exp_id = next(e["experiment_id"] for e in body["experiments"] if e["name"] == "ours")
        status, body = _post(f"{ajax}/runs/search", {"experiment_ids": [exp_id], "max_results": 100})
        assert status == 200
        runs = {r["info"]["run_name"]: r for r in body["runs"]}
        assert set(runs) == {"done", "failed", "killed", "crashed"}
        assert runs["crashed"]["info"]["status"] == "KILLED"  # RUNNING on disk, its writer gone
        done = runs["done"]
        assert done["info"]["status"] == "FINISHED" and done["info"]["run_id"] == ids["done"]
        assert {p["key"]: p["value"] for p in done["data"]["params"]}["flag"] == "True"
        assert {m["key"]: (m["value"], m["step"]) for m in done["data"]["metrics"]} == {"m": ("-Infinity", 3)}
        status, body = _get(
            f"{ajax}/metrics/get-history-bulk-interval?run_ids={ids['done']}&metric_key=m&max_results=320"
        )
        assert status == 200
        assert [(m["step"], m["value"], m["timestamp"]) for m in body["metrics"]] == [
            (0, 0.5, 2000),
            (1, "NaN", 2001),
            (2, "Infinity", 2002),
            (3, "-Infinity", 2003),
        ]
        status, _ = _get(f"{ajax}/registered-models/search?max_results=10")
        assert status == 200
        status, body = _post(f"{server.url}/ajax-api/3.0/mlflow/traces/search", {"locations": []})
        assert status == 200 and body.get("traces", []) == []
        with urllib.request.urlopen(
            f"{server.url}/get-artifact?path=sub/dir/f.txt&run_uuid={ids['done']}"
        ) as a:
            assert a.read() == b"file"
        # What the store does not hold is a clear error, not a 500 with a traceback.
        status, body = _post(f"{server.url}/api/2.0/mlflow/registered-models/create", {"name": "m"})
        assert 400 <= status < 500 or status == 501, (status, body)
        assert "not supported by the mini-mlflow store" in body["message"]
        # A run being written right now: RUNNING, and its points arrive while it logs.
        live = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time, mini_mlflow as mm\nr = mm.Run(name='live', experiment_id="
                f"{exp_id})\nprint(r.run_id, flush=True)\nfor i in range(100000):\n    r.log_metric('x', i, step=i)\n"
                "    if i % 100 == 0: r.flush(); sys.stdout.write(f'{i}\\n'); sys.stdout.flush()\n    time.sleep(0.001)",
            ],
            env=clean_env(PYTHONPATH=str(ROOT), MINI_MLFLOW_TRACKING_DIR=str(root)),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert live.stdout is not None
        live_id = live.stdout.readline().strip()
        seen_counts = []
        for _ in range(3):
            flushed = int(live.stdout.readline())  # the child flushed up to this step
            status, body = _get(f"{ajax}/metrics/get-history?run_id={live_id}&metric_key=x")
            assert status == 200
            seen_counts.append(len(body["metrics"]))
            assert seen_counts[-1] >= flushed + 1  # everything flushed is served at once
        assert seen_counts == sorted(seen_counts)
        _, body = _get(f"{ajax}/runs/get?run_id={live_id}")
        assert body["run"]["info"]["status"] == "RUNNING"
    finally:
        if live is not None:
            live.kill()
            live.wait()
        server.kill()


def test_sklearn_autolog_logs_params_metrics_and_the_model_into_the_native_store(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    seen = run_mlflow(
        f"""
        import json
        import mlflow, numpy as np
        from sklearn.linear_model import LinearRegression
        mlflow.set_tracking_uri("mini-mlflow:{root}")
        mlflow.sklearn.autolog()
        X = np.arange(20, dtype=float).reshape(10, 2)
        y = X @ np.array([1.0, 2.0]) + 1
        with mlflow.start_run(run_name="sk") as run:
            LinearRegression().fit(X, y)
        (model,) = mlflow.search_logged_models(output_format="list")
        loaded = mlflow.sklearn.load_model(model.model_uri)
        print(json.dumps({{"run": run.info.run_id, "model": model.model_id,
                          "prediction": [float(v) for v in loaded.predict(X[:2])]}}))
        """,
        tmp_path,
    )
    assert seen["prediction"] == pytest.approx([3.0, 9.0])  # y = x1 + 2 x2 + 1
    got = mm.Store(root).get_run(seen["run"])
    assert got["params"]["fit_intercept"] == "True"
    assert got["metrics"]["training_r2_score"] == pytest.approx(1.0)
    model_dir = Path(mm.Store(root).find_run(seen["run"])) / "artifacts" / "models" / seen["model"]
    assert (model_dir / "MLmodel").is_file() and (model_dir / "model.pkl").is_file()
    assert os.listdir(root / "models") == [".lock", f"{seen['model']}.json"] or set(
        os.listdir(root / "models")
    ) == {".lock", f"{seen['model']}.json"}


def test_optuna_integrations_mlflow_callback_logs_each_trial_into_the_native_store(tmp_path: Path) -> None:
    pytest.importorskip("optuna_integration")
    root = tmp_path / "mlruns"
    seen = run_mlflow(
        f"""
        import json
        import optuna
        from optuna_integration.mlflow import MLflowCallback
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        callback = MLflowCallback(tracking_uri="mini-mlflow:{root}", metric_name="loss")
        study = optuna.create_study(study_name="tuned", sampler=optuna.samplers.RandomSampler(seed=1))
        study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 2) ** 2, n_trials=8, callbacks=[callback])
        print(json.dumps([{{"x": t.params["x"], "loss": t.value}} for t in study.trials]))
        """,
        tmp_path,
    )
    runs = search_runs(root=root)
    assert len(runs) == 8 and {r.status for r in runs} == {"FINISHED"}
    logged = sorted((float(r.params["x"]), r.metrics["loss"]) for r in runs)
    assert logged == sorted((t["x"], t["loss"]) for t in seen)  # every trial, exactly, one run each


def test_mlflow_pages_through_a_search_in_order(tmp_path: Path) -> None:
    # MLflow's client and its fluent search_runs page with tokens: each page is the next slice of the
    # one ordered answer, the last page has no token, a filter pages the same way.
    root = tmp_path / "mlruns"
    mm.set_tracking_dir(root)
    try:
        for i in range(7):
            with mm.start_run(run_name=f"r{i}", experiment_id="0"):
                mm.log_metric("acc", (i * 3) % 7 / 10)
                mm.log_param("parity", i % 2)
    finally:
        mm.set_tracking_dir(None)
    got = run_mlflow(
        f"""
        import json
        import mlflow
        from mlflow import MlflowClient
        mlflow.set_tracking_uri("mini-mlflow:{root}")
        client = MlflowClient()
        def pages(**kw):
            out, token, sizes = [], None, []
            while True:
                page = client.search_runs(["0"], max_results=3, page_token=token, **kw)
                out += [r.info.run_name for r in page]
                sizes.append(len(page))
                token = page.token
                if not token:
                    return out, sizes
        ordered = pages(order_by=["metrics.acc DESC"])
        odd = pages(filter_string="params.parity = '1'", order_by=["metrics.acc ASC"])
        fluent = list(mlflow.search_runs(["0"], order_by=["metrics.acc DESC"])["tags.mlflow.runName"])
        print(json.dumps({{"ordered": ordered, "odd": odd, "fluent": fluent}}))
        """,
        tmp_path,
    )
    by_acc = sorted(range(7), key=lambda i: -((i * 3) % 7))
    assert got["ordered"] == [[f"r{i}" for i in by_acc], [3, 3, 1]]
    odd = sorted((i for i in range(7) if i % 2), key=lambda i: (i * 3) % 7)
    assert got["odd"] == [[f"r{i}" for i in odd], [3]]
    assert got["fluent"] == [f"r{i}" for i in by_acc]
