"""Run every ``bench/bench_*.py`` in one session and assemble ``bench/README.md``.

Each bench prints one Markdown section; this script adds a header saying when and where the numbers
were taken. Measurements inside a bench are side by side (ratios), because machines are noisy.

    python bench/run.py [--quick] [--only hotpath,read] [--markdown bench/README.md]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

HEADER = """# Benchmarks

Produced by `make bench` (which runs `python bench/run.py` in a separate environment, `.venv-bench`,
holding the peers from `bench/requirements.txt`; none of them is a dependency of mini_mlflow).
Numbers are medians measured side by side in one run; compare the ratios, not the absolute times:
the machines are shared and noisy.

"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated bench names, e.g. hotpath,read")
    parser.add_argument("--markdown", default="", help="write the report to this file too")
    args = parser.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    sections, failed = [], []
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(path)[len("bench_") : -len(".py")]
        if wanted and name not in wanted:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, path] + (["--quick"] if args.quick else [])
        result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        took = time.perf_counter() - t0
        if result.returncode != 0:
            failed.append(name)
            sections.append(f"## {name}\n\nFAILED (exit {result.returncode}) after {took:.0f} s.\n")
        else:
            sections.append(result.stdout.strip() + f"\n\n_(bench_{name}.py took {took:.0f} s)_\n")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    where = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    where += f", Python {platform.python_version()}"
    report = (
        HEADER
        + f"Last run: {stamp} on {where}{' (--quick)' if args.quick else ''}.\n\n"
        + "\n\n".join(sections)
    )
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
