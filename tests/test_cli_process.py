"""The CLI as users run it: real ``python -m mini_mlflow`` processes, a real terminal, a live writer."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mini_mlflow as mm

from conftest import ROOT, python_child

SAMPLE_SCRIPT = ROOT / "examples" / "make_sample_store.py"


def mini(
    root: Path | None, *args: str, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    full.update({"PYTHONPATH": str(ROOT), "COLUMNS": "160"}, **(env or {}))
    cmd = [sys.executable, "-m", "mini_mlflow", *(["--root", str(root)] if root else []), *args]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=60, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "mlruns.sample"
    subprocess.run(
        [sys.executable, str(SAMPLE_SCRIPT), str(out)], check=True, capture_output=True, timeout=120
    )
    return out


def test_sample_store_lists_twelve_runs_with_a_failure_and_a_crash(sample_store: Path) -> None:
    done = mini(sample_store, "ls", "--all")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines()[1:] if re.match(r"^[0-9a-f]{8} ", line)]
    assert len(rows) == 12
    statuses = [line.split()[2] for line in rows]
    assert (
        statuses.count("crashed") == 1 and statuses.count("failed") == 1 and statuses.count("finished") == 10
    )
    assert "resnet50-w128" in next(line for line in rows if " crashed " in line)
    experiments = mini(sample_store, "experiments").stdout
    assert re.search(r"1\s+mnist-cnn\s+6", experiments) and re.search(
        r"2\s+cifar10-resnet\s+4\s+", experiments
    )


def test_sample_store_is_deterministic(sample_store: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    subprocess.run(
        [sys.executable, str(SAMPLE_SCRIPT), str(again)], check=True, capture_output=True, timeout=120
    )
    first = mini(sample_store, "ls", "--all", "--json").stdout.replace(str(sample_store), "X")
    second = mini(again, "ls", "--all", "--json").stdout.replace(str(again), "X")
    assert first == second
    refused = subprocess.run(
        [sys.executable, str(SAMPLE_SCRIPT), str(ROOT / "mini_mlflow")], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "refusing" in refused.stderr


def test_show_and_compare_on_the_sample(sample_store: Path) -> None:
    import json

    listing = mini(
        sample_store, "ls", "-e", "mnist-cnn", "--order-by", "metrics.`val/acc` DESC", "--json"
    ).stdout

    runs = json.loads(listing)["runs"]
    best = runs[0]
    accs = [r["metrics"]["val/acc"] for r in runs]
    assert accs == sorted(accs, reverse=True) and len(runs) == 6
    done = mini(sample_store, "show", best["run_id"][:7])
    assert done.returncode == 0
    assert "val/acc  (20 points, higher is better)" in done.stdout and "config.json" in done.stdout
    failed = mini(sample_store, "show", next(r["run_id"] for r in runs if r["status"] == "FAILED")).stdout
    assert "status      failed" in failed and "FloatingPointError" in failed and "inf" in failed
    compared = mini(sample_store, "compare", runs[0]["run_id"][:8], runs[1]["run_id"][:8]).stdout
    assert "≠ lr" in compared and "★" in compared


def test_env_var_selects_the_store_and_exit_codes(sample_store: Path, tmp_path: Path) -> None:
    done = mini(None, "ls", "--all", env={"MINI_MLFLOW_TRACKING_DIR": str(sample_store)})
    assert done.returncode == 0 and "cnn-sgd-lr0.1" in done.stdout
    done = mini(None, "ls", "--root", str(sample_store), "-e", "mnist-cnn")  # --root after the command
    assert done.returncode == 0 and "cnn-sgd-lr0.1" in done.stdout
    done = mini(sample_store, "show", "zzzz")
    assert done.returncode == 1 and done.stderr.startswith("error: no run id starts with 'zzzz'")
    done = mini(sample_store, "ls", "--limit", "0")
    assert done.returncode == 2 and "Invalid value for '--limit'" in done.stderr
    done = mini(sample_store, "ls", "--filter", "params.lr = 1 OR params.lr = 2")
    assert done.returncode == 2 and "OR is not supported" in done.stderr
    done = mini(tmp_path / "nowhere", "experiments")
    assert done.returncode == 2 and "no store at" in done.stderr


def _run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the CLI with its stdout on a pseudo-terminal and return what it wrote."""
    master, slave = pty.openpty()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MINI_MLFLOW_", "NO_COLOR"))}
    full.update({"PYTHONPATH": str(ROOT), "COLUMNS": "150", "TERM": "xterm-256color"}, **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", *args], stdout=slave, stderr=slave, env=full
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(sample_store: Path) -> None:
    coloured = _run_in_terminal(["--root", str(sample_store), "ls", "--all"], {})
    assert "\x1b[" in coloured and "crashed" in coloured
    plain = _run_in_terminal(["--root", str(sample_store), "ls", "--all"], {"NO_COLOR": "1"})
    assert "crashed" in plain and not re.search(r"\x1b\[[0-9;]*m", plain)
    assert "\x1b[" not in mini(sample_store, "ls", "--all").stdout


def test_csv_and_json_escape_store_text_on_a_terminal_and_carry_it_exactly_to_a_pipe(store: Path) -> None:
    name = "evil\x1b]0;pwned\x07\x1b[31mred\x9b2J"
    with mm.start_run(run_name=name):
        mm.log_param("note", "\x1b[2Jwiped")
    for fmt in ("--csv", "--json"):
        shown = _run_in_terminal(["--root", str(store), "ls", fmt], {})
        assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown, (fmt, shown)
    assert "evil\\x1b]0;pwned\\x07\\x1b[31mred\\x9b2J" in _run_in_terminal(
        ["--root", str(store), "ls", "--csv"], {}
    )
    piped = mini(store, "ls", "--csv")
    assert piped.returncode == 0, piped.stderr
    (row,) = list(csv.DictReader(io.StringIO(piped.stdout)))
    assert row["run_name"] == name and row["params.note"] == "\x1b[2Jwiped"
    (run,) = json.loads(mini(store, "ls", "--json").stdout)["runs"]
    assert run["run_name"] == name and run["params"]["note"] == "\x1b[2Jwiped"


def test_output_fits_the_terminal_width(sample_store: Path) -> None:
    for width in ("80", "120"):
        out = mini(sample_store, "ls", "--all", env={"COLUMNS": width}).stdout
        assert max(len(line) for line in out.splitlines()) <= int(width)
        shown = mini(sample_store, "show", "1936b9a0", env={"COLUMNS": width}).stdout
        assert max(len(line) for line in shown.splitlines()) <= int(width)


#: A live run with one point of ``loss``; its id is printed, and once told "go" it runs ``{then}``
#: and ends.
LIVE_WRITER = """
import sys, time, mini_mlflow as mm
run = mm.start_run(run_name="live")
mm.log_metric("loss", 1.0, step=0)
mm.flush()
print(run.run_id, flush=True)
sys.stdin.readline()
{then}
mm.end_run()
"""


def _live_run_followed(
    tmp_path: Path, then: str, *tail_args: str
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """A writer process holding a live run (see ``LIVE_WRITER``) and ``mini-mlflow tail -f`` on it."""
    root = tmp_path / "mlruns"
    writer = python_child(
        LIVE_WRITER.format(then=textwrap.dedent(then).strip()),
        tmp_path,
        env={"MINI_MLFLOW_TRACKING_DIR": str(root)},
        stdin=subprocess.PIPE,
    )
    assert writer.stdout is not None and writer.stdin is not None
    run_id = writer.stdout.readline().strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_MLFLOW_")}
    env["PYTHONPATH"] = str(ROOT)
    args = ["--root", str(root), "tail", "-f", run_id[:8], *tail_args, "--interval", "0.05"]
    tail = subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return writer, tail


def _go(writer: subprocess.Popen[str]) -> None:
    assert writer.stdin is not None
    writer.stdin.write("go\n")
    writer.stdin.flush()


def test_tail_follows_a_live_run_until_it_ends(tmp_path: Path) -> None:
    then = """
    for step in range(1, 6):
        mm.log_metric("loss", 1.0 / (step + 1), step=step)
        mm.flush()
        time.sleep(0.05)
    """
    writer, tail = _live_run_followed(tmp_path, then)
    assert tail.stdout is not None
    first = tail.stdout.readline()
    assert first.split()[1:] == ["loss", "step", "0", "1"]
    _go(writer)
    assert writer.wait(timeout=30) == 0
    out, err = tail.communicate(timeout=30)
    steps = [line.split()[3] for line in out.splitlines()]
    assert steps == ["1", "2", "3", "4", "5"]
    assert out.splitlines()[-1].split()[4] == "0.1667"
    assert "run ended: FINISHED" in err and tail.returncode == 0


def test_tail_follows_a_metric_a_live_run_has_not_logged_yet(tmp_path: Path) -> None:
    """On a live run an unknown key may still come: a note on stderr, then its points as they come."""
    then = """
    for step in range(3):
        mm.log_metric("acc", step / 10, step=step)
    """
    writer, tail = _live_run_followed(tmp_path, then, "-m", "acc")
    assert tail.stderr is not None
    try:
        ready, _, _ = select.select([tail.stderr], [], [], 30)
        assert ready, "no note on stderr within 30 s"
        assert tail.stderr.readline() == "-- not logged yet: 'acc'; following the run until it is\n"
    finally:
        _go(writer)
    assert writer.wait(timeout=30) == 0
    out, err = tail.communicate(timeout=30)
    assert [line.split()[1:] for line in out.splitlines()] == [
        ["acc", "step", str(step), f"{step / 10:g}"] for step in range(3)
    ]
    assert "run ended: FINISHED" in err and tail.returncode == 0
