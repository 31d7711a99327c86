"""Hostile environment variables: every MINI_MLFLOW_* setting with garbage, in process and in real
processes (import + start_run + log + end, and the CLI).

Each value is either accepted (it parses to something within the documented range, or it is empty,
which means "unset": the default) or refused where the setting is used, with one line naming the
variable and what is allowed; never a traceback, never a run folder for a refused start.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow import _config

from conftest import ROOT

pytestmark = pytest.mark.timeout(120)

GARBAGE: list[bytes] = [
    b"",
    b" ",
    b"abc",
    b"-1",
    b"0",
    b"nan",
    b"-inf",
    b"inf",
    b"1e308",
    b"1e-300",
    b"9" * 400,
    b"\x1b[31mred",
    b"[red]x[/red]",
    b"yes",
    b"0x10",
    b"unknown-word",
    b"\t\n",
    b"\xff\xfe",  # not UTF-8: POSIX allows any bytes but NUL in a variable
    b"http://user:s3cr3t-pw@[::1",
]


def _check_refusal(variable: str, allowed: str, message: str) -> None:
    assert variable in message and allowed in message, message
    assert "\n" not in message and "\x1b" not in message and len(message) < 300, message
    assert "s3cr3t-pw" not in message  # a URL's password is never echoed


def _check_value(spec: _config._Spec, value: object) -> None:
    """An accepted value lies within what the settings table documents."""
    if spec.parse is _config._positive_float:
        assert isinstance(value, float) and _config.MIN_SECONDS <= value <= _config.MAX_SECONDS
    elif spec.parse is _config._positive_int:
        assert isinstance(value, int) and value > 0
    elif spec.parse is _config._fsync:
        assert value in _config.FSYNC_POLICIES
    elif spec.parse is _config._log_level:
        assert value in _config.LOG_LEVELS
    elif spec.parse is _config._bool:
        assert isinstance(value, bool)
    elif spec.parse is _config._url:
        assert isinstance(value, str) and value.startswith(("http://", "https://")) and value.isprintable()
    else:
        assert isinstance(value, str) and value.strip()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=st.sampled_from(_config.SPECS),
    text=st.one_of(
        st.sampled_from([g.decode("utf-8", "surrogateescape") for g in GARBAGE]),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
        st.floats().map(repr),
        st.integers().map(str),
    ),
)
def test_every_setting_parses_within_range_or_names_the_variable(spec: _config._Spec, text: str) -> None:
    saved = os.environ.get(spec.env)
    os.environ[spec.env] = text
    try:
        try:
            settings_ = _config.resolve()
        except mm.InvalidInputError as exc:
            _check_refusal(spec.env, spec.allowed, str(exc))
            return
        value = getattr(settings_, spec.field)
        if text == "":
            assert value == spec.default  # empty means unset
        else:
            _check_value(spec, value)
    finally:
        if saved is None:
            os.environ.pop(spec.env, None)
        else:
            os.environ[spec.env] = saved


CHILD = r"""
import json, os, sys
import mini_mlflow as mm
variable, values = sys.argv[1], [bytes.fromhex(v) for v in json.loads(sys.argv[2])]
out = []
for i, raw in enumerate(values):
    if i:  # the first value came with the process; the others are set the way a program would
        os.environb[variable.encode()] = raw
    try:
        run = mm.start_run(run_name=f"v{i}")
    except mm.MiniMlflowError as exc:
        out.append({"refused": str(exc), "kind": type(exc).__name__})
        continue
    mm.log_metric("m", 1.0, step=i)
    mm.end_run()
    out.append({"run_dir": run.run_dir, "settings": run._settings._asdict()})
