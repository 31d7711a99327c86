"""The read and lifecycle commands through click's runner, asserting on what a user would read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import mini_mlflow as mm
from mini_mlflow.cli._main import cli
from mini_mlflow.store import _operations


def invoke(root: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--root", str(root), *args], input=input, env={"COLUMNS": "200"})


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sample(store: Path) -> dict[str, str]:
    """Four runs: two finished, one failed, one crashed (RUNNING with a dead writer)."""
    ids = {}
    for name, lr, opt, acc in (("alpha", 0.1, "adam", 0.91), ("beta", 0.01, "adam", 0.95)):
        with mm.start_run(run_name=name) as run:
            mm.log_params({"lr": lr, "optimizer": opt, "epochs": 10})
            mm.set_tag("team", "vision")
            for step in range(20):
                mm.log_metric("acc", round(acc * (step + 1) / 20, 6), step=step)
                mm.log_metric("train/loss", 1 / (step + 1), step=step)
            mm.log_text("hello", "notes/readme.txt")
        ids[name] = run.run_id
    with pytest.raises(RuntimeError), mm.start_run(run_name="gamma") as run:
        mm.log_params({"lr": 1.0, "optimizer": "sgd", "epochs": 10})
        mm.log_metric("acc", 0.1)
        raise RuntimeError("diverged")
    ids["gamma"] = run.run_id
    with mm.start_run(run_name="delta") as run:
        mm.log_params({"lr": 0.01, "optimizer": "sgd", "epochs": 10})
        mm.log_metric("acc", 0.5)
    _operations.update_run_meta(run.run_dir, status="RUNNING", end_time=None)
    pid = dead_pid()
    beat = {"time": 0, "interval": 10, "pid": pid, "host": os.uname().nodename}
    (Path(run.run_dir) / f".heartbeat-{pid}@{beat['host']}").write_text(json.dumps(beat))
    ids["delta"] = run.run_id
    return ids


def test_ls_shows_runs_statuses_and_what_varies(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "ls")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Experiment: Default (0)"
    header = lines[1].split()
    assert header[:5] == ["id", "name", "status", "start", "(UTC)"]
    assert {"lr", "optimizer", "acc", "train/loss"} <= set(header)
    assert "epochs" not in header  # the same everywhere: not a column
    rows = {line.split()[1]: line for line in lines[2:6]}
    assert set(rows) == {"alpha", "beta", "gamma", "delta"}
    assert rows["alpha"].split()[0] == sample["alpha"][:8]
    assert " finished " in rows["alpha"] and " failed " in rows["gamma"] and " crashed " in rows["delta"]
    assert "0.95" in rows["beta"] and "0.1" in rows["alpha"]
    assert "\x1b" not in result.output  # not a terminal: no colour codes


def test_ls_filter_order_limit(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "ls", "--filter", "params.optimizer = 'adam'", "--order-by", "metrics.acc DESC")
    assert result.exit_code == 0, result.output
    names = [line.split()[1] for line in result.output.splitlines()[2:]]
    assert names == ["beta", "alpha"]
    result = invoke(
        store, "ls", "--order-by", "params.lr", "--order-by", "attributes.run_name DESC", "--limit", "2"
    )
    assert [line.split()[1] for line in result.output.splitlines()[2:4]] == ["delta", "beta"]
    assert "showing 2 of 4 runs" in result.output
    result = invoke(store, "ls", "--filter", "metrics.acc > 2")
    assert result.exit_code == 0 and "no runs match the filter" in result.output


def test_ls_on_a_store_with_no_experiment_says_so(tmp_path: Path) -> None:
    # It printed an empty "Experiment: " header and "no runs match the filter" with no filter given.
    (tmp_path / "empty").mkdir()
    result = invoke(tmp_path / "empty", "ls")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("no experiments in ") and "Experiment:" not in result.output
    assert "filter" not in result.output


def test_ls_json_and_csv(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "ls", "--json", "--order-by", "attributes.run_name")
    doc = json.loads(result.output)
    assert doc["total"] == 4 and doc["broken"] == []
    assert [r["run_name"] for r in doc["runs"]] == ["alpha", "beta", "delta", "gamma"]
    alpha = doc["runs"][0]
    assert alpha["run_id"] == sample["alpha"] and alpha["status"] == "FINISHED"
    assert alpha["params"] == {"lr": 0.1, "optimizer": "adam", "epochs": 10}
    assert alpha["metrics"] == {"acc": 0.91, "train/loss": 0.05}
    assert doc["runs"][2]["status"] == "CRASHED"
    result = invoke(store, "ls", "--csv", "--order-by", "attributes.run_name")
    lines = result.output.splitlines()
    assert lines[0].startswith(
        "run_id,run_name,experiment_id,status,start_time,end_time,duration_s,params.epochs"
    )
    assert lines[0].endswith("metrics.acc,metrics.train/loss")
    assert lines[1].startswith(f"{sample['alpha']},alpha,0,FINISHED,") and lines[1].endswith(",0.91,0.05")
    assert len(lines) == 5


def test_ls_experiments_by_name_and_errors(store: Path, sample: dict[str, str]) -> None:
    mm.set_experiment("nlp")
    with mm.start_run(run_name="bert"):
        mm.log_param("lr", 3e-5)
    assert "bert" in invoke(store, "ls").output  # default: the experiment with the newest run
    out = invoke(store, "ls", "-e", "Default").output
    assert "alpha" in out and "bert" not in out
    out = invoke(store, "ls", "-e", "1").output
    assert out.startswith("Experiment: nlp (1)") and "bert" in out
    out = invoke(store, "ls", "--all").output
    assert "bert" in out and "alpha" in out and " exp " in out
    result = invoke(store, "ls", "-e", "vision")
    assert result.exit_code == 1
    assert "no experiment named or numbered 'vision'" in result.output and "Default (0)" in result.output
    result = invoke(store, "ls", "--filter", "metrics.acc >> 1")
    assert result.exit_code == 2
    assert "invalid filter at position 13" in result.output and "              ^" in result.output
    assert invoke(store, "ls", "--all", "-e", "nlp").exit_code == 2
    assert invoke(store, "ls", "--json", "--csv").exit_code == 2
    assert invoke(store.parent / "missing", "ls").exit_code == 2


@pytest.mark.parametrize(
    ("option", "value", "summary", "source", "bad"),
    [
        (
            "--filter",
            "metrics.acc >",
            "invalid filter at position 13 (the end): expected a value",
            "metrics.acc >",
            "",
        ),
        ("--filter", "metrics.acc > 1 AND foo", "unknown identifier", "metrics.acc > 1 AND foo", "foo"),
        ("--order-by", "metrics.acc DESCX", "expected ASC or DESC", "metrics.acc DESCX", "DESCX"),
        # Store-like text is escaped on the source line, and the caret counts the escapes it shows.
        (
            "--filter",
            "params.x = '\x1b[31m\t\n' AND ?",
            "unexpected character",
            "params.x = '\\x1b[31m\\t\\n' AND ?",
            "?",
        ),
        # A huge filter is cut around the bad part; the caret still points at it.
        (
            "--filter",
            "x" * 100_000 + " = 1 AND ?",
            "unexpected character",
            "…" + "x" * 51 + " = 1 AND ?",
            "?",
        ),
    ],
    ids=["at-the-end", "a-token", "order-by", "escaped", "huge"],
)
def test_filter_errors_print_the_filter_and_a_caret_under_the_bad_part(
    store: Path, sample: dict[str, str], option: str, value: str, summary: str, source: str, bad: str
) -> None:
    result = invoke(store, "ls", option, value)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Error: invalid"))
    assert summary in lines[first] and len(lines[first]) < 1100
    assert lines[first + 1 :] == [f"  {source}", lines[first + 2]]
    # The bad part ends the filter in every case here: the caret line ends under it.
    assert lines[first + 2] == " " * (len(f"  {source}") - len(bad)) + "^" * max(1, len(bad))


def test_show(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "show", sample["alpha"][:6])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.splitlines()[0] == f"Run {sample['alpha']}  alpha"
    assert "status      finished" in out and "experiment  Default (0)" in out
    assert "optimizer  adam" in out and "team  vision" in out
    metrics = {line.split()[0]: line.split()[1:] for line in out.split("Metrics\n")[1].splitlines()[1:3]}
    assert metrics["acc"] == ["0.91", "0.0455", "0.91", "20", "19"]
    assert metrics["train/loss"] == ["0.05", "0.05", "1", "20", "19"]
    assert "acc  (20 points, higher is better)" in out and "train/loss  (20 points, lower is better)" in out
    assert any(0x2800 < ord(c) <= 0x28FF for c in out)  # the braille chart
    assert "notes/readme.txt  (5 B)" in out
    crashed = invoke(store, "show", sample["delta"]).output
    assert "status      crashed (RUNNING in meta.yaml, but no writer is alive)" in crashed
    doc = json.loads(invoke(store, "show", sample["alpha"], "--json").output)
    assert doc["metrics"]["acc"] == {"last": 0.91, "min": 0.0455, "max": 0.91, "count": 20, "last_step": 19}
    assert doc["artifacts"] == [{"path": "notes/readme.txt", "size": 5}]
    assert doc["params"]["lr"] == 0.1


def test_run_ids_by_prefix(store: Path) -> None:
    for run_id in ("abc123" + "0" * 26, "abc456" + "0" * 26):
        mm.Run(run_id=run_id, runs_dir=store).end()
    result = invoke(store, "show", "abc")
    assert result.exit_code == 1
    assert "run id prefix 'abc' is ambiguous: it matches 2 runs" in result.output
    assert invoke(store, "show", "abc4").exit_code == 0
    result = invoke(store, "show", "fff")
    assert result.exit_code == 1 and "no run id starts with 'fff'" in result.output
    result = invoke(store, "show", "../etc")
    assert result.exit_code == 1 and "invalid run id" in result.output
    assert invoke(store, "show").exit_code == 2


def test_broken_runs_in_ls_and_show(store: Path, sample: dict[str, str]) -> None:
    broken = store / "0" / "deadbeef0000"
    broken.mkdir()
    (broken / "meta.yaml").write_text("status: [FINISHED\n")
    result = invoke(store, "ls")
    assert result.exit_code == 0 and "alpha" in result.output
    assert "1 broken run folder(s), not listed above:" in result.output
    assert f"{broken}/meta.yaml: meta.yaml is not valid YAML" in result.output
    result = invoke(store, "show", "deadbeef")
    assert result.exit_code == 1 and "cannot be read" in result.output and "not valid YAML" in result.output


def test_store_text_is_printed_literally(store: Path) -> None:
    with mm.start_run(run_name="[red]boom[/red]") as run:
        mm.log_param("cmd", "\x1b[2J\x1b]0;pwned\x07 rm -rf")
        mm.set_tag("note", "[bold]not bold[/bold]")
        mm.log_metric("acc", 1.0)
    for args in (("ls",), ("show", run.run_id), ("compare", run.run_id, run.run_id)):
        out = invoke(store, *args).output
        assert "\x1b" not in out and "\x07" not in out
        assert "\\x1b[2J" in out or args[0] == "ls"
    out = invoke(store, "show", run.run_id).output
    assert "[red]boom[/red]" in out and "[bold]not bold[/bold]" in out


def test_experiments(store: Path, sample: dict[str, str]) -> None:
    mm.set_experiment("empty")
    result = invoke(store, "experiments")
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "id",
        "name",
        "runs",
        "running",
        "deleted",
        "broken",
        "last",
        "start",
        "(UTC)",
    ]
    assert lines[1].split()[:3] == ["0", "Default", "4"]
    assert lines[2].split() == ["1", "empty", "0"]
    doc = json.loads(invoke(store, "experiments", "--json").output)
    assert doc[0]["runs"] == 4 and doc[0]["running"] == 0 and doc[1]["name"] == "empty"


def test_compare(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "compare", sample["alpha"][:8], sample["beta"][:8], sample["gamma"][:8])
    assert result.exit_code == 0, result.output
    lines = {
        line.split()[0] if not line.startswith("≠") else line.split()[1]: line
        for line in result.output.splitlines()
    }
    assert lines["lr"].startswith("≠ lr") and "0.1" in lines["lr"] and "0.01" in lines["lr"]
    assert lines["epochs"].startswith("  epochs")
    assert "0.95 / 0.95 ★" in lines["acc"] and "0.91 / 0.91" in lines["acc"] and lines["acc"].count("★") == 1
    assert "(min)" in lines["train/loss"] and "—" in lines["train/loss"]
    doc = json.loads(invoke(store, "compare", sample["alpha"], sample["beta"], "--json").output)
    assert doc["params"]["lr"] == [0.1, 0.01] and doc["metrics"]["acc"][1]["last"] == 0.95
    assert doc["best_is"] == {"acc": "max", "train/loss": "min"}
    assert invoke(store, "compare", sample["alpha"]).exit_code == 2


def test_compare_min_and_max_override_the_guess_from_the_name(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "compare", sample["alpha"], sample["beta"], "--min", "acc", "--max", "train/loss")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    # acc: the lower best (alpha's minimum, 0.0455) wins; alpha and beta share the best loss, 1.0
    assert "(min)" in lines["acc"] and lines["acc"].count("★") == 1
    assert lines["acc"].index("★") < lines["acc"].index("0.95")
    assert "(max)" in lines["train/loss"] and lines["train/loss"].count("★") == 2
    doc = json.loads(
        invoke(store, "compare", sample["alpha"], sample["beta"], "--min", "acc", "--json").output
    )
    assert doc["best_is"] == {"acc": "min", "train/loss": "min"}
    both = invoke(store, "compare", sample["alpha"], sample["beta"], "--min", "acc", "--max", "acc")
    assert both.exit_code == 2 and "'acc' is given to both --min and --max" in both.output


def test_tail(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "tail", sample["alpha"], "-n", "2", "-m", "acc")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].split()[1:] == ["acc", "step", "18", "0.8645"]
    assert lines[1].split()[1:] == ["acc", "step", "19", "0.91"]
    assert len(invoke(store, "tail", sample["alpha"]).output.splitlines()) == 20


def test_unknown_metric_keys_are_errors_that_list_the_known_ones(store: Path, sample: dict[str, str]) -> None:
    alpha = sample["alpha"]
    for args in (
        ("show", alpha[:8], "-m", "acc", "-m", "train/los"),
        ("tail", alpha[:8], "-m", "train/los"),
        ("tail", alpha[:8], "-f", "-m", "train/los"),  # the run has ended: the key can never come
    ):
        result = invoke(store, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output == f"error: no metric 'train/los' in run {alpha} (known: acc, train/loss)\n"
    result = invoke(store, "show", alpha, "--no-chart", "-m", "x", "-m", "y", "-m", "x")
    assert result.exit_code == 1
    assert result.output == f"error: no metrics 'x', 'y' in run {alpha} (known: acc, train/loss)\n"
    # compare: a key some runs lack is fine (shown as "—"); a key none has is an error.
    result = invoke(store, "compare", alpha, sample["gamma"], "--min", "acc", "--max", "nokey")
    assert result.exit_code == 1
    assert result.output == "error: no metric 'nokey' in any of the 2 runs (known: acc, train/loss)\n"
    result = invoke(store, "compare", alpha, sample["gamma"], "--max", "train/loss")
    assert result.exit_code == 0 and "train/loss (max)" in result.output
    # Many metrics: the first 20 are named, the rest counted.
    with mm.start_run(run_name="wide") as run:
        mm.log_metrics({f"m{i:02d}": float(i) for i in range(25)})
    result = invoke(store, "show", run.run_id, "-m", "m25")
    known = ", ".join(f"m{i:02d}" for i in range(20))
    assert result.output == f"error: no metric 'm25' in run {run.run_id} (known: {known} and 5 more)\n"


def test_delete_restore_gc(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "delete", sample["alpha"][:8], sample["gamma"][:8])
    assert result.exit_code == 0 and f"deleted {sample['alpha']} (alpha)" in result.output
    out = invoke(store, "ls").output
    assert "alpha" not in out and "gamma" not in out and "beta" in out
    assert "alpha" in invoke(store, "ls", "--deleted").output
    assert "restored" in invoke(store, "restore", sample["gamma"]).output
    assert "gamma" in invoke(store, "ls").output
    result = invoke(store, "gc", input="n\n")
    assert "1 deleted run(s)" in result.output and "nothing removed" in result.output
    assert Path(store / "0" / sample["alpha"]).is_dir()
    result = invoke(store, "gc", "--yes")
    assert result.exit_code == 0 and "removed 1 run(s)" in result.output
    assert not (store / "0" / sample["alpha"]).exists()
    assert sorted(p.name for p in (store / "0").iterdir() if p.is_dir()) == sorted(
        [sample["beta"], sample["gamma"], sample["delta"]]
    )
    assert "nothing to remove" in invoke(store, "gc", "--yes").output
    assert invoke(store, "delete", "nope").exit_code == 1


def test_restore_or_delete_of_a_run_already_so_says_so_and_leaves_it_alone(
    store: Path, sample: dict[str, str]
) -> None:
    meta = store / "0" / sample["beta"] / "meta.yaml"
    before = meta.read_bytes()
    result = invoke(store, "restore", sample["beta"][:8])
    assert result.exit_code == 0, result.output
    assert result.output == f"{sample['beta']} (beta) is not deleted: nothing to restore\n"
    assert meta.read_bytes() == before
    # A deleted run next to it is still restored by the same call.
    assert invoke(store, "delete", sample["alpha"]).exit_code == 0
    result = invoke(store, "restore", sample["beta"], sample["alpha"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{sample['beta']} (beta) is not deleted: nothing to restore",
        f"restored {sample['alpha']} (alpha)",
    ]
    # Deleting twice says so and keeps the first deleted_time (when gc may remove it).
    assert invoke(store, "delete", sample["alpha"]).exit_code == 0
    alpha_meta = store / "0" / sample["alpha"] / "meta.yaml"
    first = alpha_meta.read_bytes()
    result = invoke(store, "delete", sample["alpha"])
    assert result.exit_code == 0 and result.output == f"{sample['alpha']} (alpha) is already deleted\n"
    assert alpha_meta.read_bytes() == first


def test_big_metric_is_charted_from_samples(store: Path) -> None:
    from mini_mlflow.cli._chart import WHOLE_FILE_BYTES, sample_points

    with mm.start_run(run_name="long") as run:
        mm.log_metric("loss", 1.0, step=0)
    path = Path(run.run_dir) / "metrics" / "loss.jsonl"
    n = 40_000
    lines = "".join(f'{{"step":{s},"value":{1 / (s + 1)!r},"timestamp":{1000 + s}}}\n' for s in range(1, n))
    with open(path, "a") as f:
        f.write(lines)
    assert path.stat().st_size > WHOLE_FILE_BYTES
    points = sample_points(str(path), 200)
    steps = [s for s, _ in points]
    assert 150 <= len(points) <= 202 and steps == sorted(steps)
    assert steps[0] == 0 and steps[-1] == n - 1  # first and last points are always drawn
    out = invoke(store, "show", run.run_id).output
    row = next(line for line in out.splitlines() if line.startswith("loss "))
    assert row.split()[1:] == ["2.5e-05", "2.5e-05", "1", str(n), str(n - 1)]
    assert f"loss  ({n} points, lower is better)" in out


def test_gc_cleans_up_after_an_interrupted_gc(store: Path, sample: dict[str, str]) -> None:
    leftover = store / "0" / "#tmp.gc.0123456789abcdef"
    (leftover / "metrics").mkdir(parents=True)
    (leftover / "meta.yaml").write_text("status: FINISHED\n")
    assert "#tmp" not in invoke(store, "ls").output and "broken" not in invoke(store, "ls").output
    result = invoke(store, "gc", "--yes")
    assert result.exit_code == 0 and not leftover.exists()


@pytest.mark.parametrize("n", [10, 40_000], ids=["whole-file", "sampled"])
def test_a_resumed_run_is_charted_without_the_points_its_resume_superseded(store: Path, n: int) -> None:
    from mini_mlflow.cli._chart import WHOLE_FILE_BYTES, sample_points
    from mini_mlflow.integrations._resume import record_resume
    from mini_mlflow.read._resumes import load_resumes

    run = mm.Run(runs_dir=store, name="resumed")
    for step in range(n):
        run.log_metric("loss", 1.0, step=step)
    record_resume(run, n // 2 - 1)  # the checkpoint was taken at the middle step
    for step in range(n // 2, n):
        run.log_metric("loss", 2.0, step=step)
    run.end()
    path = str(Path(run.run_dir) / "metrics" / "loss.jsonl")
    assert (os.path.getsize(path) > WHOLE_FILE_BYTES) == (n > 10)
    points = sample_points(path, 200, load_resumes(run.run_dir), "loss")
    steps = [s for s, _ in points]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == n - 1
    assert all(v == (1.0 if s < n // 2 else 2.0) for s, v in points)  # no old point past the checkpoint
    everything = sample_points(path, 200)  # the file still holds the superseded attempt
    assert any(v == 1.0 and s >= n // 2 for s, v in everything)
    assert invoke(store, "show", run.run_id, "-m", "loss").exit_code == 0


def test_sync_without_a_server_says_why_a_dry_run_needs_one_too(store: Path, sample: dict[str, str]) -> None:
    result = invoke(store, "sync", "--dry-run")
    assert result.exit_code == 2
    assert "no server: pass --to URL or set MINI_MLFLOW_SYNC_URL (a dry run counts" in result.output
    result = invoke(store, "sync")
    assert result.exit_code == 2 and "dry run" not in result.output
