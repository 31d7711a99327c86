"""Promises broken on purpose: each named test must fail on the broken code and pass on the real one.

``make promises`` (not part of ``make test``; a few minutes). Each row below is a promise of
``docs/reliability.md`` or ``SECURITY.md`` whose named test was once shown to pass with the promise
broken. Here the break is made again, as a text edit of one file in a copy of the checkout (so the
child processes the tests start import the broken code too, as in ``bench/mutate.py``); the named
tests run there, then again on the unbroken copy. A row holds when at least one of its tests fails
on the broken code (each test's result is shown) and all of them pass on the real code.

Usage: ``python bench/promises.py [--only N ...] [--markdown FILE]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutate import PYTHON, _cell, _copy_checkout, _env  # bench/ is not a package


@dataclass(frozen=True)
class Promise:
    promise: str
    tests: tuple[str, ...]
    path: str  #: the file broken
    old: str  #: text found exactly once in it
    new: str
    change: str  #: the break, in words
    #: Further ``(old, new)`` edits of the same file, for a break made of two (moving a call).
    also: tuple[tuple[str, str], ...] = ()


PROMISES = [
    Promise(
        "a torn line is completed after disk-full, never left or repeated",
        ("tests/test_writer_faults.py::test_disk_full_keeps_points_and_writes_them_when_space_returns",),
        "mini_mlflow/write/_buffer.py",
        "held[key] = data[written:]",
        "held[key] = data",
        "a short write's bytes are all written again (the written part repeated)",
    ),
    Promise(
        "a forked child never writes its parent's buffered points",
        ("tests/test_concurrency.py::test_fork_child_does_not_duplicate_parent_points",),
        "mini_mlflow/write/_buffer.py",
        "        self.queue.clear()\n        self._held.clear()\n",
        "",
        "both fork-reset clears removed",
    ),
    Promise(
        "`sync --watch` and online mode give each run a time slice per pass",
        (
            "tests/sync/test_sync_passes.py::test_sync_watch_gives_each_run_a_time_slice",
            "tests/sync/test_sync_passes.py::test_online_mode_gives_each_run_a_time_slice",
        ),
        "mini_mlflow/sync/_upload.py",
        "WATCH_RUN_SLICE = 2.0",
        "WATCH_RUN_SLICE = None",
        "the watch slice set to none",
    ),
    Promise(
        "at most 256 metric files open per process",
        ("tests/test_hardening.py::test_busy_runs_together_hold_at_most_256_metric_files",),
        "mini_mlflow/write/_run_files.py",
        "_FDS_PER_PROCESS = 256",
        "_FDS_PER_PROCESS = 10**9",
        "the per-process cap set to 10⁹",
    ),
    Promise(
        "the CLI's `error:` line is at most 1,000 characters",
        ("tests/test_hostile_cli.py",),
        "mini_mlflow/cli/_common.py",
        "MAX_MESSAGE = 1000",
        "MAX_MESSAGE = 10**9",
        "the message cap removed",
    ),
    Promise(
        "a store changed by hand is seen within 5 s, at the next sweep",
        (
            "tests/test_reader_index.py::test_between_sweeps_settled_runs_are_skipped_but_store_changes_are_seen",
        ),
        "mini_mlflow/read/_index.py",
        "SWEEP_S = 5",
        "SWEEP_S = 3600",
        "the sweep interval set to an hour",
    ),
    Promise(
        "export skips symlinked artifacts",
        ("tests/sync/test_interop.py::test_export_skips_symlinked_artifacts",),
        "mini_mlflow/interop/_convert.py",
        "if TMP_MARK in name or os.path.islink(path) or not os.path.isfile(path):",
        "if TMP_MARK in name or not os.path.isfile(path):",
        "an artifact that is a symlink to a file is followed (its target exported)",
    ),
    Promise(
        "one warning for a symlinked params/tags folder, not one per value",
        ("tests/test_hardening.py::test_params_tags_and_artifacts_refuse_symlinked_folders",),
        "mini_mlflow/write/_buffer.py",
        "self._warn_once(\n            exc.errno,",
        "self._warn_once(\n            (exc.errno, path),",
        "one warning per file instead of per cause",
    ),
    Promise(
        "a sync server's answer is read no further than 16 MB",
        (
            "tests/sync/test_hostile_server.py::test_an_answer_is_read_no_further_than_16_mb",
            "tests/sync/test_hostile_server.py::test_hostile_answers_end_the_sync_clearly_and_lose_nothing",
        ),
        "mini_mlflow/sync/_client.py",
        "MAX_RESPONSE_BYTES = 16 << 20",
        "MAX_RESPONSE_BYTES = 1 << 40",
        "the answer cap set to 1 TB",
    ),
    Promise(
        "5xx answers (HTML pages) are retried until the server recovers, and the result is exact",
        ("tests/sync/test_hostile_server.py::test_5xx_html_pages_then_success_is_exact",),
        "mini_mlflow/sync/_client.py",
        "RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})",
        "RETRY_STATUSES = frozenset({429, 500, 502, 504})",
        "503 no longer retried",
    ),
    Promise(
        "sync uploads a big artifact as a stream (bounded memory)",
        ("tests/sync/test_big_artifact_sync.py::test_sync_uploads_a_big_artifact_to_mlflow_as_a_stream",),
        "mini_mlflow/sync/_client.py",
        "                while chunk := f.read(1 << 20):\n                    yield chunk\n",
        "                yield f.read()\n",
        "the artifact read whole into memory before its upload",
    ),
    Promise(
        "Ctrl-C on sync stops after the batch in flight with the cursor saved; nothing sent twice",
        (
            "tests/sync/test_sync_passes.py::test_ctrl_c_stops_sync_after_the_batch_in_flight_with_the_cursor_saved",
        ),
        "mini_mlflow/sync/_agent.py",
        "        finally:\n            _cursor.save(view.run_dir, self.url, cursor)\n",
        "        except BaseException:\n            raise\n"
        "        else:\n            _cursor.save(view.run_dir, self.url, cursor)\n",
        "the cursor saved only when a run's pass ends without an interruption",
    ),
    Promise(
        "the public surface (`mini_mlflow.__all__`) is sorted and locked",
        ("tests/test_public_api.py::test_all_is_sorted_and_locked",),
        "mini_mlflow/__init__.py",
        '    "InitRun",\n',
        "",
        "a public name dropped from `__all__`",
    ),
    # Promises that were not in that review, broken the same way.
    Promise(
        "SIGTERM marks the run KILLED (and a program's own handler is chained)",
        (
            "tests/test_crash.py::test_sigterm_flushes_marks_killed_and_dies_of_the_signal",
            "tests/test_crash.py::test_sigterm_chains_to_the_programs_own_handler",
        ),
        "mini_mlflow/write/_registry.py",
        'end_all("KILLED", lock_timeout=2.0)',
        'end_all("FINISHED", lock_timeout=2.0)',
        "SIGTERM ends the run FINISHED",
    ),
    Promise(
        "YAML from a store is read with the safe loader only",
        ("tests/test_hardening.py::test_meta_yaml_with_python_tags_is_broken_never_executed",),
        "mini_mlflow/store/_yaml.py",
        'loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)',
        "loader = yaml.UnsafeLoader",
        "the unsafe loader",
    ),
    Promise(
        "a key starting with `..` is refused before anything is written",
        ("tests/test_hardening.py::test_no_name_surface_lets_a_path_escape_the_store",),
        "mini_mlflow/store/_layout.py",
        'key.startswith(("..", "/"))',
        'key.startswith(("/",))',
        "the `..` check of keys removed",
    ),
    Promise(
        "readers never read through a symlink planted in a store",
        ("tests/test_reader_index.py::test_readers_never_read_through_a_symlink_planted_in_a_run",),
        "mini_mlflow/store/_files.py",
        '_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)',
        "_NOFOLLOW = 0",
        "files opened without `O_NOFOLLOW`",
    ),
    Promise(
        "a run stored in the columnar file and changed by hand is seen at the next sweep",
        (
            "tests/test_reader_index.py::test_between_sweeps_settled_runs_are_skipped_but_store_changes_are_seen",
            "tests/test_reader_index.py::test_a_run_folder_moved_out_and_back_is_gone_then_back",
        ),
        "mini_mlflow/read/_index.py",
        "if not (ok and now == was and was < settled_before)",
        "if not (ok and was < settled_before)",
        "the sweep's tight pass trusts a stored run whatever its folder's mtime",
    ),
    Promise(
        "a run folder moved out of the store and back is listed again",
        ("tests/test_reader_index.py::test_a_run_folder_moved_out_and_back_is_gone_then_back",),
        "mini_mlflow/read/_index.py",
        "rest += [name for name in listed if name not in stored or name in delta]",
        "rest += [name for name in listed if name not in stored]",
        "a listed folder that the columnar file holds and the delta marks gone is not looked at again",
    ),
    Promise(
        "secrets given to `mini-mlflow run` reach no output, even split across two chunks of it",
        ("tests/test_run_cmd.py::test_redactor_holds_back_enough_for_the_longest_of_several_secrets",),
        "mini_mlflow/cli/_run_cmds.py",
        "len(self.secrets[0]) - 1",
        "len(self.secrets[-1]) - 1",
        "the redactor holds back for the shortest secret, not the longest",
    ),
    Promise(
        "`fsync=end`: every metric file is on disk before the meta.yaml saying the run ended",
        ("tests/test_hardening_fsync.py::test_fsync_policy_never_end_flush",),
        "mini_mlflow/write/_run.py",
        "                        self._buffer.sync_files()\n"
        "                        self._buffer.raise_error()\n",
        "                        self._buffer.raise_error()\n",
        "the metric files synced after the FINISHED meta.yaml, not before",
        (
            (
                "                    end_time=iso_from_ms(end_ms),\n                )\n",
                "                    end_time=iso_from_ms(end_ms),\n                )\n"
                '                if self._settings.fsync != "never":\n'
                "                    self._buffer.sync_files()\n",
            ),
        ),
    ),
    Promise(
        "meta.yaml is replaced whole: a reader never sees it empty or torn",
        ("tests/test_file_primitives.py::test_meta_yaml_is_replaced_whole_while_a_reader_reads_it",),
        "mini_mlflow/store/_files.py",
        "        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)\n",
        "        if os.path.basename(path) != META_FILE:\n"
        "            os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)\n"
        "        else:\n"
        "            data = read_bytes(tmp, dir_fd)\n"
        "            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW\n"
        "            out = os.open(path, flags, 0o644, dir_fd=dir_fd)\n"
        "            try:\n"
        "                _write_all(out, data)\n"
        "            finally:\n"
        "                os.close(out)\n"
        "            os.unlink(tmp, dir_fd=dir_fd)\n",
        "meta.yaml rewritten in place (truncated, then written) instead of renamed over",
    ),
    Promise(
        "a logging call that finds its buffer overdue writes it itself (a starved writer thread)",
        ("tests/test_writer_faults.py::test_a_logging_call_drains_an_overdue_buffer_itself",),
        "mini_mlflow/write/_run.py",
        "timestamp)))\n        if now > self._buffer.due:",
        "timestamp)))\n        if now > self._buffer.due + 100:",
        "a logging call drains only when 100 s overdue",
    ),
    Promise(
        "`flush()` returns only after a drain in progress, and its own, have written every point",
        ("tests/test_writer_faults.py::test_flush_waits_for_a_drain_in_progress",),
        "mini_mlflow/write/_run.py",
        "        buffer.drain(_lock_timeout)",
        "        buffer.drain(0)",
        "flush() gives up its drain when another holds the run's lock",
    ),
]


def _pytest(copy: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    began = time.monotonic()
    proc = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider", "-o", "addopts=",
         "--timeout=300", f"--basetemp={copy.parent / 'tmp'}", *tests],
        cwd=copy, env=_env(copy), capture_output=True, text=True,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - began


def _results(output: str, tests: tuple[str, ...]) -> dict[str, str]:
    """Each test's outcome from pytest's summary lines (``FAILED nodeid``), else passed."""
    failed = set(re.findall(r"^(?:FAILED|ERROR) (\S+)", output, re.M))
    out = {}
    for test in tests:
        hit = sorted(f for f in failed if f == test or f.startswith(test + "::") or f.startswith(test + "["))
        out[test] = f"{len(hit)} failed" if hit else "passed"
    return out


def _how(output: str) -> str:
    """The first assertion line of a failure (pytest's ``E   ...``), shortened for a table cell."""
    found = re.search(r"^E\s+(.+)$", output, re.M)
    text = found.group(1).strip() if found else ""
    return (text[:117] + "...") if len(text) > 120 else text


def check(p: Promise, copy: Path) -> dict[str, object]:
    """Break ``p`` in ``copy``, run its tests, put the file back and run them again."""
    target = copy / p.path
    original = target.read_text()
    broken = original
    for old, new in ((p.old, p.new), *p.also):
        if broken.count(old) != 1:
            raise SystemExit(f"{p.path}: the text to break is not there exactly once: {old!r}")
        broken = broken.replace(old, new)
    target.write_text(broken)
    shutil.rmtree(target.parent / "__pycache__", ignore_errors=True)
    rc_broken, out_broken, s_broken = _pytest(copy, p.tests)
    target.write_text(original)
    shutil.rmtree(target.parent / "__pycache__", ignore_errors=True)
    rc_real, out_real, s_real = _pytest(copy, p.tests)
    broken = _results(out_broken, p.tests)
    holds = rc_broken == 1 and any(r != "passed" for r in broken.values()) and rc_real == 0
    return {
        "holds": holds,
        "broken": broken,
        "how": _how(out_broken),
        "real": out_real.strip().splitlines()[-1] if out_real.strip() else "",
        "seconds": s_broken + s_real,
        "why": "" if holds else out_broken[-1500:] + "\n---\n" + out_real[-1500:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", type=int, help="row numbers (1-based)")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    rows = [(i, p) for i, p in enumerate(PROMISES, 1) if not args.only or i in args.only]
    base = Path(tempfile.mkdtemp(prefix="mini-mlflow-promises-"))
    copy = base / "copy"  # one copy for every row: each row puts its file back
    lines = [
        "# Promises broken on purpose",
        "",
        f"`bench/promises.py` on {time.strftime('%Y-%m-%d', time.gmtime())} ({os.uname().sysname}, "
        f"{'root' if os.geteuid() == 0 else 'not root'}): each promise is broken in a copy of the checkout; "
        "its named tests run on the broken code, then on the real code.",
        "",
        "| # | promise | the break (file) | named tests on the broken code | first failure "
        "| on the real code | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    failures = 0
    try:
        _copy_checkout(copy)
        for i, p in rows:
            r = check(p, copy)
            failures += not r["holds"]
            broken = r["broken"]
            assert isinstance(broken, dict)
            cells = "; ".join(f"`{t.split('::')[-1]}`: **{v}**" for t, v in broken.items())
            how = _cell(str(r["how"]))
            lines.append(
                f"| {i} | {p.promise} | {p.change} (`{p.path}`) | {cells} | `{how}` | {r['real']} | "
                f"{'yes' if r['holds'] else '**no**'} |"
            )
            print(f"[{i}] {'holds' if r['holds'] else 'DOES NOT HOLD'}: {p.promise} "
                  f"({r['seconds']:.0f} s) {broken} | real: {r['real']}", file=sys.stderr)  # fmt: skip
            if not r["holds"]:
                print(r["why"], file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
