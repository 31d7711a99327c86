"""The settings table: arguments > MINI_MLFLOW_* > defaults, clear refusals, warnings for typos."""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import pytest

import mini_mlflow as mm
from mini_mlflow import _config


def test_defaults_environment_and_arguments(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _config.resolve().tracking_dir == str(store)  # set_tracking_dir (the fixture's) beats the rest
    mm.set_tracking_dir(None)
    defaults = _config.resolve()
    assert defaults == mm.Settings()
    assert defaults.fsync == "end" and defaults.sync_url is None and defaults.offline is False
    monkeypatch.setenv("MINI_MLFLOW_FLUSH_INTERVAL", "0.5")
    monkeypatch.setenv("MINI_MLFLOW_FSYNC", "Flush")
    monkeypatch.setenv("MINI_MLFLOW_OFFLINE", "yes")
    monkeypatch.setenv("MINI_MLFLOW_SYNC_URL", "https://mlflow.example.com/")
    monkeypatch.setenv("MINI_MLFLOW_LOG_LEVEL", "debug")
    from_env = _config.resolve()
    assert from_env.flush_interval == 0.5 and from_env.fsync == "flush" and from_env.offline is True
    assert from_env.sync_url == "https://mlflow.example.com" and from_env.log_level == "DEBUG"
    given = _config.resolve(flush_interval=2, offline=False)  # an argument beats the variable
    assert given.flush_interval == 2.0 and given.offline is False


BAD_VALUES = [
    ("MINI_MLFLOW_FLUSH_INTERVAL", "0", "a number of seconds > 0"),
    ("MINI_MLFLOW_FLUSH_INTERVAL", "soon", "a number of seconds > 0"),
    ("MINI_MLFLOW_MAX_BUFFER", "-3", "a whole number of points > 0"),
    ("MINI_MLFLOW_FSYNC", "sometimes", "one of never, end, flush"),
    ("MINI_MLFLOW_HEARTBEAT", "nan", "a number of seconds > 0"),
    ("MINI_MLFLOW_SYNC_URL", "ftp://x", "an http:// or https:// URL"),
    ("MINI_MLFLOW_SYNC_INTERVAL", "inf", "a number of seconds > 0"),
    ("MINI_MLFLOW_OFFLINE", "maybe", "true or false"),
    ("MINI_MLFLOW_LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR"),
]


@pytest.mark.parametrize(("variable", "value", "allowed"), BAD_VALUES)
def test_invalid_values_fail_at_start_with_the_variable_and_what_is_allowed(
    store: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(variable, value)
    for start in (mm.start_run, lambda: mm.init("x"), lambda: mm.get_or_create_ctx(f"c-{uuid.uuid4()}")):
        with pytest.raises(mm.InvalidInputError) as info:
            start()
        assert variable in str(info.value) and allowed in str(info.value)
    assert mm.active_run() is None
    assert not list(store.glob("*/*/meta.yaml"))  # nothing was created


def test_invalid_argument_names_the_argument(store: Path) -> None:
    with pytest.raises(mm.InvalidInputError, match="argument flush_interval.*seconds > 0"):
        _config.resolve(flush_interval=-1)
    with pytest.raises(mm.InvalidInputError, match="unknown setting"):
        _config.resolve(flush_every=1)


def test_unknown_variable_warns_once_with_the_closest_name(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "MINI_MLFLOW_FLUSH_INTERVALL"
    _config._warned_unknown.discard(name)
    monkeypatch.setenv(name, "1")
    with pytest.warns(
        UserWarning, match="MINI_MLFLOW_FLUSH_INTERVALL; did you mean MINI_MLFLOW_FLUSH_INTERVAL"
    ):
        _config.resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _config.resolve()  # the same cause again: silent
    assert (name, "MINI_MLFLOW_FLUSH_INTERVAL") in _config.unknown_variables()


def test_the_variables_mini_mlflow_run_sets_are_known(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MINI_MLFLOW_RUN_ID",
        "MINI_MLFLOW_PARAMS",
        "MINI_MLFLOW_INPUTS",
        "MINI_MLFLOW_SECRETS_FILES",
    ):
        monkeypatch.setenv(name, "x")
    assert _config.unknown_variables() == []


def test_one_table_covers_every_setting() -> None:
    assert [spec.field for spec in _config.SPECS] == list(mm.Settings._fields)
    table = _config.settings_table_markdown()
    for spec in _config.SPECS:
        assert f"| `{spec.field}` | `{spec.env}` |" in table
        assert spec.meaning and spec.allowed in table
    assert len({spec.env for spec in _config.SPECS}) == len(_config.SPECS)


def test_explain_reports_sources_and_problems_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in list(os.environ) if n.startswith("MINI_MLFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MINI_MLFLOW_FSYNC", "sometimes")
    monkeypatch.setenv("MINI_MLFLOW_HEARTBEAT", "3")
    rows = {row.field: row for row in _config.explain(tracking_dir="/data/store")}
    assert rows["tracking_dir"].source == "argument" and rows["tracking_dir"].value == "/data/store"
    assert rows["heartbeat_interval"].source == "environment" and rows["heartbeat_interval"].value == 3.0
    assert rows["flush_interval"].source == "default" and rows["flush_interval"].problem is None
    assert rows["fsync"].value == "end" and "MINI_MLFLOW_FSYNC" in str(rows["fsync"].problem)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bob:hunter2@example.com/mlflow", "https://bob:****@example.com/mlflow"),
        ("https://tok3n@example.com", "https://****@example.com"),
        ("http://h:5000/x?token=abc&b=1", "http://h:5000/x?token=****&b=****"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        (None, None),
    ],
)
def test_mask_url(url: str | None, shown: str | None) -> None:
    assert _config.mask_url(url) == shown


def test_attached_run_is_claimed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = uuid.uuid4().hex
    monkeypatch.setenv("MINI_MLFLOW_RUN_ID", run_id)
    assert _config.claim_attached_run_id() == run_id
    assert _config.claim_attached_run_id() is None
    monkeypatch.setenv("MINI_MLFLOW_PARAMS", "[1]")
    with pytest.raises(mm.InvalidInputError, match="MINI_MLFLOW_PARAMS: must be a JSON object"):
        _config.injected("MINI_MLFLOW_PARAMS", run_id)
    assert _config.injected("MINI_MLFLOW_PARAMS", "another-run") == {}
