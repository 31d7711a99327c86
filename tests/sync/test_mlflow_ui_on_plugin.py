"""MLflow's own web UI, served by ``mlflow server --backend-store-uri mini-mlflow:...``, in a real headless
Chromium: the runs page lists the store's runs and a run's chart is drawn, with no failed request.

``make screenshots`` keeps the run page's picture in docs/ (``MINI_MLFLOW_SCREENSHOT_DIR``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow.store._experiments import get_or_create_experiment

from .sync_helpers import MlflowServer
from ui_support import chromium

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def test_mlflows_ui_shows_the_native_store_runs_and_charts(tmp_path: Path, browser: Any) -> None:
    root = tmp_path / "mlruns"
    exp = get_or_create_experiment(str(root), "vision")
    ids = {}
    for name, rate in (("alpha", 1.0), ("beta", 0.5)):
        with mm.Run(runs_dir=root, experiment_id=exp, name=name) as run:
            run.log_param("rate", rate)
            for step in range(200):
                run.log_metric("loss", rate / (step + 1), step=step)
        ids[name] = run.run_id
    server = MlflowServer(tmp_path / "server", backend=f"mini-mlflow:{root}")
    server.start()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    failed: list[tuple[int, str]] = []
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    try:
        page.goto(f"{server.url}/#/experiments/{exp}/runs")
        page.get_by_text("alpha", exact=True).first.wait_for(timeout=60_000)
        assert page.get_by_text("beta", exact=True).first.is_visible()
        page.goto(f"{server.url}/#/experiments/{exp}/runs/{ids['beta']}/model-metrics")
        page.get_by_text("beta (loss)").wait_for(timeout=60_000)  # the chart's legend: the chart is there
        # and its line: plotly draws each trace as an SVG path with a long "d" of 200 points
        page.wait_for_function(
            "[...document.querySelectorAll('svg path')].some(p => (p.getAttribute('d') || '').length > 1000)",
            timeout=60_000,
        )
        shots = Path(os.environ.get("MINI_MLFLOW_SCREENSHOT_DIR") or tmp_path)
        page.screenshot(path=str(shots / "mlflow-ui-on-mini-store.png"))
    finally:
        page.close()
        server.kill()
    # MLflow answers its current-user call with 404 when no auth app runs (its own default): nothing else
    # failed, so no banner: every call the UI made was served by the plugin.
    assert [f for f in failed if not f[1].endswith("/users/current")] == []
