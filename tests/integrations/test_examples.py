"""Each example in examples/integrations/ runs and records what the README says; the README names them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mini_mlflow as mm

from .helpers import need, run_python
from conftest import ROOT

EXAMPLES = ROOT / "examples" / "integrations"

#: example → (tier, frameworks it imports, command-line arguments, experiment, a metric its runs hold)
CASES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str, str]] = {
    "optuna_study.py": ("default", ("optuna",), (), "optuna-example", "value"),
    "hydra_app.py": ("default", ("hydra",), ("-m", "lr=0.01,0.1"), "hydra-example", "loss"),
    "kedro_catalog.py": ("default", ("kedro", "pandas"), (), "Default", "eval/mse"),
    "xgboost_train.py": ("default", ("xgboost",), (), "boosting-example", "valid-rmse"),
    "lightgbm_train.py": ("default", ("lightgbm",), (), "Default", "valid_0-l2"),
    "system_metrics.py": ("default", (), (), "Default", "system/system_memory_usage_megabytes"),
    "lightning_boring.py": ("torch", ("lightning",), (), "lightning-example", "train_loss"),
    "transformers_tiny.py": ("torch", ("transformers", "accelerate"), (), "transformers-example", "loss"),
    "keras_fit.py": ("torch", ("keras", "torch"), (), "keras-example", "val_loss"),
}


def run_example(name: str, tmp_path: Path) -> None:
    """Run one example in a fresh folder and check that its runs hold the metric they should."""
    tier, frameworks, args, experiment, metric = CASES[name]
    for framework in frameworks:
        need(framework, tier=tier)
    root = tmp_path / "mlruns"
    run_python(
        [str(EXAMPLES / name), *args],
        tmp_path,
        MINI_MLFLOW_TRACKING_DIR=str(root),
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        KERAS_BACKEND="torch",
    )
    store = mm.Store(root)
    ids = {e["name"]: e["experiment_id"] for e in store.list_experiments()}
    runs = [store.get_run(r) for r in store.list_runs(ids[experiment])]
    assert runs and all(r["metadata"]["status"] == "FINISHED" for r in runs)
    assert any(metric in r["metrics"] for r in runs), [sorted(r["metrics"]) for r in runs]


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[0] == "default"])
def test_a_default_tier_example_runs(name: str, tmp_path: Path) -> None:
    run_example(name, tmp_path)


def test_every_example_is_tested_and_named_in_the_readme() -> None:
    on_disk = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert on_disk == sorted(CASES)
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"examples/integrations/([\w.]+\.py)", readme))
    assert named == set(CASES)
