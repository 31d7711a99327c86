"""`bench/run.py` puts each bench's section into the report between its marks and keeps the rest.

The script runs as it does under `make bench`, copied beside stand-in benches (a real bench takes
minutes and needs the peers' environment): one that prints a section, one that fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"

REPORT = """# Benchmarks

Hand-written header.

<!-- bench:alpha -->
## Alpha

| old alpha table |

_(bench_alpha.py: 9 s, 2026-01-01 00:00 UTC)_
<!-- /bench:alpha -->

Notes on alpha, written by hand: kept.

<!-- bench:broken -->
## Broken

| broken's last good numbers |
<!-- /bench:broken -->

Notes on broken: kept.
"""


def _benches(folder: Path) -> None:
    shutil.copy(RUN, folder / "run.py")
    (folder / "bench_alpha.py").write_text('print("## Alpha\\n\\n| new alpha table |")\n')
    (folder / "bench_broken.py").write_text("import sys\nsys.exit(3)\n")
    (folder / "bench_gamma.py").write_text('print("## Gamma\\n\\n| gamma table |")\n')


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(folder / "run.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_a_run_replaces_its_sections_keeps_notes_and_a_failed_benchs_numbers(tmp_path: Path) -> None:
    _benches(tmp_path)
    report = tmp_path / "README.md"
    report.write_text(REPORT)
    done = _run(tmp_path, "--markdown", str(report))
    assert done.returncode == 1, done.stderr  # one bench failed
    assert "failed (their old sections are kept): broken" in done.stderr
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written header.\n")
    assert "| new alpha table |" in text and "| old alpha table |" not in text
    assert text.count("<!-- bench:alpha -->") == 1 and text.count("<!-- /bench:alpha -->") == 1
    alpha = text[text.index("<!-- bench:alpha -->") : text.index("<!-- /bench:alpha -->")]
    assert "_(bench_alpha.py: " in alpha and "2026-01-01" not in alpha  # stamped anew
    assert "Notes on alpha, written by hand: kept." in text
    assert "| broken's last good numbers |" in text and "Notes on broken: kept." in text
    # a bench the report had no section for: appended at the end, between its marks
    assert text.rstrip().endswith("<!-- /bench:gamma -->")
    assert text.index("Notes on broken") < text.index("<!-- bench:gamma -->")


def test_only_runs_the_benches_named_and_leaves_the_other_sections_as_they_were(tmp_path: Path) -> None:
    _benches(tmp_path)
    report = tmp_path / "README.md"
    report.write_text(REPORT)
    done = _run(tmp_path, "--only", "gamma", "--markdown", str(report))
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert text.startswith(REPORT.rstrip("\n"))  # everything before untouched, byte for byte
    assert "| gamma table |" in text
    again = _run(tmp_path, "--only", "gamma", "--markdown", str(report))
    assert again.returncode == 0
    assert report.read_text().count("<!-- bench:gamma -->") == 1  # replaced, not appended twice


def test_a_missing_report_starts_from_the_header(tmp_path: Path) -> None:
    _benches(tmp_path)
    report = tmp_path / "new.md"
    assert _run(tmp_path, "--only", "alpha", "--markdown", str(report)).returncode == 0
    text = report.read_text()
    assert text.startswith("# Benchmarks\n") and "| new alpha table |" in text


def test_an_unknown_bench_name_is_an_error_that_lists_the_benches(tmp_path: Path) -> None:
    _benches(tmp_path)
    report = tmp_path / "README.md"
    report.write_text(REPORT)
    done = _run(tmp_path, "--only", "alpha,gama", "--markdown", str(report))
    assert done.returncode == 2
    assert done.stderr.strip() == "error: no such bench: gama (there are: alpha, broken, gamma)"
    assert report.read_text() == REPORT  # nothing ran, nothing changed
