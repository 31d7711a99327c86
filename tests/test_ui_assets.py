"""The page's files: vendored code matches its recorded hash and licence, stays small, ships in the wheel,
and our own scripts never turn text into markup."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

STATIC = ROOT / "mini_mlflow" / "ui" / "static"
VENDOR = STATIC / "vendor"
BUDGET_GZIPPED = 150 * 1024


def vendored() -> list[list[str]]:
    rows = [line.split() for line in (VENDOR / "VENDORED.txt").read_text().splitlines()]
    return [row for row in rows if row and not row[0].startswith("#")]


def test_vendored_files_match_their_recorded_sha256_and_carry_their_licence() -> None:
    rows = vendored()
    assert {row[0] for row in rows} == {p.name for p in VENDOR.iterdir() if p.name != "VENDORED.txt"}
    for name, package, version, licence, _source, sha in rows:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == sha, f"{name} changed"
        assert (package, version, licence) == ("uplot", "1.6.32", "MIT")
    licence = (VENDOR / "uPlot.LICENSE.txt").read_text()
    assert "The MIT License" in licence and "Leon Sorokin" in licence
    assert (VENDOR / "uPlot.iife.min.js").stat().st_size == 51_081  # the published 1.6.32 build


def test_static_assets_stay_within_150_kb_gzipped() -> None:
    total = sum(len(gzip.compress(p.read_bytes(), 9)) for p in STATIC.rglob("*") if p.is_file())
    assert 20_000 < total <= BUDGET_GZIPPED, total


def test_our_scripts_never_parse_store_text_as_markup() -> None:
    """Names from the store become text nodes: no innerHTML & co. anywhere in our code (uPlot has none either)."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc")
    scripts = list((STATIC / "js").glob("*.js"))
    assert len(scripts) >= 5
    for path in [*scripts, VENDOR / "uPlot.iife.min.js"]:
        assert not sinks.findall(path.read_text()), path
    page = (STATIC / "index.html").read_text()
    assert "<script>" not in page and " on" not in page.split("<body>")[1].split("<dialog")[0]
    assert re.findall(r'(?:src|href)="([^"]+)"', page) == [
        "/static/js/boot.js",
        "/static/vendor/uPlot.min.css",
        "/static/style.css",
        "/static/js/util.js",
        "/static/js/table.js",
        "/static/js/chart.js",
        "/static/js/pages.js",
        "/static/js/app.js",
        "#/runs",
    ]


def test_the_wheel_ships_the_page(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("mini_mlflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "mini_mlflow/ui/" + str(p.relative_to(STATIC.parent)).replace("\\", "/")
        for p in STATIC.rglob("*")
        if p.is_file()
    }
    assert expected <= names, sorted(expected - names)