print(json.dumps(out))
"""

VARIABLES = [spec.env for spec in _config.SPECS] + [_config.ATTACH_RUN_ID]


@pytest.mark.parametrize("variable", VARIABLES)
def test_garbage_settings_in_a_real_process(tmp_path: Path, variable: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env["PYTHONPATH"] = str(ROOT)
    env[variable] = GARBAGE[1].decode()  # set in the process's own environment from its start
    values = [g.hex() for g in [GARBAGE[1], *GARBAGE]]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, variable, json.dumps(values)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    outcomes = json.loads(proc.stdout)
    spec = next((s for s in _config.SPECS if s.env == variable), None)
    allowed = spec.allowed if spec else "must be a run id"
    started = 0
    for raw, outcome in zip([GARBAGE[1], *GARBAGE], outcomes, strict=True):
        if "refused" in outcome and outcome["kind"] == "StorageError":
            # A path the OS refuses (too long, say): the OS's reason and the path, not a traceback.
            assert variable == "MINI_MLFLOW_TRACKING_DIR" and "start run failed for" in outcome["refused"]
            continue
        if "refused" in outcome:
            _check_refusal(variable, allowed, outcome["refused"])
            continue
        started += 1
        run_dir = Path(outcome["run_dir"])
        assert run_dir.resolve().is_relative_to(tmp_path.resolve()), run_dir  # inside the test's folder
        lines = (run_dir / "metrics" / "m.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["value"] == 1.0
        if spec is not None and raw != b"":
            value = outcome["settings"][spec.field]
            if spec.field != "tracking_dir":
                _check_value(spec, value)
    # A refused start left nothing behind: every run folder under the test's folder is an accepted one.
    folders = [p.parent for p in tmp_path.rglob("meta.yaml") if (p.parent / "metrics").is_dir()]
    assert len(folders) == started
    if variable == "MINI_MLFLOW_FLUSH_INTERVAL":  # the values that used to overflow a timer
        assert any("1e+308" in o.get("refused", "") or "1e308" in o.get("refused", "") for o in outcomes)


def cli(*args: str, env_extra: dict[str, bytes], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env: dict[str | bytes, str | bytes] = {
        k: v for k, v in os.environ.items() if not k.startswith(("MINI_MLFLOW_", "MLFLOW_TRACKING_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra)  # type: ignore[arg-type]
    return subprocess.run(
        [sys.executable, "-m", "mini_mlflow", *args], cwd=cwd, env=env, capture_output=True, timeout=60
    )


CLI_CASES = [
    ("MINI_MLFLOW_TRACKING_DIR", b" ", ("ls",), "no store at ' '"),
    ("MINI_MLFLOW_TRACKING_DIR", b"\x1b[31mred", ("ls",), "no store at '\\x1b[31mred'"),
    ("MINI_MLFLOW_TRACKING_DIR", b"\xff\xfe", ("experiments",), "no store at"),
    ("MINI_MLFLOW_EXPERIMENT_ID", b"../../etc", ("ls",), "MINI_MLFLOW_EXPERIMENT_ID"),
    ("MINI_MLFLOW_EXPERIMENT_NAME", b"\x1b[31mx", ("ls",), "MINI_MLFLOW_EXPERIMENT_NAME"),
    ("MINI_MLFLOW_SYNC_URL", b"http://user:s3cr3t-pw@[::1", ("sync", "--all"), "MINI_MLFLOW_SYNC_URL"),
    ("MINI_MLFLOW_FSYNC", b"\x1b[31msometimes", ("run", "--", "true"), "MINI_MLFLOW_FSYNC"),
    ("MINI_MLFLOW_FLUSH_INTERVAL", b"1e308", ("run", "--", "true"), "from 0.001 to 86400"),
    ("MINI_MLFLOW_SYNC_URL", b"ftp://x", ("run", "--", "true"), "MINI_MLFLOW_SYNC_URL"),
]


@pytest.mark.parametrize(("variable", "value", "args", "expected"), CLI_CASES)
def test_cli_names_the_bad_variable_without_a_traceback(
    store: Path, tmp_path: Path, variable: str, value: bytes, args: tuple[str, ...], expected: str
) -> None:
    run = mm.start_run(run_name="kept")
    mm.log_metric("m", 1.0)
    mm.end_run()
    before = sorted(p.relative_to(store) for p in store.rglob("*") if ".index" not in p.parts)
    env = {variable: value}
    if variable != "MINI_MLFLOW_TRACKING_DIR":
        env["MINI_MLFLOW_TRACKING_DIR"] = str(store).encode()
    proc = cli(*args, env_extra=env, cwd=tmp_path)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode in (1, 2), (proc.returncode, err)
    assert "Traceback" not in err and expected in err, err
    assert "s3cr3t-pw" not in err and "\x1b" not in err
    assert len([line for line in err.splitlines() if line.startswith(("error", "Error"))]) == 1, err
    assert sorted(p.relative_to(store) for p in store.rglob("*") if ".index" not in p.parts) == before
    assert mm.Store(store).get_run(run.run_id)["metadata"]["status"] == "FINISHED"


def test_seconds_settings_have_bounds_that_keep_timers_sane() -> None:
    for text in ("1e308", "86401", "0.0001", "nan", "-0", "1e-300"):
        with pytest.raises(mm.InvalidInputError, match="from 0.001 to 86400"):
            _config._parse(_config.SPECS[1], text, "MINI_MLFLOW_FLUSH_INTERVAL")
    assert _config._parse(_config.SPECS[1], "86400", "x") == 86400.0
    assert math.isclose(_config._parse(_config.SPECS[1], "0.001", "x"), 0.001)
