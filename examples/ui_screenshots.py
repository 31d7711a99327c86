"""Screenshots of `mini-mlflow ui` on the sample store, for the docs (`make screenshots`).

Drives Debian's headless Chromium with playwright (the dev extras; `make browser` installs Chromium):

    python examples/ui_screenshots.py docs
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = [
    ("ui-table.png", "#/runs?e=1", ".chart, #runs"),
    ("ui-run.png", "#/run/3d0989dc?sm=0.3", ".chart[data-drawn]"),
    (
        "ui-compare.png",
        "#/compare?r=3d0989dc,ab9789c8,486967ee,a127ca9d&sm=0.3&m=train/loss,val/acc",
        ".chart[data-drawn]",
    ),
]


def main() -> int:
    from playwright.sync_api import sync_playwright

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    chromium = shutil.which("chromium")
    if chromium is None:
        print("no Chromium: `make browser` installs it", file=sys.stderr)
        return 1
    server = subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", "ui", "--root", str(HERE / "mlruns.sample"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        base = line.split()[3]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="light")
            for name, hash_, wait in SHOTS:
                page.goto(f"{base}/{hash_}")
                page.wait_for_selector("#view[data-ready]")
                page.wait_for_selector(wait)
                page.wait_for_timeout(300)  # the legend settles after the last draw
                page.screenshot(path=str(out / name), full_page=name != "ui-table.png")
                print(f"wrote {out / name}")
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
