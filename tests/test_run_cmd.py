"""`mini-mlflow run` and `mini-mlflow doctor` through real processes: exit codes, signals, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import mini_mlflow as mm
from mini_mlflow.cli._run_cmds import _Redactor, parse_param_value

from conftest import ROOT, python_child, read_jsonl, wait_until

SECRET = "sup3r-s3cret-value-42"


def cli(root: Path, *args: str, cwd: Path, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """Start ``python -m mini_mlflow --root <root> <args>`` as a real process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", "--root", str(root), *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: Any, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def run_dirs(root: Path) -> list[Path]:
    return [p for p in root.glob("*/*") if p.is_dir() and (p / "meta.yaml").exists()]


def meta(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((run_dir / "meta.yaml").read_text())


def tags(run_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(run_dir / "tags").as_posix()[: -len(".json")]: json.loads(p.read_text())
        for p in (run_dir / "tags").rglob("*.json")
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("0.1", 0.1),
        ("-2e3", -2000.0),
        ("true", True),
        ("False", False),
        ("[1,2]", [1, 2]),
        ('{"a": [1, "x"]}', {"a": [1, "x"]}),
        ("null", None),
        ("hello", "hello"),
        ("two words", "two words"),
        ('"5"', "5"),
        ("007", "007"),
        ("NaN", "NaN"),
        ("[1, 2", "[1, 2"),
        ("", ""),
    ],
)
def test_param_values_are_typed_from_their_text(text: str, value: object) -> None:
    parsed = parse_param_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_success_records_everything_and_the_child_attaches(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    script(
        tmp_path,
        "train.py",
        """
        import sys
        import mini_mlflow as mm
        with mm.start_run() as run:
            mm.log_metric("loss", 0.5, step=0, timestamp=1000)
            mm.log_metric("loss", 0.25, step=1, timestamp=2000)
            print("hello out", sys.argv[1:])
            print("hello err", file=sys.stderr)
        """,
    )
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    params = ["-p", "lr=0.1", "-p", "n=5", "-p", "flag=true", "-p", "layers=[1,2]", "-p", "act=relu"]
    code, out, err = finish(
        cli(root, "run", "-e", "demo", "-n", "first", *params, "train.py", "--x", "1", cwd=tmp_path)
    )
    assert code == 0, err
    assert "hello out ['--x', '1']" in out and "hello err" in err  # shown live on our own streams
    (run_dir,) = run_dirs(root)  # the child's start_run() joined the run; no second one
    assert run_dir.parent.name == "1" and meta(run_dir)["run_name"] == "first"
    assert meta(run_dir)["status"] == "FINISHED"
    assert meta(run_dir)["source"] == {"name": "train.py", "git_commit": commit}
    assert (run_dir / "artifacts" / "stdout.txt").read_text() == "hello out ['--x', '1']\n"
    assert (run_dir / "artifacts" / "stderr.txt").read_text() == "hello err\n"
    assert {p.name: p.read_text() for p in (run_dir / "params").iterdir()} == {
        "lr.json": "0.1\n",
        "n.json": "5\n",
        "flag.json": "true\n",
        "layers.json": "[1, 2]\n",
        "act.json": '"relu"\n',
    }
    recorded = tags(run_dir)
    assert recorded["mini_mlflow.command"] == "train.py --x 1"
    assert recorded["mini_mlflow.cwd"] == str(tmp_path)
    assert recorded["mini_mlflow.git.commit"] == commit == recorded["mlflow.source.git.commit"]
    assert recorded["mini_mlflow.git.dirty"] == "false"
    assert recorded["mini_mlflow.python"] == ".".join(map(str, sys.version_info[:3]))
    assert recorded["mini_mlflow.host"] and recorded["mini_mlflow.exit_code"] == "0"
    # The metrics are what the fluent API writes in-process for the same calls.
    mm.set_tracking_dir(tmp_path / "fluent")
    try:
        with mm.start_run() as fluent:
            mm.log_metric("loss", 0.5, step=0, timestamp=1000)
            mm.log_metric("loss", 0.25, step=1, timestamp=2000)
    finally:
        mm.set_tracking_dir(None)
    fluent_file = tmp_path / "fluent" / "0" / fluent.run_id / "metrics" / "loss.jsonl"
    assert (run_dir / "metrics" / "loss.jsonl").read_bytes() == fluent_file.read_bytes()
    assert str(tmp_path) not in "".join(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize(
    "body",
    [
        """
        import mini_mlflow as mm
        run = mm.init("ignored-project", config={"lr": 0.5, "epochs": 2})
        assert run.config == {"lr": 0.1, "epochs": 2}, run.config
        run.log({"loss": 1.0})
        run.finish()
        """,
        """
        import mini_mlflow as mm
        ctx = mm.get_or_create_ctx("job")
        assert ctx.get_param("lr", 0.5) == 0.1 and ctx.get_param("epochs", 2) == 2
        ctx.log_metric("loss", 1.0)
        ctx.log_result("accuracy", 0.9)
        """,
    ],
    ids=["init", "get_or_create_ctx"],
)
def test_each_face_attaches_to_the_run_and_gets_the_params(tmp_path: Path, body: str) -> None:
    root = tmp_path / "mlruns"
    script(tmp_path, "job.py", body)
    code, _out, err = finish(cli(root, "run", "-e", "faces", "-p", "lr=0.1", "job.py", cwd=tmp_path))
    assert code == 0, err
    (run_dir,) = run_dirs(root)
    assert meta(run_dir)["status"] == "FINISHED" and meta(run_dir)["experiment_id"] == "1"
    assert (run_dir / "params" / "lr.json").read_text() == "0.1\n"
    assert (run_dir / "params" / "epochs.json").read_text() == "2\n"
    assert [p["value"] for p in read_jsonl(run_dir / "metrics" / "loss.jsonl")] == [1.0]


def test_failure_gives_failed_and_the_childs_exit_code(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    script(tmp_path, "exit3.py", "import sys\nprint('bye')\nsys.exit(3)\n")
    script(tmp_path, "boom.py", "raise RuntimeError('boom')\n")
    code, _out, err = finish(cli(root, "run", "exit3.py", cwd=tmp_path))
    assert code == 3 and "FAILED (exit code 3)" in err
    code, _out, err = finish(cli(root, "run", "boom.py", cwd=tmp_path))
    assert code == 1 and "RuntimeError: boom" in err
    runs = {meta(d)["source"]["name"]: d for d in run_dirs(root)}
    assert meta(runs["exit3.py"])["status"] == "FAILED"
    assert tags(runs["exit3.py"])["mini_mlflow.exit_code"] == "3"
    assert meta(runs["boom.py"])["status"] == "FAILED"
    assert "RuntimeError: boom" in (runs["boom.py"] / "artifacts" / "stderr.txt").read_text()


def test_any_command_not_only_python(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    code, out, _err = finish(cli(root, "run", "--", "sh", "-c", "echo from-sh; exit 4", cwd=tmp_path))
    assert code == 4 and "from-sh" in out
    (run_dir,) = run_dirs(root)
    assert meta(run_dir)["status"] == "FAILED" and meta(run_dir)["source"]["name"] == "sh"
    assert (run_dir / "artifacts" / "stdout.txt").read_text() == "from-sh\n"


def test_ctrl_c_to_the_process_group_gives_killed(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    script(
        tmp_path,
        "loop.py",
        """
        import time
        import mini_mlflow as mm
        with mm.start_run():
            step = 0
            while True:
                mm.log_metric("tick", step, step=step)
                if step == 3:  # ready once points were logged: Ctrl-C must keep them
                    print("ready", flush=True)
                step += 1
                time.sleep(0.01)
        """,
    )
    # A session of its own, as a terminal gives a foreground job: Ctrl-C signals the whole group.
    proc = cli(root, "run", "loop.py", cwd=tmp_path, start_new_session=True)
    stdout = wait_until(lambda: next(iter(root.glob("*/*/artifacts/stdout.txt")), None), timeout=30)
    wait_until(lambda: "ready" in stdout.read_text(), timeout=30)
    os.killpg(proc.pid, signal.SIGINT)
    code, _out, err = finish(proc)
    assert code == 130, err
    (run_dir,) = run_dirs(root)
    assert meta(run_dir)["status"] == "KILLED" and meta(run_dir)["end_time"]
    assert "KeyboardInterrupt" in (run_dir / "artifacts" / "stderr.txt").read_text()
    assert read_jsonl(run_dir / "metrics" / "tick.jsonl")  # what was logged before Ctrl-C is kept


def test_a_child_that_ignores_ctrl_c_is_killed_at_the_third(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    script(
        tmp_path,
        "stubborn.py",
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready', flush=True)\n"
        "time.sleep(60)\n",
    )
    proc = cli(root, "run", "stubborn.py", cwd=tmp_path, start_new_session=True)
    stdout = wait_until(lambda: next(iter(root.glob("*/*/artifacts/stdout.txt")), None), timeout=30)
    wait_until(lambda: "ready" in stdout.read_text(), timeout=30)

    def interrupt() -> bool:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            return False
        return True

    wait_until(interrupt, timeout=30)
    code, _out, err = finish(proc)
    assert code == 128 + signal.SIGKILL, err
    (run_dir,) = run_dirs(root)
    assert meta(run_dir)["status"] == "KILLED"


def test_sigterm_to_the_parent_is_forwarded_and_gives_killed(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    script(tmp_path, "wait.py", "import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = cli(root, "run", "wait.py", cwd=tmp_path)
    stdout = wait_until(lambda: next(iter(root.glob("*/*/artifacts/stdout.txt")), None), timeout=30)
    wait_until(lambda: "ready" in stdout.read_text(), timeout=30)
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err
    (run_dir,) = run_dirs(root)
    assert meta(run_dir)["status"] == "KILLED"


def test_secrets_reach_the_child_but_no_file_and_no_output(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"API_KEY={SECRET}\n")
    script(
        tmp_path,
        "leaky.py",
        """
        import sys, time
        import mini_mlflow as mm
        ctx = mm.get_or_create_ctx("leaky")
        key = ctx.get_secret("API_KEY")
        ctx.log_metric("key_length", len(key))
        ctx.set_label("note", "used the key")
        # A careless script prints it, even in two pieces: the output is masked all the same.
        print("key is", key, flush=True)
        sys.stdout.write(key[:7]); sys.stdout.flush(); time.sleep(0.05)
        sys.stdout.write(key[7:] + "\\n"); sys.stdout.flush()
        print(key, file=sys.stderr)
        """,
    )
    args = ["-s", str(secrets), "-p", "x=1", "leaky.py", "--token", SECRET]  # even on the command line
    code, out, err = finish(cli(root, "run", *args, cwd=tmp_path))
    assert code == 0, err
    assert SECRET not in out and SECRET not in err
    assert "key is ****" in out and "****\n" in out
    (run_dir,) = run_dirs(root)
    assert read_jsonl(run_dir / "metrics" / "key_length.jsonl")[0]["value"] == len(SECRET)
    assert "key is ****" in (run_dir / "artifacts" / "stdout.txt").read_text()
    assert tags(run_dir)["mini_mlflow.command"] == "leaky.py --token ****"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


def test_redactor_masks_across_chunk_boundaries() -> None:
    redactor = _Redactor(["abcdef", "xy"])  # "xy" is too short to mask safely: left alone
    pieces = [b"1 ab", b"cd", b"ef 2 a", b"bX xy ab"]
    masked = b"".join(redactor.feed(p) for p in pieces) + redactor.close()
    assert masked == b"1 **** 2 abX xy ab"


def test_redactor_holds_back_enough_for_the_longest_of_several_secrets() -> None:
    # A chunk may end inside any secret: what is held back must cover the longest one, or a long secret
    # split across two chunks passes unmasked when a shorter one is also given.
    redactor = _Redactor(["longsecretvalue123", "abcd"])
    pieces = [b"x longsecret", b"value123 y ab", b"cd z"]
    masked = b"".join(redactor.feed(p) for p in pieces) + redactor.close()
    assert masked == b"x **** y **** z"


def test_bad_input_creates_no_run(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    script(tmp_path, "ok.py", "print('ok')\n")
    code, _out, err = finish(cli(root, "run", "-p", "novalue", "ok.py", cwd=tmp_path))
    assert code == 2 and "'novalue' must be KEY=VALUE" in err
    code, _out, err = finish(cli(root, "run", "-p", "../x=1", "ok.py", cwd=tmp_path))
    assert code == 2 and "invalid key" in err
    code, _out, err = finish(cli(root, "run", "missing.py", cwd=tmp_path))
    assert code == 2 and "does not exist" in err
    code, _out, err = finish(cli(root, "run", "no-such-command-here", cwd=tmp_path))
    assert code == 2 and "not found" in err
    bad = tmp_path / "bad.env"
    bad.write_text(f"{SECRET}\n")
    code, out, err = finish(cli(root, "run", "-s", str(bad), "ok.py", cwd=tmp_path))
    assert code == 2 and "line 1" in err and SECRET not in err + out
    assert run_dirs(root) == []


def test_doctor_reports_settings_health_and_versions(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    env = {"MINI_MLFLOW_TRACKING_DIR": str(root)}
    good = _run_in(root)  # a healthy FINISHED run
    good.end()
    synced = _run_in(root)
    synced.end()
    (Path(synced.run_dir) / ".sync").mkdir()
    crashed = python_child("import os, mini_mlflow as mm\nmm.start_run()\nos._exit(0)\n", tmp_path, env=env)
    assert crashed.wait(timeout=60) == 0
    broken = root / "0" / ("b" * 32)
    broken.mkdir()
    (broken / "meta.yaml").write_text("{ not: yaml: [")
    doctor_env = {
        "MINI_MLFLOW_SYNC_URL": "https://bob:hunter2-pass@mlflow.example.com",
        "MINI_MLFLOW_FLUSH_INTERVALL": "1",
        "MINI_MLFLOW_HEARTBEAT": "2",
        "MLFLOW_TRACKING_TOKEN": "tok-tok-tok-123",
    }
    code, out, err = finish(cli(root, "doctor", cwd=tmp_path, env=doctor_env))
    assert code == 1, err  # a broken run is a problem
    assert "hunter2-pass" not in out + err and "tok-tok-tok-123" not in out + err
    assert "https://bob:****@mlflow.example.com" in out
    assert "MLFLOW_TRACKING_TOKEN" in out and "set (****)" in out
    assert "MINI_MLFLOW_HEARTBEAT" in out and "2.0" in out and "environment" in out
    assert "unknown variable MINI_MLFLOW_FLUSH_INTERVALL; did you mean MINI_MLFLOW_FLUSH_INTERVAL?" in out
    assert f"mini_mlflow  {mm.__version__}" in out and "python" in out and "click" in out
    assert "runs: 4 (FINISHED 2, RUNNING 1)" in out
    assert "broken runs: 1" in out and f"0/{'b' * 32}" in out
    assert "crashed runs (RUNNING, no live writer): 1" in out
    assert "runs not yet synced: 2 of 3 (no .sync/ folder)" in out
    code, out, _err = finish(cli(root, "doctor", "--json", cwd=tmp_path, env=doctor_env))
    report = json.loads(out)
    assert code == 1 and "hunter2-pass" not in out
    assert sorted(report["store"]["not_synced"]) == sorted(
        f"0/{d.name}" for d in run_dirs(root) if d.name not in (synced.run_id, "b" * 32)
    )
    assert good.run_id in " ".join(report["store"]["not_synced"])
    assert report["problems"] == [f"broken run 0/{'b' * 32}"]


def test_doctor_on_a_fresh_store_and_a_bad_setting(tmp_path: Path) -> None:
    root = tmp_path / "nothing-yet"
    code, out, _err = finish(cli(root, "doctor", cwd=tmp_path))
    assert code == 0 and "does not exist yet" in out and "No problems found." in out
    code, out, _err = finish(cli(root, "doctor", cwd=tmp_path, env={"MINI_MLFLOW_FSYNC": "sometimes"}))
    assert code == 1
    assert "INVALID: invalid MINI_MLFLOW_FSYNC='sometimes': must be one of never, end, flush" in out


def _run_in(root: Path) -> mm.Run:
    return mm.Run(runs_dir=root)


def test_the_examples_run(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    examples = ROOT / "examples"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env.update({"PYTHONPATH": str(ROOT), "MINI_MLFLOW_TRACKING_DIR": str(root)})
    for name in ("wandb_style.py", "run_context.py"):
        done = subprocess.run(
            [sys.executable, str(examples / name)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    code, out, err = finish(
        cli(root, "run", "-e", "tracked", "-p", "lr=0.01", str(examples / "tracked_script.py"), cwd=tmp_path)
    )
    assert code == 0 and "with lr=0.01" in out, err
    statuses = sorted(meta(d)["status"] for d in run_dirs(root))
    assert statuses == ["FINISHED"] * 3
    code, out, err = finish(
        cli(root, "run", "-p", "lr=0.0001", str(examples / "tracked_script.py"), cwd=tmp_path)
    )
    assert code == 2 and "did not go down" in err
