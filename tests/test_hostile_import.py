"""Hostile MLflow FileStores through ``mini-mlflow import``: YAML tags, wrong shapes, huge and binary
files, FIFOs, symlinks out of the source, forged ids and artifact locations, garbage metric lines.

The stores are written by hand in MLflow's FileStore layout (docs: REFERENCE facts), next to good runs.
Expected every time: nothing executed, nothing read or written outside the source and the destination,
each bad run or value skipped and named in the report, and every good run imported exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mini_mlflow as mm
from mini_mlflow.cli._main import cli
from mini_mlflow.interop import import_mlflow

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cret-outside-the-source-7f3a"


def write_experiment(src: Path, exp_id: str, name: str, meta: str | None = None) -> Path:
    folder = src / exp_id
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        meta
        if meta is not None
        else (
            f"artifact_location: file://{folder}\nexperiment_id: '{exp_id}'\nlifecycle_stage: active\n"
            f"name: {json.dumps(name)}\ncreation_time: 1763900000000\n"
        )
    )
    (folder / "meta.yaml").write_text(text)
    return folder


def write_run(
    exp: Path,
    run_id: str | None = None,
    *,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, bytes] | None = None,
    meta: str | None = None,
    artifacts: dict[str, bytes] | None = None,
) -> Path:
    """A run folder as MLflow's FileStore writes it (status an integer, metric lines "<ts> <v> <step>")."""
    run_id = run_id or uuid.uuid4().hex
    run = exp / run_id
    for sub in ("metrics", "params", "tags", "artifacts"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    (run / "meta.yaml").write_text(
        meta
        if meta is not None
        else (
            f"artifact_uri: file://{run}/artifacts\nend_time: 1763900009000\nentry_point_name: ''\n"
            f"experiment_id: '{exp.name}'\nlifecycle_stage: active\nrun_id: {run_id}\nrun_name: good\n"
            f"run_uuid: {run_id}\nsource_name: ''\nsource_type: 4\nsource_version: ''\n"
            "start_time: 1763900000000\nstatus: 3\ntags: []\nuser_id: alice\n"
        )
    )
    for kind, values in (("params", params), ("tags", tags)):
        for key, text in (values or {}).items():
            path = run / kind / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for key, data in (metrics or {}).items():
        path = run / "metrics" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for rel, data in (artifacts or {}).items():
        path = run / "artifacts" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return run


GOOD_METRICS = {
    "loss": b"1763900000000 0.5 0\n1763900000001 0.25 1\n1763900000002 nan 2\n",
    "acc/top1": b"1763900000000 inf 0\n1763900000000 -inf 1\n1763900000003 0.75 7\n",
}
GOOD_PARAMS = {"lr": "0.01", "model/arch": "[red]resnet[/red] \x1b[31m"}
GOOD_TAGS = {"team": "vision", "mlflow.runName": "good", "note": "line1\nline2"}


def good_run(exp: Path) -> Path:
    return write_run(
        exp, params=GOOD_PARAMS, tags=GOOD_TAGS, metrics=GOOD_METRICS, artifacts={"a/b.txt": b"hello"}
    )


def assert_imported_exactly(dest: Path, run: Path) -> None:
    """The run in ``dest`` holds exactly what its MLflow folder holds."""
    store = mm.Store(dest)
    data = store.get_run(run.name)
    assert data["metadata"]["status"] == "FINISHED" and data["metadata"]["user"] == "alice"
    assert data["params"] == {k: (run / "params" / k).read_text() for k in GOOD_PARAMS}
    for key in GOOD_TAGS:
        assert data["tags"][key] == (run / "tags" / key).read_text()
    for key, raw in GOOD_METRICS.items():
        expected = [(int(s), float(v), int(t)) for t, v, s in (line.split() for line in raw.splitlines())]
        history = store.get_metric_history(run.name, key)
        got = list(zip(history.steps, history.values, history.timestamps, strict=True))
        assert [(s, "nan" if v != v else v, t) for s, v, t in got] == [
            (s, "nan" if v != v else v, t) for s, v, t in expected
        ], key
    found = [p for p in dest.rglob("artifacts/a/b.txt") if run.name in str(p)]
    assert [p.read_bytes() for p in found] == [b"hello"], found


def tree(folder: Path) -> dict[str, str]:
    out = {}
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(current, name)
            if path.is_symlink():
                out[str(path.relative_to(folder))] = "link:" + os.readlink(path)
            elif path.is_file():
                out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif not path.is_dir():
                out[str(path.relative_to(folder))] = "special"
    return out


def run_import(src: Path, dest: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--root", str(dest), "import", "--format", "mlflow", str(src)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_hostile_store_imports_the_good_runs_exactly_and_reports_the_rest(tmp_path: Path) -> None:
    src, dest = tmp_path / "mlflow", tmp_path / "mlruns"
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(SECRET + "\n")
    (outside / "secret-dir").mkdir()
    (outside / "secret-dir" / "x").write_text(SECRET)
    (outside / "meta.yaml").write_text(f"run_id: {SECRET}\nstatus: 3\n")
    marker = tmp_path / "executed"

    exp = write_experiment(src, "1", "hostile")
    good = good_run(exp)
    python_tag = f"!!python/object/apply:os.system ['touch {marker}']\n"
    bad: dict[str, str] = {}
    bad["yaml-tag"] = write_run(exp, meta=f"run_id: {python_tag}").name
    bad["list"] = write_run(exp, meta="- a\n- b\n").name
    bad["scalar"] = write_run(exp, meta="just text\n").name
    bad["binary"] = write_run(exp, meta="\x00\xff\xfe garbage").name
    huge = write_run(exp)
    (huge / "meta.yaml").write_bytes(b"run_name: x\n" + b"#" * (2 << 20) + b"\n")
    bad["huge"] = huge.name
    forged = uuid.uuid4().hex
    bad["forged-id"] = write_run(exp, forged, meta=f"run_id: ../../../{forged}\nstatus: 3\n").name
    linked = write_run(exp)
    (linked / "meta.yaml").unlink()
    (linked / "meta.yaml").symlink_to(outside / "meta.yaml")
    bad["linked-meta"] = linked.name
    (exp / "..hidden..").mkdir()
    (exp / "..hidden.." / "meta.yaml").write_text("status: 3\n")
    (exp / "not-a-run-id!").mkdir()
    (exp / "not-a-run-id!" / "meta.yaml").write_text("status: 3\n")
    os.symlink(outside, exp / uuid.uuid4().hex)  # a run folder that is a link out of the source

    # Runs imported without their hostile parts (each part named in the report).
    partial = write_run(
        exp,
        params={"ok": "1", "big": "x" * 7000, "nul": "a\x00b"},
        tags={"mlflow.parentRunId": "../../etc", "bad\x1bkey": "v"},
        metrics={"m": b"1 2 3\n", "m bad#key": b"1 2 3\n"},
    )
    (partial / "params" / "bin").write_bytes(b"\xff\xfe\x00")
    os.mkfifo(partial / "params" / "fifo")  # reading it would block the import forever
    (partial / "tags" / "leak").symlink_to(secret)
    (partial / "metrics" / "leak").symlink_to(secret)
    (partial / "artifacts" / "leak.txt").symlink_to(secret)
    (partial / "artifacts" / "leakdir").symlink_to(outside / "secret-dir")
    elsewhere = write_run(exp, meta=None)
    (elsewhere / "artifacts").rmdir()
    meta = (elsewhere / "meta.yaml").read_text().replace(f"file://{elsewhere}/artifacts", f"file://{outside}")
    (elsewhere / "meta.yaml").write_text(meta)

    # A second experiment holding a run id already seen, and experiments that are themselves hostile.
    exp2 = write_experiment(src, "2", "second")
    write_run(exp2, good.name, params={"other": "copy"})
    write_experiment(src, "3", "x", meta=f"name: {python_tag}")
    write_experiment(src, "4", "\x00nul")
    write_experiment(src, "5", "n" * 600)
    os.symlink(outside, src / "6")

    source_before, outside_before = tree(src), tree(outside)
    code, output = run_import(src, dest)

    assert code == 0, output
    assert not marker.exists()  # nothing from a store is ever executed
    assert "Traceback" not in output and "\x1b" not in output and SECRET not in output
    assert tree(src) == source_before and tree(outside) == outside_before  # read-only, both
    assert set(os.listdir(tmp_path)) == {"mlflow", "mlruns", "outside"}  # nothing written elsewhere
    for path in dest.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path  # nothing read from outside
        assert not path.is_symlink()
    assert_imported_exactly(dest, good)
    assert mm.Store(dest).get_run(good.name)["params"].get("other") is None  # the duplicate was not merged
    for what, run_id in bad.items():
        assert run_id in output, f"{what} run not reported"
        with pytest.raises(mm.NotFoundError):
            mm.Store(dest).get_run(run_id)
    imported = mm.Store(dest).get_run(partial.name)
    assert imported["params"] == {"ok": "1"} and imported["metadata"]["parent_run_id"] is None
    assert "leak" not in imported["tags"] and set(mm.Store(dest).metric_keys(partial.name)) == {"m"}
    for part in (
        "big",
        "not UTF-8",
        "NUL",
        "fifo",
        "not a regular file",
        "../../etc",
        "bad\\x1bkey",
        "leak.txt",
        "leakdir",
        "is outside",
        "also in experiment folder 1",
        "experiment folder 3",
        "experiment folder 4",
        "experiment folder 5",
        "symlink out of",
    ):
        assert part in output, part
    assert mm.Store(dest).get_run(elsewhere.name)["metadata"]["status"] == "FINISHED"
    runs, skipped_runs = output.split("imported ")[1].split(" runs")[0], output.count("  skipped: run ")
    assert int(runs) == 3 and skipped_runs >= len(bad)

    again_code, again = run_import(src, dest)  # importing twice changes nothing
    assert again_code == 0 and "imported 0 runs" in again and "3 already here" in again


def test_huge_metric_files_are_read_with_bounded_memory(tmp_path: Path) -> None:
    src, dest = tmp_path / "mlflow", tmp_path / "mlruns"
    exp = write_experiment(src, "1", "big")
    run = write_run(exp)
    with open(run / "metrics" / "garbage", "wb") as f:  # 16 MB without a single newline
        chunk = os.urandom(1 << 20).replace(b"\n", b"x")
        for _ in range(16):
            f.write(chunk)
        f.write(b"\n1763900000000 1.5 3\n")
    with open(run / "metrics" / "many", "wb") as f:  # 100,000 valid lines (~3 MB)
        f.write(b"".join(b"%d %d.5 %d\n" % (1763900000000 + i, i, i) for i in range(100_000)))
    tracemalloc.start()
    try:
        report = import_mlflow(str(src), str(dest))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.runs == 1 and report.points == 100_001 and report.skipped_lines == 1
    assert peak < 12 << 20, f"peak {peak / 1e6:.1f} MB while importing 19 MB of metric files"
    history = mm.Store(dest).get_metric_history(run.name, "many")
    assert len(history.steps) == 100_000 and history.values[-1] == 99_999.5
    assert mm.Store(dest).get_metric_history(run.name, "garbage").steps == [3]


def _oracle(lines: list[bytes]) -> list[tuple[int, Any, int]]:
    """What a FileStore metric file means, written independently of the importer: whole lines of 2, 3
    or 5 fields (timestamp int, value float, step int, both 64-bit); a last line without a newline
    only when it has the step."""
    out = []
    for i, raw in enumerate(lines):
        last = i == len(lines) - 1
        fields = raw.split()
        if (
            len(raw) > 4096
            or len(fields) not in (2, 3, 5)
            or (last and not raw.endswith(b"\n") and len(fields) < 3)
        ):
            continue
        try:
            stamp, value = int(fields[0]), float(fields[1])
            step = int(fields[2]) if len(fields) >= 3 else 0
        except ValueError:
            continue
        if not (-(1 << 63) <= stamp < 1 << 63 and -(1 << 63) <= step < 1 << 63):
            continue
        out.append((step, "nan" if math.isnan(value) else value, stamp))
    return out


line = st.one_of(
    st.builds(
        lambda t, v, s, n: b"%d %s %d%s\n" % (t, repr(v).encode(), s, b" 0 x" if n else b""),
        st.integers(-(1 << 64), 1 << 64),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(1 << 64), 1 << 64),
        st.booleans(),
    ),
    st.builds(lambda t, v: b"%d %s\n" % (t, repr(v).encode()), st.integers(0, 1 << 50), st.floats()),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n"),
    st.sampled_from([b"\n", b"nan nan nan\n", b"1 2 3 4\n", b"1\t2\t3\n", b"\xff\xfe 1 2\n", b"1 1e999 2\n"]),
)


#: File names a hostile store can hold for a key: MLflow's characters and others (escapes, markup,
#: '#', '%', backslashes, non-ASCII), nested with '/'; '.', '..' and empty parts cannot be file names.
key_name = st.lists(
    st.text(st.sampled_from("aZ09_-. :#%\\[]\x1b\x7féß🙂*?'"), min_size=1, max_size=8).filter(
        lambda part: part not in (".", "..")
    ),
    min_size=1,
    max_size=3,
).map("/".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(line, max_size=25),
    torn=st.sampled_from([b"", b"1763900000000 0.5", b"1763900000000 0.5 9", b"garbage"]),
    value=st.text(max_size=60),
    key=key_name,
)
def test_hypothesis_metric_lines_and_values_import_exactly(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], torn: bytes, value: str, key: str
) -> None:
    from mini_mlflow.store._layout import validate_key

    base = tmp_path_factory.mktemp("hyp")
    src, dest = base / "mlflow", base / "mlruns"
    exp = write_experiment(src, "1", "hyp")
    all_lines = [*lines, torn] if torn else lines
    run = write_run(exp, metrics={"m": b"".join(all_lines)}, tags={key: "tag value"})
    (run / "params" / "p").write_bytes(value.encode("utf-8", "surrogatepass"))
    report = import_mlflow(str(src), str(dest))
    assert report.runs == 1, report.skipped
    tags = mm.Store(dest).get_run(run.name)["tags"]
    try:
        validate_key(key)
    except mm.InvalidInputError:  # a name MLflow would not accept either: reported, never imported
        assert key not in tags and any(key in line for line in report.skipped), report.skipped
    else:
        assert tags[key] == "tag value"
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    history = mm.Store(dest).get_metric_history(run.name, "m") if _oracle(all_lines) else None
    got = [] if history is None else list(zip(history.steps, history.values, history.timestamps, strict=True))
    assert [(s, "nan" if v != v else v, t) for s, v, t in got] == _oracle(all_lines)
    params = mm.Store(dest).get_run(run.name)["params"]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: bytes that are not UTF-8 on disk
        assert params == {} and any("not UTF-8" in s for s in report.skipped)
        return
    if "\x00" in value:  # refused by the store, as by the API
        assert params == {} and any("NUL" in s for s in report.skipped)
    else:
        assert params == {"p": value}
